"""Arrivals: studies become ready (worklist readiness), dashboards are told, and each ready
study is queued for triage (`triage.workflow`). Needs no part of the AI stack, so the web
process (STOW-RS) and the periodic duties use it without loading ONNX Runtime."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from triage import broadcast
from triage.models import TriageDispatch
from triage.queueing import task_queue_after_commit
from worklist.models import WorklistItem
from worklist.services.studies import studies_stabilise, study_mark_ready_now

logger = logging.getLogger(__name__)


def studies_ready_sweep(*, now: datetime | None = None) -> list[int]:
    """Studies whose quiet period has passed become ready; each is announced and queued."""
    ready = studies_stabilise(now=now)
    studies_ready_announce(study_ids=ready)
    return ready


def study_ready_now(*, study_id: int) -> None:
    """The sender says the study is whole (one STOW-RS request): ready without a quiet period."""
    study_mark_ready_now(study_id=study_id)
    studies_ready_announce(study_ids=[study_id])


def studies_ready_received(sender: object, *, study_ids: list[int], **kwargs: object) -> None:
    """worklist.signals.studies_ready: studies made ready on their association's release."""
    studies_ready_announce(study_ids=study_ids)


def studies_ready_announce(*, study_ids: list[int]) -> None:
    """Tell dashboards of the new worklist items, and queue each study's triage (after commit)."""
    from triage.tasks import study_triage

    for item_id in WorklistItem.objects.filter(study_id__in=study_ids).values_list("pk", flat=True):
        broadcast.worklist_item_changed(item_id=item_id)
    now = timezone.now()
    for study_id in study_ids:
        TriageDispatch.objects.update_or_create(
            study_id=study_id, defaults={"sent_at": now, "sends": 1, "routed_at": None}
        )
        task_queue_after_commit(study_triage, study_id)


def studies_triage_resend_due(*, now: datetime | None = None) -> list[int]:
    """Ready studies whose triage was sent a while ago and never ran (its worker died, or the
    message was lost): each is sent again, with a wait that doubles each time."""
    from triage.tasks import study_triage

    now = now or timezone.now()
    base = settings.INFERENCE_REDELIVER_AFTER_SECONDS
    due: list[int] = []
    with transaction.atomic():
        for dispatch in TriageDispatch.objects.select_for_update(skip_locked=True).filter(
            routed_at__isnull=True, sent_at__lt=now - timedelta(seconds=base)
        )[:200]:
            if dispatch.sent_at > now - timedelta(seconds=base * 2 ** min(dispatch.sends - 1, 5)):
                continue
            dispatch.sent_at, dispatch.sends = now, dispatch.sends + 1
            dispatch.save(update_fields=["sent_at", "sends"])
            due.append(dispatch.study_id)
            task_queue_after_commit(study_triage, dispatch.study_id)
    if due:
        logger.warning("study triage sent again (worker gone or message lost): %s", due)
    return due
