"""Operating-point statistics on (score, truth) pairs: ROC, and sensitivity, specificity, PPV and
alert volume against threshold, with percentile-bootstrap 95% intervals; the drift check's
two-sample Kolmogorov-Smirnov test. numpy and SciPy; AUC is `inference.training.metrics.auc`."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from inference.training import metrics

THRESHOLDS = np.round(np.linspace(0.01, 0.99, 99), 2)


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties count half); NaN without both classes."""
    label_array = np.asarray(labels, dtype=bool)
    if label_array.all() or not label_array.any():
        return float("nan")
    return metrics.auc(scores, label_array)


def roc_points(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate) at every distinct score, from (0,0) to (1,1)."""
    cut_points = np.unique(scores)[::-1]
    positives, negatives = max(int(labels.sum()), 1), max(int((~labels).sum()), 1)
    tpr = [0.0] + [float((scores[labels] >= cut).sum()) / positives for cut in cut_points]
    fpr = [0.0] + [float((scores[~labels] >= cut).sum()) / negatives for cut in cut_points]
    return np.asarray(fpr + [1.0]), np.asarray(tpr + [1.0])


@dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float


@dataclass(frozen=True)
class Curves:
    """Per threshold in `thresholds`: point estimates and 95% interval bounds."""

    thresholds: np.ndarray
    sensitivity: np.ndarray  # shape (3, T): value, low, high
    specificity: np.ndarray
    ppv: np.ndarray
    alerts_per_day: np.ndarray
    missed_per_week: np.ndarray
    prevalence: float
    studies_per_day: float
    cases: int
    positives: int


def _ppv(sensitivity: np.ndarray, specificity: np.ndarray, prevalence: float) -> np.ndarray:
    flagged_true = sensitivity * prevalence
    flagged_false = (1.0 - specificity) * (1.0 - prevalence)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(
            flagged_true + flagged_false > 0, flagged_true / (flagged_true + flagged_false), np.nan
        )


def curves(
    scores: np.ndarray,
    labels: np.ndarray,
    *,
    prevalence: float,
    studies_per_day: float,
    thresholds: np.ndarray = THRESHOLDS,
    resamples: int = 1000,
    seed: int = 0,
) -> Curves:
    """Sensitivity and specificity come from the data; PPV and alert volume are computed for the
    site's prevalence and eligible studies per day (a validation set is often balanced, so its
    own prevalence would overstate PPV)."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    rng = np.random.default_rng(seed)
    positives, negatives = scores[labels], scores[~labels]

    def rates(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # pos/neg: (B, n) resampled scores -> (B, T) sensitivity and specificity
        sens = (
            (pos[:, :, None] >= thresholds[None, None, :]).mean(axis=1)
            if pos.shape[1]
            else np.full((pos.shape[0], thresholds.size), np.nan)
        )
        spec = (
            (neg[:, :, None] < thresholds[None, None, :]).mean(axis=1)
            if neg.shape[1]
            else np.full((neg.shape[0], thresholds.size), np.nan)
        )
        return sens, spec

    point_sens, point_spec = rates(positives[None, :], negatives[None, :])
    boot_pos = (
        positives[rng.integers(0, max(positives.size, 1), size=(resamples, positives.size))]
        if positives.size
        else np.empty((resamples, 0))
    )
    boot_neg = (
        negatives[rng.integers(0, max(negatives.size, 1), size=(resamples, negatives.size))]
        if negatives.size
        else np.empty((resamples, 0))
    )
    boot_sens, boot_spec = rates(boot_pos, boot_neg)

    def band(point: np.ndarray, boot: np.ndarray) -> np.ndarray:
        # A threshold no resample flags has no PPV: its band is NaN, and the plot leaves a gap.
        if not np.isfinite(boot).any():
            return np.vstack([point[0], point[0], point[0]])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            low, high = np.nanpercentile(boot, [2.5, 97.5], axis=0)
        return np.vstack([point[0], low, high])

    boot_ppv = _ppv(boot_sens, boot_spec, prevalence)
    boot_alerts = (boot_sens * prevalence + (1 - boot_spec) * (1 - prevalence)) * studies_per_day
    boot_missed = (1 - boot_sens) * prevalence * studies_per_day * 7
    point_alerts = (point_sens * prevalence + (1 - point_spec) * (1 - prevalence)) * studies_per_day
    point_missed = (1 - point_sens) * prevalence * studies_per_day * 7
    return Curves(
        thresholds=thresholds,
        sensitivity=band(point_sens, boot_sens),
        specificity=band(point_spec, boot_spec),
        ppv=band(_ppv(point_sens, point_spec, prevalence), boot_ppv),
        alerts_per_day=band(point_alerts, boot_alerts),
        missed_per_week=band(point_missed, boot_missed),
        prevalence=prevalence,
        studies_per_day=studies_per_day,
        cases=int(scores.size),
        positives=int(labels.sum()),
    )


def at_threshold(result: Curves, threshold: float) -> dict[str, Interval]:
    """The curves' values at the grid point nearest `threshold`."""
    index = int(np.argmin(np.abs(result.thresholds - threshold)))

    def pick(array: np.ndarray) -> Interval:
        return Interval(float(array[0, index]), float(array[1, index]), float(array[2, index]))

    return {
        "sensitivity": pick(result.sensitivity),
        "specificity": pick(result.specificity),
        "ppv": pick(result.ppv),
        "alerts_per_day": pick(result.alerts_per_day),
        "missed_per_week": pick(result.missed_per_week),
    }


def ks_two_sample(first: np.ndarray, second: np.ndarray) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov statistic D and its asymptotic p-value (SciPy `ks_2samp`);
    NaN, NaN when either sample is empty."""
    first, second = np.asarray(first, float), np.asarray(second, float)
    if first.size == 0 or second.size == 0:
        return float("nan"), float("nan")
    from scipy.stats import ks_2samp  # 2 s to import: only when a drift check runs

    result = ks_2samp(first, second, method="asymp")
    return float(result.statistic), float(result.pvalue)


def threshold_for_sensitivity(scores: np.ndarray, labels: np.ndarray, *, target: float) -> float:
    """The operating point for a target sensitivity on this data: the highest threshold that
    keeps at least `target` of the positives flagged, placed midway (in logit space) to the next
    negative score below it, so it costs no specificity here and is the least fragile on the
    next studies (`metrics.operating_point_with_margin`)."""
    return metrics.operating_point_with_margin(scores, labels, min_sensitivity=target)


def threshold_for_alert_budget(
    scores: np.ndarray,
    labels: np.ndarray,
    *,
    alerts_per_day: float,
    prevalence: float,
    studies_per_day: float,
) -> float:
    """The operating point for an alert budget: the lowest threshold (so the most sensitive)
    whose expected alerts per day, at this prevalence and volume, stay within the budget.
    Expected alerts at t: (sensitivity(t) * prevalence + (1 - specificity(t)) * (1 - prevalence))
    * studies per day, sensitivity and specificity measured on this data (score >= t flags)."""
    score_array = np.asarray(scores, dtype=np.float64)
    label_array = np.asarray(labels, dtype=bool)
    if label_array.all() or not label_array.any():
        raise ValueError("an alert budget needs positives and negatives")
    if not alerts_per_day > 0:
        raise ValueError(f"an alert budget is a positive number, got {alerts_per_day}")
    candidates = np.unique(score_array)  # ascending; above the highest score nothing is flagged
    positives, negatives = np.sort(score_array[label_array]), np.sort(score_array[~label_array])
    # Fraction of each class at or above each candidate: one sorted search per class.
    sensitivity = 1.0 - np.searchsorted(positives, candidates, side="left") / positives.size
    false_positive = 1.0 - np.searchsorted(negatives, candidates, side="left") / negatives.size
    expected = (sensitivity * prevalence + false_positive * (1.0 - prevalence)) * studies_per_day
    within = np.flatnonzero(expected <= alerts_per_day)
    if within.size == 0:  # even the highest score alone is over budget: flag nothing seen here
        return float(np.nextafter(candidates[-1], np.inf))
    return float(candidates[within[0]])
