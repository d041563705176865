"""Periodic alert duties (Celery beat)."""

from __future__ import annotations

from celery import shared_task

from triage.alerts import alerts_escalate_due
from triage.deliveries import alert_digests_send_due


@shared_task(name="triage.tasks.alerts_escalate", ignore_result=True)
def alerts_escalate() -> int:
    """Escalate overdue alerts and send the rate cap's due digests (both database-driven)."""
    escalated = len(alerts_escalate_due())
    alert_digests_send_due()
    return escalated
