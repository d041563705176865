"""Radiologist feedback on AI results: the ground truth behind live PPV and the explorer."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from inference.models import InferenceRun
from triage.alerts import alert_resolve
from triage.audit import audit_record
from triage.findings import FINDINGS
from triage.models import Alert, Feedback
from triage.outbound.services import outbound_corrections_enqueue
from triage.roles import Role, user_has_role
from worklist.models import Study


class FeedbackRefused(Exception):
    pass


def feedback_record(
    *, study_id: int, finding: str, user: Any, verdict: str, reason: str = "", comment: str = ""
) -> Feedback:
    """Confirmed / false positive on an AI result, or a finding the AI missed. One per reader,
    study and finding (a later verdict replaces the earlier). Resolves the open alert."""
    if not user_has_role(user, Role.RADIOLOGIST):
        raise FeedbackRefused("Only radiologists record feedback on AI results.")
    if finding not in FINDINGS:
        raise FeedbackRefused(f"finding must be one of {', '.join(FINDINGS)}")
    if not Study.objects.filter(pk=study_id).exists():
        raise FeedbackRefused("No such study.")
    if verdict not in Feedback.Verdict.values:
        raise FeedbackRefused(f"verdict must be one of {', '.join(Feedback.Verdict.values)}")
    if reason not in Feedback.Reason.values:
        raise FeedbackRefused(
            f"reason must be one of {', '.join(v for v in Feedback.Reason.values if v)}"
        )
    run = (
        InferenceRun.objects.filter(
            study_id=study_id, finding=finding, current=True, state=InferenceRun.State.COMPLETE
        )
        .order_by("-score")
        .first()
    )
    if verdict in (Feedback.Verdict.CONFIRMED, Feedback.Verdict.FALSE_POSITIVE):
        if run is None or not run.flagged:
            raise FeedbackRefused("There is no AI flag for this finding on this study to judge.")
    elif run is not None and run.flagged:
        raise FeedbackRefused("The AI flagged this finding: confirm it or mark it false positive.")
    with transaction.atomic():
        feedback, _ = Feedback.objects.update_or_create(
            study_id=study_id,
            finding=finding,
            author=user,
            defaults={
                "run": run,
                "verdict": verdict,
                "reason": reason if verdict == Feedback.Verdict.FALSE_POSITIVE else "",
                "comment": comment[:500],
                "score": run.score if run is not None else None,
                "flagged": run.flagged if run is not None else None,
                "created_at": timezone.now(),
            },
        )
        audit_record(
            action=f"feedback.{verdict}",
            actor_id=user.pk,
            channel="dashboard",
            study_id=study_id,
            detail={"finding": finding, "reason": feedback.reason},
        )
        if verdict == Feedback.Verdict.FALSE_POSITIVE:
            outbound_corrections_enqueue(study_id=study_id, finding=finding)
        alert = Alert.objects.filter(
            study_id=study_id,
            finding=finding,
            state__in=Alert.OPEN_STATES + (Alert.State.ACKNOWLEDGED,),
        ).first()
    if alert is not None and verdict != Feedback.Verdict.MISSED:
        alert_resolve(alert_id=alert.pk, user=user, confirmed=verdict == Feedback.Verdict.CONFIRMED)
    return feedback
