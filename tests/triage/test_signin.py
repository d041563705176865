"""Sign-in failures are audited, and guessing a password stops working: after five failures
in fifteen minutes the account is refused, the right password included, until the window
passes. The Django admin's sign-in follows the same rule."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.utils import timezone

from tests.conftest import PASSWORD
from triage import signin
from triage.models import AuditEvent


def sign_in(client, username: str, password: str, *, url: str = "/accounts/login/"):
    return client.post(url, {"username": username, "password": password})


@pytest.mark.parametrize("url", ["/accounts/login/", "/admin/login/"])
def test_guessing_stops_after_five_failures_and_each_is_audited(client, users, url):
    for _ in range(5):
        assert sign_in(client, "rad", "wrong-guess", url=url).status_code == 200

    response = sign_in(client, "rad", PASSWORD, url=url)

    assert response.status_code == 200  # the form again, not a redirect into the app
    assert "Too many failed sign-ins" in response.content.decode()
    assert "_auth_user_id" not in client.session
    failures = AuditEvent.objects.filter(action="login.failed")
    assert failures.count() == 5
    assert {event.detail["username"] for event in failures} == {"rad"}
    assert all(event.remote_addr == "127.0.0.1" for event in failures)
    assert AuditEvent.objects.filter(action="login.locked").count() == 1


def test_the_account_opens_again_when_the_window_has_passed(client, users, monkeypatch):
    for _ in range(5):
        sign_in(client, "rad", "wrong-guess")
    later = timezone.now() + timedelta(minutes=16)
    monkeypatch.setattr(signin, "timezone", SimpleNamespace(now=lambda: later))

    response = sign_in(client, "rad", PASSWORD)

    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(users.radiologist.pk)


def test_a_few_mistakes_do_not_lock_anyone_out(client, users):
    for _ in range(4):
        sign_in(client, "rad", "typo")

    assert sign_in(client, "rad", PASSWORD).status_code == 302


def test_denied_access_is_audited(client, users):
    client.force_login(users.clinician)

    assert client.get("/worklist/").status_code == 403
    assert client.get("/api/worklist/").status_code == 403

    denied = AuditEvent.objects.filter(action="access.denied", actor=users.clinician)
    assert sorted(event.detail["path"] for event in denied) == ["/api/worklist/", "/worklist/"]
    assert {event.detail["status"] for event in denied} == {403}


def test_the_audit_log_cannot_be_changed_or_deleted(users):
    from django.db import DatabaseError, transaction

    event = AuditEvent.objects.create(action="test.event", channel="system")
    for change in (
        lambda: AuditEvent.objects.filter(pk=event.pk).update(action="edited"),
        lambda: AuditEvent.objects.filter(pk=event.pk).delete(),
    ):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            change()
    assert AuditEvent.objects.get(pk=event.pk).action == "test.event"


def test_a_denied_request_is_logged_in_one_line_and_a_server_error_with_its_traceback():
    import logging
    import sys

    from triage.config.log_filters import ClientErrorsWithoutTraceback

    try:
        raise PermissionError("denied")
    except PermissionError:
        exc_info = sys.exc_info()
    forbidden, crashed = (
        logging.LogRecord("django.request", logging.WARNING, __file__, 1, "x", (), exc_info)
        for _ in range(2)
    )
    forbidden.status_code, crashed.status_code = 403, 500

    assert ClientErrorsWithoutTraceback().filter(forbidden) and forbidden.exc_info is None
    assert ClientErrorsWithoutTraceback().filter(crashed) and crashed.exc_info is exc_info
