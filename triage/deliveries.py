"""Per-recipient alert delivery: the rate cap that rolls excess alerts into one digest.

Whenever an alert becomes visible to new recipients (raised, clinicians told after a
confirmation, escalated), each of them gets one AlertDelivery row saying how they were told:

- `immediate`: the dashboard interrupts (banner, sound);
- `digest`: the recipient already had ALERT_RATE_CAP interrupting alerts in the last
  ALERT_RATE_WINDOW_MINUTES, so the alert is listed quietly at once and rolled into the
  recipient's open digest, sent as one notification when its window has passed;
- `escalation`: the alert escalated; escalations always interrupt, held or not.

Nothing is hidden by the cap: a held alert is on the recipient's list at once and still escalates
when nobody acknowledges it. Every decision and every digest sent is audited.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from triage import broadcast
from triage.audit import audit_record
from triage.findings import finding_spec
from triage.models import Alert, AlertCounter, AlertDelivery, AlertDigest
from triage.visibility import alert_recipients


def rate_window() -> timedelta:
    return timedelta(minutes=settings.ALERT_RATE_WINDOW_MINUTES)


def _interruptions_since(user_ids: Iterable[int], since: datetime) -> dict[int, int]:
    rows = (
        AlertDelivery.objects.filter(
            user_id__in=list(user_ids), mode=AlertDelivery.Mode.IMMEDIATE, decided_at__gte=since
        )
        .values("user_id")
        .annotate(count=Count("id"))
    )
    return {row["user_id"]: row["count"] for row in rows}


def _open_digest(*, user_id: int, now: datetime) -> AlertDigest:
    # Locked: a digest being sent right now is waited for and then no longer open, so a held
    # alert never joins a digest that has already gone out.
    digest = (
        AlertDigest.objects.select_for_update()
        .filter(user_id=user_id, sent_at=None)
        .order_by("pk")
        .first()
    )
    if digest is None:
        digest = AlertDigest.objects.create(
            user_id=user_id, opened_at=now, due_at=now + rate_window()
        )
    return digest


def alert_deliveries_decide(*, alert: Alert, now: datetime | None = None) -> list[AlertDelivery]:
    """Record how each new recipient of `alert` is told. Runs inside the caller's transaction.

    Decisions are serialised on the alert counter row (raising an alert holds it already), so two
    alerts decided at once never both take a recipient's last interruption.
    """
    now = now or timezone.now()
    AlertCounter.locked()
    told = set(AlertDelivery.objects.filter(alert=alert).values_list("user_id", flat=True))
    new = [user for user in alert_recipients(alert=alert) if user.pk not in told]
    if not new:
        return []
    cap = settings.ALERT_RATE_CAP
    escalation = alert.tier >= 2
    counts = (
        {}
        if escalation or cap <= 0
        else _interruptions_since([u.pk for u in new], now - rate_window())
    )
    reason = f"rate cap: {cap} alerts per {settings.ALERT_RATE_WINDOW_MINUTES:g} min"
    deliveries = []
    for user in new:
        if escalation:
            mode = AlertDelivery.Mode.ESCALATION
        elif cap > 0 and counts.get(user.pk, 0) >= cap:
            mode = AlertDelivery.Mode.DIGEST
        else:
            mode = AlertDelivery.Mode.IMMEDIATE
        digest = (
            _open_digest(user_id=user.pk, now=now) if mode == AlertDelivery.Mode.DIGEST else None
        )
        deliveries.append(
            AlertDelivery(alert=alert, user=user, mode=mode, decided_at=now, digest=digest)
        )
        if digest is not None:
            audit_record(
                action="alert.held",
                actor_id=None,
                channel="system",
                study_id=alert.study_id,
                detail={
                    "seq": alert.seq,
                    "recipient_id": user.pk,
                    "digest_id": digest.pk,
                    "reason": reason,
                },
            )
    AlertDelivery.objects.bulk_create(deliveries)
    return deliveries


def held_recipient_ids(*, alert_id: int) -> frozenset[int]:
    """Recipients who hear of this alert in a digest rather than at once."""
    return frozenset(
        AlertDelivery.objects.filter(alert_id=alert_id, mode=AlertDelivery.Mode.DIGEST).values_list(
            "user_id", flat=True
        )
    )


def held_alert_ids(*, user: Any, alert_ids: Iterable[int]) -> frozenset[int]:
    return frozenset(
        AlertDelivery.objects.filter(
            user_id=user.pk, alert_id__in=list(alert_ids), mode=AlertDelivery.Mode.DIGEST
        ).values_list("alert_id", flat=True)
    )


def alert_digests_send_due(*, now: datetime | None = None) -> list[int]:
    """Send every digest whose window has passed: audited, then one push to its recipient.
    Safe with several schedulers at once (skip-locked) and idempotent (sent once)."""
    now = now or timezone.now()
    sent = []
    with transaction.atomic():
        due = AlertDigest.objects.select_for_update(skip_locked=True).filter(
            sent_at=None, due_at__lte=now
        )
        for digest in due:
            digest.sent_at = now
            digest.save(update_fields=["sent_at"])
            seqs = list(
                digest.deliveries.order_by("alert__seq").values_list("alert__seq", flat=True)
            )
            audit_record(
                action="alert.digest",
                actor_id=None,
                channel="system",
                detail={"digest_id": digest.pk, "recipient_id": digest.user_id, "seqs": seqs},
            )
            broadcast.digest_sent(user_id=digest.user_id, digest_id=digest.pk)
            sent.append(digest.pk)
    return sent


def digest_frame(digest: AlertDigest) -> dict[str, Any]:
    """What the recipient's dashboards receive: one notification for the held alerts."""
    deliveries = digest.deliveries.select_related("alert", "alert__study").order_by("alert__seq")
    return {
        "type": "digest",
        "digest_id": digest.pk,
        "opened_at": digest.opened_at.isoformat(),
        "sent_at": digest.sent_at.isoformat() if digest.sent_at else None,
        "rate_cap": settings.ALERT_RATE_CAP,
        "window_minutes": settings.ALERT_RATE_WINDOW_MINUTES,
        "alerts": [
            {
                "seq": delivery.alert.seq,
                "alert_id": delivery.alert_id,
                "finding": delivery.alert.finding,
                "label": finding_spec(delivery.alert.finding).label,
                "state": delivery.alert.state,
                "study_id": delivery.alert.study_id,
                "accession_number": delivery.alert.study.accession_number,
                "patient_location": delivery.alert.study.patient_location,
            }
            for delivery in deliveries
        ],
    }


def recent_digests(*, user: Any, now: datetime | None = None) -> list[AlertDigest]:
    """Digests sent to `user` within the last window: a dashboard that (re)connects shows them."""
    now = now or timezone.now()
    return list(
        AlertDigest.objects.filter(
            user_id=user.pk, sent_at__isnull=False, sent_at__gte=now - rate_window()
        ).order_by("sent_at")
    )
