"""Arrivals: studies become ready (worklist readiness), dashboards are told, and each ready
study is queued for triage (`triage.workflow`). Needs no part of the AI stack, so the web
process (STOW-RS) and the periodic duties use it without loading ONNX Runtime."""

from __future__ import annotations

from datetime import datetime
from functools import partial

from django.db import transaction

from triage import broadcast
from worklist.models import WorklistItem
from worklist.services.studies import studies_stabilise, study_mark_ready_now


def studies_ready_sweep(*, now: datetime | None = None) -> list[int]:
    """Studies whose quiet period has passed become ready; each is announced and queued."""
    ready = studies_stabilise(now=now)
    studies_ready_announce(study_ids=ready)
    return ready


def study_ready_now(*, study_id: int) -> None:
    """The sender says the study is whole (one STOW-RS request): ready without a quiet period."""
    study_mark_ready_now(study_id=study_id)
    studies_ready_announce(study_ids=[study_id])


def studies_ready_announce(*, study_ids: list[int]) -> None:
    """Tell dashboards of the new worklist items, and queue each study's triage (after commit)."""
    from triage.tasks import study_triage

    for item_id in WorklistItem.objects.filter(study_id__in=study_ids).values_list("pk", flat=True):
        broadcast.worklist_item_changed(item_id=item_id)
    for study_id in study_ids:
        transaction.on_commit(partial(study_triage.delay, study_id))
