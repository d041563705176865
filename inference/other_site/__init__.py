"""The "other hospital": labelled head CT studies from a generator written apart from the one
the shipped models were trained on (`inference.phantoms`), never used for training, validation
or operating points. It measures how a model holds on data it was not shaped by.

`other_site_dataset_write` writes a data set in the layout `manage.py validate_model` reads (one
folder per study, `labels.csv`).
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import numpy as np

from inference.other_site.head_ct import OtherHeadCt, head_ct_other
from inference.other_site.writer import other_site_write

SEED_START = 30_000_000  # apart from every range inference.phantoms uses

__all__ = ["OtherHeadCt", "head_ct_other", "other_site_dataset_write", "other_site_generate"]


def other_site_generate(*, seed: int, positive: bool) -> OtherHeadCt:
    return head_ct_other(np.random.default_rng([seed, 3, int(positive)]), positive=positive)


def other_site_dataset_write(
    folder: Path,
    *,
    studies: int,
    seed_start: int = SEED_START,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, bool]:
    """`studies` studies, alternately drawn positive and negative; the label is the truth as
    drawn (a positive whose bleed did not survive onto two slices is labelled negative)."""
    folder.mkdir(parents=True, exist_ok=True)
    labels: dict[str, bool] = {}
    for n in range(studies):
        seed = seed_start + n
        volume = other_site_generate(seed=seed, positive=n % 2 == 0)
        name = f"os-{seed}"
        other_site_write(volume, out_dir=folder / name, seed=seed)
        labels[name] = volume.positive
        if progress:
            progress(n + 1, studies)
    with open(folder / "labels.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["study", "label"])
        for name, positive in labels.items():
            writer.writerow([name, 1 if positive else 0])
    return labels
