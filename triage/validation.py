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

from django.conf import settings
from django.utils import timezone

from inference import pipeline
from inference.registry import ModelCard
from inference.scoring import FolderError, folder_score, series_score
from triage.models import ValidationCase, ValidationRun

logger = logging.getLogger(__name__)

Progress = Callable[[int, int, str], None]


class DatasetError(FolderError):
    """A data set (its labels.csv, or one of its study folders) that cannot be validated."""


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
            score, subgroups = folder_score(card, dataset / study, threads=threads)
        except (FolderError, pipeline.DecodeError) as problem:
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
