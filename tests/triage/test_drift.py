"""Drift checks, each on a shifted sample and an unshifted one: the acquisition mix of live
series against the validation run (chi-square per attribute), and PPV from feedback against
its control limit (p-chart). The live-score check is in test_administration.py."""

from __future__ import annotations

import random

from django.utils import timezone

from triage.analytics import (
    WeekFeedback,
    acquisition_mix_drift,
    ppv_below_control_limit,
)
from triage.models import ValidationRun


def _mix(count: int, makers: dict[str, float], seed: int) -> list[dict[str, str]]:
    rng = random.Random(seed)
    names, weights = list(makers), list(makers.values())
    return [
        {"manufacturer": rng.choices(names, weights)[0], "slice_thickness": "<= 1.5 mm",
         "kvp": "101-120 kV"}
        for _ in range(count)
    ]  # fmt: skip


def test_a_new_scanner_in_the_live_mix_is_named_and_the_same_mix_is_not(db):
    validation = ValidationRun(
        pk=7, finding="intracranial_hemorrhage", model_name="m", model_version="1", dataset="d",
        created_at=timezone.now(),
    )  # fmt: skip
    reference = _mix(300, {"ACME Scan 64": 0.6, "Other CT": 0.4}, seed=1)
    same = _mix(80, {"ACME Scan 64": 0.6, "Other CT": 0.4}, seed=2)
    shifted = _mix(80, {"ACME Scan 64": 0.3, "Other CT": 0.2, "NewCo Photon": 0.5}, seed=3)

    assert acquisition_mix_drift(same, reference, validation=validation) == ""
    warning = acquisition_mix_drift(shifted, reference, validation=validation)
    assert "validation run #7" in warning and "manufacturer" in warning
    assert "not in validation: NewCo Photon" in warning
    assert "slice thickness" not in warning and "kvp" not in warning  # those did not move
    assert acquisition_mix_drift(shifted[:10], reference, validation=validation) == ""  # too few


def test_a_week_of_more_false_alarms_falls_under_the_ppv_control_limit():
    steady = [WeekFeedback(confirmed=14, false_positives=6)] * 4  # PPV 0.70
    same_week = WeekFeedback(confirmed=13, false_positives=7)  # 0.65: chance
    bad_week = WeekFeedback(confirmed=5, false_positives=15)  # 0.25: the scanner changed

    assert ppv_below_control_limit([*steady, same_week]) == ""
    warning = ppv_below_control_limit([*steady, bad_week])
    assert "PPV this week 0.25 (5/20)" in warning and "earlier weeks' 0.70 (56/80)" in warning
    # Too little feedback to chart: no warning either way.
    assert ppv_below_control_limit([*steady, WeekFeedback(confirmed=1, false_positives=5)]) == ""
    assert ppv_below_control_limit([WeekFeedback(confirmed=2, false_positives=2), bad_week]) == ""


def test_a_perfect_ppv_so_far_does_not_warn_at_one_false_alarm():
    perfect = [WeekFeedback(confirmed=10, false_positives=0)] * 4

    assert ppv_below_control_limit([*perfect, WeekFeedback(confirmed=11, false_positives=1)]) == ""
    assert "under the control limit" in ppv_below_control_limit(
        [*perfect, WeekFeedback(confirmed=4, false_positives=8)]
    )
