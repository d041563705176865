"""Sign-in failures are audited, and guessing a password stops working: after five failures
in fifteen minutes the account is refused, the right password included, until the window
passes. The Django admin's sign-in follows the same rule."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.conftest import PASSWORD
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


def test_the_account_opens_again_when_the_window_has_passed(client, users):
    for _ in range(5):
        sign_in(client, "rad", "wrong-guess")
    AuditEvent.objects.filter(action="login.failed").update(
        at=timezone.now() - timedelta(minutes=16)
    )

    response = sign_in(client, "rad", PASSWORD)

    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(users.radiologist.pk)


def test_a_few_mistakes_do_not_lock_anyone_out(client, users):
    for _ in range(4):
        sign_in(client, "rad", "typo")

    assert sign_in(client, "rad", PASSWORD).status_code == 302
