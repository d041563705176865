"""The rate cap as a radiologist sees it: one banner, the excess listed quietly, then a digest."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from tests.conftest import ROOT, asgi_server_start, process_stop
from tests.triage.test_alerts import raise_alert
from tests.triage.test_live_e2e import sign_in
from triage.deliveries import alert_digests_send_due
from triage.models import StaffProfile

ARTIFACTS = ROOT / "test-artifacts"


def off_loop(function: Callable[..., Any], **kwargs: Any) -> Any:
    """Run a service in another thread: Playwright's event loop owns this one, and the
    broadcast after commit must not run inside it."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(function, **kwargs).result()


@pytest.mark.django_db(transaction=True)
def test_alerts_over_the_cap_are_listed_quietly_then_digested(browser, users, settings, tmp_path):
    settings.ALERT_RATE_CAP = 1  # decisions are made where alerts are raised: this process
    settings.ALERT_RATE_WINDOW_MINUTES = 15
    server, port = asgi_server_start(
        tmp_path, extra_env={"ALERT_RATE_CAP": "1", "ALERT_RATE_WINDOW_MINUTES": "15"}
    )
    try:
        base = f"http://localhost:{port}"
        context = browser.new_context(viewport={"width": 1920, "height": 1080})
        page = context.new_page()
        page.set_default_timeout(20_000)
        sign_in(page, base, users.radiologist, "/worklist/")
        expect(page.locator("#connection")).to_have_text("● Live")
        # The ED clinician hears of hemorrhage alerts at once, and is capped too.
        StaffProfile.objects.create(user=users.clinician, locations="ED")
        tablet = browser.new_context(viewport={"width": 820, "height": 1180})
        inbox = tablet.new_page()
        inbox.set_default_timeout(20_000)
        sign_in(inbox, base, users.clinician, "/alerts/")
        expect(inbox.locator("#connection")).to_have_text("● Live")

        first, second, third = (
            off_loop(raise_alert, location=location)
            for location in ("ED-RESUS-1", "ED-MAJ-4", "ED-MAJ-5")
        )
        accessions = [alert.study.accession_number for alert in (first, second, third)]
        assert all(accessions) and len(set(accessions)) == 3

        loud = page.locator("#alert-banner section.critical")
        expect(loud).to_have_count(1)
        expect(loud).to_contain_text(accessions[0])
        held = page.locator("#alert-banner section.held")
        expect(held).to_contain_text("2 more alerts listed quietly (rate cap)")
        expect(held).to_contain_text(accessions[1])
        expect(held).to_contain_text(accessions[2])

        open_rows = inbox.locator("#inbox li.open")
        expect(open_rows).to_have_count(3)
        expect(inbox.locator("#inbox li.open.held")).to_have_count(2)
        expect(inbox.locator("#inbox li.open.held").first).to_contain_text("Listed quietly")

        off_loop(alert_digests_send_due, now=timezone.now() + timedelta(minutes=16))
        digest = page.locator("#alert-banner section.digest")
        expect(digest).to_contain_text("Digest: 2 alerts held by the rate cap (1 per 15 min)")
        expect(digest.locator("li")).to_have_count(2)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=ARTIFACTS / "dashboard-digest-1920.png")
        inbox_digest = inbox.locator("#digest-box section.digest")
        expect(inbox_digest).to_contain_text("Digest: 2 alerts held by the rate cap")
        expect(inbox_digest.locator("li")).to_have_count(2)
        expect(inbox_digest.locator("a")).to_have_count(0)  # study pages are not for clinicians
        inbox.screenshot(path=ARTIFACTS / "inbox-digest-tablet.png")

        # Acknowledging a quietly listed alert works like any other.
        held.get_by_role("button", name="Acknowledge").first.click()
        expect(held).to_contain_text("1 more alert listed quietly")
        expect(loud).to_contain_text(accessions[0])
        context.close()
        tablet.close()
    finally:
        process_stop(server)
