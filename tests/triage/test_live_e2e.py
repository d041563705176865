"""The live product on real parts: uvicorn (ASGI) servers, the DICOM listener, a Celery worker
and the Redis channel layer, watched by a real browser and by raw WebSocket clients."""

from __future__ import annotations

import json
import re

import pytest
from django.conf import settings
from django.test import Client
from playwright.sync_api import Page, expect
from websockets.sync.client import connect as ws_connect

from inference.models import InferenceRun
from tests.conftest import ROOT, asgi_server_start, process_stop
from tests.inference.test_worker_e2e import send_phantom
from triage.findings import Finding
from triage.models import Alert, StaffProfile
from worklist.models import Study

ARTIFACTS = ROOT / "test-artifacts"
POSITIVE_SEED = 9_100_001  # a held-out hemorrhage phantom the shipped model flags


def sign_in(page: Page, base: str, user, landing: str) -> None:
    """Sign in with a session made in the test process (the server's password hashers differ
    from the tests' fast one; the login form itself is tested in tests/worklist)."""
    client = Client()
    client.force_login(user)
    name = settings.SESSION_COOKIE_NAME
    page.context.add_cookies([{"name": name, "value": client.cookies[name].value, "url": base}])
    page.goto(f"{base}{landing}")
    expect(page).to_have_url(re.compile(re.escape(landing) + "$"))


def test_radiologist_and_clinician_see_a_flag_arrive_live(
    browser, asgi_server, dicom_listener, celery_worker, users, tmp_path
):
    """A study sent with storescu appears without a reload; a hemorrhage-positive study moves to
    the top and raises a banner with its key image; the radiologist acknowledges it; the ED
    clinician's inbox shows the alert live."""
    StaffProfile.objects.create(user=users.clinician, locations="ED")
    base = f"http://localhost:{asgi_server}"
    radiologist = browser.new_context(viewport={"width": 1920, "height": 1080})
    clinician = browser.new_context(viewport={"width": 820, "height": 1180})
    rad_page, clin_page = radiologist.new_page(), clinician.new_page()
    rad_page.set_default_timeout(90_000)
    clin_page.set_default_timeout(90_000)
    sign_in(rad_page, base, users.radiologist, "/worklist/")
    sign_in(clin_page, base, users.clinician, "/alerts/")
    expect(rad_page.locator("#connection")).to_have_text("● Live")

    negative = send_phantom(
        dicom_listener.port,
        Finding.INTRACRANIAL_HEMORRHAGE,
        positive=False,
        seed=POSITIVE_SEED,
        out=tmp_path / "neg",
        location="ED-MAJORS-2",
    )
    expect(rad_page.locator(f'#worklist tr[data-study-uid="{negative}"]')).to_be_visible()
    positive = send_phantom(
        dicom_listener.port,
        Finding.INTRACRANIAL_HEMORRHAGE,
        positive=True,
        seed=POSITIVE_SEED,
        out=tmp_path / "pos",
        location="ED-RESUS-1",
    )

    banner = rad_page.locator("#alert-banner section.critical")
    expect(banner).to_have_count(1)
    expect(banner).to_contain_text("suspected intracranial hemorrhage")
    expect(banner).to_contain_text("synthetic phantoms")
    expect(banner.locator("img.key-image")).to_be_visible()
    # The patient, from the audited study API (never from the socket frame).
    patient = Study.objects.get(study_instance_uid=positive).patient
    expect(banner.locator(".patient")).to_contain_text(patient.patient_id)
    expect(banner.get_by_role("link", name="Open preview")).to_be_visible()
    expect(rad_page.locator("#worklist tbody tr").first).to_have_attribute(
        "data-study-uid", positive
    )
    expect(rad_page.locator("#worklist tbody tr").first.locator(".badge.flagged")).to_be_visible()
    ARTIFACTS.mkdir(exist_ok=True)
    rad_page.screenshot(path=ARTIFACTS / "dashboard-alert-1920.png")

    expect(clin_page.locator("#inbox li.open")).to_have_count(1)
    expect(clin_page.locator("#inbox li.open")).to_contain_text("intracranial")
    clin_page.screenshot(path=ARTIFACTS / "inbox-tablet.png")

    banner.get_by_role("button", name="Acknowledge").click()
    expect(banner).to_have_count(0)
    alert = Alert.objects.get(study__study_instance_uid=positive)
    assert (alert.state, alert.acknowledged_by, alert.acknowledged_from) == (
        "acknowledged",
        users.radiologist,
        "dashboard",
    )
    expect(clin_page.locator("#inbox li.open")).to_have_count(0)
    radiologist.close()
    clinician.close()


def _session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    name = settings.SESSION_COOKIE_NAME
    return f"{name}={client.cookies[name].value}"


def test_an_alert_raised_by_the_worker_reaches_sockets_on_both_servers(
    transactional_db, dicom_listener, celery_worker, users, tmp_path
):
    first, first_port = asgi_server_start(tmp_path, name="web-1")
    second, second_port = asgi_server_start(tmp_path, name="web-2")
    try:
        cookie = _session_cookie(users.radiologist)
        sockets = [
            ws_connect(
                f"ws://localhost:{port}/ws/alerts/",
                additional_headers={"Cookie": cookie, "Origin": f"http://localhost:{port}"},
                open_timeout=10,
            )
            for port in (first_port, second_port)
        ]
        positive = send_phantom(
            dicom_listener.port,
            Finding.INTRACRANIAL_HEMORRHAGE,
            positive=True,
            seed=POSITIVE_SEED,
            out=tmp_path / "pos",
        )
        for socket in sockets:
            frame = json.loads(socket.recv(timeout=90))
            assert frame["type"] == "alert" and frame["study_instance_uid"] == positive
            assert frame["state"] == "open" and frame["finding"] == "intracranial_hemorrhage"
            socket.close()
        assert InferenceRun.objects.filter(study__study_instance_uid=positive).count() == 1
        assert Alert.objects.filter(study__study_instance_uid=positive).count() == 1
    finally:
        process_stop(first)
        process_stop(second)


def test_a_browser_socket_hears_why_it_is_refused(asgi_server, users):
    """Over a real server, as a browser meets it: signed out -> close code 4401 (the dashboard
    reloads to sign in again), the wrong role -> 4403, an unknown path -> 4404; a page of another
    origin (same host, another port) is refused at the handshake."""
    from websockets.exceptions import ConnectionClosed, InvalidStatus

    own = {"Origin": f"http://localhost:{asgi_server}"}
    clinician = _session_cookie(users.clinician)
    for path, headers, code in (
        ("/ws/alerts/", own, 4401),
        ("/ws/worklist/", {**own, "Cookie": clinician}, 4403),
        ("/ws/unknown/", {**own, "Cookie": clinician}, 4404),
    ):
        with ws_connect(
            f"ws://localhost:{asgi_server}{path}", additional_headers=headers, open_timeout=10
        ) as socket:
            with pytest.raises(ConnectionClosed) as closed:
                socket.recv(timeout=5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == code, path
    with pytest.raises(InvalidStatus) as refused:
        ws_connect(
            f"ws://localhost:{asgi_server}/ws/alerts/",
            additional_headers={"Origin": "http://localhost:9999", "Cookie": clinician},
            open_timeout=10,
        )
    assert refused.value.response.status_code == 403
