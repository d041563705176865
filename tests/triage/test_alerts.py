"""Alerts on the real Redis channel layer: who receives what, resume, escalation, dedupe."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.db import transaction
from django.test import Client
from django.utils import timezone

from tests.factories import ready_study
from triage.alerts import (
    AlertNotAllowed,
    alert_acknowledge,
    alert_raise,
    alert_resolve,
    alerts_escalate_due,
    alerts_visible,
)
from triage.config.asgi import application
from triage.models import Alert, AuditEvent, StaffProfile
from worklist.locations import location_is_emergency, location_within_any, locations_q
from worklist.models import Study

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = (b"origin", b"http://localhost")


def session_cookie(user) -> bytes:
    client = Client()
    client.force_login(user)
    name = settings.SESSION_COOKIE_NAME
    return f"{name}={client.cookies[name].value}".encode()


async def connect(
    path: str, user=None, *, origin=ORIGIN
) -> tuple[WebsocketCommunicator, bool, int | None]:
    headers = [origin, (b"host", b"localhost")]
    if user is not None:
        headers.append((b"cookie", await sync_to_async(session_cookie)(user)))
    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, code = await communicator.connect(timeout=5)
    if connected and not await communicator.receive_nothing(timeout=0.2):
        # Refused after the handshake (so that a browser sees the code): a close at once.
        output = await communicator.receive_output(timeout=1)
        if output["type"] == "websocket.close":
            return communicator, False, output.get("code")
        communicator.output_queue.put_nowait(output)  # a frame: give it back
    return communicator, connected, code


def raise_alert(*, finding="intracranial_hemorrhage", location="ED-RESUS-1", **study):
    item = ready_study(location=location, is_emergency=True, **study)
    with transaction.atomic():
        return alert_raise(study=item.study, finding=finding)


@pytest.fixture
def clinician_in_ed(users):
    StaffProfile.objects.create(user=users.clinician, locations="ED")
    return users.clinician


async def test_unauthenticated_socket_is_closed_with_4401():
    for path in ("/ws/alerts/", "/ws/worklist/"):
        communicator, connected, code = await connect(path)
        assert (connected, code) == (False, 4401)


async def test_unknown_socket_path_is_refused_with_4404(users):
    for path in ("/ws/unknown/", "/ws/", "/nothing"):
        communicator, connected, code = await connect(path, users.radiologist)
        assert (connected, code) == (False, 4404), path


async def test_clinician_may_not_open_the_worklist_socket(users):
    communicator, connected, code = await connect("/ws/worklist/", users.clinician)
    assert (connected, code) == (False, 4403)
    communicator, connected, code = await connect("/ws/alerts/", users.nobody)
    assert (connected, code) == (False, 4403)


async def test_foreign_origin_is_refused(users):
    """Only the product's own origin: the same host with another port or scheme is another
    site (Channels' host check let those through)."""
    for origin in (b"http://evil.example", b"http://localhost:9999", b"https://localhost",
                   b"null", b""):  # fmt: skip
        communicator, connected, _ = await connect(
            "/ws/alerts/", users.radiologist, origin=(b"origin", origin)
        )
        assert connected is False, origin
    denied = await sync_to_async(AuditEvent.objects.filter)(action="access.denied",
                                                            channel="socket")  # fmt: skip
    assert await sync_to_async(denied.count)() == 5


def test_origin_rule_follows_scheme_host_port_and_trusted_origins(settings):
    from triage.socket_origin import origin_allowed

    settings.ALLOWED_HOSTS = ["triage.example", "localhost"]
    settings.CSRF_TRUSTED_ORIGINS = ["https://viewer.example"]
    assert origin_allowed(origin="https://triage.example", host="triage.example", secure=True)
    assert origin_allowed(origin="https://triage.example:443", host="triage.example", secure=True)
    assert origin_allowed(origin="http://localhost:8000", host="localhost:8000", secure=False)
    assert not origin_allowed(origin="http://triage.example", host="triage.example", secure=True)
    assert not origin_allowed(origin="http://localhost:9999", host="localhost:8000", secure=False)
    assert not origin_allowed(origin="http://other.example", host="other.example", secure=False)
    assert origin_allowed(origin="https://viewer.example", host="triage.example", secure=True)
    assert not origin_allowed(origin="javascript:alert(1)", host="localhost", secure=False)


async def test_radiologist_receives_the_alert_frame_after_commit(users):
    communicator, connected, _ = await connect("/ws/alerts/", users.radiologist)
    assert connected

    alert = await sync_to_async(raise_alert)()

    frame = await communicator.receive_json_from(timeout=5)
    assert frame["type"] == "alert" and frame["seq"] == alert.seq
    for key in ("finding", "study_instance_uid", "state", "raised_at"):
        assert frame[key]
    assert frame["state"] == "open" and frame["finding"] == "intracranial_hemorrhage"
    assert "synthetic phantoms" in frame["notice"]
    assert json.loads(json.dumps(frame)) == frame
    for forbidden in ("Testperson", "MRN"):
        assert forbidden not in json.dumps(frame)
    await communicator.disconnect()


async def test_clinicians_get_alerts_of_their_location_only(users, clinician_in_ed):
    ed, _, _ = await connect("/ws/alerts/", clinician_in_ed)

    await sync_to_async(raise_alert)(location="WARD 7")  # not the clinician's location
    ed_alert = await sync_to_async(raise_alert)(location="ED-MAJORS-3")

    frame = await ed.receive_json_from(timeout=5)
    assert frame["seq"] == ed_alert.seq
    assert await ed.receive_nothing(timeout=0.5)
    await ed.disconnect()


def test_a_location_that_only_starts_like_the_clinicians_is_not_theirs(users, clinician_in_ed):
    """`ED` covers ED-MAJORS-3 and ED, never EDUCATION-CENTRE (the rule ingest uses too)."""
    education = raise_alert(location="EDUCATION-CENTRE")
    majors = raise_alert(location="ED-MAJORS-3")

    visible = {alert.pk for alert in alerts_visible(user=clinician_in_ed)}

    assert majors.pk in visible and education.pk not in visible
    with pytest.raises(AlertNotAllowed):
        alert_acknowledge(alert_id=education.pk, user=clinician_in_ed, screen="inbox")
    assert not location_is_emergency("EDUCATION-CENTRE") and location_is_emergency("ED 4")


def test_the_database_matches_locations_by_the_same_rule(db):
    """`locations_q` (studies a clinician may open, in SQL on PostgreSQL) agrees with
    `location_within_any` on every location, edge cases included."""
    locations = ["ED", "ed-resus-2", "ED 4", " ED", "ED_X", "ED.1", "EDUCATION-CENTRE", "EDX",
                 "ED2", "MED", "ICU", "ICU-3", "", "E.D", "ED-"]  # fmt: skip
    studies = {location: ready_study(location=location).study.pk for location in locations}
    for prefixes in (["ED"], ["ed", "ICU"], ["E.D"], [], ["ED-"]):
        in_sql = set(
            Study.objects.filter(locations_q("patient_location", prefixes)).values_list(
                "pk", flat=True
            )
        )
        in_python = {pk for location, pk in studies.items()
                     if location_within_any(location, prefixes)}  # fmt: skip
        assert in_sql == in_python, prefixes


async def test_clinicians_hear_of_confirm_first_findings_after_confirmation(users, clinician_in_ed):
    ed, _, _ = await connect("/ws/alerts/", clinician_in_ed)
    alert = await sync_to_async(raise_alert)(finding="pulmonary_embolism")  # confirm first
    assert await ed.receive_nothing(timeout=0.5)

    await sync_to_async(alert_resolve)(alert_id=alert.pk, user=users.radiologist, confirmed=True)

    frame = await ed.receive_json_from(timeout=5)
    assert (frame["seq"], frame["state"]) == (alert.seq, "confirmed")
    await ed.disconnect()


async def test_resume_replays_each_missed_alert_exactly_once(users):
    first = await sync_to_async(raise_alert)()
    second = await sync_to_async(raise_alert)()
    third = await sync_to_async(raise_alert)()
    communicator, _, _ = await connect("/ws/alerts/", users.radiologist)

    await communicator.send_json_to({"type": "resume", "after": first.seq})
    replayed = [await communicator.receive_json_from(timeout=5) for _ in range(2)]
    await communicator.send_json_to({"type": "resume", "after": first.seq})  # asked twice

    assert [frame["seq"] for frame in replayed] == [second.seq, third.seq]
    assert await communicator.receive_nothing(timeout=0.5)
    fourth = await sync_to_async(raise_alert)()
    assert (await communicator.receive_json_from(timeout=5))["seq"] == fourth.seq
    assert await communicator.receive_nothing(timeout=0.5)
    await communicator.disconnect()


async def test_a_resume_naming_what_the_page_holds_is_not_sent_it_again(users):
    first = await sync_to_async(raise_alert)()
    second = await sync_to_async(raise_alert)()
    communicator, _, _ = await connect("/ws/alerts/", users.radiologist)

    # a page back from a reconnect holds both (the second one it saw after its lastSeq moved)
    held = [[first.seq, "open"], [second.seq, "open"]]
    await communicator.send_json_to({"type": "resume", "after": first.seq, "have": held})
    assert await communicator.receive_nothing(timeout=0.5)
    await sync_to_async(alert_acknowledge)(
        alert_id=second.pk, user=users.radiologist, screen="dashboard"
    )
    frame = await communicator.receive_json_from(timeout=5)  # a new state is sent
    assert (frame["seq"], frame["state"]) == (second.seq, "acknowledged")
    for bad in ("all", [[1, "open"]] * 1001):
        await communicator.send_json_to({"type": "resume", "after": 0, "have": bad})
        assert (await communicator.receive_json_from(timeout=5))["type"] == "error"
    await communicator.disconnect()


@pytest.mark.parametrize("path", ["/ws/alerts/", "/ws/worklist/"])
async def test_malformed_frames_get_an_error_and_the_socket_stays_open(users, path):
    communicator, connected, _ = await connect(path, users.radiologist)
    assert connected

    for frame in (
        {"bytes_data": b"\x00\x01"},
        {"text_data": "{not json"},
        {"text_data": "[" * 50_000 + "]" * 50_000},
        {"text_data": " " * 70_000},
    ):
        await communicator.send_to(**frame)
        answer = await communicator.receive_json_from(timeout=5)
        assert answer["type"] == "error", frame

    await communicator.send_json_to({"type": "no-such-type"})  # still serving, still parsing
    assert "unknown" in (await communicator.receive_json_from(timeout=5))["detail"]
    await communicator.disconnect()


async def test_acknowledge_over_the_socket_records_who_and_from_where(users):
    alert = await sync_to_async(raise_alert)()
    communicator, _, _ = await connect("/ws/alerts/", users.radiologist)

    await communicator.send_json_to({"type": "ack", "alert_id": alert.pk, "screen": "dashboard"})

    frame = await communicator.receive_json_from(timeout=5)
    assert frame["state"] == "acknowledged" and frame["acknowledged_by"] == "rad"
    stored = await sync_to_async(Alert.objects.get)(pk=alert.pk)
    assert (
        stored.acknowledged_from == "dashboard"
        and stored.acknowledged_by_id == users.radiologist.pk
    )
    assert await sync_to_async(AuditEvent.objects.filter(action="alert.acknowledge").count)() == 1
    await communicator.disconnect()


async def test_bad_frames_get_an_error_not_a_crash(users):
    communicator, _, _ = await connect("/ws/alerts/", users.radiologist)
    await communicator.send_json_to({"type": "resume", "after": "yesterday"})
    assert (await communicator.receive_json_from(timeout=5))["type"] == "error"
    await communicator.send_json_to({"type": "ack", "alert_id": 999999})
    assert (await communicator.receive_json_from(timeout=5))["type"] == "error"
    await communicator.send_json_to({"type": "resync"})
    assert await communicator.receive_nothing(timeout=0.3)  # connected, nothing open
    await communicator.disconnect()


def test_second_alert_for_the_same_study_and_finding_is_not_raised(users):
    alert = raise_alert()
    with transaction.atomic():
        again = alert_raise(study=alert.study, finding=alert.finding)

    assert again is None
    assert Alert.objects.count() == 1


def test_no_alert_for_a_study_already_being_read(users):
    item = ready_study()
    item.status, item.claimed_by = "in_progress", users.radiologist
    item.save()

    with transaction.atomic():
        assert alert_raise(study=item.study, finding="intracranial_hemorrhage") is None
    assert AuditEvent.objects.filter(action="alert.suppressed").exists()


def test_escalation_fires_after_the_target_and_not_before(users):
    alert = raise_alert()  # hemorrhage: 120 s to acknowledge
    target = alert.raised_at + timedelta(seconds=120)

    assert alerts_escalate_due(now=target - timedelta(seconds=1)) == []
    assert alerts_escalate_due(now=target) == [alert.pk]
    alert.refresh_from_db()
    assert (alert.state, alert.tier, alert.clinicians_notified) == ("escalated", 2, True)
    assert alerts_escalate_due(now=target + timedelta(minutes=5)) == []  # once
    assert AuditEvent.objects.filter(action="alert.escalate", study_id=alert.study_id).exists()


def test_acknowledged_alert_does_not_escalate(users):
    alert = raise_alert()
    alert_acknowledge(alert_id=alert.pk, user=users.radiologist, screen="dashboard")

    assert alerts_escalate_due(now=timezone.now() + timedelta(hours=1)) == []


def test_sequence_numbers_increase(users):
    seqs = [raise_alert().seq for _ in range(3)]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3


async def test_worklist_socket_pushes_item_changes(users):
    communicator, connected, _ = await connect("/ws/worklist/", users.radiologist)
    assert connected

    item = await sync_to_async(ready_study)()

    frame = await communicator.receive_json_from(timeout=5)
    assert frame["type"] == "item" and frame["item_id"] == item.pk
    await communicator.send_json_to({"type": "resync"})
    listed = await communicator.receive_json_from(timeout=5)
    assert listed["item_ids"] == [item.pk]
    await communicator.disconnect()


def test_the_inbox_names_the_patient_and_the_finding_in_words(users, clinician_in_ed, client):
    from datetime import date

    from triage.serializers import patient_summary

    alert = raise_alert()
    patient = alert.study.patient
    patient.birth_date, patient.sex = "19700615", "F"
    patient.save()
    client.force_login(users.clinician)
    page = client.get("/alerts/").content.decode()
    family, given = patient.name.split("^")
    assert f"{family}, {given} · {patient.patient_id}" in page
    assert "Suspected intracranial hemorrhage" in page and "intracranial_hemorrhage ·" not in page
    viewed = AuditEvent.objects.get(action="alerts.inbox_view")
    assert viewed.actor_id == users.clinician.pk and viewed.detail == {"studies": [alert.study_id]}
    assert patient_summary(patient, today=date(2026, 6, 14)).endswith("· 55 y · F")
    assert patient_summary(patient, today=date(2026, 6, 15)).endswith("· 56 y · F")
