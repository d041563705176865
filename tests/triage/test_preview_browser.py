"""The preview viewer in a real browser (Playwright driving Debian's Chromium): the key slice
opens first, the arrow keys scroll, a preset changes the window, each slice's heat map
toggles, and the pixels on screen change accordingly; screenshots at 1920x1080 and at tablet
size. A clinician opens it from the inbox's key image, for their location only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from django.db import transaction
from django.utils import timezone
from playwright.sync_api import Page, expect

from inference.models import InferenceRun
from inference.pipeline import activation_maps_bytes, heat_map_png
from inference.selectors import activation_maps_path
from tests.triage.test_pages_browser import ARTIFACTS, sign_in
from tests.worklist.test_ingest_service import ingest_file
from triage.alerts import alert_raise
from triage.models import AuditEvent, StaffProfile
from worklist import storage
from worklist.dicom.synthetic import StudySpec, write_study
from worklist.models import Instance, Study
from worklist.services.studies import study_mark_ready_now

KEY = 4


def flagged_study(tmp_path: Path) -> Study:
    paths = write_study(StudySpec(slices=10, rows=128, columns=128), seed=51, out_dir=tmp_path)
    for index, path in enumerate(paths):
        ds = pydicom.dcmread(path)
        ds.InstanceNumber = index + 1
        ds.save_as(path)
        assert ingest_file(path).status == 0
    study = Study.objects.get(study_instance_uid=pydicom.dcmread(paths[0]).StudyInstanceUID)
    study_mark_ready_now(study_id=study.pk)
    series = study.series.get()
    key = Instance.objects.get(series=series, instance_number=KEY + 1)
    run = InferenceRun.objects.create(
        study=study, finding="intracranial_hemorrhage", model_name="ich-demo",
        model_version="1.0.0", model_sha256="0" * 64, series=series, series_set="s",
        state="complete", score=0.97, threshold=0.5, flagged=True, key_instance=key,
        queued_at=timezone.now(),
        slice_scores=[[i.sop_instance_uid, {2: 0.6, KEY: 0.97, 7: 0.8}.get(n, 0.1)]
                      for n, i in enumerate(series.instances.order_by("instance_number"))],
    )  # fmt: skip
    relative = storage.result_relative_path(
        study_uid=study.study_instance_uid, run_id=run.pk, suffix=".png"
    )
    target = storage.storage_path(relative)
    target.parent.mkdir(parents=True, exist_ok=True)
    activation = np.zeros((16, 16))
    activation[4:9, 4:9] = 1.0
    target.write_bytes(heat_map_png(np.full((128, 128), 0.4), activation))
    run.heatmap_path = relative
    run.save(update_fields=["heatmap_path"])
    # Per-slice maps: a hot block on the key slice, another place on slice 7, nothing elsewhere.
    maps = np.zeros((10, 8, 8), dtype=np.float32)
    maps[KEY, 2:5, 2:5] = 1.0
    maps[7, 5:8, 5:8] = 0.8
    storage.storage_path(activation_maps_path(run)).write_bytes(activation_maps_bytes(maps))
    return study


def uid_at(study: Study, index: int) -> str:
    series = study.series.get()
    return str(series.instances.order_by("instance_number")[index].sop_instance_uid)


def frame_pixels(page: Page) -> bytes:
    page.wait_for_function(
        "() => { const f = document.getElementById('frame');"
        " const h = document.getElementById('heatmap');"
        " const overlay = !h || h.hidden || (h.complete && h.naturalWidth > 0);"
        " return f.complete && f.naturalWidth > 0 && overlay; }"
    )  # the frame and, when shown, its overlay loaded (on a loaded machine it came later)
    return page.locator("#stage").screenshot()


@pytest.mark.parametrize("size", [(1920, 1080), (820, 1180)], ids=["desktop", "tablet"])
def test_preview_scrolls_windows_and_overlays_the_heat_map(
    browser, live_server, users, tmp_path, size
):
    study = flagged_study(tmp_path)
    context = browser.new_context(viewport={"width": size[0], "height": size[1]})
    context.set_default_timeout(10_000)
    page = context.new_page()
    try:
        sign_in(page, live_server.url, "rad")
        page.goto(f"{live_server.url}/worklist/studies/{study.pk}/")
        page.get_by_role("link", name="Open in viewer").evaluate("a => a.removeAttribute('target')")
        page.get_by_role("link", name="Open in viewer").click()
        expect(page.locator("#preview-notice")).to_contain_text("NOT FOR DIAGNOSIS")
        expect(page.locator("#preview-notice")).to_contain_text("demonstration model")
        preview = page.locator("#preview")
        expect(preview).to_have_attribute("data-index", str(KEY))  # the key slice first
        expect(page.locator("#heatmap")).to_be_visible()
        with_heat = frame_pixels(page)
        page.screenshot(path=str(ARTIFACTS / f"preview-{size[0]}x{size[1]}.png"))
        page.locator("#heat-toggle").uncheck()
        expect(page.locator("#heatmap")).to_be_hidden()
        key_slice = frame_pixels(page)
        assert key_slice != with_heat  # the overlay was on screen
        preview.press("ArrowDown")
        expect(preview).to_have_attribute("data-index", str(KEY + 1))
        expect(page.locator("#slice-number")).to_have_text(str(KEY + 2))
        next_slice = frame_pixels(page)
        assert next_slice != key_slice
        page.locator("#heat-toggle").check()  # the heat map follows the slice shown
        page.wait_for_function(
            "() => { const h = document.getElementById('heatmap');"
            f" return !h.hidden && h.complete && h.src.includes('{uid_at(study, KEY + 1)}'); }}"
        )
        page.locator("#heat-toggle").uncheck()
        page.get_by_role("button", name="Subdural").click()
        page.wait_for_function(
            "() => document.getElementById('frame').src.includes('window=75,215')"
        )
        assert frame_pixels(page) != next_slice  # another window, other pixels
        page.get_by_role("button", name=f"Key slice ({KEY + 1})").click()
        expect(preview).to_have_attribute("data-index", str(KEY))
        # The slices scored at or above the threshold, in stack order: 2, 4 (key), 7.
        expect(preview).to_have_attribute("data-suspicious", "2,4,7")
        page.get_by_role("button", name="Next suspicious slice").click()
        expect(preview).to_have_attribute("data-index", "7")
        plain_seven = frame_pixels(page)
        page.locator("#heat-toggle").check()
        page.wait_for_function(
            "() => { const h = document.getElementById('heatmap');"
            f" return !h.hidden && h.complete && h.src.includes('{uid_at(study, 7)}'); }}"
        )
        assert frame_pixels(page) != plain_seven  # slice 7's own heat map is on screen
        page.locator("#heat-toggle").uncheck()
        page.get_by_role("button", name="Next suspicious slice").click()
        expect(preview).to_have_attribute("data-index", "2")  # wrapped round
        assert AuditEvent.objects.filter(
            action="study.view", channel="viewer", study_id=study.pk
        ).exists()
        assert AuditEvent.objects.filter(action="dicomweb.rendered", study_id=study.pk).exists()
    finally:
        context.close()


def test_a_clinician_opens_the_preview_from_the_inbox_for_their_location_only(
    browser, live_server, users, tmp_path, client
):
    study = flagged_study(tmp_path)
    Study.objects.filter(pk=study.pk).update(patient_location="ED-MAJORS-3")
    with transaction.atomic():
        alert = alert_raise(
            study=study, finding="intracranial_hemorrhage", run=study.inference_runs.get()
        )
    assert alert is not None
    alert.clinicians_notified = True
    alert.save(update_fields=["clinicians_notified"])
    StaffProfile.objects.create(user=users.clinician, locations="ED")
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    page = context.new_page()
    try:
        sign_in(page, live_server.url, "clin")
        page.goto(f"{live_server.url}/alerts/")
        key_image = page.get_by_role("img", name="Key image with the model's heat map")
        expect(key_image).to_be_visible()
        page.wait_for_function("() => document.querySelector('img.key-image').naturalWidth > 0")
        key_image.click()
        expect(page.locator("#preview-notice")).to_contain_text("NOT FOR DIAGNOSIS")
        expect(page.locator("#preview")).to_have_attribute("data-index", str(KEY))
        page.wait_for_function(
            "() => { const h = document.getElementById('heatmap');"
            " return !h.hidden && h.complete && h.naturalWidth > 0; }"
        )
        expect(page.get_by_role("link", name="Back to the alerts")).to_be_visible()
    finally:
        context.close()
    # Another location's clinician is told nothing exists (page, heat maps, DICOMweb).
    StaffProfile.objects.filter(user=users.clinician).update(locations="ICU")
    client.force_login(users.clinician)
    run = study.inference_runs.get()
    assert client.get(f"/worklist/studies/{study.pk}/preview/").status_code == 404
    assert AuditEvent.objects.filter(
        action="access.denied", study_id=study.pk, detail__reason="location"
    ).exists()
    assert client.get(f"/api/studies/{study.pk}/runs/{run.pk}/heatmap.png").status_code == 404
    assert (
        client.get(
            f"/api/studies/{study.pk}/runs/{run.pk}/heatmaps/{uid_at(study, KEY)}.png"
        ).status_code
        == 404
    )
    assert client.get(f"/dicomweb/studies/{study.study_instance_uid}/series").status_code == 404
