"""Routing a ready study to its models, running one model on one study, and applying results.

Everything here is idempotent: a run is keyed on (study, model, version, series set), a result is
written once, and re-applying results only ever brings a deadline earlier.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from inference import pipeline
from inference.models import InferenceRun
from inference.registry import ModelCard, Registry, registry_load
from inference.routing import series_select
from inference.runtime import session_for
from triage import broadcast
from triage.alerts import alert_raise
from triage.thresholds import threshold_for
from worklist import storage
from worklist.deadlines import read_by_compute, read_by_merge
from worklist.models import Instance, Study, WorklistItem
from worklist.selectors import study_descriptor

logger = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def registry() -> Registry:
    return registry_load(settings.INFERENCE_MODEL_DIRS)


def _series_set(sop_instance_uids: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(sop_instance_uids)).encode()).hexdigest()


def study_route(*, study_id: int) -> list[int]:
    """Decide which models apply, record the AI state, and queue one run per model.

    Returns the ids of runs queued now (runs that already exist for the same input are reused).
    """
    from inference.tasks import inference_run_task

    now = timezone.now()
    queued: list[int] = []
    with transaction.atomic():
        study = Study.objects.select_for_update().get(pk=study_id)
        if study.state != Study.State.READY:
            return []  # re-opened since; it is routed again when ready
        descriptor = study_descriptor(study)
        InferenceRun.objects.filter(study=study, current=True).update(current=False)
        findings: list[str] = []
        for card in registry().models.values():
            chosen = series_select(descriptor, card.applies_to, selection=card.series_selection)
            if chosen is None:
                continue
            sop_uids = list(
                Instance.objects.filter(series__series_instance_uid=chosen.uid).values_list(
                    "sop_instance_uid", flat=True
                )
            )
            run, created = InferenceRun.objects.get_or_create(
                study=study,
                model_name=card.name,
                model_version=card.version,
                series_set=_series_set(sop_uids),
                defaults={
                    "finding": str(card.finding),
                    "model_sha256": card.sha256,
                    "demonstration": card.demonstration,
                    "series": study.series.get(series_instance_uid=chosen.uid),
                    "queued_at": now,
                },
            )
            if not created:
                run.current = True
                run.save(update_fields=["current"])
            if run.state == InferenceRun.State.QUEUED:
                queued.append(run.pk)
            if str(card.finding) not in findings:
                findings.append(str(card.finding))
        study.applicable_findings = findings
        study.ai_state = Study.AIState.PENDING if findings else Study.AIState.NOT_ELIGIBLE
        study.ai_detail = ""
        study.save(update_fields=["applicable_findings", "ai_state", "ai_detail"])
        study_findings_apply(study=study)
        for run_id in queued:
            transaction.on_commit(partial(inference_run_task.delay, run_id))
    logger.info(
        "study routed study=%s findings=%s runs=%s",
        study_id,
        ",".join(findings) or "-",
        len(queued),
    )
    return queued


class PermanentFailure(Exception):
    """Retrying will not help (bad pixel data, model refused): the study shows AI failed."""


@dataclass(frozen=True)
class _Outcome:
    score: float
    threshold: float
    key_instance_uid: str
    heatmap_relative: str
    provider: str
    slices: int
    decode_ms: float
    inference_ms: float


def inference_run_execute(*, run_id: int) -> InferenceRun:
    """Run one model on one study and store the result once. Safe to call twice."""
    run = InferenceRun.objects.select_related("study", "series").get(pk=run_id)
    if run.state != InferenceRun.State.QUEUED:
        return run
    started = timezone.now()
    InferenceRun.objects.filter(pk=run.pk).update(attempts=run.attempts + 1, started_at=started)
    card = registry().models.get(run.model_name)
    if card is None or card.version != run.model_version or card.sha256 != run.model_sha256:
        refused = {str(item.folder.name): item.reason for item in registry().refused}
        raise PermanentFailure(
            f"model {run.model_name} {run.model_version} is not available on this worker"
            + (f": {refused[run.model_name]}" if run.model_name in refused else "")
        )
    outcome = _predict(run=run, card=card)
    with transaction.atomic():
        locked = InferenceRun.objects.select_for_update().get(pk=run.pk)
        if locked.state != InferenceRun.State.QUEUED:
            return locked  # another delivery finished first
        locked.state = InferenceRun.State.COMPLETE
        locked.score = outcome.score
        locked.threshold = outcome.threshold
        locked.flagged = outcome.score >= outcome.threshold
        locked.key_instance = Instance.objects.filter(
            sop_instance_uid=outcome.key_instance_uid
        ).first()
        locked.heatmap_path = outcome.heatmap_relative
        locked.provider = outcome.provider
        locked.slices = outcome.slices
        locked.finished_at = timezone.now()
        locked.queue_wait_ms = (started - locked.queued_at).total_seconds() * 1000
        locked.decode_ms = outcome.decode_ms
        locked.inference_ms = outcome.inference_ms
        locked.error = ""
        locked.save()
        study_findings_apply(study=Study.objects.select_for_update().get(pk=run.study_id))
    logger.info(
        "inference run=%s study=%s model=%s score=%.3f flagged=%s provider=%s",
        run.pk,
        run.study_id,
        run.model_name,
        outcome.score,
        locked.flagged,
        outcome.provider,
    )
    return locked


def _predict(*, run: InferenceRun, card: ModelCard) -> _Outcome:
    try:
        paths = [
            storage.storage_path(relative)
            for relative in Instance.objects.filter(series=run.series).values_list(
                "relative_path", flat=True
            )
        ]
    except storage.UnsafeStoragePath as exc:
        raise PermanentFailure(str(exc)) from exc
    began = time.perf_counter()
    try:
        series = pipeline.decode_series(paths)
    except pipeline.DecodeError as exc:
        raise PermanentFailure(str(exc)) from exc
    inputs = pipeline.model_inputs(series, card.preprocessing)
    decoded = time.perf_counter()
    loaded = session_for(
        key=(card.name, card.sha256), path=card.onnx_path, threads=settings.INFERENCE_THREADS
    )
    probabilities, maps = pipeline.predict(
        loaded.session, inputs, batch_size=settings.INFERENCE_BATCH_SIZE
    )
    score, key = pipeline.aggregate(probabilities, method=card.aggregation)
    predicted = time.perf_counter()
    threshold = threshold_for(card=card, study=run.study)
    png = pipeline.heat_map_png(
        pipeline.display_image(series, key, card.preprocessing),
        maps[key],
        caption=f"{card.label} - demonstration model, synthetic training data",
    )
    relative = storage.result_relative_path(
        study_uid=run.study.study_instance_uid, run_id=run.pk, suffix=".png"
    )
    _write_atomically(storage.storage_path(relative), png)
    return _Outcome(
        score=score,
        threshold=threshold,
        key_instance_uid=series.sop_instance_uids[key],
        heatmap_relative=relative,
        provider=loaded.provider,
        slices=len(series.sop_instance_uids),
        decode_ms=(decoded - began) * 1000,
        inference_ms=(predicted - decoded) * 1000,
    )


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".part")
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def inference_run_fail(*, run_id: int, reason: str) -> None:
    """The run cannot complete: record why, and show the study as AI unavailable."""
    with transaction.atomic():
        run = InferenceRun.objects.select_for_update().get(pk=run_id)
        if run.state != InferenceRun.State.QUEUED:
            return
        run.state = InferenceRun.State.FAILED
        run.error = reason[:500]
        run.finished_at = timezone.now()
        run.save(update_fields=["state", "error", "finished_at"])
        study_findings_apply(study=Study.objects.select_for_update().get(pk=run.study_id))
    logger.warning("inference run=%s study=%s failed", run_id, run.study_id)


def study_findings_apply(*, study: Study) -> None:
    """Derive the study's AI state from its current runs and bring its deadline forward for
    every flagged finding. Runs inside the caller's transaction, with the study row locked."""
    runs = list(InferenceRun.objects.filter(study=study, current=True))
    if not runs:
        return
    failed = [run for run in runs if run.state == InferenceRun.State.FAILED]
    if failed:
        study.ai_state = Study.AIState.FAILED
        study.ai_detail = "; ".join(f"{run.model_name}: {run.error}" for run in failed)[:256]
    elif all(run.state == InferenceRun.State.COMPLETE for run in runs):
        study.ai_state = Study.AIState.COMPLETE
        study.ai_detail = ""
    else:
        study.ai_state = Study.AIState.PENDING
    study.save(update_fields=["ai_state", "ai_detail"])
    flagged = sorted({run.finding for run in runs if run.flagged})
    item = WorklistItem.objects.select_for_update().filter(study=study).first()
    if item is None:
        return
    broadcast.worklist_item_changed(item_id=item.pk)
    if not flagged:
        return
    for run in runs:
        if run.flagged:
            alert_raise(study=study, finding=run.finding, run=run)
    candidate = read_by_compute(
        received_at=study.first_received_at,
        order_priority=study.order_priority,
        is_emergency=study.is_emergency,
        flagged_findings=flagged,
    )
    merged = read_by_merge(current=item.read_by, candidate=candidate)
    if merged != item.read_by:
        item.read_by = merged
        item.save(update_fields=["read_by"])
