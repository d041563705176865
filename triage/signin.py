"""Sign-in: every failure is audited, and an account with `LOGIN_FAILURES_ALLOWED` failures in
the last `LOGIN_LOCKOUT_MINUTES` is refused (the right password included) until the oldest of
them leaves the window. The same rule guards the pages' and the Django admin's sign-in."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError
from django.utils import timezone

from triage.audit import audit_record, client_address
from triage.models import AuditEvent

FAILED = "login.failed"
REFUSED_LOCKED = "login.locked"


def signin_failures_recent(*, username: str) -> int:
    since = timezone.now() - timedelta(minutes=settings.LOGIN_LOCKOUT_MINUTES)
    return AuditEvent.objects.filter(
        action=FAILED, detail__username=username.strip().lower(), at__gte=since
    ).count()


def _signin_audit(action: str, *, username: str, address: str | None) -> None:
    audit_record(
        action=action,
        actor_id=None,
        channel="page",
        remote_addr=address,
        detail={"username": username},
    )


class _Throttled:
    """Mixed into Django's sign-in forms: refuse a locked account, audit each failure."""

    request: Any
    cleaned_data: dict[str, Any]

    def clean(self) -> dict[str, Any]:
        username = str(self.cleaned_data.get("username") or "").strip().lower()
        address = client_address(self.request) if self.request is not None else None
        if username and signin_failures_recent(username=username) >= (
            settings.LOGIN_FAILURES_ALLOWED
        ):
            _signin_audit(REFUSED_LOCKED, username=username, address=address)
            raise ValidationError(
                "Too many failed sign-ins for this account: try again in "
                f"{settings.LOGIN_LOCKOUT_MINUTES} minutes, or ask an administrator.",
                code="locked",
            )
        try:
            return super().clean()  # type: ignore[misc, no-any-return]
        except ValidationError:
            _signin_audit(FAILED, username=username, address=address)
            raise


class ThrottledAuthenticationForm(_Throttled, AuthenticationForm):
    pass


class ThrottledAdminAuthenticationForm(_Throttled, AdminAuthenticationForm):
    pass
