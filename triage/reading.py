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


def _item_locked(item_id: int, *, user_id: int, reading: bool) -> WorklistItem:
    """The item, locked; `reading`: refused when read already or held by someone else."""
    item = WorklistItem.objects.select_for_update().get(pk=item_id)
    if reading and item.status == WorklistItem.Status.READ:
        raise ClaimConflict("This study has already been read.")
    if reading and item.status == WorklistItem.Status.IN_PROGRESS and item.claimed_by_id != user_id:
        raise ClaimConflict("Another radiologist is reading this study.")
    return item


def _item_saved(
    item: WorklistItem, *, fields: list[str], action: str, user_id: int, channel: str
) -> None:
    """Save the change, audit it and tell the dashboards (after commit)."""
    item.save(update_fields=fields)
    audit_record(action=action, actor_id=user_id, channel=channel, study_id=item.study_id)
    broadcast.worklist_item_changed(item_id=item.pk)


def worklist_item_claim(*, item_id: int, user_id: int, channel: str) -> WorklistItem:
    with transaction.atomic():
        item = _item_locked(item_id, user_id=user_id, reading=True)
        if item.claimed_by_id != user_id:
            item.status = WorklistItem.Status.IN_PROGRESS
            item.claimed_by_id = user_id
            item.claimed_at = timezone.now()
            _item_saved(
                item,
                fields=["status", "claimed_by", "claimed_at"],
                action="worklist.claim",
                user_id=user_id,
                channel=channel,
            )
    return item


def worklist_item_release(*, item_id: int, user_id: int, channel: str) -> WorklistItem:
    with transaction.atomic():
        item = _item_locked(item_id, user_id=user_id, reading=False)
        if item.status != WorklistItem.Status.IN_PROGRESS or item.claimed_by_id != user_id:
            raise ClaimConflict("Only the radiologist who claimed the study can release it.")
        item.status = WorklistItem.Status.UNREAD
        item.claimed_by = None
        item.claimed_at = None
        _item_saved(
            item,
            fields=["status", "claimed_by", "claimed_at"],
            action="worklist.release",
            user_id=user_id,
            channel=channel,
        )
    return item


def worklist_item_mark_read(*, item_id: int, user_id: int, channel: str) -> WorklistItem:
    with transaction.atomic():
        item = _item_locked(item_id, user_id=user_id, reading=True)
        now = timezone.now()
        item.status = WorklistItem.Status.READ
        item.claimed_by_id = user_id
        item.claimed_at = item.claimed_at or now
        item.read_at = now
        _item_saved(
            item,
            fields=["status", "claimed_by", "claimed_at", "read_at"],
            action="worklist.read",
            user_id=user_id,
            channel=channel,
        )
    return item
