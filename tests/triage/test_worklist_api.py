"""The worklist API and pages: roles, ordering, claims, audit."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.authtoken.models import Token

from tests.factories import ready_study
from triage.models import AuditEvent


@pytest.fixture
def rad_client(client, users):
    client.force_login(users.radiologist)
    return client


def test_worklist_lists_required_fields_in_deadline_order(rad_client):
    routine = ready_study(priority="ROUTINE")
    stat = ready_study(priority="STAT")
    ed = ready_study(is_emergency=True, location="ED")

    rows = rad_client.get("/api/worklist/").json()["results"]

    assert [row["id"] for row in rows] == [stat.pk, ed.pk, routine.pk]
    for field in (
        "id",
        "study_instance_uid",
        "accession_number",
        "modality",
        "status",
        "ai_state",
        "read_by",
        "received_at",
        "findings",
    ):
        assert field in rows[0]


def test_worklist_filters(rad_client, users):
    ct = ready_study(modality="CT")
    ready_study(modality="CR", is_emergency=True)
    rad_client.post(f"/api/worklist/{ct.pk}/claim/")

    assert [
        r["modality"] for r in rad_client.get("/api/worklist/?modality=cr").json()["results"]
    ] == ["CR"]
    assert [
        r["id"] for r in rad_client.get("/api/worklist/?status=in_progress").json()["results"]
    ] == [ct.pk]
    assert [
        r["modality"] for r in rad_client.get("/api/worklist/?location=other").json()["results"]
    ] == ["CT"]
    assert rad_client.get("/api/worklist/?status=bogus").status_code == 400


def test_claim_release_and_read(rad_client, users):
    item = ready_study()

    claimed = rad_client.post(f"/api/worklist/{item.pk}/claim/").json()
    assert claimed["status"] == "in_progress" and claimed["claimed_by"] == "rad"
    released = rad_client.post(f"/api/worklist/{item.pk}/release/").json()
    assert released["status"] == "unread" and released["claimed_by"] is None
    read = rad_client.post(f"/api/worklist/{item.pk}/read/").json()
    assert read["status"] == "read" and read["read_at"]
    actions = list(
        AuditEvent.objects.filter(study_id=item.study_id).values_list("action", flat=True)
    )
    assert sorted(actions) == ["worklist.claim", "worklist.read", "worklist.release"]


def test_claiming_a_study_someone_else_holds_is_a_conflict(client, users):
    item = ready_study()
    client.force_login(users.radiologist)
    assert client.post(f"/api/worklist/{item.pk}/claim/").status_code == 200

    client.force_login(users.radiologist2)
    response = client.post(f"/api/worklist/{item.pk}/claim/")

    assert response.status_code == 409
    assert "Another radiologist" in response.json()["detail"]
    assert client.post(f"/api/worklist/{item.pk}/release/").status_code == 409
    marked = client.post(f"/api/worklist/{item.pk}/read/")
    assert marked.status_code == 409 and "Another radiologist" in marked.json()["detail"]
    item.refresh_from_db()
    assert item.status == "in_progress" and item.claimed_by == users.radiologist


@pytest.mark.parametrize(
    ("role", "list_status", "claim_status"),
    [
        ("radiologist", 200, 200),
        ("administrator", 200, 403),
        ("clinician", 403, 403),
        ("nobody", 403, 403),
    ],
)
def test_api_permissions_per_role(client, users, role, list_status, claim_status):
    item = ready_study()
    client.force_login(getattr(users, role))

    assert client.get("/api/worklist/").status_code == list_status
    assert client.get(f"/api/studies/{item.study_id}/").status_code == list_status
    assert client.post(f"/api/worklist/{item.pk}/claim/").status_code == claim_status


def test_anonymous_api_request_is_unauthorised(client, db):
    assert client.get("/api/worklist/").status_code == 401


def test_token_authentication(client, users):
    ready_study()
    token = Token.objects.create(user=users.radiologist)

    response = client.get("/api/worklist/", HTTP_AUTHORIZATION=f"Token {token.key}")

    assert response.status_code == 200 and response.json()["count"] == 1


def test_study_detail_view_is_audited(rad_client, users):
    item = ready_study()

    response = rad_client.get(f"/api/studies/{item.study_id}/", REMOTE_ADDR="10.1.2.3")

    assert response.status_code == 200
    assert response.json()["patient_id"].startswith("MRN")
    event = AuditEvent.objects.get(action="study.view")
    assert (event.actor, event.study_id, event.channel, event.remote_addr) == (
        users.radiologist,
        item.study_id,
        "api",
        "10.1.2.3",
    )


def test_study_page_view_is_audited(rad_client, users):
    item = ready_study()

    response = rad_client.get(f"/worklist/studies/{item.study_id}/")

    assert response.status_code == 200
    assert b"Testperson" in response.content
    assert AuditEvent.objects.filter(action="study.view", channel="page").count() == 1


def test_worklist_page_shows_items_and_claim_button(rad_client):
    item = ready_study()

    page = rad_client.get("/worklist/").content.decode()

    assert item.study.accession_number in page
    assert "Claim" in page and "Open in viewer" in page
    assert f'href="/worklist/studies/{item.study.pk}/preview/"' in page  # the built-in preview
    assert "demonstration models" in page


def test_open_in_viewer_goes_to_the_sites_viewer_when_one_is_configured(rad_client, settings):
    settings.PACS_VIEWER_URL_TEMPLATE = "https://pacs.example/view?uid={study_instance_uid}"
    item = ready_study()
    page = rad_client.get("/worklist/").content.decode()
    assert "https://pacs.example/view?uid=" + item.study.study_instance_uid in page


def test_pages_need_login_and_role(client, users):
    assert client.get("/worklist/").status_code == 302  # to the login page
    client.force_login(users.clinician)
    assert client.get("/worklist/").status_code == 403


def test_claim_from_the_page(rad_client):
    item = ready_study()

    response = rad_client.post(f"/worklist/items/{item.pk}/claim/")

    assert response.status_code == 302
    item.refresh_from_db()
    assert item.status == "in_progress"


@pytest.mark.parametrize(
    "next_url", ["https://evil.example/phish", "//evil.example/", "javascript:alert(1)"]
)
def test_page_action_never_redirects_off_site(rad_client, next_url):
    item = ready_study()

    response = rad_client.post(f"/worklist/items/{item.pk}/claim/", {"next": next_url})

    assert response.status_code == 302
    assert response["Location"] == "/worklist/"
    item.refresh_from_db()
    assert item.status == "in_progress"  # the action itself still happened


def test_page_action_returns_to_a_page_of_this_site(rad_client):
    item = ready_study()

    response = rad_client.post(
        f"/worklist/items/{item.pk}/claim/", {"next": "/worklist/?status=unread"}
    )

    assert response["Location"] == "/worklist/?status=unread"


def test_quarantine_is_for_administrators(client, users):
    client.force_login(users.radiologist)
    assert client.get("/api/quarantine/").status_code == 403
    client.force_login(users.administrator)
    assert client.get("/api/quarantine/").status_code == 200


def test_openapi_schema_is_for_signed_in_users_only(client, db):
    assert client.get("/api/schema/").status_code == 401
    assert AuditEvent.objects.filter(action="access.denied", actor=None).count() == 1


@pytest.mark.parametrize("path", ["/worklist/", "/api/worklist/", "/alerts/", "/manage/analytics/"])
def test_responses_are_never_cached_and_carry_the_security_headers(client, users, path):
    client.force_login(users.administrator)

    response = client.get(path)

    assert response.status_code == 200, path
    assert response["Cache-Control"] == "no-store"
    assert "script-src 'self'" in response["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in response["Content-Security-Policy"]
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"


def test_openapi_schema_is_served(rad_client):
    response = rad_client.get("/api/schema/")

    assert response.status_code == 200
    assert b"/api/worklist/" in response.content


def test_an_aged_routine_study_keeps_its_place_by_deadline(rad_client):
    """Aging needs no recomputation: an old routine study passes a new one of the same class."""
    new = ready_study(received_at=timezone.now())
    old = ready_study(received_at=timezone.now() - timedelta(hours=3))

    rows = rad_client.get("/api/worklist/").json()["results"]

    assert [row["id"] for row in rows] == [old.pk, new.pk]


def test_behind_the_tls_proxy_pages_carry_hsts_and_secure_cookies(transactional_db, tmp_path):
    """Production settings (secure cookies at their default) under uvicorn behind a TLS proxy,
    which says X-Forwarded-Proto from 127.0.0.1 (an address uvicorn trusts): a year of HSTS and
    Secure cookies on HTTPS requests, neither on plain HTTP; and the DEBUG-off page for a path
    nothing serves tells nothing of the configuration."""
    import requests

    from tests.conftest import asgi_server_start, process_stop

    process, port = asgi_server_start(tmp_path, extra_env={"SECURE_COOKIES": ""})
    try:
        base = f"http://127.0.0.1:{port}"
        secure = requests.get(
            f"{base}/accounts/login/", headers={"X-Forwarded-Proto": "https"}, timeout=30
        )
        plain = requests.get(f"{base}/accounts/login/", timeout=30)
        missing = requests.get(f"{base}/no-such-page/", timeout=30)
    finally:
        process_stop(process)

    assert secure.status_code == 200
    assert secure.headers["Strict-Transport-Security"] == "max-age=31536000"
    cookie = secure.headers["Set-Cookie"]
    assert "csrftoken=" in cookie and "Secure" in cookie
    assert plain.status_code == 200 and "Strict-Transport-Security" not in plain.headers
    assert missing.status_code == 404
    for leak in ("Traceback", "urlpatterns", "DEBUG", "SECRET_KEY", "triage.config"):
        assert leak not in missing.text, leak


def test_a_failing_view_answers_a_plain_500_that_leaks_nothing(db, users, monkeypatch):
    """DEBUG off (as in production): a page whose view fails answers the product's 500 page and
    an API route `{"detail": ...}` JSON; neither carries the exception, a traceback, a path
    or the configuration."""
    from django.test import Client

    secret = "boom at /work/secret/settings.py SECRET_KEY=abc"

    def failing(**kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError(secret)

    monkeypatch.setattr("triage.views.alerts_visible", failing)
    monkeypatch.setattr("triage.api.alerts_visible", failing)
    client = Client(raise_request_exception=False)
    client.force_login(users.clinician)

    page = client.get("/alerts/")
    api = client.get("/api/alerts/")

    assert page.status_code == 500 and "500 · Server error" in page.content.decode()
    assert api.status_code == 500 and api.json() == {"detail": "Server error; it has been logged."}
    for body in (page.content.decode(), api.content.decode()):
        for leak in ("Traceback", "RuntimeError", "boom", "/work/", "SECRET_KEY", "DEBUG"):
            assert leak not in body, leak


@pytest.mark.parametrize(
    "path",
    [
        "/api/worklist/?modality=C%00T",  # PostgreSQL refuses NUL: this was a server error
        "/api/worklist/?loc%00ation=ed",
        "/dicomweb/studies?PatientID=A%00B",
        "/manage/thresholds/?source=validation%00:1",
    ],
)
def test_a_nul_in_the_query_is_a_400_with_the_reason(rad_client, users, path):
    rad_client.force_login(users.administrator)
    response = rad_client.get(path)
    assert response.status_code == 400
    assert "NUL" in response.json()["detail"]
    assert rad_client.get("/api/worklist/?modality=CT").status_code == 200  # still serving


def test_a_nul_in_a_form_field_is_a_400_and_nothing_is_changed(client, users):
    from triage.models import ThresholdPolicy

    client.force_login(users.administrator)
    response = client.post("/manage/thresholds/", {
        "finding": "intracranial_hemorrhage", "apply": "1", "proposed": "0.5",
        "reason": "bad\x00reason",
    })  # fmt: skip
    assert response.status_code == 400 and "NUL" in response.json()["detail"]
    assert not ThresholdPolicy.objects.exists()
