"""The one place a finding's alert threshold is read.

Today: the model card's operating point. Administrator-tuned policies plug in here.
"""

from __future__ import annotations

from inference.registry import ModelCard


def threshold_for(*, card: ModelCard) -> float:
    return card.threshold
