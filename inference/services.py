"""Routing a ready study to the models that apply, and running one model on one study.

Inference knows studies and their files (worklist) and nothing of triage: it records a run's
score, key instance and heat map; what a score means (threshold, flag, alert) is the triage
policy's. Everything here is idempotent: a run is keyed on (study, model, version, series set),
and a result is recorded once.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator, Set
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from inference import pipeline, selectors
from inference.leases import lease_renewed
from inference.models import InferenceRun
from inference.registry import ModelCard, registry_current
from inference.routing import series_select
from inference.scoring import SeriesScore, series_score
from inference.selectors import study_descriptor
from worklist import storage
from worklist.models import Instance, Study

logger = logging.getLogger(__name__)


class PermanentFailure(Exception):
    """Retrying will not help (bad pixel data, model refused): the study shows AI failed."""


@dataclass(frozen=True, kw_only=True)
class StudyRouting:
    findings: list[str]  # the findings some model applies to, in registry order
    queued_run_ids: list[int]  # runs still to execute (a run for the same input is reused)


def _series_set(sop_instance_uids: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(sop_instance_uids)).encode()).hexdigest()


def study_route(
    *, study: Study, shadow: Set[str] = frozenset(), off: Set[str] = frozenset()
) -> StudyRouting:
    """Decide which models apply and record one current run per model.

    Models named in `off` are not run; those in `shadow` get a shadow run (never current: its
    result is for administrators, and their findings are not the study's). Runs inside the
    caller's transaction, with the study row locked.
    """
    now = timezone.now()
    descriptor = study_descriptor(study)
    InferenceRun.objects.filter(study=study, current=True).update(current=False)
    # A shadow run still waiting belongs to the routing being replaced: not sent again.
    InferenceRun.objects.filter(study=study, shadow=True, state=InferenceRun.State.QUEUED).update(
        shadow=False
    )
    findings: list[str] = []
    queued: list[int] = []
    for card in registry_current().models.values():
        if card.name in off:
            continue
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
                "current": card.name not in shadow,
                "shadow": card.name in shadow,
            },
        )
        if not created:
            run.current, run.shadow = card.name not in shadow, card.name in shadow
            run.save(update_fields=["current", "shadow"])
        if run.state == InferenceRun.State.QUEUED:
            queued.append(run.pk)
        if card.name in shadow:
            continue
        if str(card.finding) not in findings:
            findings.append(str(card.finding))
    return StudyRouting(findings=findings, queued_run_ids=queued)


def inference_run_predict(*, run_id: int) -> SeriesScore | None:
    """Score the run's series with its model (no result recorded yet), holding the run's lease
    meanwhile; None if the run has a result already or a live worker holds it. Raises
    PermanentFailure when retrying cannot help."""
    if not _run_lease_take(run_id):
        return None
    with _run_lease_kept(run_id):
        return _predict(InferenceRun.objects.select_related("study").get(pk=run_id))


def _lease() -> timedelta:
    return timedelta(seconds=settings.INFERENCE_LEASE_SECONDS)


def _run_lease_take(run_id: int) -> bool:
    """Take the run unless it has a result or a live worker's lease (one UPDATE: two workers
    handed the same run cannot both take it)."""
    now = timezone.now()
    return bool(
        InferenceRun.objects.filter(pk=run_id, state=InferenceRun.State.QUEUED)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .update(attempts=F("attempts") + 1, started_at=now, lease_until=now + _lease())
    )


@contextmanager
def _run_lease_kept(run_id: int) -> Iterator[None]:
    """Renew the lease every third of its length while the body runs (a slow but live run is
    never sent again); on the way out, a run still without a result gives its lease up."""
    queued = InferenceRun.objects.filter(pk=run_id, state=InferenceRun.State.QUEUED)
    try:
        with lease_renewed(
            lambda: queued.update(lease_until=timezone.now() + _lease()),
            every=settings.INFERENCE_LEASE_SECONDS / 3,
            name=f"lease-run-{run_id}",
        ):
            yield
    finally:
        # A retry of this task (a transient error) may take the run again at once.
        queued.update(lease_until=None)


def inference_runs_redeliver_due(*, now: datetime | None = None) -> list[int]:
    """Runs still waiting for a result that no live worker holds: their worker died mid-run (the
    lease ran out; sent again at once), or before starting them (a prefetched message), or the
    message was lost (both sent again once a while has passed since the message went out). Each
    is marked sent again and its id returned, for the caller to queue; the wait doubles with
    each redelivery, so a backlog is not flooded."""
    now = now or timezone.now()
    base = settings.INFERENCE_REDELIVER_AFTER_SECONDS
    due: list[int] = []
    with transaction.atomic():
        candidates = (
            InferenceRun.objects.select_for_update(skip_locked=True)
            .filter(Q(current=True) | Q(shadow=True), state=InferenceRun.State.QUEUED)
            # Only rows that may be due are locked (a live worker's lease UPDATE never waits
            # on a backlog it is working through): lease run out, or never taken and sent at
            # least the shortest wait ago.
            .filter(
                Q(lease_until__lt=now)
                | Q(lease_until__isnull=True, queued_at__lt=now - timedelta(seconds=base))
            )
            .order_by("queued_at")[:200]
        )
        for run in candidates:
            # A lease that ran out means its worker is gone: send it again now. A run never
            # taken waits from when its message went out (a live worker may be busy).
            waited_since = (
                run.redelivered_at
                if run.lease_until is not None
                else run.redelivered_at or run.queued_at
            )
            backoff = timedelta(seconds=base * 2 ** min(run.redeliveries, 5))
            if waited_since is not None and waited_since > now - backoff:
                continue
            run.redeliveries += 1
            run.redelivered_at = now
            run.save(update_fields=["redeliveries", "redelivered_at"])
            due.append(run.pk)
    if due:
        logger.warning("inference runs sent again (worker gone or message lost): %s", due)
    return due


def _predict(run: InferenceRun) -> SeriesScore:
    card = _card_for(run)
    try:
        paths = [
            storage.storage_path(relative)
            for relative in Instance.objects.filter(series_id=run.series_id).values_list(
                "relative_path", flat=True
            )
        ]
        scored = series_score(
            card=card,
            paths=paths,
            threads=settings.INFERENCE_THREADS,
            batch_size=settings.INFERENCE_BATCH_SIZE,
        )
    except (storage.UnsafeStoragePath, pipeline.DecodeError) as exc:
        raise PermanentFailure(str(exc)) from exc
    if scored.heat_map_png is not None:
        relative = storage.result_relative_path(
            study_uid=run.study.study_instance_uid, run_id=run.pk, suffix=".png"
        )
        _write_atomically(storage.storage_path(relative), scored.heat_map_png)
    if scored.activation_maps is not None:
        _write_atomically(
            storage.storage_path(selectors.activation_maps_path(run)),
            pipeline.activation_maps_bytes(scored.activation_maps),
        )
    return scored


def _card_for(run: InferenceRun) -> ModelCard:
    registry = registry_current()
    card = registry.models.get(run.model_name)
    if card is None or card.version != run.model_version or card.sha256 != run.model_sha256:
        refused = {str(item.folder.name): item.reason for item in registry.refused}
        raise PermanentFailure(
            f"model {run.model_name} {run.model_version} is not available on this worker"
            + (f": {refused[run.model_name]}" if run.model_name in refused else "")
        )
    return card


def inference_run_record(*, run_id: int, scored: SeriesScore) -> InferenceRun | None:
    """Record the run's result once; None if another delivery recorded it first.

    Runs inside the caller's transaction (which applies the triage policy to it).
    """
    run = _queued_run_lock(run_id)
    if run is None:
        return None
    run.state = InferenceRun.State.COMPLETE
    run.score = scored.score
    run.key_instance = Instance.objects.filter(sop_instance_uid=scored.key_instance_uid).first()
    run.heatmap_path = (
        storage.result_relative_path(
            study_uid=run.study.study_instance_uid, run_id=run.pk, suffix=".png"
        )
        if scored.heat_map_png is not None
        else ""
    )
    run.provider = scored.provider
    run.slices = scored.slices
    run.slice_scores = [[uid, round(score, 5)] for uid, score in scored.slice_scores]
    run.acquisition = scored.acquisition
    run.finished_at = timezone.now()
    if run.started_at is not None:
        run.queue_wait_ms = (run.started_at - run.queued_at).total_seconds() * 1000
    run.decode_ms = scored.decode_ms
    run.inference_ms = scored.inference_ms
    run.error = ""
    run.lease_until = None
    run.save()
    logger.info(
        "inference run=%s study=%s model=%s score=%.3f provider=%s",
        run.pk,
        run.study_id,
        run.model_name,
        scored.score,
        scored.provider,
    )
    return run


def inference_run_fail(*, run_id: int, reason: str) -> InferenceRun | None:
    """Record why the run cannot complete; None if it has a result already.

    Runs inside the caller's transaction (which shows the study as AI unavailable).
    """
    run = _queued_run_lock(run_id)
    if run is None:
        return None
    run.state = InferenceRun.State.FAILED
    run.error = reason[:500]
    run.finished_at = timezone.now()
    run.lease_until = None
    run.save(update_fields=["state", "error", "finished_at", "lease_until"])
    logger.warning("inference run=%s study=%s failed", run_id, run.study_id)
    return run


def _queued_run_lock(run_id: int) -> InferenceRun | None:
    """The run, locked, while it still waits for its result; None once it has one."""
    run = InferenceRun.objects.select_for_update().get(pk=run_id)
    return run if run.state == InferenceRun.State.QUEUED else None


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".part")
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
