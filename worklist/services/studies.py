"""Study readiness: the quiet period, decided from the database. A ready study is put on the
worklist (ranked); what follows (routing to the AI, telling dashboards) is the caller's."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from worklist.models import Study, WorklistItem
from worklist.ranking import worklist_item_rank

logger = logging.getLogger(__name__)

STABILISE_BATCH = 200


def studies_stabilise(*, now: datetime | None = None) -> list[int]:
    """Mark ready every study whose last instance arrived a quiet period ago; their ids, once
    committed.

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


def study_mark_ready(*, study: Study, now: datetime | None = None) -> WorklistItem:
    """The study is complete (for now): mark it ready and put it on the worklist.

    Must run inside a transaction that holds the study row.
    """
    now = now or timezone.now()
    study.state = Study.State.READY
    study.ready_at = now
    study.ai_state = Study.AIState.PENDING
    study.ai_detail = ""
    study.save(update_fields=["state", "ready_at", "ai_state", "ai_detail"])
    item, _ = worklist_item_rank(study=study)
    logger.info("study ready study=%s reopened=%s", study.pk, study.reopened_count)
    return item


def study_mark_ready_now(*, study_id: int) -> WorklistItem:
    """Used when the sender tells us the study is whole (one STOW-RS request)."""
    with transaction.atomic():
        study = Study.objects.select_for_update().get(pk=study_id)
        return study_mark_ready(study=study)
