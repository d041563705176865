"""One series to one study score: the chain the worker, validation and the benchmarks share.

decode -> pre-process (the card's) -> ONNX Runtime (the process's session for the model, outputs
read by the card's names) -> calibrate (the card's, if any) -> aggregate (the card's) -> key
instance -> heat map on the key image.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from django.conf import settings

from inference import pipeline
from inference.registry import ModelCard
from inference.routing import SeriesDescriptor, StudyDescriptor, series_select
from inference.runtime import session_for


@dataclass(frozen=True, kw_only=True)
class SeriesScore:
    score: float
    key_index: int
    key_instance_uid: str
    slices: int
    provider: str  # the ONNX Runtime execution provider that served it
    decode_ms: float  # decode + pre-process
    inference_ms: float  # ONNX Runtime + aggregate
    heat_map_png: bytes | None  # None when heat_map=False
    # Each slice's activation map (n, h, w) in the series' spatial order; None when heat_map=False.
    activation_maps: np.ndarray | None = None
    # Each slice's probability, by SOP Instance UID, in the series' spatial order.
    slice_scores: tuple[tuple[str, float], ...] = ()
    # The series' acquisition bands (inference.acquisition), as decoded.
    acquisition: dict[str, str] = field(default_factory=dict)


def heat_map_caption(card: ModelCard) -> str:
    if card.demonstration:
        return f"{card.label} - demonstration model, synthetic training data"
    return card.label


def series_score(
    *,
    card: ModelCard,
    paths: Sequence[Path],
    threads: int,
    batch_size: int,
    heat_map: bool = True,
) -> SeriesScore:
    """Score one series with one model; raises pipeline.DecodeError for pixel data that cannot
    be decoded."""
    began = time.perf_counter()
    series = pipeline.decode_series(paths)
    inputs = pipeline.model_inputs(series, card.preprocessing)
    decoded = time.perf_counter()
    loaded = session_for(key=(card.name, card.sha256), path=card.onnx_path, threads=threads)
    probabilities, maps = pipeline.predict(
        loaded.session, inputs, outputs=card.outputs, batch_size=batch_size
    )
    score, key = pipeline.aggregate(probabilities, method=card.aggregation)
    if card.calibration is not None:
        # The card's scale: the map was fitted on study scores (aggregated raw), so it is
        # applied to the study score as aggregated; slice scores are shown on the same scale.
        score = card.calibration.value(score)
        probabilities = card.calibration.apply(probabilities)
    predicted = time.perf_counter()
    png = (
        pipeline.heat_map_png(
            pipeline.display_image(series, key, card.preprocessing),
            maps[key],
            caption=heat_map_caption(card),
        )
        if heat_map
        else None
    )
    return SeriesScore(
        score=score,
        key_index=key,
        key_instance_uid=series.sop_instance_uids[key],
        slices=len(series.sop_instance_uids),
        provider=loaded.provider,
        decode_ms=(decoded - began) * 1000,
        inference_ms=(predicted - decoded) * 1000,
        heat_map_png=png,
        activation_maps=maps if heat_map else None,
        slice_scores=tuple(
            (uid, float(p)) for uid, p in zip(series.sop_instance_uids, probabilities, strict=True)
        ),
        acquisition=series.acquisition,
    )


class FolderError(Exception):
    """A study folder with nothing the model can score."""


def _folder_series(folder: Path) -> tuple[StudyDescriptor, dict[str, list[Path]]]:
    files: dict[str, list[Path]] = {}
    headers: dict[str, pydicom.Dataset] = {}
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or path.name == "labels.json":
            continue
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:  # noqa: S112 - not DICOM: skip it
            continue
        uid = str(ds.get("SeriesInstanceUID", ""))
        files.setdefault(uid, []).append(path)
        headers.setdefault(uid, ds)
    if not files:
        raise FolderError(f"no DICOM files under {folder}")
    first = next(iter(headers.values()))
    return (
        StudyDescriptor(
            modality=str(first.get("Modality", "")),
            body_part=str(first.get("BodyPartExamined", "")).upper(),
            description=str(first.get("StudyDescription", "")),
            series=[
                SeriesDescriptor(
                    uid=uid,
                    modality=str(ds.get("Modality", "")),
                    body_part=str(ds.get("BodyPartExamined", "")).upper(),
                    description=str(ds.get("SeriesDescription", "")),
                    instance_count=len(files[uid]),
                    slice_thickness=float(ds.SliceThickness) if ds.get("SliceThickness") else None,
                    contrast_agent=str(ds.get("ContrastBolusAgent", "")),
                )
                for uid, ds in headers.items()
            ],
        ),
        files,
    )


def folder_score(card: ModelCard, folder: Path, *, threads: int) -> tuple[float, dict[str, str]]:
    """The model's score for one study folder (DICOM files, any layout), read as a worker reads
    it: the series the card's routing chooses, scored without a heat map; with the acquisition
    bands of that series. Raises FolderError (nothing to score) or pipeline.DecodeError."""
    descriptor, files = _folder_series(folder)
    chosen = series_select(descriptor, card.applies_to, selection=card.series_selection)
    if chosen is None:
        raise FolderError(f"{folder.name}: no series this model applies to")
    scored = series_score(
        card=card,
        paths=files[chosen.uid],
        threads=threads,
        batch_size=settings.INFERENCE_BATCH_SIZE,
        heat_map=False,
    )
    return scored.score, scored.acquisition
