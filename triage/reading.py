"""Radiologist actions on a worklist item: claim, release, mark read."""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from triage import broadcast
from triage.audit import audit_record
from worklist.models import WorklistItem

logger = logging.getLogger(__name__)


class ClaimConflict(Exception):
    """Someone else holds the study, or it is already read."""


def worklist_item_claim(*, item_id: int, user_id: int, channel: str) -> WorklistItem:
    with transaction.atomic():
        item = WorklistItem.objects.select_for_update().get(pk=item_id)
        if item.status == WorklistItem.Status.READ:
            raise ClaimConflict("This study has already been read.")
        if item.status == WorklistItem.Status.IN_PROGRESS and item.claimed_by_id != user_id:
            raise ClaimConflict("Another radiologist is reading this study.")
        if item.claimed_by_id != user_id:
            item.status = WorklistItem.Status.IN_PROGRESS
            item.claimed_by_id = user_id
            item.claimed_at = timezone.now()
            item.save(update_fields=["status", "claimed_by", "claimed_at"])
            audit_record(
                action="worklist.claim", actor_id=user_id, channel=channel, study_id=item.study_id
            )
            broadcast.worklist_item_changed(item_id=item.pk)
    return item


def worklist_item_release(*, item_id: int, user_id: int, channel: str) -> WorklistItem:
    with transaction.atomic():
        item = WorklistItem.objects.select_for_update().get(pk=item_id)
        if item.status != WorklistItem.Status.IN_PROGRESS or item.claimed_by_id != user_id:
            raise ClaimConflict("Only the radiologist who claimed the study can release it.")
        item.status = WorklistItem.Status.UNREAD
        item.claimed_by = None
        item.claimed_at = None
        item.save(update_fields=["status", "claimed_by", "claimed_at"])
        audit_record(
            action="worklist.release", actor_id=user_id, channel=channel, study_id=item.study_id
        )
        broadcast.worklist_item_changed(item_id=item.pk)
    return item


def worklist_item_mark_read(*, item_id: int, user_id: int, channel: str) -> WorklistItem:
    with transaction.atomic():
        item = WorklistItem.objects.select_for_update().get(pk=item_id)
        if item.status == WorklistItem.Status.READ:
            raise ClaimConflict("This study has already been read.")
        if item.status == WorklistItem.Status.IN_PROGRESS and item.claimed_by_id != user_id:
            raise ClaimConflict("Another radiologist is reading this study.")
        now = timezone.now()
        item.status = WorklistItem.Status.READ
        item.claimed_by_id = user_id
        item.claimed_at = item.claimed_at or now
        item.read_at = now
        item.save(update_fields=["status", "claimed_by", "claimed_at", "read_at"])
        audit_record(
            action="worklist.read", actor_id=user_id, channel=channel, study_id=item.study_id
        )
        broadcast.worklist_item_changed(item_id=item.pk)
    return item
