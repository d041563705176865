"""Study readiness (the quiet period, decided from the database) and routing to findings."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from triage import broadcast
from worklist.deadlines import read_by_compute, read_by_merge
from worklist.models import Study, WorklistItem

logger = logging.getLogger(__name__)

STABILISE_BATCH = 200


def studies_stabilise(*, now: datetime | None = None) -> list[int]:
    """Mark ready every study whose last instance arrived a quiet period ago.

    Safe to run from several processes at once: rows another sweeper holds are skipped.
    """
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.STUDY_STABLE_SECONDS)
    with transaction.atomic():
        studies = list(
            Study.objects.select_for_update(skip_locked=True)
            .filter(state=Study.State.RECEIVING, last_instance_at__lte=cutoff)
            .order_by("last_instance_at")[:STABILISE_BATCH]
        )
        for study in studies:
            study_mark_ready(study=study, now=now)
    return [study.pk for study in studies]


def study_mark_ready(
    *, study: Study, now: datetime | None = None, triage: bool = True
) -> WorklistItem:
    """Study is complete (for now): put it on the worklist and queue its triage after commit.

    Must run inside a transaction that holds the study row.
    """
    now = now or timezone.now()
    study.state = Study.State.READY
    study.ready_at = now
    study.ai_state = Study.AIState.PENDING
    study.ai_detail = ""
    study.save(update_fields=["state", "ready_at", "ai_state", "ai_detail"])
    deadline = read_by_compute(
        received_at=study.first_received_at,
        order_priority=study.order_priority,
        is_emergency=study.is_emergency,
    )
    item, created = WorklistItem.objects.get_or_create(
        study=study, defaults={"received_at": study.first_received_at, "read_by": deadline}
    )
    if not created:
        merged = read_by_merge(current=item.read_by, candidate=deadline)
        if merged != item.read_by:
            item.read_by = merged
            item.save(update_fields=["read_by"])
    broadcast.worklist_item_changed(item_id=item.pk)
    logger.info("study ready study=%s reopened=%s", study.pk, study.reopened_count)

    if triage:  # off only for rows made without instances (test data), which have nothing to route
        from worklist.tasks import study_triage

        study_id = study.pk
        transaction.on_commit(lambda: study_triage.delay(study_id))
    return item


def study_mark_ready_now(*, study_id: int) -> WorklistItem:
    """Used when the sender tells us the study is whole (one STOW-RS request)."""
    with transaction.atomic():
        study = Study.objects.select_for_update().get(pk=study_id)
        return study_mark_ready(study=study)
