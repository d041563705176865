"""The server-rendered pages in a real browser (Playwright driving Debian's Chromium).

One headless Chromium is shared by the module; each test gets a fresh browser context
(no cookies carried over). Pages are served by pytest-django's `live_server`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from tests.conftest import PASSWORD
from tests.factories import ready_study
from triage.models import AuditEvent
from triage.reading import worklist_item_claim, worklist_item_mark_read

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

COUNTDOWN = re.compile(r"^\d+:\d{2}$")


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1920, "height": 1080})
    context.set_default_timeout(5_000)
    tab = context.new_page()
    yield tab
    context.close()


def sign_in(page: Page, base_url: str, username: str, password: str = PASSWORD) -> None:
    """Open the worklist, get sent to the login form, and fill it in."""
    page.goto(f"{base_url}/worklist/")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next="))
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()


def row(page: Page, item_id: int) -> Locator:
    return page.locator(f'#worklist tbody tr[data-item-id="{item_id}"]')


def status_cell(page: Page, item_id: int) -> Locator:
    """The Status column of an item's row."""
    return row(page, item_id).locator("td").nth(7)


def test_radiologist_signs_in_claims_and_reads_from_the_worklist(page, live_server, users):
    """A radiologist signs in through the form and lands on the worklist, which lists
    studies most urgent first (STAT before ED before ROUTINE) with a live m:ss countdown
    and the demonstration-model notice; Claim turns the row "In progress · rad" with a
    "Mark read" button, and Mark read turns it "read"."""
    routine = ready_study(priority="ROUTINE", modality="CR")
    stat = ready_study(priority="STAT", modality="CT")
    ed = ready_study(is_emergency=True, location="ED RESUS 2", modality="CT")

    sign_in(page, live_server.url, "rad")

    expect(page).to_have_url(f"{live_server.url}/worklist/")
    expect(page.get_by_role("heading", name="Reading worklist")).to_be_visible()
    expect(page.locator("header .who")).to_have_text("rad")
    order = page.locator("#worklist tbody tr").evaluate_all(
        "rows => rows.map(r => Number(r.dataset.itemId))"
    )
    assert order == [stat.pk, ed.pk, routine.pk]
    expect(row(page, stat.pk).locator("td").nth(4)).to_have_text("STAT")
    # The ED tag sits beside the priority, a column that stays visible at tablet width.
    expect(row(page, ed.pk).locator("td").nth(4)).to_contain_text("ED")

    # A STAT study received a minute ago is due in about 29 minutes: "28:59" and so on,
    # not the server-rendered "H:i" clock time the script replaces.
    countdown = row(page, stat.pk).locator("time.countdown")
    expect(countdown).to_have_text(COUNTDOWN)
    first = countdown.inner_text()
    assert 25 <= int(first.split(":")[0]) < 30, first
    expect(countdown).not_to_have_text(first, timeout=2_500)
    expect(countdown).to_have_text(COUNTDOWN)
    expect(page.locator("footer")).to_contain_text(
        "demonstration models trained on synthetic phantoms"
    )

    row(page, stat.pk).get_by_role("button", name="Claim").click()
    expect(status_cell(page, stat.pk)).to_have_text("In progress · rad")
    expect(row(page, stat.pk).get_by_role("button", name="Mark read")).to_be_visible()
    expect(row(page, stat.pk).get_by_role("button", name="Claim")).to_have_count(0)
    expect(row(page, ed.pk).get_by_role("button", name="Claim")).to_be_visible()

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "worklist-1920.png", full_page=True)

    row(page, stat.pk).get_by_role("button", name="Mark read").click()
    expect(status_cell(page, stat.pk)).to_have_text(re.compile(r"^read · rad$", re.IGNORECASE))
    expect(row(page, stat.pk).get_by_role("button")).to_have_count(0)

    page.set_viewport_size({"width": 820, "height": 1180})
    page.screenshot(path=ARTIFACTS / "worklist-tablet.png", full_page=True)


def test_the_status_filter_applies_when_chosen_under_the_pages_csp(page, live_server, users):
    """Choosing a status reloads the worklist with only those studies; nothing on the page is
    refused by its Content-Security-Policy (an inline handler would be, silently)."""
    unread = ready_study(priority="STAT", modality="CT")
    done = ready_study(priority="ROUTINE", modality="CR")
    worklist_item_claim(item_id=done.pk, user_id=users.radiologist.pk, channel="test")
    worklist_item_mark_read(item_id=done.pk, user_id=users.radiologist.pk, channel="test")
    refused: list[str] = []
    page.on(
        "console",
        lambda message: (
            refused.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    sign_in(page, live_server.url, "rad")
    expect(row(page, unread.pk)).to_be_visible()

    page.get_by_label("Status").select_option("read")

    expect(page).to_have_url(re.compile(r"/worklist/\?status=read$"))
    expect(row(page, done.pk)).to_be_visible()
    expect(row(page, unread.pk)).to_have_count(0)
    assert refused == []


def test_second_radiologist_cannot_claim_a_study_someone_holds(page, live_server, users):
    """When rad holds a study, rad2 sees it as "In progress · rad" with no Claim (or
    Mark read) button on that row, while a free study still offers Claim."""
    held = ready_study(priority="STAT")
    free = ready_study(priority="ROUTINE")
    worklist_item_claim(item_id=held.pk, user_id=users.radiologist.pk, channel="page")

    sign_in(page, live_server.url, "rad2")

    expect(status_cell(page, held.pk)).to_have_text("In progress · rad")
    expect(row(page, held.pk).get_by_role("button")).to_have_count(0)
    expect(row(page, free.pk).get_by_role("button", name="Claim")).to_be_visible()


def test_claim_is_reachable_and_usable_from_the_keyboard(page, live_server, users):
    """After signing in, pressing Tab eventually focuses the row's Claim button, and
    pressing Enter claims the study."""
    item = ready_study(priority="STAT")
    sign_in(page, live_server.url, "rad")
    claim = row(page, item.pk).get_by_role("button", name="Claim")
    expect(claim).to_be_visible()

    for _ in range(15):
        page.keyboard.press("Tab")
        if claim.evaluate("button => button === document.activeElement"):
            break
    expect(claim).to_be_focused()
    page.keyboard.press("Enter")

    expect(status_cell(page, item.pk)).to_have_text("In progress · rad")


def test_clinician_is_refused_the_worklist_and_a_wrong_password_is_reported(
    page, live_server, users
):
    """A wrong password keeps the user on the sign-in form with a "did not match"
    message; a clinician who signs in correctly gets a 403 for the worklist."""
    sign_in(page, live_server.url, "clin", "not-the-password")
    expect(page).to_have_url(re.compile(r"/accounts/login/"))
    expect(page.get_by_role("alert")).to_contain_text("did not match")

    page.get_by_label("Username").fill("clin")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()

    response = page.goto(f"{live_server.url}/worklist/")
    assert response is not None and response.status == 403
    expect(page.locator("body")).to_contain_text("403")
    expect(page.locator("#worklist")).to_have_count(0)


def test_accession_link_opens_the_study_page_and_the_view_is_audited(page, live_server, users):
    """Following a row's accession link opens that study's page, and the view is
    recorded as a "study.view" audit event on the "page" channel for that user."""
    item = ready_study(priority="HIGH", modality="MR")
    accession = item.study.accession_number
    sign_in(page, live_server.url, "rad")

    row(page, item.pk).get_by_role("link", name=accession).click()

    expect(page).to_have_url(f"{live_server.url}/worklist/studies/{item.study_id}/")
    expect(page).to_have_title(re.compile(rf"^Study {accession}\b"))
    expect(page.locator("dl.facts")).to_contain_text(accession)
    expect(page.locator("dl.facts")).to_contain_text(item.study.study_instance_uid)
    assert AuditEvent.objects.filter(
        action="study.view",
        channel="page",
        actor=users.radiologist,
        study_id=item.study_id,
    ).exists()


@pytest.mark.parametrize(
    "path", ["/static/../triage/config/settings.py", "/static/worklist/../../../manage.py"]
)
def test_a_static_path_that_leaves_the_static_folders_is_not_found(asgi_server, path):
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", asgi_server, timeout=10)
    connection.request("GET", path, headers={"Host": "localhost"})
    response = connection.getresponse()
    body = response.read()

    assert response.status == 404
    assert b"SECRET_KEY" not in body
    connection.close()
