"""Drill: the ASGI server killed (SIGKILL, as a crash or a host lost) and started again on its
port, with a radiologist's dashboard open in a real browser. The dashboard says it is
reconnecting, comes back by itself (no reload), shows the alert raised while the server was
down and the study that arrived meanwhile, and is live again for the next alert."""

from __future__ import annotations

import signal
import threading

import pytest
from django.db import connection, transaction
from playwright.sync_api import expect

from tests.conftest import asgi_server_start, process_stop
from tests.factories import ready_study
from tests.triage.test_live_e2e import sign_in
from triage.alerts import alert_raise
from triage.models import Alert


def _flag(location: str) -> Alert:
    """A flagged study, raised as a worker would: in a thread of its own (this one runs the
    browser's event loop, where the broadcast's async_to_sync refuses to run)."""
    raised: list[Alert | None] = []

    def work() -> None:
        try:
            item = ready_study(location=location, is_emergency=True)
            with transaction.atomic():
                raised.append(alert_raise(study=item.study, finding="intracranial_hemorrhage"))
        finally:
            connection.close()

    worker = threading.Thread(target=work)
    worker.start()
    worker.join(timeout=30)
    assert raised and raised[0] is not None
    return raised[0]


@pytest.mark.drill
def test_dashboards_reconnect_and_resync_after_the_asgi_server_restarts(
    browser, transactional_db, users, tmp_path
):
    web, port = asgi_server_start(tmp_path)
    base = f"http://localhost:{port}"
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        sign_in(page, base, users.radiologist, "/worklist/")
        connection = page.locator("#connection")
        expect(connection).to_have_text("● Live")
        before = _flag("ED-RESUS-1")
        banner = page.locator("#alert-banner section.critical")
        expect(banner).to_have_count(1)
        page.evaluate("window.sameDocument = true")  # gone if the page reloads

        web.send_signal(signal.SIGKILL)
        web.wait(timeout=10)
        expect(connection).to_have_text("○ Reconnecting…")
        during = _flag("ED-MAJORS-2")  # its push had no server to go through

        web, _ = asgi_server_start(tmp_path, port=port)
        expect(connection).to_have_text("● Live", timeout=30_000)
        expect(banner).to_have_count(2)  # the missed alert, by resume; the first not twice
        for alert in (before, during):
            expect(page.locator(f'#worklist tr[data-study-uid="{alert.study.study_instance_uid}"]')
                   ).to_be_visible()  # fmt: skip
        assert page.evaluate("window.sameDocument === true")

        _flag("ED-RESUS-3")  # live again: by its push
        expect(banner).to_have_count(3)
        assert Alert.objects.count() == 3
    finally:
        context.close()
        process_stop(web)
