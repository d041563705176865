"""The clinician inbox page: open and recent alerts for the user's locations."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_POST

from triage.alerts import AlertNotAllowed, alert_acknowledge, alerts_visible
from triage.audit import audit_record, client_address
from triage.deliveries import held_alert_ids
from triage.feedback import FeedbackRefused, feedback_record
from triage.findings import finding_spec
from triage.models import Alert
from triage.roles import Role, role_required
from triage.serializers import patient_summary

INBOX_ROLES = (Role.CLINICIAN, Role.RADIOLOGIST, Role.ADMINISTRATOR)


def _inbox_context(request: HttpRequest) -> dict[str, Any]:
    alerts = alerts_visible(user=request.user)
    for alert in alerts:
        alert.label = finding_spec(alert.finding).label  # type: ignore[attr-defined]
        alert.patient_summary = patient_summary(alert.study.patient)  # type: ignore[attr-defined]
        alert.preview_url = reverse("worklist:preview", args=[alert.study_id])  # type: ignore[attr-defined]
        alert.heatmap_url = (  # type: ignore[attr-defined]
            reverse("worklist-api:api-heatmap", args=[alert.study_id, alert.run_id])
            if alert.run_id is not None and alert.run is not None and alert.run.heatmap_path
            else ""
        )
    open_alerts = [alert for alert in alerts if alert.state in Alert.OPEN_STATES]
    history = [alert for alert in reversed(alerts) if alert.state not in Alert.OPEN_STATES]
    held = held_alert_ids(user=request.user, alert_ids=[alert.pk for alert in open_alerts])
    return {
        "open_alerts": open_alerts,
        "history": history[:50],
        "held": held,
        "rate_cap": settings.ALERT_RATE_CAP,
        "rate_window": settings.ALERT_RATE_WINDOW_MINUTES,
    }


@role_required(*INBOX_ROLES)
def inbox_page(request: HttpRequest) -> HttpResponse:
    context = _inbox_context(request)
    # The inbox names patients: opening it is a view of the studies it lists.
    audit_record(
        action="alerts.inbox_view",
        actor_id=request.user.pk,
        channel="page",
        remote_addr=client_address(request),
        detail={"studies": sorted({alert.study_id for alert in context["open_alerts"]})},
    )
    return render(request, "triage/inbox.html", context)


@role_required(*INBOX_ROLES)
def inbox_rows(request: HttpRequest) -> HttpResponse:
    return render(request, "triage/_inbox_rows.html", _inbox_context(request))


@require_POST
@role_required(*INBOX_ROLES)
def inbox_acknowledge(request: HttpRequest, alert_id: int) -> HttpResponse:
    try:
        alert_acknowledge(alert_id=alert_id, user=request.user, screen="inbox")
    except (AlertNotAllowed, Alert.DoesNotExist):
        messages.error(request, "This alert is not addressed to you.")
    return HttpResponseRedirect(reverse("inbox"))


def home(request: HttpRequest) -> HttpResponse:
    """Radiologists and administrators land on the worklist, clinicians on their inbox."""
    from triage.roles import user_has_role

    if user_has_role(request.user, Role.CLINICIAN) and not user_has_role(
        request.user, Role.RADIOLOGIST, Role.ADMINISTRATOR
    ):
        return HttpResponseRedirect(reverse("inbox"))
    return HttpResponseRedirect(reverse("worklist:page"))


@require_POST
@role_required(Role.RADIOLOGIST)
def study_feedback(request: HttpRequest, study_id: int) -> HttpResponse:
    try:
        feedback_record(
            study_id=study_id,
            finding=request.POST.get("finding", ""),
            user=request.user,
            verdict=request.POST.get("verdict", ""),
            reason=request.POST.get("reason", ""),
            comment=request.POST.get("comment", ""),
        )
        messages.success(request, "Feedback recorded. Thank you: it tunes the alert thresholds.")
    except FeedbackRefused as refusal:
        messages.error(request, str(refusal))
    return HttpResponseRedirect(reverse("worklist:study", args=[study_id]))
