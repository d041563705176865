"""Final reports as a second ground truth: the stated rules on hand-written report sentences,
ORU^R01 from an HL7 sender in its own process through the real listener, and the AI measured
against the reports on a hand-checked set."""

from __future__ import annotations

import pytest
from django.db import transaction

from tests.factories import ready_study
from tests.triage.test_administration import _flagged_run
from tests.triage.test_hl7_inbound import listener, send  # noqa: F401,F811 - the fixture
from triage.analytics import finding_analytics
from triage.models import ReportLabel
from triage.reports import report_labels

ICH, PE, PTX, FX = "intracranial_hemorrhage", "pulmonary_embolism", "pneumothorax", "fracture"


@pytest.mark.parametrize(
    ("text", "finding", "label"),
    [
        ("Acute left subdural haematoma with 4 mm midline shift.", ICH, "present"),
        ("No acute intracranial hemorrhage.", ICH, "absent"),
        ("No intracranial haemorrhage, but there is a small extradural haematoma.", ICH,
         "present"),
        ("Hemorrhage is not seen. Old infarct.", ICH, "absent"),
        ("Possible small subarachnoid hemorrhage in the left sylvian fissure.", ICH, "uncertain"),
        ("A small subdural cannot be excluded.", ICH, "uncertain"),
        ("Previously seen hematoma has resolved.", ICH, "absent"),
        ("Filling defects in the right lower lobe segmental arteries.", PE, "present"),
        ("No pulmonary embolism.", PE, "absent"),
        ("Suspicious for a subsegmental embolus; correlate clinically.", PE, "uncertain"),
        ("Lungs clear. No pneumothorax or effusion.", PTX, "absent"),
        ("Large right tension pneumothorax with mediastinal shift.", PTX, "present"),
        ("Heart size normal.", PTX, "not_mentioned"),
        ("Type II odontoid fracture.", FX, "present"),
        ("No fracture or subluxation.", FX, "absent"),
        ("Questionable fracture of the C6 spinous process?", FX, "uncertain"),
        ("CTPA ?PE.", PE, "uncertain"),
        ("Indication: ?SAH, thunderclap headache. Findings: No intracranial haemorrhage.", ICH,
         "absent"),
        ("Clinical history: fall, rule out fracture. Report: No fracture.", FX, "absent"),
        ("CT head to exclude bleed.", ICH, "uncertain"),
        ("No change in the right subdural haematoma.", ICH, "present"),
        ("No midline shift, and a small left SDH.", ICH, "present"),
        ("A 4.5 mm fracture fragment.", FX, "present"),
    ],
)  # fmt: skip
def test_a_report_sentence_is_labelled_by_the_stated_rules(text, finding, label):
    assert report_labels(text)[finding] == label


def test_a_report_is_labelled_for_every_finding_at_once():
    text = "IMPRESSION:\nNo acute intracranial haemorrhage. Undisplaced left occipital fracture."

    assert report_labels(text) == {ICH: "absent", PE: "not_mentioned", PTX: "not_mentioned",
                                   FX: "present"}  # fmt: skip


def _oru(*, accession: str, status: str, lines: list[str], control_id: str) -> str:
    obr = ["OBR", "1", "", accession, "CTHEAD^CT head"] + [""] * 13 + [accession]
    obr += [""] * (25 - len(obr)) + [status]  # OBR-18 the accession, OBR-25 the status
    return "\n".join(
        [
            f"MSH|^~\\&|RIS|HOSP|ED_TRIAGE|HOSP|20261201130000||ORU^R01^ORU_R01|{control_id}|P|2.5",
            "PID|1||MRN77^^^HOSP^MR||Testperson^Alex||19700101|F",
            "|".join(obr),
            *(f"OBX|{n}|TX|REPORT^Report||{line}||||||{status}" for n, line in
              enumerate(lines, start=1)),
        ]
    )  # fmt: skip


def test_final_reports_over_mllp_label_the_study_and_a_correction_replaces_them(
    listener,  # noqa: F811 - the fixture imported above
    tmp_path,
):
    item = ready_study(location="ED-MAJORS-1", is_emergency=True)
    accession = item.study.accession_number

    answers = send(
        listener, tmp_path,
        _oru(accession=accession, status="P", lines=["Prelim: subdural?"], control_id="R1"),
        _oru(accession=accession, status="F", control_id="R2",
             lines=["FINDINGS: Acute right subdural haematoma. No evidence of acute",
                    "fracture of the skull vault."]),  # a sentence wrapped over two lines
        _oru(accession="NOSUCH1", status="F", lines=["No pneumothorax."], control_id="R3"),
    )  # fmt: skip
    labels = dict(ReportLabel.objects.filter(study=item.study).values_list("finding", "label"))
    corrected = send(listener, tmp_path, _oru(
        accession=accession, status="C", control_id="R4",
        lines=["ADDENDUM: on review no intracranial haemorrhage; calcified falx."]))  # fmt: skip

    assert answers[0]["code"] == "AE" and "only final (F) or corrected (C)" in answers[0]["text"]
    assert answers[1]["code"] == "AA" and answers[2]["code"] == "AA"
    assert labels == {ICH: "present", FX: "absent", PE: "not_mentioned", PTX: "not_mentioned"}
    assert corrected[0]["code"] == "AA"
    after = ReportLabel.objects.get(study=item.study, finding=ICH)
    assert (after.label, after.status, after.control_id) == ("absent", "C", "R4")
    assert not ReportLabel.objects.exclude(study=item.study).exists()  # unknown accession
    # Our own AI result echoed back, and an ORU without report text: refused with the reason.
    own, empty = send(listener, tmp_path,
                      _oru(accession=accession, status="C", lines=["x"], control_id="R5")
                      .replace("MSH|^~\\&|RIS|", "MSH|^~\\&|ED_TRIAGE|"),
                      _oru(accession=accession, status="F", lines=[], control_id="R6"))  # fmt: skip
    assert own["code"] == "AE" and "our own AI result" in own["text"]
    assert empty["code"] == "AE" and "without report text" in empty["text"]
    assert ReportLabel.objects.get(study=item.study, finding=ICH).control_id == "R4"
    assert "haematoma" not in listener.log.read_text()  # report text is not logged


def test_the_ai_is_measured_against_the_reports_on_a_hand_checked_set(db):
    """Five head CTs: flagged + report present (TP), flagged + absent (FP), not flagged +
    present (FN), not flagged + absent (TN), flagged + uncertain (not counted)."""
    from datetime import timedelta

    from django.utils import timezone

    for flagged, label in [(True, "present"), (True, "absent"), (False, "present"),
                           (False, "absent"), (True, "uncertain")]:  # fmt: skip
        item = ready_study()
        run = _flagged_run(item, flagged=flagged)
        type(run).objects.filter(pk=run.pk).update(finished_at=timezone.now())
        with transaction.atomic():
            ReportLabel.objects.create(study=item.study, finding=ICH, label=label, status="F",
                                       received_at=timezone.now())  # fmt: skip
    now = timezone.now()

    row = finding_analytics(finding=ICH, since=now - timedelta(days=1), until=now)

    assert (row.report_cases, row.report_uncertain) == (4, 1)
    assert row.report_sensitivity == 0.5 and row.report_ppv == 0.5
    assert row.report_agreement == 0.5
