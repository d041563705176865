"""The phantom study record and the dispatcher that generates one for a finding and seed."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from inference.phantoms.geometry import Grid, noise_add
from triage.findings import Finding

SIZES = ("small", "medium", "large")


@dataclass(frozen=True, kw_only=True)
class PhantomStudy:
    """One synthetic study with its ground truth, before it is written as DICOM."""

    finding: Finding
    positive: bool
    subtype: str
    size: str  # "small" | "medium" | "large" for positives, "" for negatives
    modality: str  # "CT", "CR" or "DX"
    pixels: np.ndarray  # CT: float32 HU (slices, rows, cols); radiograph: (1, rows, cols) in [0, 1]
    lesion_mask: np.ndarray  # bool, same shape as pixels
    slice_labels: np.ndarray  # bool (slices,)
    pixel_spacing: tuple[float, float]  # mm (row spacing, column spacing)
    slice_thickness: float  # mm (radiograph: 0.0)
    body_part: str
    study_description: str
    series_description: str
    contrast_agent: str
    photometric: str


_FINDING_INDEX = {finding: index for index, finding in enumerate(Finding)}


def phantom_rng(finding: Finding, *, positive: bool, seed: int) -> np.random.Generator:
    """The one random stream of a phantom: a pure function of (finding, label, seed)."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFFFFFF, _FINDING_INDEX[finding], positive])


def phantom_generate(finding: Finding | str, *, positive: bool, seed: int) -> PhantomStudy:
    """Generate one deterministic synthetic study: the same arguments give identical pixels."""
    finding = Finding(finding)
    rng = phantom_rng(finding, positive=bool(positive), seed=seed)
    if finding is Finding.INTRACRANIAL_HEMORRHAGE:
        from inference.phantoms.head_ct import head_ct_generate

        return head_ct_generate(rng, positive=bool(positive))
    if finding is Finding.PULMONARY_EMBOLISM:
        from inference.phantoms.ctpa import ctpa_generate

        return ctpa_generate(rng, positive=bool(positive))
    if finding is Finding.PNEUMOTHORAX:
        from inference.phantoms.chest_radiograph import chest_radiograph_generate

        return chest_radiograph_generate(rng, positive=bool(positive))
    from inference.phantoms.cspine_ct import cspine_ct_generate

    return cspine_ct_generate(rng, positive=bool(positive))


def size_draw(rng: np.random.Generator) -> str:
    return str(SIZES[int(rng.choice(3, p=[0.36, 0.34, 0.30]))])


def lesion_paint(
    volume: np.ndarray,
    mask: np.ndarray,
    box: tuple[slice, slice, slice],
    weight: np.ndarray,
    value: float | np.ndarray,
    *,
    min_pixels: int = 4,
    eligible: np.ndarray | None = None,
) -> int:
    """Paint a lesion and record it in the mask; slices where it would be a speck are left out.

    eligible (optional, same shape as weight) marks voxels that may count as lesion (e.g. fully
    intracranial). Returns the number of voxels added to the mask.
    """
    core = weight > 0.5
    if eligible is not None:
        core &= eligible
    counts = core.sum(axis=(1, 2))
    keep = counts >= min_pixels
    if not keep.all():
        weight = weight * keep[:, None, None]
        core &= keep[:, None, None]
    region = volume[box]
    region += weight * (value - region)
    mask[box] |= core
    return int(core.sum())


def slice_labels_of(mask: np.ndarray) -> np.ndarray:
    return np.asarray(mask.any(axis=(1, 2)), dtype=bool)


def lesion_draw_until(
    draw: Callable[[], object], mask: np.ndarray, *, min_slices: int, attempts: int = 6
) -> None:
    """Draw a lesion (into `mask`) until it shows on `min_slices` slices, `attempts` at most."""
    for _ in range(attempts):
        draw()
        if slice_labels_of(mask).sum() >= min_slices:
            break


def ct_phantom_finish(
    volume: np.ndarray,
    mask: np.ndarray,
    rng: np.random.Generator,
    *,
    grid: Grid,
    finding: Finding,
    positive: bool,
    subtype: str,
    size: str,
    noise_sd: tuple[float, float],
    body_part: str,
    study_description: str,
    series_suffix: str = "",
    contrast_agents: Sequence[str] = (),
) -> PhantomStudy:
    """The closing steps of every CT phantom: scanner noise (its SD drawn from `noise_sd`), the
    HU range a 12-bit CT stores, then the study record. A contrast agent, when the study has one,
    is drawn from `contrast_agents` after the noise."""
    noise_add(volume, rng, sd=float(rng.uniform(*noise_sd)))
    np.clip(volume, -1024, 3071, out=volume)
    return PhantomStudy(
        finding=finding,
        positive=positive,
        subtype=subtype,
        size=size,
        modality="CT",
        pixels=volume,
        lesion_mask=mask,
        slice_labels=slice_labels_of(mask),
        pixel_spacing=(grid.spacing, grid.spacing),
        slice_thickness=grid.thickness,
        body_part=body_part,
        study_description=study_description,
        series_description=f"AXIAL {grid.thickness:g}MM{series_suffix}",
        contrast_agent=str(rng.choice(list(contrast_agents))) if contrast_agents else "",
        photometric="MONOCHROME2",
    )
