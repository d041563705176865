"""Phantom studies -> model inputs, through the worker's own decode and pre-processing functions.

torch-free. Every input a model trains or is evaluated on is produced by `inference.pipeline`
exactly as a worker produces it from a decoded series, so training and serving see the same
arrays.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pydicom

from inference.pipeline import DecodedSeries, model_inputs, radiograph_intensity
from inference.registry import Preprocessing
from inference.training.specs import CAM_CELLS, TrainingSpec, study_is_positive

# phantom_generate(finding, positive=..., seed=...) -> PhantomStudy
PhantomGenerator = Callable[..., Any]
Log = Callable[[str], None]


def phantom_generator() -> PhantomGenerator:
    """The repository's phantom generator (imported late: it is only needed to train)."""
    from inference.phantoms import phantom_generate

    return phantom_generate


def decoded_series(study: Any) -> DecodedSeries:
    """The phantom as the worker's decoder would hand it over.

    CT pixels are already Hounsfield units. A radiograph goes through `radiograph_intensity`, the
    worker's percentile stretch to [0, 1], as it would after a round trip through DICOM.
    """
    pixels = np.asarray(study.pixels, dtype=np.float32)
    modality = str(study.modality)
    if modality != "CT":
        header = pydicom.Dataset()
        header.PhotometricInterpretation = "MONOCHROME2"
        pixels = np.stack([radiograph_intensity(header, image) for image in pixels])
    count = pixels.shape[0]
    return DecodedSeries(
        pixels=pixels,
        sop_instance_uids=[f"phantom.{index}" for index in range(count)],
        positions=np.arange(count, dtype=np.float64),
        photometric="MONOCHROME2",
        modality=modality,
    )


def study_inputs(study: Any, preprocessing: Preprocessing) -> np.ndarray:
    """(n, channels, size, size) float32 model inputs for one phantom study."""
    return model_inputs(decoded_series(study), preprocessing)


def study_targets(study: Any, *, is_ct: bool) -> np.ndarray:
    """Per-input labels: slice labels for CT, the study label for a radiograph."""
    if is_ct:
        return np.asarray(study.slice_labels, dtype=bool).reshape(-1)
    return np.asarray([bool(study.positive)])


def lesion_cells(mask: np.ndarray, *, cells: int = CAM_CELLS) -> np.ndarray:
    """(n, rows, cols) lesion mask -> (n, cells, cells): does the lesion touch each cell of the
    activation map's grid over the whole image (the input is resized to a square, as served)."""
    mask = np.asarray(mask, dtype=bool)
    rows, cols = mask.shape[1:]
    row_starts = np.searchsorted((np.arange(rows) * cells) // rows, np.arange(cells))
    col_starts = np.searchsorted((np.arange(cols) * cells) // cols, np.arange(cells))
    counts = np.add.reduceat(mask.astype(np.int32), row_starts, axis=1)
    counts = np.add.reduceat(counts, col_starts, axis=2)
    return counts > 0


@dataclass(frozen=True, kw_only=True)
class PhantomStudy:
    """One generated study reduced to what training and evaluation need."""

    seed: int
    positive: bool
    subtype: str
    inputs: np.ndarray  # (n, channels, size, size) float32
    targets: np.ndarray  # (n,) bool
    cells: np.ndarray  # (n, CAM_CELLS, CAM_CELLS) bool: where the lesion is


def phantom_studies(
    spec: TrainingSpec,
    *,
    generate: PhantomGenerator,
    seeds: Sequence[int],
    label: str,
    log: Log,
    every: int = 100,
) -> Iterator[PhantomStudy]:
    """Generate and pre-process the studies of a seed range, printing progress."""
    started = time.monotonic()
    start = seeds[0] if seeds else 0
    for count, seed in enumerate(seeds, start=1):
        positive = study_is_positive(seed, start)
        study = generate(spec.finding.value, positive=positive, seed=seed)
        targets = study_targets(study, is_ct=spec.is_ct)
        if positive and not targets.any():
            raise ValueError(
                f"{spec.finding} phantom seed {seed} is positive with no positive slice"
            )
        if not positive and targets.any():
            raise ValueError(f"{spec.finding} phantom seed {seed} is negative with positive slices")
        yield PhantomStudy(
            seed=seed,
            positive=positive,
            subtype=str(study.subtype or ("none" if not positive else "unspecified")),
            inputs=study_inputs(study, spec.preprocessing),
            targets=targets,
            cells=lesion_cells(study.lesion_mask),
        )
        if count % every == 0 or count == len(seeds):
            log(f"  {label}: {count}/{len(seeds)} studies, {time.monotonic() - started:.0f}s")


@dataclass(frozen=True, kw_only=True)
class TrainingSet:
    inputs: np.ndarray  # (n, channels, size, size) float32
    targets: np.ndarray  # (n,) float32 in {0, 1}
    cells: np.ndarray  # (n, CAM_CELLS, CAM_CELLS) float32 in {0, 1}
    studies: int
    positive_studies: int
    subtypes: dict[str, int]


def training_set(
    spec: TrainingSpec,
    *,
    generate: PhantomGenerator,
    seeds: Sequence[int],
    seed: int,
    log: Log,
) -> TrainingSet:
    """Training inputs: the positive slices of a CT study (all, or evenly spaced up to the spec's
    limit) plus a seeded sample of its negative slices (the pool that training draws negatives
    from), or the one image of a radiograph."""
    rng = np.random.default_rng(seed)
    inputs: list[np.ndarray] = []
    targets: list[np.ndarray] = []
    cells: list[np.ndarray] = []
    subtypes: dict[str, int] = {}
    positives = 0
    for study in phantom_studies(spec, generate=generate, seeds=seeds, label="training", log=log):
        positives += study.positive
        subtypes[study.subtype] = subtypes.get(study.subtype, 0) + 1
        if spec.is_ct:
            negative_slices = np.flatnonzero(~study.targets)
            sampled = rng.choice(
                negative_slices,
                size=min(spec.negative_slices_per_study, negative_slices.size),
                replace=False,
            )
            positive_slices = np.flatnonzero(study.targets)
            limit = spec.positive_slices_per_study
            if limit is not None and positive_slices.size > limit:
                # Evenly spaced through the lesion: neighbouring thin slices are near-duplicates.
                positive_slices = positive_slices[
                    np.round(np.linspace(0, positive_slices.size - 1, limit)).astype(int)
                ]
            chosen = np.sort(np.concatenate([positive_slices, sampled]))
        else:
            chosen = np.arange(study.targets.size)
        inputs.append(study.inputs[chosen])
        targets.append(study.targets[chosen])
        cells.append(study.cells[chosen])
    return TrainingSet(
        inputs=np.concatenate(inputs).astype(np.float32, copy=False),
        targets=np.concatenate(targets).astype(np.float32, copy=False),
        cells=np.concatenate(cells).astype(np.float32, copy=False),
        studies=len(seeds),
        positive_studies=int(positives),
        subtypes=dict(sorted(subtypes.items())),
    )
