"""The one place audit records are written."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse

from triage.models import AuditEvent


def ip_or_none(value: str) -> str | None:
    """An IP address as given, or None (a test client's or a proxy's placeholder)."""
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


def client_address(request: HttpRequest) -> str | None:
    return ip_or_none(request.META.get("REMOTE_ADDR") or "")


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


def audit_access_denied(
    sender: object,
    *,
    channel: str,
    remote_addr: str | None,
    detail: dict[str, Any],
    **kwargs: Any,
) -> None:
    """worklist.signals.access_denied: a refused DICOM association or TLS handshake."""
    audit_record(
        action="access.denied",
        actor_id=None,
        channel=channel,
        remote_addr=ip_or_none(remote_addr or ""),
        detail=detail,
    )


def audit_record_batched(
    *,
    action: str,
    actor_id: int | None,
    channel: str,
    study_id: int,
    scope: str,
    remote_addr: str | None = None,
    detail: dict[str, Any] | None = None,
) -> AuditEvent | None:
    """One record for a run of requests that are one view: the frames of a series scrolled in
    the preview, its heat maps. Written for the first request of `actor_id` on `study_id` and
    `scope` (a series UID, say), then not again in this process for AUDIT_BATCH_SECONDS; the
    record says how long it stands for. None when an earlier record covers the request."""
    from django.conf import settings
    from django.core.cache import cache

    seconds = int(settings.AUDIT_BATCH_SECONDS)
    key = f"audit-batch:{action}:{actor_id}:{study_id}:{scope}"
    if seconds > 0 and cache.get(key) is not None:
        return None
    event = audit_record(
        action=action,
        actor_id=actor_id,
        channel=channel,
        study_id=study_id,
        remote_addr=remote_addr,
        detail={**(detail or {}), "scope": scope, "covers_seconds": seconds},
    )
    if seconds > 0:  # marked only once the record exists: a failed insert is tried again
        cache.set(key, event.pk, timeout=seconds)
    return event


def audit_location_denied(*, request: HttpRequest, study_id: int, channel: str) -> None:
    """A study outside a clinician's locations is answered 404 (not told it exists), which the
    middleware below does not see: recorded here as the denied access it is."""
    audit_record(
        action="access.denied",
        actor_id=request.user.pk,
        channel=channel,
        study_id=study_id,
        remote_addr=client_address(request),
        detail={"path": request.path[:200], "status": 404, "reason": "location"},
    )


class DeniedAccessAudit:
    """Middleware: every request answered 401 or 403 (a page, the API, DICOMweb, the admin) is
    audited with who (when known), from where, the path and the status."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if response.status_code in (401, 403):
            user = getattr(request, "user", None)
            audit_record(
                action="access.denied",
                actor_id=user.pk if user is not None and user.is_authenticated else None,
                channel="api" if request.path.startswith(("/api/", "/dicomweb/")) else "page",
                remote_addr=client_address(request),
                detail={"path": request.path[:200], "status": response.status_code},
            )
        return response


_ADMIN_ACTIONS = {1: "admin.add", 2: "admin.change", 3: "admin.delete"}


def audit_admin_change(sender: object, *, instance: Any, created: bool, **kwargs: Any) -> None:
    """post_save of Django admin's LogEntry: every add, change and delete made in the Django
    admin (users, their roles and locations, destinations, studies...) goes into the audit log
    too, with who made it and which fields changed (names only, never the values)."""
    if not created or kwargs.get("raw"):
        return
    fields: list[str] = []
    try:
        for step in json.loads(instance.change_message or "[]"):
            for verb in ("changed", "added", "deleted"):
                if isinstance(step, dict) and isinstance(step.get(verb), dict):
                    fields += [str(name) for name in step[verb].get("fields", [])]
                    if "name" in step[verb]:
                        fields.append(f"{step[verb]['name']} ({verb})")
    except (ValueError, TypeError):
        fields = []
    content = instance.content_type
    model = f"{content.app_label}.{content.model}" if content is not None else ""
    audit_record(
        action=_ADMIN_ACTIONS.get(int(instance.action_flag), "admin.change"),
        actor_id=instance.user_id,
        channel="admin",
        study_id=int(instance.object_id) if model == "worklist.study" else None,
        detail={"model": model, "object_id": str(instance.object_id)[:64], "fields": fields[:50]},
    )
