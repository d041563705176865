"""The read-by deadline: one function computes it, and it only ever moves earlier."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from django.conf import settings

from triage.findings import finding_spec


def target_minutes(
    *, order_priority: str, is_emergency: bool, flagged_findings: Iterable[str] = ()
) -> int:
    """The smallest target turnaround among the classes the study belongs to."""
    targets = [
        settings.WORKLIST_PRIORITY_TARGET_MINUTES.get(
            order_priority,
            settings.WORKLIST_PRIORITY_TARGET_MINUTES[settings.WORKLIST_DEFAULT_PRIORITY],
        )
    ]
    if is_emergency:
        targets.append(settings.WORKLIST_ED_TARGET_MINUTES)
    targets.extend(finding_spec(finding).target_minutes for finding in flagged_findings)
    return min(targets)


def read_by_compute(
    *,
    received_at: datetime,
    order_priority: str,
    is_emergency: bool,
    flagged_findings: Iterable[str] = (),
) -> datetime:
    if received_at.tzinfo is None:
        raise ValueError("received_at must be timezone-aware")
    minutes = target_minutes(
        order_priority=order_priority,
        is_emergency=is_emergency,
        flagged_findings=flagged_findings,
    )
    return received_at + timedelta(minutes=minutes)


def read_by_merge(*, current: datetime | None, candidate: datetime) -> datetime:
    """A later event may bring a deadline forward, never push it back."""
    return candidate if current is None else min(current, candidate)
