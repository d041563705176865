"""Operating-point statistics on small hand-checked sets."""

from __future__ import annotations

import math

import numpy as np
import pytest

from triage.operating_points import at_threshold, auc, curves, ks_two_sample, roc_points

SCORES = np.array([0.1, 0.4, 0.35, 0.8])
LABELS = np.array([False, False, True, True])


def test_auc_by_hand():
    # Pairs (pos, neg): (0.35,0.1) yes, (0.35,0.4) no, (0.8,0.1) yes, (0.8,0.4) yes -> 3/4.
    assert auc(SCORES, LABELS) == pytest.approx(0.75)
    assert auc(np.array([0.5, 0.5]), np.array([True, False])) == pytest.approx(0.5)  # tie


def test_roc_points_by_hand():
    fpr, tpr = roc_points(SCORES, LABELS)
    # Cut points 0.8, 0.4, 0.35, 0.1 (descending), bracketed by (0,0) and (1,1).
    assert fpr.tolist() == [0.0, 0.0, 0.5, 0.5, 1.0, 1.0]
    assert tpr.tolist() == [0.0, 0.5, 0.5, 1.0, 1.0, 1.0]


def test_rates_and_ppv_at_a_threshold():
    result = curves(SCORES, LABELS, prevalence=0.5, studies_per_day=100, resamples=200)
    at = at_threshold(result, 0.38)  # nearest grid point 0.38: flags 0.4 and 0.8
    assert at["sensitivity"].value == pytest.approx(0.5)
    assert at["specificity"].value == pytest.approx(0.5)
    assert at["ppv"].value == pytest.approx(0.5)
    assert at["alerts_per_day"].value == pytest.approx(50.0)  # (0.5*0.5 + 0.5*0.5) * 100
    assert at["missed_per_week"].value == pytest.approx(0.5 * 0.5 * 100 * 7)


def test_ppv_follows_the_prevalence_not_the_balanced_set():
    result = curves(SCORES, LABELS, prevalence=0.1, studies_per_day=10, resamples=50)
    # sens 0.5, spec 0.5 at 0.38: PPV = 0.05 / (0.05 + 0.45) = 0.1
    assert at_threshold(result, 0.38)["ppv"].value == pytest.approx(0.1)


def test_bootstrap_intervals_bracket_the_truth():
    rng = np.random.default_rng(3)
    labels = rng.random(400) < 0.5
    scores = np.where(labels, rng.normal(0.7, 0.15, 400), rng.normal(0.3, 0.15, 400)).clip(0, 1)
    true_sensitivity = 1 - 0.5 * (1 + math.erf((0.5 - 0.7) / (0.15 * math.sqrt(2))))

    result = curves(scores, labels, prevalence=0.1, studies_per_day=50, resamples=500)
    at = at_threshold(result, 0.5)

    assert at["sensitivity"].low <= at["sensitivity"].value <= at["sensitivity"].high
    assert at["sensitivity"].low <= true_sensitivity <= at["sensitivity"].high
    assert at["ppv"].low <= at["ppv"].value <= at["ppv"].high
    assert at["sensitivity"].high - at["sensitivity"].low < 0.15


def test_kolmogorov_smirnov_separates_shifted_distributions():
    rng = np.random.default_rng(1)
    same = ks_two_sample(rng.normal(0, 1, 300), rng.normal(0, 1, 300))
    shifted = ks_two_sample(rng.normal(0, 1, 300), rng.normal(0.6, 1, 300))

    assert same[1] > 0.01
    assert shifted[1] < 1e-6 and shifted[0] > 0.2
