"""The one place audit records are written."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from triage.models import AuditEvent


def client_address(request: HttpRequest) -> str | None:
    return request.META.get("REMOTE_ADDR") or None


def audit_record(
    *,
    action: str,
    actor_id: int | None,
    channel: str,
    study_id: int | None = None,
    remote_addr: str | None = None,
    detail: dict[str, Any] | None = None,
) -> AuditEvent:
    return AuditEvent.objects.create(
        action=action,
        actor_id=actor_id,
        channel=channel,
        study_id=study_id,
        remote_addr=remote_addr,
        detail=detail or {},
    )


def audit_study_view(*, request: HttpRequest, study_id: int, channel: str) -> AuditEvent:
    return audit_record(
        action="study.view",
        actor_id=request.user.pk,
        channel=channel,
        study_id=study_id,
        remote_addr=client_address(request),
    )
