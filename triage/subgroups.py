"""Subgroups: how a model does on each kind of scanner, acquisition and patient, so a site sees
where it holds and where it does not (a model that is fine overall can fail one scanner).

Each studied case carries its subgroups, read from the header of the series the model scored
(`inference.acquisition`): manufacturer and model, station, slice thickness band, kVp band,
patient age band and sex.
At a threshold, each subgroup's sensitivity and specificity come with 95% Wilson intervals; a
subgroup whose sensitivity interval's lower bound falls under the site's floor
(`VALIDATION_SENSITIVITY_FLOOR`) is flagged, as is one with too few positives to tell.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from inference.acquisition import ACQUISITION_ATTRIBUTES

MIN_POSITIVES = 5  # fewer positives in a subgroup: its sensitivity cannot be told


@dataclass(frozen=True, kw_only=True)
class Proportion:
    value: float
    low: float
    high: float
    of: int


def wilson(successes: int, total: int) -> Proportion | None:
    """The proportion with its 95% Wilson score interval; None for no cases."""
    if total == 0:
        return None
    z = 1.959964
    p = successes / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return Proportion(value=p, low=max(0.0, centre - half), high=min(1.0, centre + half), of=total)


@dataclass(frozen=True, kw_only=True)
class SubgroupRow:
    attribute: str
    label: str
    value: str
    studies: int
    positives: int
    sensitivity: Proportion | None
    specificity: Proportion | None
    flag: str  # "" when the subgroup holds; otherwise why it is flagged


def subgroup_table(
    cases: Sequence[tuple[dict[str, str], bool, float]], *, threshold: float, floor: float
) -> list[SubgroupRow]:
    """Every attribute's subgroups (only attributes with more than one value, or whose one value
    is known), at `threshold`; flagged against the sensitivity `floor`."""
    counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for subgroups, positive, score in cases:
        flagged = score >= threshold
        for attribute in ACQUISITION_ATTRIBUTES:
            tally = counts[(attribute, subgroups.get(attribute) or "unknown")]
            if positive:
                tally[0 if flagged else 1] += 1  # true positive / false negative
            else:
                tally[3 if flagged else 2] += 1  # true negative / false positive
    rows = []
    for attribute, label in ACQUISITION_ATTRIBUTES.items():
        values = sorted(value for key, value in counts if key == attribute)
        if values == ["unknown"]:
            continue
        for value in values:
            tp, fn, tn, fp = counts[(attribute, value)]
            sensitivity = wilson(tp, tp + fn)
            if tp + fn < MIN_POSITIVES:
                flag = f"fewer than {MIN_POSITIVES} positives: sensitivity cannot be told"
            elif sensitivity is not None and sensitivity.low < floor:
                flag = f"sensitivity may be under the floor {floor:.2f}"
            else:
                flag = ""
            rows.append(
                SubgroupRow(
                    attribute=attribute,
                    label=label,
                    value=value,
                    studies=tp + fn + tn + fp,
                    positives=tp + fn,
                    sensitivity=sensitivity,
                    specificity=wilson(tn, tn + fp),
                    flag=flag,
                )
            )
    return rows
