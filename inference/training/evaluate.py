"""Study-level evaluation of an exported model with ONNX Runtime, as a worker would run it.

torch-free: slice probabilities come from `pipeline.predict` on the ONNX file, study scores from
`pipeline.aggregate`, metrics from `training.metrics`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inference.pipeline import aggregate, predict
from inference.registry import Aggregation
from inference.runtime import session_create
from inference.training.data import PhantomStudy
from inference.training.metrics import auc, sensitivity, specificity

# "clearly better": an aggregation other than the first candidate must beat it by this much AUC
AGGREGATION_MARGIN = 0.01


@dataclass(frozen=True, kw_only=True)
class StudyPredictions:
    """Slice (or image) probabilities of each study, with its truth."""

    seeds: list[int]
    probabilities: list[np.ndarray]
    positive: np.ndarray  # bool (studies,)
    subtypes: list[str]

    def scores(self, method: Aggregation) -> np.ndarray:
        return np.asarray([aggregate(p, method=method)[0] for p in self.probabilities])

    @property
    def seed_span(self) -> str:
        return f"{min(self.seeds)}-{max(self.seeds)}"


def onnx_session(path: Path) -> Any:
    """A CPU session built the way the worker builds one (two threads, no spinning)."""
    return session_create(path, threads=2, providers=["CPUExecutionProvider"]).session


def studies_predict(session: Any, studies: Iterable[PhantomStudy]) -> StudyPredictions:
    seeds, probabilities, positive, subtypes = [], [], [], []
    for study in studies:
        slice_probabilities, _ = predict(session, study.inputs)
        seeds.append(study.seed)
        probabilities.append(slice_probabilities)
        positive.append(study.positive)
        subtypes.append(study.subtype)
    return StudyPredictions(
        seeds=seeds,
        probabilities=probabilities,
        positive=np.asarray(positive, dtype=bool),
        subtypes=subtypes,
    )


def aggregation_select(
    predictions: StudyPredictions, candidates: Sequence[Aggregation]
) -> tuple[Aggregation, dict[str, float]]:
    """The first candidate, unless another beats its validation AUC by AGGREGATION_MARGIN; with
    every candidate's validation AUC by its card name."""
    aucs = {method: auc(predictions.scores(method), predictions.positive) for method in candidates}
    chosen = candidates[0]
    for method in candidates[1:]:
        if aucs[method] >= aucs[chosen] + AGGREGATION_MARGIN:
            chosen = method
    return chosen, {str(method): round(value, 4) for method, value in aucs.items()}


def subtype_sensitivity(
    predictions: StudyPredictions, *, method: Aggregation, threshold: float
) -> dict[str, dict[str, Any]]:
    """Sensitivity per phantom subtype of the positive studies (where a miss comes from)."""
    scores = predictions.scores(method)
    subtypes = np.asarray(predictions.subtypes)
    result: dict[str, dict[str, Any]] = {}
    for subtype in sorted(set(subtypes[predictions.positive].tolist())):
        chosen = (subtypes == subtype) & predictions.positive
        result[subtype] = {
            "positives": int(chosen.sum()),
            "sensitivity": round(float((scores[chosen] >= threshold).mean()), 4),
        }
    return result


def subtype_specificity(
    predictions: StudyPredictions, *, method: Aggregation, threshold: float
) -> dict[str, dict[str, Any]]:
    """Specificity per phantom subtype of the negative studies (which mimic causes alarms)."""
    scores = predictions.scores(method)
    subtypes = np.asarray(predictions.subtypes)
    negative = ~predictions.positive
    result: dict[str, dict[str, Any]] = {}
    for subtype in sorted(set(subtypes[negative].tolist())):
        chosen = (subtypes == subtype) & negative
        result[subtype] = {
            "negatives": int(chosen.sum()),
            "specificity": round(float((scores[chosen] < threshold).mean()), 4),
        }
    return result


def validation_summary(
    predictions: StudyPredictions, *, method: Aggregation, threshold: float
) -> dict[str, Any]:
    scores = predictions.scores(method)
    return {
        "studies": len(predictions.seeds),
        "auc": round(auc(scores, predictions.positive), 4),
        "sensitivity": round(sensitivity(scores, predictions.positive, threshold=threshold), 4),
        "specificity": round(specificity(scores, predictions.positive, threshold=threshold), 4),
    }
