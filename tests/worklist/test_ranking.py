"""The read-by deadline: one function, configurable targets, never pushed later."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from worklist.models import Study, WorklistItem
from worklist.ranking import read_by_compute, read_by_merge
from worklist.services.studies import study_mark_ready

ARRIVAL = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def test_targets_by_priority(settings):
    settings.WORKLIST_PRIORITY_TARGET_MINUTES = {"STAT": 30, "ROUTINE": 240}
    settings.WORKLIST_DEFAULT_PRIORITY = "ROUTINE"

    assert read_by_compute(received_at=ARRIVAL, order_priority="STAT", is_emergency=False) == (
        ARRIVAL + timedelta(minutes=30)
    )
    assert read_by_compute(received_at=ARRIVAL, order_priority="ROUTINE", is_emergency=False) == (
        ARRIVAL + timedelta(minutes=240)
    )
    assert read_by_compute(received_at=ARRIVAL, order_priority="UNKNOWN", is_emergency=False) == (
        ARRIVAL + timedelta(minutes=240)
    )


def test_emergency_location_and_flagged_finding_bring_the_deadline_forward(settings):
    settings.WORKLIST_ED_TARGET_MINUTES = 60

    ed = read_by_compute(received_at=ARRIVAL, order_priority="ROUTINE", is_emergency=True)
    flagged = read_by_compute(
        received_at=ARRIVAL,
        order_priority="ROUTINE",
        is_emergency=True,
        flagged_findings=["intracranial_hemorrhage"],
    )

    assert ed == ARRIVAL + timedelta(minutes=60)
    assert flagged == ARRIVAL + timedelta(minutes=10)


def test_naive_arrival_time_is_refused():
    with pytest.raises(ValueError, match="aware"):
        read_by_compute(received_at=datetime(2026, 1, 1), order_priority="STAT", is_emergency=False)  # noqa: DTZ001


def test_merge_never_moves_later():
    early, late = ARRIVAL, ARRIVAL + timedelta(minutes=5)
    assert read_by_merge(current=early, candidate=late) == early
    assert read_by_merge(current=late, candidate=early) == early
    assert read_by_merge(current=None, candidate=late) == late


def test_reopened_study_keeps_its_earlier_deadline(db, settings):
    from worklist.models import Patient

    study = Study.objects.create(
        study_instance_uid="1.2.3.4",
        patient=Patient.objects.create(),
        order_priority="STAT",
        first_received_at=ARRIVAL,
        last_instance_at=ARRIVAL,
    )
    first = study_mark_ready(study=study, now=ARRIVAL).read_by
    # An administrator relaxes STAT afterwards; the study is re-opened by a late instance.
    settings.WORKLIST_PRIORITY_TARGET_MINUTES = {
        **settings.WORKLIST_PRIORITY_TARGET_MINUTES,
        "STAT": 90,
    }
    study_mark_ready(study=study, now=ARRIVAL + timedelta(minutes=1))

    assert WorklistItem.objects.get(study=study).read_by == first
