"""REST API for alerts: list, acknowledge, confirm or dismiss."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from triage.alerts import (
    AlertNotAllowed,
    alert_acknowledge,
    alert_frame,
    alert_resolve,
    alerts_for_frames,
    alerts_visible,
)
from triage.feedback import FeedbackRefused, feedback_record
from triage.models import Alert
from triage.roles import Role, roles_permission

CanReceiveAlerts = roles_permission(
    Role.RADIOLOGIST,
    Role.CLINICIAN,
    Role.ADMINISTRATOR,
    message="Alerts are for radiologists, clinicians and administrators.",
)


class AlertListView(APIView):
    permission_classes = [CanReceiveAlerts]

    @extend_schema(responses=dict)
    def get(self, request: Request) -> Response:
        after = request.query_params.get("after")
        if after is not None and not after.isdigit():
            return Response({"detail": "after must be a sequence number"}, status=400)
        alerts = alerts_visible(
            user=request.user,
            after_seq=int(after) if after is not None else None,
            open_only=request.query_params.get("open") == "1",
        )
        return Response({"results": [alert_frame(alert) for alert in alerts]})


class _AlertAction(APIView):
    permission_classes = [CanReceiveAlerts]

    def act(self, request: Request, alert_id: int) -> Alert:
        raise NotImplementedError

    @extend_schema(request=None, responses=dict)
    def post(self, request: Request, alert_id: int) -> Response:
        try:
            alert = self.act(request, alert_id)
        except Alert.DoesNotExist:
            return Response({"detail": "No such alert."}, status=status.HTTP_404_NOT_FOUND)
        except AlertNotAllowed as refusal:
            return Response({"detail": str(refusal)}, status=status.HTTP_403_FORBIDDEN)
        alert = alerts_for_frames().get(pk=alert.pk)
        return Response(alert_frame(alert))


class AcknowledgeView(_AlertAction):
    def act(self, request: Request, alert_id: int) -> Alert:
        screen = str(request.data.get("screen", "api")) if hasattr(request, "data") else "api"
        return alert_acknowledge(alert_id=alert_id, user=request.user, screen=screen)


CanResolveAlerts = roles_permission(
    Role.RADIOLOGIST, message="Only a radiologist can confirm or dismiss an AI alert."
)


class ConfirmView(_AlertAction):
    permission_classes = [CanResolveAlerts]

    def act(self, request: Request, alert_id: int) -> Alert:
        return alert_resolve(alert_id=alert_id, user=request.user, confirmed=True)


class DismissView(_AlertAction):
    permission_classes = [CanResolveAlerts]

    def act(self, request: Request, alert_id: int) -> Alert:
        return alert_resolve(alert_id=alert_id, user=request.user, confirmed=False)


IsRadiologist = roles_permission(
    Role.RADIOLOGIST, message="Feedback on AI results is recorded by radiologists."
)


class FeedbackView(APIView):
    """Confirm or reject an AI flag (with a reason), or report a finding the AI missed."""

    permission_classes = [IsRadiologist]

    @extend_schema(request=dict, responses=dict)
    def post(self, request: Request, study_id: int) -> Response:
        data = request.data if isinstance(request.data, dict) else {}
        try:
            feedback = feedback_record(
                study_id=study_id,
                finding=str(data.get("finding", "")),
                user=request.user,
                verdict=str(data.get("verdict", "")),
                reason=str(data.get("reason", "")),
                comment=str(data.get("comment", "")),
            )
        except FeedbackRefused as refusal:
            return Response({"detail": str(refusal)}, status=status.HTTP_400_BAD_REQUEST)
        return Response(
            {
                "id": feedback.pk,
                "finding": feedback.finding,
                "verdict": feedback.verdict,
                "reason": feedback.reason,
                "score": feedback.score,
            },
            status=status.HTTP_201_CREATED,
        )
