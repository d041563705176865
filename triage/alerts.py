"""Critical-result alerts: raise (persisted before anyone is told), acknowledge, resolve, escalate.

An alert exists once per study and finding. Its sequence number follows commit order, so a
dashboard that resumes after N is sent exactly what it missed.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from triage import broadcast
from triage.audit import audit_record
from triage.deliveries import alert_deliveries_decide
from triage.findings import finding_spec
from triage.models import Alert, AlertCounter
from triage.roles import Role, user_has_role
from triage.visibility import (
    alert_visible_to,
    alert_visible_to_viewer,
    viewer_for,
)

logger = logging.getLogger(__name__)


class AlertNotAllowed(Exception):
    pass


def alert_seq_next() -> int:
    """The next alert sequence number (locks the counter until the transaction ends)."""
    counter = AlertCounter.locked()
    counter.last_seq += 1
    counter.save(update_fields=["last_seq"])
    return counter.last_seq


def _alert_changed(
    alert: Alert,
    *,
    action: str,
    actor_id: int | None,
    channel: str,
    detail: dict[str, Any] | None = None,
) -> None:
    """Audit a change to `alert`, then tell every alert socket after commit. The version
    (state:tier:clinicians-told) lets every socket of a process share one lookup."""
    audit_record(
        action=action,
        actor_id=actor_id,
        channel=channel,
        study_id=alert.study_id,
        detail={"seq": alert.seq, **(detail or {})},
    )
    broadcast.alert_changed(alert_id=alert.pk, seq=alert.seq, version=alert_version(alert))


def alert_version(alert: Alert) -> str:
    """What a socket frame of `alert` depends on (state:tier:clinicians-told)."""
    return f"{alert.state}:{alert.tier}:{int(alert.clinicians_notified)}"


def alert_changes_since(since: datetime, *, limit: int = 500) -> list[tuple[int, str]]:
    """(alert id, version) of every alert raised, escalated, acknowledged or resolved at or
    after `since`, oldest first: the pushes a socket may have missed while the channel layer
    was away; never the demo's simulated history."""
    changed = (
        Alert.objects.filter(study__simulated=False)
        .filter(
            Q(raised_at__gte=since)
            | Q(escalated_at__gte=since)
            | Q(acknowledged_at__gte=since)
            | Q(resolved_at__gte=since)
        )
        .order_by("seq")[:limit]
    )
    return [(alert.pk, alert_version(alert)) for alert in changed]


def alerts_for_frames() -> QuerySet[Alert]:
    """Alerts with what `alert_frame` and the inbox read joined in (study and patient, run,
    who acknowledged); never the demo's simulated history (it is for the analytics only)."""
    return Alert.objects.filter(study__simulated=False).select_related(
        "study", "study__patient", "run", "acknowledged_by"
    )


def alert_raise(
    *, study: Any, finding: str, run: Any = None, now: datetime | None = None
) -> Alert | None:
    """Raise the alert for a flagged finding, once. Runs inside the caller's transaction.

    No alert for a study someone is already reading or has read: the radiologist has it.
    """
    if Alert.objects.filter(study=study, finding=finding).exists():
        return None
    item = getattr(study, "worklist_item", None)
    if item is not None and item.status != "unread":
        audit_record(
            action="alert.suppressed",
            actor_id=None,
            channel="system",
            study_id=study.pk,
            detail={"finding": finding, "reason": f"study is {item.status}"},
        )
        return None
    now = now or timezone.now()
    spec = finding_spec(finding)
    alert = Alert.objects.create(
        seq=alert_seq_next(),
        study=study,
        finding=finding,
        run=run,
        score=getattr(run, "score", None),
        raised_at=now,
        escalate_at=now + timedelta(seconds=spec.ack_target_seconds),
        clinicians_notified=spec.clinicians_immediately,
    )
    alert_deliveries_decide(alert=alert, now=now)
    _alert_changed(
        alert, action="alert.raise", actor_id=None, channel="system", detail={"finding": finding}
    )
    logger.info("alert raised seq=%s study=%s finding=%s", alert.seq, study.pk, finding)
    return alert


def alert_acknowledge(*, alert_id: int, user: Any, screen: str) -> Alert:
    with transaction.atomic():
        alert = (
            Alert.objects.filter(study__simulated=False)
            .select_for_update(of=("self",))
            .select_related("study")
            .get(pk=alert_id)
        )
        if not alert_visible_to(alert, user):
            raise AlertNotAllowed("This alert is not addressed to you.")
        if alert.state in Alert.OPEN_STATES:
            alert.state = Alert.State.ACKNOWLEDGED
            alert.acknowledged_at = timezone.now()
            alert.acknowledged_by = user
            alert.acknowledged_from = screen[:32]
            alert.save(
                update_fields=["state", "acknowledged_at", "acknowledged_by", "acknowledged_from"]
            )
            _alert_changed(alert, action="alert.acknowledge", actor_id=user.pk, channel=screen[:16])
    return alert


def alert_resolve(*, alert_id: int, user: Any, confirmed: bool) -> Alert:
    """A radiologist confirms (clinicians are told if they were waiting for it) or dismisses."""
    if not user_has_role(user, Role.RADIOLOGIST):
        raise AlertNotAllowed("Only a radiologist can confirm or dismiss an AI alert.")
    with transaction.atomic():
        alert = (
            Alert.objects.filter(study__simulated=False)
            .select_for_update(of=("self",))
            .get(pk=alert_id)
        )
        if alert.state in (Alert.State.CONFIRMED, Alert.State.DISMISSED):
            return alert
        now = timezone.now()
        if alert.acknowledged_at is None:
            alert.acknowledged_at, alert.acknowledged_by = now, user
            alert.acknowledged_from = "resolve"
        alert.state = Alert.State.CONFIRMED if confirmed else Alert.State.DISMISSED
        alert.resolved_at, alert.resolved_by = now, user
        told_clinicians = confirmed and not alert.clinicians_notified
        if confirmed:
            alert.clinicians_notified = True
        alert.save()
        if told_clinicians:
            alert_deliveries_decide(alert=alert, now=now)
        _alert_changed(
            alert,
            action="alert.confirm" if confirmed else "alert.dismiss",
            actor_id=user.pk,
            channel="dashboard",
        )
    return alert


def alerts_escalate_due(*, now: datetime | None = None) -> list[int]:
    """Escalate open alerts nobody acknowledged in time: every radiologist, the location's
    clinicians and the administrators now see them. Driven from the database, so a restart
    loses no timer; several schedulers may run it at once."""
    now = now or timezone.now()
    escalated = []
    with transaction.atomic():
        due = Alert.objects.select_for_update(skip_locked=True).filter(
            state=Alert.State.OPEN, escalate_at__lte=now
        )
        for alert in due:
            alert.state = Alert.State.ESCALATED
            alert.tier = 2
            alert.escalated_at = now
            alert.clinicians_notified = True
            alert.save(update_fields=["state", "tier", "escalated_at", "clinicians_notified"])
            alert_deliveries_decide(alert=alert, now=now)
            _alert_changed(alert, action="alert.escalate", actor_id=None, channel="system")
            escalated.append(alert.pk)
    if escalated:
        logger.warning("escalated %s unacknowledged alert(s)", len(escalated))
    return escalated


def alerts_visible(
    *, user: Any, after_seq: int | None = None, open_only: bool = False, limit: int = 200
) -> list[Alert]:
    alerts = alerts_for_frames().order_by("seq")
    if after_seq is not None:
        alerts = alerts.filter(seq__gt=after_seq)
    if open_only:
        alerts = alerts.filter(state__in=Alert.OPEN_STATES)
    else:
        alerts = alerts.order_by("-seq")[:limit] if after_seq is None else alerts
    viewer = viewer_for(user)
    visible = [alert for alert in alerts if alert_visible_to_viewer(alert, viewer)]
    return sorted(visible, key=lambda alert: alert.seq)


def alert_frame(alert: Alert) -> dict[str, Any]:
    """What a dashboard receives over its socket (for a user allowed to see the alert)."""
    from django.urls import reverse

    from inference.registry import DEMONSTRATION_NOTICE

    run = alert.run
    return {
        "type": "alert",
        "seq": alert.seq,
        "alert_id": alert.pk,
        "finding": alert.finding,
        "label": finding_spec(alert.finding).label,
        "state": alert.state,
        "tier": alert.tier,
        "study_id": alert.study_id,
        "study_instance_uid": alert.study.study_instance_uid,
        "accession_number": alert.study.accession_number,
        "modality": alert.study.modality,
        "patient_location": alert.study.patient_location,
        "score": alert.score,
        "raised_at": alert.raised_at.isoformat(),
        "escalate_at": alert.escalate_at.isoformat(),
        "acknowledged_at": alert.acknowledged_at.isoformat() if alert.acknowledged_at else None,
        "acknowledged_by": alert.acknowledged_by.get_username() if alert.acknowledged_by else None,
        "heatmap_url": (
            reverse("worklist-api:api-heatmap", args=[alert.study_id, run.pk])
            if run is not None and run.heatmap_path
            else None
        ),
        "preview_url": reverse("worklist:preview", args=[alert.study_id]),
        "demonstration": bool(run.demonstration) if run is not None else True,
        "notice": DEMONSTRATION_NOTICE,
    }
