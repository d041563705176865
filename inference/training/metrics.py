"""Study-level metrics for model cards: AUC, sensitivity / specificity, bootstrap intervals.

numpy and SciPy only (no torch, no sklearn), so tests, the registry and the triage app's
operating-point statistics can use it without training extras. The one AUC of the project.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.stats import mannwhitneyu

Statistic = Callable[[np.ndarray, np.ndarray], float]


def _as_arrays(scores: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    score_array = np.asarray(scores, dtype=np.float64).reshape(-1)
    label_array = np.asarray(labels).reshape(-1).astype(bool)
    if score_array.shape != label_array.shape:
        raise ValueError(f"{score_array.size} scores but {label_array.size} labels")
    return score_array, label_array


def auc(scores: Any, labels: Any) -> float:
    """ROC AUC as the Mann-Whitney U statistic: P(positive scores above negative), ties 1/2."""
    score_array, label_array = _as_arrays(scores, labels)
    positives, negatives = score_array[label_array], score_array[~label_array]
    if positives.size == 0 or negatives.size == 0:
        raise ValueError("AUC needs at least one positive and one negative")
    # U of the positives = pairs (positive, negative) ranked the right way, ties counting half.
    u_statistic = mannwhitneyu(positives, negatives, method="asymptotic").statistic
    return float(u_statistic) / (positives.size * negatives.size)


def sensitivity(scores: Any, labels: Any, *, threshold: float) -> float:
    """Fraction of positives called positive (score >= threshold)."""
    score_array, label_array = _as_arrays(scores, labels)
    if not label_array.any():
        raise ValueError("sensitivity needs at least one positive")
    return float((score_array[label_array] >= threshold).mean())


def specificity(scores: Any, labels: Any, *, threshold: float) -> float:
    """Fraction of negatives called negative (score < threshold)."""
    score_array, label_array = _as_arrays(scores, labels)
    if label_array.all():
        raise ValueError("specificity needs at least one negative")
    return float((score_array[~label_array] < threshold).mean())


def operating_point_select(scores: Any, labels: Any, *, min_sensitivity: float) -> float:
    """The highest threshold whose sensitivity (score >= threshold) reaches `min_sensitivity`.

    That is the k-th highest positive score, k = ceil(min_sensitivity * positives): any higher
    threshold would leave fewer than k positives at or above it.
    """
    score_array, label_array = _as_arrays(scores, labels)
    positive_scores = np.sort(score_array[label_array])[::-1]
    if positive_scores.size == 0:
        raise ValueError("an operating point needs at least one positive")
    if not 0.0 < min_sensitivity <= 1.0:
        raise ValueError(f"min_sensitivity must be in (0, 1], got {min_sensitivity}")
    # The small tolerance keeps 0.95 * 20 == 19 from becoming 20 through float rounding.
    needed = int(np.ceil(min_sensitivity * positive_scores.size - 1e-9))
    return float(positive_scores[max(needed, 1) - 1])


def _logit(probability: float) -> float:
    clipped = min(max(probability, 1e-7), 1.0 - 1e-7)
    return float(np.log(clipped / (1.0 - clipped)))


def operating_point_with_margin(scores: Any, labels: Any, *, min_sensitivity: float) -> float:
    """A threshold with validation sensitivity >= `min_sensitivity` that keeps the specificity of
    the highest such threshold, placed with the widest margin on both sides.

    Every threshold between the highest one (`operating_point_select`) and the highest negative
    score below it calls the same validation negatives positive, so none costs specificity on the
    validation set; the midpoint of that gap (in logit space, for probabilities) is the least
    sensitive to the next set's scores falling slightly lower or higher.
    """
    score_array, label_array = _as_arrays(scores, labels)
    highest = operating_point_select(score_array, label_array, min_sensitivity=min_sensitivity)
    below = score_array[~label_array & (score_array < highest)]
    if below.size == 0:
        return highest
    middle = (_logit(highest) + _logit(float(below.max()))) / 2.0
    return float(1.0 / (1.0 + np.exp(-middle)))


def bootstrap_interval(
    statistic: Statistic,
    scores: Any,
    labels: Any,
    *,
    resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval of `statistic(scores, labels)`.

    Positives and negatives are resampled separately (stratified), so every resample keeps the
    study's class counts and AUC is always defined.
    """
    score_array, label_array = _as_arrays(scores, labels)
    rng = np.random.default_rng(seed)
    positive_index = np.flatnonzero(label_array)
    negative_index = np.flatnonzero(~label_array)
    values = np.empty(resamples, dtype=np.float64)
    for resample in range(resamples):
        chosen = np.concatenate(
            [
                rng.choice(positive_index, size=positive_index.size, replace=True),
                rng.choice(negative_index, size=negative_index.size, replace=True),
            ]
        )
        values[resample] = statistic(score_array[chosen], label_array[chosen])
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return float(low), float(high)


def study_metrics(
    scores: Any, labels: Any, *, threshold: float, resamples: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """AUC, sensitivity and specificity at `threshold`, each with a 95% bootstrap interval."""
    score_array, label_array = _as_arrays(scores, labels)

    def sensitivity_at(s: np.ndarray, y: np.ndarray) -> float:
        return sensitivity(s, y, threshold=threshold)

    def specificity_at(s: np.ndarray, y: np.ndarray) -> float:
        return specificity(s, y, threshold=threshold)

    result: dict[str, Any] = {
        "held_out_studies": int(label_array.size),
        "positives": int(label_array.sum()),
        "negatives": int((~label_array).sum()),
    }
    for name, statistic in (
        ("auc", auc),
        ("sensitivity", sensitivity_at),
        ("specificity", specificity_at),
    ):
        low, high = bootstrap_interval(
            statistic, score_array, label_array, resamples=resamples, seed=seed
        )
        result[name] = round(statistic(score_array, label_array), 4)
        result[f"{name}_ci95"] = [round(low, 4), round(high, 4)]
    return result
