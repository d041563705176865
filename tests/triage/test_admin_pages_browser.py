"""The administrator pages in a real browser: plots render, a threshold is applied with a reason."""

from __future__ import annotations

import re

import numpy as np
from playwright.sync_api import expect

from inference.registry import SHIPPED_MODELS_DIR, registry_load
from tests.conftest import PASSWORD, ROOT
from triage.findings import Finding
from triage.models import AuditEvent, ThresholdPolicy
from triage.validation import validation_run_from_scores

ARTIFACTS = ROOT / "test-artifacts"


def test_explorer_draws_curves_and_applies_a_threshold(browser, live_server, users):
    card = registry_load([SHIPPED_MODELS_DIR]).for_finding(Finding.PNEUMOTHORAX)[0]
    rng = np.random.default_rng(7)
    labels = rng.random(300) < 0.5
    scores = np.where(labels, rng.beta(6, 2, 300), rng.beta(2, 6, 300))
    validation_run_from_scores(
        card=card,
        dataset="browser test set",
        description="",
        cases=[
            (f"c{i}", bool(lab), float(s))
            for i, (lab, s) in enumerate(zip(labels, scores, strict=True))
        ],
    )
    page = browser.new_context(viewport={"width": 1920, "height": 1080}).new_page()
    page.goto(f"{live_server.url}/accounts/login/?next=/manage/thresholds/?finding=pneumothorax")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()

    plots = page.locator("svg.plot")
    expect(plots).to_have_count(3)
    for index in range(3):
        box = plots.nth(index).bounding_box()
        assert box is not None and box["width"] > 300 and box["height"] > 150
        assert plots.nth(index).locator("polyline.series").count() >= 1
    expect(page.locator("svg.plot .marker-label").first).to_contain_text("current threshold")
    expect(page.locator("#whatif")).to_contain_text("PPV")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "threshold-explorer.png", full_page=True)

    apply = page.locator("form.apply-form")
    apply.get_by_label("New threshold").fill("0.72")
    apply.get_by_label("Reason").fill("Too many alerts at night")
    apply.get_by_role("button", name="Apply threshold").click()

    expect(page.locator("#current-threshold")).to_have_text("0.72")
    expect(page.locator("table.history")).to_contain_text("Too many alerts at night")
    assert ThresholdPolicy.objects.get().value == 0.72
    assert AuditEvent.objects.filter(action="threshold.change").count() == 1

    page.goto(f"{live_server.url}/manage/analytics/")
    expect(page.locator("#analytics tbody tr")).to_have_count(4)
    expect(page.get_by_role("link", name="Download CSV")).to_be_visible()
    page.screenshot(path=ARTIFACTS / "analytics.png", full_page=True)
    assert re.search(r"Kolmogorov", page.content())
    series = page.locator("#time-series svg.plot")
    expect(series).to_have_count(4)
    for index in range(4):
        box = series.nth(index).bounding_box()
        assert box is not None and box["width"] > 300 and box["height"] > 150

    # The model inventory: every calibrated card's reliability diagram drawn; a mode changed.
    page.goto(f"{live_server.url}/manage/models/")
    diagrams = page.locator("figure[data-reliability] svg.plot")
    expect(diagrams).to_have_count(4)
    assert diagrams.first.locator("polyline.series").count() == 2  # raw and calibrated
    assert diagrams.first.locator("line.diagonal").count() == 1
    form = page.locator("#model-mode")
    form.get_by_label("Model", exact=True).select_option("pneumothorax-demo")
    form.get_by_label("Mode", exact=True).select_option("shadow")
    form.get_by_label("Reason", exact=True).fill("trial on the new DR room")
    form.get_by_role("button", name="Change").click()
    expect(page.locator('tr[data-model="pneumothorax-demo"] td.mode')).to_contain_text("shadow")
    expect(page.locator('tr[data-model="pneumothorax-demo"] td.mode')).to_contain_text(
        "trial on the new DR room"
    )
    page.screenshot(path=ARTIFACTS / "models.png", full_page=True)
    assert AuditEvent.objects.filter(action="model.mode").count() == 1
