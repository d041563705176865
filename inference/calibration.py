"""Score calibration: a model's raw probabilities, mapped so a study score reads as an estimated
probability that the finding is present (numpy only; fitted by `inference.training.calibrate`).

Platt scaling on the logit of the raw study score, p = sigmoid(a * logit(raw) + b), fitted by
maximum likelihood on the validation split with Platt's smoothed targets ((N+ + 1) / (N+ + 2)
for positives, 1 / (N- + 2) for negatives), which keep the fit finite when the split separates
perfectly, as phantoms do. The map is monotone: ranks, AUC, the key slice and every
sensitivity / specificity at a mapped threshold are unchanged; what changes is the scale an
administrator tunes on (the shipped raw operating points sat at 0.9968 and 0.99992, where every
flagged study read "1.00").

The estimate holds at the validation split's prevalence (the card says which); at another
prevalence the probability shifts, the ranking does not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

EPSILON = 1e-7  # raw probabilities are float32: 1 - 6e-8 is the last value below 1


def logit(probabilities: np.ndarray) -> np.ndarray:
    clipped = np.clip(np.asarray(probabilities, dtype=np.float64), EPSILON, 1 - EPSILON)
    return np.log(clipped) - np.log1p(-clipped)


def sigmoid(values: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -np.asarray(values, dtype=np.float64)))


@dataclass(frozen=True, kw_only=True)
class Calibration:
    a: float
    b: float

    def mapped(self, probabilities: np.ndarray) -> np.ndarray:
        """Raw probabilities (any shape) to calibrated ones, in float64."""
        return sigmoid(self.a * logit(probabilities) + self.b)

    def apply(self, probabilities: np.ndarray) -> np.ndarray:
        """... in float32, as the pipeline's probabilities are."""
        return self.mapped(probabilities).astype(np.float32)

    def value(self, probability: float) -> float:
        """One score (a threshold, a study score) with its full precision."""
        return float(self.mapped(np.asarray([probability]))[0])

    def as_json(self) -> dict[str, Any]:
        return {"method": "platt", "a": self.a, "b": self.b}


def platt_fit(raw_scores: np.ndarray, labels: np.ndarray, *, iterations: int = 100) -> Calibration:
    """Fit a and b by Newton's method with a backtracking line search on the smoothed-target
    log loss (convex: the search only keeps Newton from overshooting)."""
    x = logit(raw_scores)
    y = np.asarray(labels, dtype=bool)
    positives, negatives = int(y.sum()), int((~y).sum())
    if positives == 0 or negatives == 0:
        raise ValueError("calibration needs positive and negative studies")
    target = np.where(y, (positives + 1) / (positives + 2), 1 / (negatives + 2))

    def loss(a: float, b: float) -> float:
        z = a * x + b  # log(1 + e^z) - t z, computed without overflow
        return float(np.sum(np.logaddexp(0.0, z) - target * z))

    a, b = 1.0, 0.0
    current = loss(a, b)
    for _ in range(iterations):
        p = sigmoid(a * x + b)
        weight = np.maximum(p * (1 - p), 1e-12)
        residual = p - target
        gradient = np.array([np.dot(residual, x), residual.sum()])
        hessian = np.array(
            [[np.dot(weight, x * x), np.dot(weight, x)], [np.dot(weight, x), weight.sum()]]
        ) + 1e-9 * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        scale = 1.0
        while scale > 1e-8:
            trial = loss(a - scale * float(step[0]), b - scale * float(step[1]))
            if trial <= current:
                break
            scale /= 2
        a, b = a - scale * float(step[0]), b - scale * float(step[1])
        improvement, current = current - trial, trial
        if improvement < 1e-12 * max(1.0, abs(current)):
            break
    return Calibration(a=a, b=b)


@dataclass(frozen=True, kw_only=True)
class ReliabilityBin:
    low: float
    high: float
    count: int
    mean_score: float | None
    observed: float | None  # the fraction positive among the studies in the bin


def reliability_bins(
    scores: np.ndarray, labels: np.ndarray, *, bins: int = 10
) -> list[ReliabilityBin]:
    """Equal-width bins of the score, each with its mean score and observed positive rate: the
    reliability diagram's points."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(scores, edges[1:-1]), 0, bins - 1)
    out = []
    for b in range(bins):
        inside = index == b
        count = int(inside.sum())
        out.append(
            ReliabilityBin(
                low=float(edges[b]),
                high=float(edges[b + 1]),
                count=count,
                mean_score=float(scores[inside].mean()) if count else None,
                observed=float(labels[inside].mean()) if count else None,
            )
        )
    return out


def expected_calibration_error(scores: np.ndarray, labels: np.ndarray, *, bins: int = 10) -> float:
    """Sum over the bins of (share of studies) x |mean score - observed positive rate|."""
    total = len(scores)
    return float(
        sum(
            (entry.count / total) * abs(entry.mean_score - entry.observed)
            for entry in reliability_bins(scores, labels, bins=bins)
            if entry.count and entry.mean_score is not None and entry.observed is not None
        )
    )
