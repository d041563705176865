"""Ranking: the read-by deadline is computed by one function, only ever moves earlier, and is
written by one service (`worklist_item_rank`), the only writer of `WorklistItem.read_by`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.conf import settings

from triage.findings import finding_spec

if TYPE_CHECKING:
    from worklist.models import Study, WorklistItem


def target_minutes(
    *,
    order_priority: str,
    is_emergency: bool,
    flagged_findings: Iterable[str] = (),
    priority_targets: Mapping[str, int] | None = None,
    default_priority: str | None = None,
    emergency_target: int | None = None,
) -> int:
    """The smallest target turnaround among the classes the study belongs to.

    The class targets are the site's settings unless given (the queue simulation's what-ifs).
    """
    targets_by_priority = (
        settings.WORKLIST_PRIORITY_TARGET_MINUTES if priority_targets is None else priority_targets
    )
    fallback = default_priority or settings.WORKLIST_DEFAULT_PRIORITY
    targets = [targets_by_priority.get(order_priority, targets_by_priority[fallback])]
    if is_emergency:
        targets.append(
            settings.WORKLIST_ED_TARGET_MINUTES if emergency_target is None else emergency_target
        )
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


def worklist_item_rank(
    *, study: Study, flagged_findings: Iterable[str] = ()
) -> tuple[WorklistItem, bool]:
    """Put the study on the worklist, or bring its deadline forward for new flags.

    Returns the item and whether anything a dashboard shows changed (created or re-ranked).
    Must run inside a transaction that holds the study row.
    """
    # Here, not at the top: the rule above imports without Django set up (bench/queue_sim.py).
    from worklist.models import WorklistItem

    deadline = read_by_compute(
        received_at=study.first_received_at,
        order_priority=study.order_priority,
        is_emergency=study.is_emergency,
        flagged_findings=flagged_findings,
    )
    item, created = WorklistItem.objects.select_for_update().get_or_create(
        study=study, defaults={"received_at": study.first_received_at, "read_by": deadline}
    )
    if created:
        return item, True
    merged = read_by_merge(current=item.read_by, candidate=deadline)
    if merged == item.read_by:
        return item, False
    item.read_by = merged
    item.save(update_fields=["read_by"])
    return item, True
