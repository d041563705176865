"""The "other hospital": labelled studies from generators written apart from the ones the shipped
models were trained on (`inference.phantoms`), never used for training, validation or operating
points: head CT (hemorrhage), CT pulmonary angiograms (embolism), chest radiographs
(pneumothorax) and cervical-spine CT (fracture). They measure how a model
holds on data it was not shaped by.

`other_site_dataset_write` writes a data set in the layout `manage.py validate_model` reads (one
folder per study, `labels.csv`).
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import numpy as np

from inference.other_site.chest_radiograph import chest_radiograph_other
from inference.other_site.cspine_ct import cspine_ct_other
from inference.other_site.ctpa import ctpa_other
from inference.other_site.head_ct import head_ct_other
from inference.other_site.volume import OtherCt, OtherRadiograph
from inference.other_site.writer import other_site_write
from triage.findings import Finding

SEED_START = 30_000_000  # apart from every range inference.phantoms uses

# finding -> (generator, its stream number in the seed sequence)
GENERATORS: dict[Finding, tuple[Callable[..., OtherCt | OtherRadiograph], int]] = {
    Finding.INTRACRANIAL_HEMORRHAGE: (head_ct_other, 3),
    Finding.PULMONARY_EMBOLISM: (ctpa_other, 11),
    Finding.PNEUMOTHORAX: (chest_radiograph_other, 7),
    Finding.FRACTURE: (cspine_ct_other, 5),
}

__all__ = [
    "GENERATORS",
    "OtherCt",
    "OtherRadiograph",
    "other_site_dataset_write",
    "other_site_generate",
]


def other_site_generate(
    *, finding: Finding | str, seed: int, positive: bool
) -> OtherCt | OtherRadiograph:
    """The study of this seed; a positive whose lesion did not survive (too small to show) is
    drawn again from a further stream, so a study's label and its pixels always agree."""
    generate, stream = GENERATORS[Finding(finding)]
    for attempt in range(8):
        extra = [attempt] if attempt else []
        volume = generate(np.random.default_rng([seed, stream, int(positive), *extra]),
                          positive=positive)  # fmt: skip
        if volume.positive == positive:
            return volume
    raise ValueError(f"other site {finding} seed {seed}: no positive survived 8 draws")


def other_site_dataset_write(
    folder: Path,
    *,
    finding: Finding | str,
    studies: int,
    seed_start: int = SEED_START,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, bool]:
    """`studies` studies, alternately drawn positive and negative (a positive whose lesion did
    not survive is drawn again, see `other_site_generate`)."""
    folder.mkdir(parents=True, exist_ok=True)
    labels: dict[str, bool] = {}
    for n in range(studies):
        seed = seed_start + n
        volume = other_site_generate(finding=finding, seed=seed, positive=n % 2 == 0)
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
