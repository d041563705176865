"""The local validation loop on a shifted site, end to end: the site's head CTs carry bleeds
30 HU less dense than the training phantoms' (older blood, anaemic patients), so the shipped
operating point misses positives. The administrator validates on half of the site's labelled
studies (`validate_model`), asks the explorer for the operating point of a target sensitivity,
applies it with a reason; the other half then reaches the target at that threshold, and the next
live study like the ones missed is flagged by the real worker."""

from __future__ import annotations

import csv
import re
from io import StringIO
from pathlib import Path

import numpy as np
import pydicom
from django.core.management import call_command
from django.urls import reverse
from pydicom.uid import generate_uid

from inference.models import InferenceRun
from inference.phantoms.study import phantom_generate
from inference.phantoms.writer import phantom_write
from inference.registry import registry_current
from tests.worklist.test_dicom_listener import wait_until
from tests.worklist.test_ingest_service import ingest_file
from triage.arrivals import study_ready_now
from triage.findings import Finding
from triage.models import AuditEvent, ThresholdPolicy, ValidationRun
from triage.selectors import validation_arrays
from worklist.models import Study

ICH = Finding.INTRACRANIAL_HEMORRHAGE
SHIFT_HU = 30.0  # bleeds this much less dense than the training phantoms'
SEEDS = range(8_400_000, 8_400_032)  # never used in training (held-out seeds start at 9_000_000)
TARGET = 0.85


def site_studies_write(root: Path) -> None:
    """32 labelled head CTs of the shifted site, alternately positive and negative, in two
    halves of 8 positives and 8 negatives: root/tune and root/check, each with its labels.csv."""
    rows: dict[str, list[tuple[str, int]]] = {"tune": [], "check": []}
    for index, seed in enumerate(SEEDS):
        positive = index % 2 == 0
        half = "tune" if (index // 2) % 2 == 0 else "check"
        study = phantom_generate(ICH, positive=positive, seed=seed)
        study.pixels[study.lesion_mask] -= SHIFT_HU
        case = f"site-{seed}"
        phantom_write(study, out_dir=root / half / case, seed=seed, transfer_syntax="explicit")
        rows[half].append((case, int(positive)))
    for half, labels in rows.items():
        with open(root / half / "labels.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["study", "label"])
            writer.writerows(labels)


def live_arrival(folder: Path) -> Study:
    """One of the site's studies arriving live from the ED (new UIDs), made ready: the worker
    routes and scores it."""
    study_uid, series_uid = generate_uid(), generate_uid()
    study_id = None
    for path in sorted(folder.glob("*.dcm")):
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.CurrentPatientLocation = "ED-MAJORS-2"
        copy = folder.parent / f"{folder.name}-live" / f"{ds.SOPInstanceUID}.dcm"
        copy.parent.mkdir(exist_ok=True)
        ds.save_as(copy, enforce_file_format=True)
        result = ingest_file(copy)
        assert result.status == 0
        study_id = result.study_id
    assert study_id is not None
    study_ready_now(study_id=study_id)
    return Study.objects.get(pk=study_id)


def live_result(study: Study) -> InferenceRun:
    def finished() -> InferenceRun | None:
        return InferenceRun.objects.filter(
            study=study, state=InferenceRun.State.COMPLETE, current=True
        ).first()

    return wait_until(finished, timeout=90)


def test_tuning_on_half_a_shifted_site_reaches_the_target_on_the_other_half_and_live(
    transactional_db, celery_worker, users, client, tmp_path
):
    site_studies_write(tmp_path)
    card = registry_current().for_finding(ICH.value)[0]
    printed = StringIO()
    call_command("validate_model", finding=ICH.value, dataset=tmp_path / "tune",
                 target_sensitivity=TARGET, stdout=printed)  # fmt: skip
    call_command("validate_model", finding=ICH.value, dataset=tmp_path / "check", stdout=StringIO())
    tune, check = ValidationRun.objects.order_by("pk")
    assert (tune.cases, check.cases, tune.failures, check.failures) == (16, 16, 0, 0)
    check_scores, check_labels = validation_arrays(check)

    def sensitivity(threshold: float) -> float:
        return float((check_scores[check_labels] >= threshold).mean())

    # The shift: at the shipped operating point the site's positives are missed.
    assert sensitivity(card.threshold) < TARGET

    client.force_login(users.administrator)
    page = client.get(
        reverse("admin-thresholds"),
        {"finding": ICH.value, "source": f"validation:{tune.pk}", "target_sensitivity": TARGET},
    ).content.decode()
    found = re.search(r'id="proposed-why">Proposed <strong>([0-9.]+)</strong>', page)
    assert found, "the explorer proposes no operating point"
    proposed = float(found.group(1))
    assert proposed < card.threshold
    # The command line proposes the same point (to the six digits the page shows).
    cli = re.search(r"threshold ([0-9.]+) \(here: sensitivity ([0-9.]+)", printed.getvalue())
    assert cli and abs(float(cli.group(1)) - proposed) < 1e-6
    assert float(cli.group(2)) >= TARGET  # on the half it was tuned on

    # Live, before the change: a study like the positives missed is not flagged.
    missed = sorted(
        (case for case in check.results.all() if case.label and case.score < card.threshold),
        key=lambda case: case.score,
        reverse=True,
    )
    assert len(missed) >= 2
    assert all(case.score >= proposed for case in missed[:2])  # the new point would catch them
    before = live_result(live_arrival(tmp_path / "check" / missed[0].case))
    assert before.flagged is False and before.threshold == card.threshold

    response = client.post(reverse("admin-thresholds"), {
        "finding": ICH.value, "apply": "1", "proposed": found.group(1),
        "reason": f"site validation #{tune.pk}: sensitivity {TARGET} on our own studies",
    })  # fmt: skip
    assert response.status_code == 302
    policy = ThresholdPolicy.objects.get(finding=ICH.value, active=True)
    assert policy.value == proposed and policy.changed_by == users.administrator
    assert AuditEvent.objects.filter(action="threshold.change", actor=users.administrator).exists()

    # The other half reaches the target at the tuned point; the shipped point did not.
    assert sensitivity(proposed) >= TARGET > sensitivity(card.threshold)
    specificity = float((check_scores[~check_labels] < proposed).mean())
    assert specificity >= 0.75  # bought without flagging most negatives
    after = live_result(live_arrival(tmp_path / "check" / missed[1].case))
    assert after.flagged is True and after.threshold == proposed
    assert np.isclose(after.score, missed[1].score, atol=1e-4)  # live scores as validation did
