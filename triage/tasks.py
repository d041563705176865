"""Periodic alert duties (Celery beat)."""

from __future__ import annotations

from celery import shared_task

from triage.alerts import alerts_escalate_due


@shared_task(name="triage.tasks.alerts_escalate", ignore_result=True)
def alerts_escalate() -> int:
    return len(alerts_escalate_due())
