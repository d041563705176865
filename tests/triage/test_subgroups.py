"""Subgroup metrics on hand-checked sets: the bands read from real headers, the counts and
Wilson intervals, the flags against the floor, and the explorer's table."""

from __future__ import annotations

import pydicom
import pytest
from django.utils import timezone

from inference.acquisition import acquisition_of as subgroups_of
from inference.registry import registry_current
from triage.models import ValidationCase, ValidationRun
from triage.subgroups import subgroup_table, wilson


def _header(**tags: object) -> pydicom.Dataset:
    ds = pydicom.Dataset()
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    return ds


def test_bands_are_read_from_the_header_and_untold_values_are_unknown():
    full = _header(
        Manufacturer="ACME", ManufacturerModelName="Scan 64", StationName="CT2",
        SliceThickness="0.625", KVP="140", PatientAge="067Y", PatientSex="F",
    )  # fmt: skip
    infant = _header(SliceThickness="5", KVP="80", PatientAge="006M", PatientSex="X")

    assert subgroups_of(full) == {
        "manufacturer": "ACME Scan 64", "station": "CT2", "slice_thickness": "<= 1.5 mm",
        "kvp": "> 120 kV", "age": "> 64 years", "sex": "F",
    }  # fmt: skip
    assert subgroups_of(infant) == {
        "manufacturer": "unknown", "station": "unknown", "slice_thickness": "3-5 mm",
        "kvp": "<= 100 kV", "age": "0-17 years", "sex": "unknown",
    }  # fmt: skip
    # A sender's text is cut to what can be shown: no markup survives.
    assert subgroups_of(_header(StationName="<script>x</script>"))["station"] == "scriptx/script"


def test_wilson_interval_of_a_hand_checked_proportion():
    interval = wilson(8, 10)

    assert interval is not None
    assert interval.value == 0.8
    assert interval.low == pytest.approx(0.4902, abs=1e-4)  # textbook values for 8/10
    assert interval.high == pytest.approx(0.9433, abs=1e-4)
    assert wilson(0, 0) is None


def test_a_subgroup_the_model_misses_is_flagged_and_one_that_holds_is_not():
    """Scanner A: 20 positives all found, 20 negatives all cleared. Scanner B: 10 positives,
    4 found (scores under the threshold for 6), 10 negatives. Scanner C: 2 positives."""

    def case(maker: str, label: bool, score: float) -> tuple[dict[str, str], bool, float]:
        return {"manufacturer": maker, "sex": "F"}, label, score

    cases = (
        [case("A", True, 0.9)] * 20 + [case("A", False, 0.1)] * 20
        + [case("B", True, 0.9)] * 4 + [case("B", True, 0.3)] * 6 + [case("B", False, 0.2)] * 10
        + [case("C", True, 0.95)] * 2
    )  # fmt: skip

    rows = {(r.attribute, r.value): r for r in subgroup_table(cases, threshold=0.5, floor=0.8)}

    a, b, c = rows[("manufacturer", "A")], rows[("manufacturer", "B")], rows[("manufacturer", "C")]
    assert (a.studies, a.positives, a.flag) == (40, 20, "")
    assert a.sensitivity is not None and a.sensitivity.value == 1.0 and a.sensitivity.low > 0.8
    assert b.sensitivity is not None and b.sensitivity.value == 0.4
    assert "under the floor 0.80" in b.flag
    assert b.specificity is not None and b.specificity.value == 1.0
    assert "fewer than 5 positives" in c.flag
    assert rows[("sex", "F")].studies == 62
    assert ("station", "unknown") not in rows  # an attribute nobody told is not listed


def test_the_explorer_lists_a_validation_runs_subgroups_with_the_flag(db, users, client):
    card = registry_current().for_finding("intracranial_hemorrhage")[0]
    run = ValidationRun.objects.create(
        finding="intracranial_hemorrhage", model_name=card.name, model_version=card.version,
        dataset="hand-made", created_at=timezone.now(), cases=50,
    )  # fmt: skip
    high, low = min(card.threshold + 0.05, 0.999), card.threshold / 2
    rows = [("A", True, high)] * 20 + [("A", False, low)] * 10  # 20/20: lower bound 0.84
    rows += [("B", True, low)] * 8 + [("B", True, high)] * 2 + [("B", False, low)] * 10
    ValidationCase.objects.bulk_create(
        ValidationCase(validation=run, case=f"c{n}", label=label, score=score,
                       subgroups={"manufacturer": maker})
        for n, (maker, label, score) in enumerate(rows)
    )  # fmt: skip
    client.force_login(users.administrator)

    page = client.get(
        f"/manage/thresholds/?finding=intracranial_hemorrhage&source=validation:{run.pk}"
    ).content.decode()

    assert 'id="subgroups"' in page and "1 flagged" in page
    assert 'class="flagged" data-subgroup="manufacturer:B"' in page
    assert 'data-subgroup="manufacturer:A"' in page


def test_shadow_results_against_reports_and_live_feedback_are_broken_down_too(db, users, client):
    """The explorer's own-site sources: final reports (a model on trial in shadow mode is judged
    with no feedback clicked) and radiologist feedback, each with its run's subgroups."""
    from datetime import timedelta

    from inference.models import InferenceRun
    from tests.factories import ready_study
    from triage.models import Feedback, ReportLabel

    card = registry_current().for_finding("intracranial_hemorrhage")[0]
    high, low = min(card.threshold + 0.05, 0.999), card.threshold / 2
    now = timezone.now()
    # Station CT1 catches its positives, CT2 misses 8 of 10.
    rows = [("CT1", True, high)] * 20 + [("CT1", False, low)] * 10
    rows += [("CT2", True, low)] * 8 + [("CT2", True, high)] * 2 + [("CT2", False, low)] * 10
    for number, (station, present, score) in enumerate(rows):
        study = ready_study(location="ED-MAJORS").study
        InferenceRun.objects.create(
            study=study, finding="intracranial_hemorrhage", model_name=card.name,
            model_version=card.version, model_sha256=card.sha256, current=False, shadow=True,
            series=study.series.create(series_instance_uid=f"9.77.{number}"), series_set="s",
            state=InferenceRun.State.COMPLETE, score=score, threshold=card.threshold,
            flagged=score >= card.threshold, acquisition={"station": station},
            queued_at=now - timedelta(hours=2), finished_at=now - timedelta(hours=2),
        )  # fmt: skip
        label = ReportLabel.Label.PRESENT if present else ReportLabel.Label.ABSENT
        ReportLabel.objects.create(study=study, finding="intracranial_hemorrhage", label=label,
                                   status="F", received_at=now - timedelta(hours=1))  # fmt: skip
    # An uncertain report is no truth: left out.
    uncertain = ready_study().study
    ReportLabel.objects.create(
        study=uncertain,
        finding="intracranial_hemorrhage",
        label=ReportLabel.Label.UNCERTAIN,
        status="F",
        received_at=now,
    )
    client.force_login(users.administrator)

    page = client.get(
        "/manage/thresholds/?finding=intracranial_hemorrhage&source=reports"
    ).content.decode()
    assert "Source: final reports" in page and "50 cases, 30 positive" in page
    assert 'class="flagged" data-subgroup="station:CT2"' in page
    assert 'class="flagged" data-subgroup="station:CT1"' not in page

    # Feedback on the same results (a radiologist judges what was flagged, and the positives
    # missed): the live source, broken down the same way.
    for run in InferenceRun.objects.all():
        if ReportLabel.objects.get(study=run.study).label == ReportLabel.Label.PRESENT:
            verdict = Feedback.Verdict.CONFIRMED if run.flagged else Feedback.Verdict.MISSED
        elif run.flagged:
            verdict = Feedback.Verdict.FALSE_POSITIVE
        else:
            continue
        Feedback.objects.create(study=run.study, finding="intracranial_hemorrhage", run=run,
                                verdict=verdict, score=run.score, flagged=run.flagged,
                                author=users.radiologist, created_at=now)  # fmt: skip
    page = client.get(
        "/manage/thresholds/?finding=intracranial_hemorrhage&source=live"
    ).content.decode()
    assert "30 cases, 30 positive" in page
    assert 'class="flagged" data-subgroup="station:CT2"' in page
    assert 'class="flagged" data-subgroup="station:CT1"' not in page
