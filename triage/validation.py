"""Validation runs: a model over a labelled data set, every score and label stored.

The data set is one folder per study (DICOM files, any layout inside) and a `labels.csv` with
columns `study,label` (label 1 or 0, or positive/negative).
"""

from __future__ import annotations

import csv
import logging
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pydicom
from django.conf import settings
from django.utils import timezone

from inference import pipeline
from inference.registry import ModelCard
from inference.routing import SeriesDescriptor, StudyDescriptor, series_select
from inference.scoring import series_score
from triage.models import ValidationCase, ValidationRun

logger = logging.getLogger(__name__)

Progress = Callable[[int, int, str], None]


class DatasetError(Exception):
    pass


def labels_read(dataset: Path) -> dict[str, bool]:
    path = dataset / "labels.csv"
    if not path.is_file():
        raise DatasetError(f"{path} is missing (columns: study,label)")
    labels: dict[str, bool] = {}
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            study, raw = (row.get("study") or "").strip(), (row.get("label") or "").strip().lower()
            if not study or raw not in {"1", "0", "positive", "negative", "true", "false"}:
                raise DatasetError(f"labels.csv: bad row {row}")
            if Path(study).name != study or study in {".", ".."}:
                raise DatasetError(f"labels.csv: study {study!r} is not a folder name in {dataset}")
            labels[study] = raw in {"1", "positive", "true"}
    if not labels:
        raise DatasetError("labels.csv lists no studies")
    return labels


def _series_of(folder: Path) -> tuple[StudyDescriptor, dict[str, list[Path]]]:
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
        raise DatasetError(f"no DICOM files under {folder}")
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


def study_score(card: ModelCard, folder: Path, *, threads: int) -> tuple[float, dict[str, str]]:
    """The model's score for one study folder, read as a worker reads it, and the subgroups of
    the series it scored."""
    descriptor, files = _series_of(folder)
    chosen = series_select(descriptor, card.applies_to, selection=card.series_selection)
    if chosen is None:
        raise DatasetError(f"{folder.name}: no series this model applies to")
    scored = series_score(
        card=card,
        paths=files[chosen.uid],
        threads=threads,
        batch_size=settings.INFERENCE_BATCH_SIZE,
        heat_map=False,
    )
    return scored.score, scored.acquisition


def validation_run_create(
    *,
    card: ModelCard,
    dataset: Path,
    user: Any = None,
    description: str = "",
    threads: int = 1,
    progress: Progress | None = None,
) -> ValidationRun:
    labels = labels_read(dataset)
    run = ValidationRun.objects.create(
        finding=str(card.finding),
        model_name=card.name,
        model_version=card.version,
        dataset=str(dataset),
        description=description,
        created_at=timezone.now(),
        created_by=user,
    )
    cases, failures = [], 0
    for index, (study, label) in enumerate(sorted(labels.items()), start=1):
        try:
            score, subgroups = study_score(card, dataset / study, threads=threads)
        except (DatasetError, pipeline.DecodeError) as problem:
            failures += 1
            logger.warning("validation: %s skipped: %s", study, problem)
            continue
        cases.append(
            ValidationCase(
                validation=run, case=study, label=label, score=score, subgroups=subgroups
            )
        )
        if progress:
            progress(index, len(labels), study)
    ValidationCase.objects.bulk_create(cases)
    run.cases, run.failures = len(cases), failures
    run.save(update_fields=["cases", "failures"])
    return run


def validation_run_from_scores(
    *,
    card: ModelCard,
    cases: Iterable[tuple[str, bool, float] | tuple[str, bool, float, dict[str, str]]],
    dataset: str,
    description: str,
) -> ValidationRun:
    """Store scores computed elsewhere (the demo's in-memory held-out phantoms)."""
    run = ValidationRun.objects.create(
        finding=str(card.finding),
        model_name=card.name,
        model_version=card.version,
        dataset=dataset,
        description=description,
        created_at=timezone.now(),
    )
    rows = [
        ValidationCase(
            validation=run,
            case=entry[0],
            label=entry[1],
            score=entry[2],
            subgroups=entry[3] if len(entry) > 3 else {},
        )
        for entry in cases
    ]
    ValidationCase.objects.bulk_create(rows)
    run.cases = len(rows)
    run.save(update_fields=["cases"])
    return run


def validation_run_from_phantoms(
    *, card: ModelCard, seeds: range, threads: int = 1, progress: Progress | None = None
) -> ValidationRun:
    """Score held-out phantoms (alternately positive and negative) as a worker scores a study:
    each is written as DICOM to a temporary folder and read back through the same chain. The
    demo's first validation run."""
    from inference.phantoms import phantom_generate, phantom_write

    cases = []
    for index, seed in enumerate(seeds):
        positive = index % 2 == 0
        study = phantom_generate(card.finding, positive=positive, seed=seed)
        with tempfile.TemporaryDirectory(prefix="validation-phantom-") as folder:
            paths = phantom_write(
                study, out_dir=Path(folder), seed=seed, transfer_syntax="explicit"
            )
            scored = series_score(
                card=card,
                paths=paths,
                threads=threads,
                batch_size=settings.INFERENCE_BATCH_SIZE,
                heat_map=False,
            )
        cases.append((f"phantom-{seed}", positive, scored.score, scored.acquisition))
        if progress:
            progress(index + 1, len(seeds), f"phantom-{seed}")
    return validation_run_from_scores(
        card=card,
        cases=cases,
        dataset=f"held-out phantoms, seeds {seeds.start}-{seeds.stop - 1}",
        description="Demo seed: synthetic phantoms never used in training",
    )
