"""Model-card figures and shipped model files: metric functions on hand-checked sets, checksums,
and ONNX outputs with a dynamic batch. No torch needed (CI may not install it)."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest

from inference.registry import SHIPPED_MODELS_DIR, file_sha256
from inference.training.metrics import (
    auc,
    bootstrap_interval,
    operating_point_select,
    operating_point_with_margin,
    sensitivity,
    specificity,
    study_metrics,
)
from inference.training.specs import training_spec
from triage.findings import Finding


def test_auc_is_the_fraction_of_correctly_ordered_positive_negative_pairs():
    # Pairs (positive, negative): 0.35>0.1 yes, 0.35>0.4 no, 0.8>0.1 yes, 0.8>0.4 yes -> 3/4.
    assert auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)


def test_auc_counts_ties_as_half_and_is_one_or_zero_at_the_extremes():
    assert auc([0.5, 0.5], [0, 1]) == pytest.approx(0.5)
    assert auc([0.2, 0.5, 0.5, 0.9], [0, 0, 1, 1]) == pytest.approx((1 + 0.5 + 1 + 1) / 4)
    assert auc([0.1, 0.2, 0.3], [0, 1, 1]) == 1.0
    assert auc([0.3, 0.2, 0.1], [0, 1, 1]) == 0.0


def test_auc_needs_both_classes():
    with pytest.raises(ValueError):
        auc([0.1, 0.2], [1, 1])


def test_sensitivity_and_specificity_call_positive_at_or_above_the_threshold():
    scores = [0.1, 0.5, 0.7, 0.5, 0.9]
    labels = [0, 0, 0, 1, 1]

    assert sensitivity(scores, labels, threshold=0.5) == 1.0
    assert specificity(scores, labels, threshold=0.5) == pytest.approx(1 / 3)
    assert sensitivity(scores, labels, threshold=0.6) == 0.5


def test_operating_point_is_the_highest_threshold_reaching_the_sensitivity():
    # 20 positives scored 0.05, 0.10, ..., 1.00: sensitivity >= 0.95 needs 19 of them, so the
    # threshold is the 19th highest positive score, 0.10; 0.90 needs 18 -> 0.15.
    positives = np.round(np.arange(1, 21) * 0.05, 2)
    negatives = np.asarray([0.0, 0.02, 0.3, 0.6])
    scores = np.concatenate([positives, negatives])
    labels = np.r_[np.ones(20), np.zeros(4)]

    assert operating_point_select(scores, labels, min_sensitivity=0.95) == pytest.approx(0.10)
    assert operating_point_select(scores, labels, min_sensitivity=0.90) == pytest.approx(0.15)
    assert operating_point_select(scores, labels, min_sensitivity=1.0) == pytest.approx(0.05)
    threshold = operating_point_select(scores, labels, min_sensitivity=0.95)
    assert sensitivity(scores, labels, threshold=threshold) == pytest.approx(0.95)
    assert specificity(scores, labels, threshold=threshold) == pytest.approx(0.5)


def test_operating_point_with_margin_sits_midway_in_logit_below_the_highest_threshold():
    # Positives 0.6 .. 0.99; sensitivity >= 0.75 (3 of 4) is reached at 0.9 at the highest. The
    # highest negative below 0.9 is 0.1: the midpoint of logit(0.9) and logit(0.1) is 0 -> 0.5,
    # which still calls the 0.95 negative positive (same specificity) and catches one more positive.
    scores = [0.6, 0.9, 0.95, 0.99, 0.1, 0.05, 0.95]
    labels = [1, 1, 1, 1, 0, 0, 0]

    assert operating_point_select(scores, labels, min_sensitivity=0.75) == pytest.approx(0.9)
    threshold = operating_point_with_margin(scores, labels, min_sensitivity=0.75)
    assert threshold == pytest.approx(0.5)
    assert specificity(scores, labels, threshold=threshold) == pytest.approx(2 / 3)
    assert sensitivity(scores, labels, threshold=threshold) == 1.0
    # No negative below the highest threshold: nothing to keep a margin from.
    assert operating_point_with_margin([0.2, 0.9, 0.95], [1, 1, 0], min_sensitivity=1.0) == 0.2


def test_bootstrap_intervals_bracket_the_point_estimates_and_are_reproducible():
    rng = np.random.default_rng(7)
    labels = np.r_[np.ones(60), np.zeros(60)]
    scores = rng.normal(loc=labels * 1.2, scale=1.0)

    metrics = study_metrics(scores, labels, threshold=0.4, resamples=400, seed=3)

    for name in ("auc", "sensitivity", "specificity"):
        low, high = metrics[f"{name}_ci95"]
        assert low <= metrics[name] <= high
        assert low < high
    assert metrics["auc"] == pytest.approx(auc(scores, labels), abs=1e-4)
    assert (metrics["positives"], metrics["negatives"]) == (60, 60)
    again = bootstrap_interval(auc, scores, labels, resamples=400, seed=3)
    assert [round(value, 4) for value in again] == metrics["auc_ci95"]


def shipped_card(finding: Finding) -> dict:
    path = SHIPPED_MODELS_DIR / finding.value / "card.json"
    return json.loads(path.read_text())


@pytest.mark.parametrize("finding", list(Finding))
def test_shipped_card_checksum_matches_its_onnx_file(finding):
    card = shipped_card(finding)

    assert card["finding"] == finding.value
    assert card["sha256"] == file_sha256(SHIPPED_MODELS_DIR / finding.value / card["file"])
    assert card["demonstration"] is True
    metrics = card["metrics"]
    assert metrics["held_out_studies"] >= 500
    assert metrics["positives"] == metrics["negatives"]
    assert metrics["auc_ci95"][0] <= metrics["auc"] <= metrics["auc_ci95"][1]


@pytest.mark.parametrize("finding", list(Finding))
def test_shipped_onnx_has_logit_and_cam_outputs_for_any_batch_size(finding):
    card = shipped_card(finding)
    session = ort.InferenceSession(
        str(SHIPPED_MODELS_DIR / finding.value / card["file"]),
        providers=["CPUExecutionProvider"],
    )
    preprocessing = card["preprocessing"]
    if preprocessing["kind"] == "ct_slices":
        channels = len(preprocessing["windows"]) * (2 * preprocessing["neighbours"] + 1)
    else:
        channels = 1
    size = preprocessing["size"]

    assert [output.name for output in session.get_outputs()] == ["logit", "cam"]
    assert card["outputs"] == {"logit": "logit", "activation_map": "cam"}
    input_name = session.get_inputs()[0].name
    rng = np.random.default_rng(0)
    for batch in (2, 3):
        inputs = rng.random((batch, channels, size, size), dtype=np.float32)
        logit, cam = session.run(None, {input_name: inputs})
        assert logit.reshape(-1).shape == (batch,)
        assert cam.shape[0] == batch and cam.shape[-2:] == (8, 8)
        assert np.isfinite(logit).all() and np.isfinite(cam).all()


@pytest.mark.parametrize("finding", list(Finding))
def test_the_training_spec_writes_the_shipped_cards_preprocessing_and_aggregation(finding):
    card = shipped_card(finding)
    spec = training_spec(finding)
    session = ort.InferenceSession(
        str(SHIPPED_MODELS_DIR / finding.value / card["file"]),
        providers=["CPUExecutionProvider"],
    )

    assert spec.preprocessing.as_json() == card["preprocessing"]
    assert str(spec.aggregations[0]) == card["aggregation"]
    assert spec.applies_to == card["applies_to"]
    assert spec.is_ct == (card["preprocessing"]["kind"] == "ct_slices")
    assert session.get_inputs()[0].shape[1:] == [
        spec.in_channels,
        spec.preprocessing.size,
        spec.preprocessing.size,
    ]
