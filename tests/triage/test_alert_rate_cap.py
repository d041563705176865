"""The per-recipient rate cap: excess alerts are listed quietly and rolled into one digest."""

from __future__ import annotations

from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from tests.triage.test_alerts import connect, raise_alert
from triage.alerts import alert_resolve, alerts_escalate_due
from triage.deliveries import alert_digests_send_due
from triage.models import AlertDelivery, AlertDigest, AuditEvent, StaffProfile

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def cap_of_two(settings):
    settings.ALERT_RATE_CAP = 2
    settings.ALERT_RATE_WINDOW_MINUTES = 15


async def test_third_alert_in_the_window_is_listed_quietly_then_sent_in_one_digest(
    users, cap_of_two
):
    socket, connected, _ = await connect("/ws/alerts/", users.radiologist)
    assert connected
    alerts = [await sync_to_async(raise_alert)() for _ in range(4)]

    frames = [await socket.receive_json_from(timeout=5) for _ in alerts]
    assert [frame["seq"] for frame in frames] == [alert.seq for alert in alerts]
    # The first two interrupt; the rest are on the list at once, without banner or sound.
    assert [frame["delivery"] for frame in frames] == [
        "immediate",
        "immediate",
        "digest",
        "digest",
    ]

    deliveries = await sync_to_async(
        lambda: list(
            AlertDelivery.objects.filter(user=users.radiologist)
            .order_by("alert__seq")
            .values_list("mode", "digest_id")
        )
    )()
    modes = [mode for mode, _ in deliveries]
    assert modes == ["immediate", "immediate", "digest", "digest"]
    digest_ids = {digest_id for mode, digest_id in deliveries if mode == "digest"}
    assert len(digest_ids) == 1  # both held alerts roll into one digest
    held_audit = await sync_to_async(
        lambda: list(
            AuditEvent.objects.filter(action="alert.held").values_list("detail", flat=True)
        )
    )()
    recipient_entries = [d for d in held_audit if d["recipient_id"] == users.radiologist.pk]
    assert sorted(d["seq"] for d in recipient_entries) == [alerts[2].seq, alerts[3].seq]
    assert all("rate cap: 2 alerts per 15 min" in d["reason"] for d in recipient_entries)

    # Not before its window has passed...
    assert await sync_to_async(alert_digests_send_due)() == []
    assert await socket.receive_nothing(timeout=0.5)
    # ...then once, as one notification naming both held alerts.
    later = timezone.now() + timedelta(minutes=16)
    sent = await sync_to_async(alert_digests_send_due)(now=later)
    assert digest_ids <= set(sent) and len(sent) == 3  # radiologists on duty, administrator
    digest = await socket.receive_json_from(timeout=5)
    assert digest["type"] == "digest" and digest["digest_id"] in digest_ids
    assert [item["seq"] for item in digest["alerts"]] == [alerts[2].seq, alerts[3].seq]
    assert (digest["rate_cap"], digest["window_minutes"]) == (2, 15)
    assert await sync_to_async(alert_digests_send_due)(now=later) == []  # sent once
    assert await socket.receive_nothing(timeout=0.5)
    audit = await sync_to_async(
        lambda: AuditEvent.objects.get(
            action="alert.digest", detail__recipient_id=users.radiologist.pk
        )
    )()
    assert audit.detail["seqs"] == [alerts[2].seq, alerts[3].seq]
    await socket.disconnect()


async def test_the_cap_counts_per_recipient(users, cap_of_two):
    """The administrator sees the same alerts; the cap is counted for each person separately."""
    await sync_to_async(StaffProfile.objects.create)(user=users.radiologist, on_duty=False)
    for _ in range(3):
        await sync_to_async(raise_alert)()
    held = await sync_to_async(
        lambda: sorted(
            AlertDelivery.objects.filter(mode="digest").values_list("user__username", flat=True)
        )
    )()
    assert held == sorted([users.administrator.username, users.radiologist2.username])
    assert not await sync_to_async(
        AlertDelivery.objects.filter(user=users.radiologist).exists
    )()  # off duty: not a recipient at tier 1


async def test_a_held_alert_still_escalates_loudly(users, cap_of_two):
    for _ in range(2):
        await sync_to_async(raise_alert)()
    held = await sync_to_async(raise_alert)()
    socket, _, _ = await connect("/ws/alerts/", users.radiologist)
    await socket.send_json_to({"type": "resync"})
    frames = [await socket.receive_json_from(timeout=5) for _ in range(3)]
    assert {f["seq"]: f["delivery"] for f in frames}[held.seq] == "digest"

    await sync_to_async(alerts_escalate_due)(now=timezone.now() + timedelta(hours=1))

    escalated = {}
    for _ in range(3):
        frame = await socket.receive_json_from(timeout=5)
        escalated[frame["seq"]] = frame
    assert escalated[held.seq]["state"] == "escalated"
    assert escalated[held.seq]["delivery"] == "immediate"
    await socket.disconnect()


def test_clinicians_told_after_confirmation_are_capped_too(users, cap_of_two):
    StaffProfile.objects.create(user=users.clinician, locations="ED")
    alerts = [raise_alert(finding="pulmonary_embolism") for _ in range(3)]  # confirm first
    assert not AlertDelivery.objects.filter(user=users.clinician).exists()
    for alert in alerts:
        alert_resolve(alert_id=alert.pk, user=users.radiologist, confirmed=True)
    modes = list(
        AlertDelivery.objects.filter(user=users.clinician)
        .order_by("alert__seq")
        .values_list("mode", flat=True)
    )
    assert modes == ["immediate", "immediate", "digest"]


def test_cap_zero_turns_it_off(users, settings):
    settings.ALERT_RATE_CAP = 0
    for _ in range(5):
        raise_alert()
    assert not AlertDelivery.objects.filter(mode="digest").exists()
    assert not AlertDigest.objects.exists()
    assert AlertDelivery.objects.filter(user=users.radiologist, mode="immediate").count() == 5


def test_analytics_count_the_held_deliveries(users, cap_of_two):
    from triage.analytics import finding_analytics

    for _ in range(3):
        raise_alert()
    row = finding_analytics(
        finding="intracranial_hemorrhage",
        since=timezone.now() - timedelta(days=1),
        until=timezone.now() + timedelta(minutes=1),
    )
    # Three recipients (two radiologists on duty, the administrator), each held once.
    assert (row.alerts, row.held_for_digest) == (3, 3)
    assert (
        finding_analytics(
            finding="pneumothorax",
            since=timezone.now() - timedelta(days=1),
            until=timezone.now() + timedelta(minutes=1),
        ).held_for_digest
        == 0
    )


async def test_a_dashboard_that_connects_later_is_sent_the_last_windows_digests(users, cap_of_two):
    for _ in range(3):
        await sync_to_async(raise_alert)()
    await sync_to_async(alert_digests_send_due)(now=timezone.now() + timedelta(minutes=16))

    socket, _, _ = await connect("/ws/alerts/", users.radiologist)
    await socket.send_json_to({"type": "resync"})
    frames = [await socket.receive_json_from(timeout=5) for _ in range(4)]
    digests = [frame for frame in frames if frame["type"] == "digest"]
    assert len(digests) == 1 and len(digests[0]["alerts"]) == 1
    await socket.disconnect()
