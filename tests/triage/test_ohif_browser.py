"""OHIF Viewer (the built `dist/` of the `@ohif/app` npm package, fetched by the bootstrap)
opens a study from our DICOMweb server in Chromium: served beside the product on one origin
(tests/ohif_site.py plays the site's reverse proxy) with `deploy/ohif/app-config.js`, signed in
with the product's session. The viewport must show the image: pixels on its canvas."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pydicom
import pytest
from django.conf import settings
from django.test import Client
from playwright.sync_api import expect

from bench.peers import free_port, port_wait
from tests.conftest import ROOT, asgi_server_start, process_stop
from tests.triage.test_pages_browser import ARTIFACTS
from tests.worklist.test_ingest_service import ingest_file
from triage.models import AuditEvent
from worklist.dicom.synthetic import StudySpec, write_study
from worklist.models import Study

OHIF_DIST = ROOT / "var" / "ohif" / "dist"


@pytest.fixture
def ohif_site(transactional_db, tmp_path):
    if not (OHIF_DIST / "index.html").is_file():
        if os.environ.get("CI") == "true":
            pytest.fail(f"OHIF is not installed at {OHIF_DIST}: run deploy/bootstrap-dev.sh --test")
        pytest.skip("OHIF not fetched (deploy/bootstrap-dev.sh --test fetches it)")
    web, product_port = asgi_server_start(tmp_path)
    port = free_port()
    log = open(tmp_path / "ohif-site.log", "wb")  # noqa: SIM115 - lives as long as the process
    site = subprocess.Popen(
        [sys.executable, "-m", "tests.ohif_site", str(port), str(OHIF_DIST),
         str(ROOT / "deploy" / "ohif" / "app-config.js"), str(product_port)],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    port_wait(port, process=site)
    yield f"http://127.0.0.1:{port}"
    process_stop(site)
    process_stop(web)


def test_ohif_opens_a_study_from_our_dicomweb(ohif_site, browser, users, tmp_path):
    paths = write_study(StudySpec(slices=8, rows=256, columns=256), seed=61, out_dir=tmp_path)
    for path in paths:  # air on the left half, bone on the right: what the viewer must show
        ds = pydicom.dcmread(path)
        pixels = np.zeros((256, 256), dtype=np.uint16)
        pixels[:, 128:] = 2024  # stored + intercept -1024 = 1000 HU
        ds.PixelData = pixels.tobytes()
        ds.save_as(path)
        assert ingest_file(path).status == 0
    uid = str(pydicom.dcmread(paths[0], stop_before_pixels=True).StudyInstanceUID)
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    context.set_default_timeout(60_000)
    page = context.new_page()
    try:
        # Signed in as the radiologist: the session the product's sign-in would give (the
        # server process checks passwords with the production hasher, the tests use a fast one).
        client = Client()
        client.force_login(users.radiologist)
        session = client.cookies[settings.SESSION_COOKIE_NAME].value
        context.add_cookies(
            [{"name": settings.SESSION_COOKIE_NAME, "url": ohif_site, "value": session}]
        )
        page.goto(f"{ohif_site}/viewer?StudyInstanceUIDs={uid}")
        canvas = page.locator(".cornerstone-canvas").first
        expect(canvas).to_be_visible()
        # The image is drawn as stored: dark on its left half, bright on its right (the canvas
        # is wider than high; the square image sits in its middle).
        page.wait_for_function(
            "() => { const c = document.querySelector('.cornerstone-canvas');"
            " if (!c || !c.width) return false;"
            " const g = c.getContext('2d'), y = Math.floor(c.height / 2), q = c.height / 4;"
            " const left = g.getImageData(Math.floor(c.width / 2 - q), y, 1, 1).data[0];"
            " const right = g.getImageData(Math.floor(c.width / 2 + q), y, 1, 1).data[0];"
            " return left < 40 && right > 200; }"
        )
        page.screenshot(path=str(ARTIFACTS / "ohif-viewer.png"))
    finally:
        context.close()
    study = Study.objects.get(study_instance_uid=uid)
    # OHIF's requests were the signed-in radiologist's, audited as ours are.
    for action in ("dicomweb.query", "dicomweb.metadata", "dicomweb.frames"):
        assert AuditEvent.objects.filter(
            study_id=study.pk, actor_id=users.radiologist.pk, action=action
        ).exists(), action
