"""Score calibration: the Platt fit, its measures, the cards that ship it and the scoring chain
that applies it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from inference import calibration
from inference.calibration import Calibration, expected_calibration_error, platt_fit
from inference.registry import SHIPPED_MODELS_DIR, CardError, card_load
from inference.scoring import series_score
from triage.findings import Finding
from worklist.dicom.synthetic import StudySpec, write_study


def _drawn(a: float, b: float, n: int = 20_000, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Raw scores whose true probability of being positive is sigmoid(a logit(raw) + b)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 4.0, n)
    truth = rng.random(n) < calibration.sigmoid(a * logits + b)
    return calibration.sigmoid(logits), truth


def test_the_fit_recovers_a_known_map_and_removes_the_miscalibration():
    raw, truth = _drawn(0.5, -1.5)

    fitted = platt_fit(raw, truth)

    assert fitted.a == pytest.approx(0.5, abs=0.03)
    assert fitted.b == pytest.approx(-1.5, abs=0.08)
    assert expected_calibration_error(raw, truth) > 0.1  # the raw scores are over-confident
    assert expected_calibration_error(fitted.apply(raw), truth) < 0.02


def test_a_perfectly_separated_split_still_gives_a_finite_map():
    raw = np.array([0.001, 0.01, 0.2, 0.9, 0.99, 0.9999999])
    truth = np.array([False, False, False, True, True, True])

    fitted = platt_fit(raw, truth)

    assert np.isfinite(fitted.a) and np.isfinite(fitted.b) and fitted.a > 0
    calibrated = fitted.apply(raw)
    assert np.all(np.diff(calibrated) > 0)  # monotone: the ranking is kept
    assert 0.5 < calibrated[-1] < 1.0  # smoothed targets: never certain from six studies
    with pytest.raises(ValueError, match="positive and negative"):
        platt_fit(raw[:3], truth[:3])


def test_reliability_bins_count_every_study_once():
    scores = np.array([0.05, 0.15, 0.15, 0.95, 1.0])
    labels = np.array([False, False, True, True, True])

    bins = calibration.reliability_bins(scores, labels)

    assert sum(entry.count for entry in bins) == 5
    assert bins[1].count == 2 and bins[1].observed == 0.5
    assert bins[9].count == 2 and bins[9].mean_score == pytest.approx(0.975)
    assert expected_calibration_error(scores, labels) == pytest.approx(
        (1 / 5) * 0.05 + (2 / 5) * 0.35 + (2 / 5) * 0.025
    )


@pytest.mark.parametrize("finding", list(Finding))
def test_every_shipped_card_is_calibrated_on_a_readable_scale(finding):
    card = card_load(SHIPPED_MODELS_DIR / finding.value)
    block = card.raw["calibration"]

    assert card.calibration is not None and card.calibration.a > 0
    # The operating point is the raw one mapped; it no longer sits where every flag reads 1.00.
    raw_threshold = card.raw["operating_point"]["threshold_raw"]
    assert card.threshold == pytest.approx(card.calibration.value(raw_threshold))
    assert 0.05 < card.threshold < 0.99
    for split in ("validation", "held_out"):
        report = block[split]
        # Within 5 points as a probability on both splits. (Not always below the raw ECE: for a
        # model that separates its phantoms perfectly, the smoothed targets refuse certainty.)
        assert report["ece_calibrated"] < 0.05, split
        assert (
            sum(entry["count"] for entry in report["reliability_calibrated"]) == report["studies"]
        )
    assert "validation phantoms" in block["fitted_on"]


def test_a_card_with_a_broken_calibration_is_refused(tmp_path):
    folder = tmp_path / "ich"
    shutil.copytree(SHIPPED_MODELS_DIR / "intracranial_hemorrhage", folder)
    raw = json.loads((folder / "card.json").read_text())
    raw["calibration"]["a"] = -1.0
    (folder / "card.json").write_text(json.dumps(raw))

    with pytest.raises(CardError, match="calibration"):
        card_load(folder)


def test_scoring_reports_the_cards_calibrated_scale(tmp_path):
    """The same series through the same model file: the calibrated card's slice and study
    scores are the raw ones through its map, and the key slice is the same."""
    shipped = card_load(SHIPPED_MODELS_DIR / "intracranial_hemorrhage")
    raw_folder = tmp_path / "raw"
    shutil.copytree(SHIPPED_MODELS_DIR / "intracranial_hemorrhage", raw_folder)
    raw = json.loads((raw_folder / "card.json").read_text())
    del raw["calibration"]
    (raw_folder / "card.json").write_text(json.dumps(raw))
    uncalibrated = card_load(raw_folder)
    paths: list[Path] = write_study(
        StudySpec(slices=20, body_part="HEAD"), seed=3, out_dir=tmp_path / "s"
    )

    with_map = series_score(card=shipped, paths=paths, threads=1, batch_size=8, heat_map=False)
    without = series_score(card=uncalibrated, paths=paths, threads=1, batch_size=8, heat_map=False)

    assert shipped.calibration is not None
    assert with_map.key_index == without.key_index
    assert with_map.score == pytest.approx(shipped.calibration.value(without.score), rel=1e-5)
    assert [uid for uid, _ in with_map.slice_scores] == [uid for uid, _ in without.slice_scores]
    expected = shipped.calibration.apply(np.array([s for _, s in without.slice_scores]))
    np.testing.assert_allclose([s for _, s in with_map.slice_scores], expected, rtol=1e-5)


def test_calibration_round_trips_through_json():
    fitted = Calibration(a=0.8, b=-2.7)

    assert Calibration(**{k: v for k, v in fitted.as_json().items() if k != "method"}) == fitted


def test_a_threshold_set_on_the_raw_scale_is_mapped_to_the_calibrated_one(db, users):
    """The migration that came with calibration: an administrator's raw 0.9968 for hemorrhage
    (the old shipped point) becomes the calibrated value flagging the same studies."""
    import importlib

    from django.apps import apps
    from django.utils import timezone

    from triage.models import AuditEvent, ThresholdPolicy

    migration = importlib.import_module("triage.migrations.0013_thresholds_on_the_calibrated_scale")
    card = card_load(SHIPPED_MODELS_DIR / "intracranial_hemorrhage")
    old = ThresholdPolicy.objects.create(
        finding="intracranial_hemorrhage", value=0.9968, changed_by=users.administrator,
        changed_at=timezone.now(), reason="before calibration", location_prefix="ED",
    )  # fmt: skip

    migration.forwards(apps, None)

    old.refresh_from_db()
    new = ThresholdPolicy.objects.get(active=True)
    assert not old.active and new.replaces == old and new.location_prefix == "ED"
    assert card.calibration is not None
    assert new.value == pytest.approx(card.calibration.value(0.9968)) and 0.85 < new.value < 0.9
    assert "calibrated scale" in new.reason
    assert AuditEvent.objects.filter(action="threshold.change", channel="system").count() == 1
