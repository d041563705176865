"""Calibrate a shipped model's scores on its validation split and write the result into its card.

The model file is not touched; the card gains a `calibration` block (the Platt map, where it was
fitted, the expected calibration error and reliability diagram before and after, on the
validation split and on the held-out split), its thresholds move to the calibrated scale (the
same studies flagged), and its version's minor number goes up, since the scores it produces
change. torch-free: phantoms, pre-processing and ONNX Runtime only.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from inference.calibration import (
    Calibration,
    expected_calibration_error,
    platt_fit,
    reliability_bins,
)
from inference.registry import SHIPPED_MODELS_DIR, card_load
from inference.training.data import Log, phantom_generator, phantom_studies
from inference.training.evaluate import onnx_session, studies_predict
from inference.training.specs import (
    TEST_SEED_START,
    VALIDATION_SEED_START,
    seed_range,
    training_spec,
)
from triage.findings import Finding


def _split_report(
    scores: np.ndarray, positive: np.ndarray, calibration: Calibration
) -> dict[str, Any]:
    calibrated = calibration.apply(scores)
    return {
        "studies": int(scores.size),
        "positives": int(positive.sum()),
        "ece_raw": round(expected_calibration_error(scores, positive), 4),
        "ece_calibrated": round(expected_calibration_error(calibrated, positive), 4),
        "reliability_raw": [asdict(b) for b in reliability_bins(scores, positive)],
        "reliability_calibrated": [asdict(b) for b in reliability_bins(calibrated, positive)],
    }


def _bumped(version: str) -> str:
    major, minor, *_ = (version.split(".") + ["0", "0"])[:3]
    return f"{major}.{int(minor) + 1}.0"


def model_calibrate(
    *,
    finding: Finding | str,
    folder: Path | None = None,
    validation_studies: int | None = None,
    test_studies: int | None = None,
    log: Log = print,
) -> dict[str, Any]:
    spec = training_spec(finding)
    folder = folder or SHIPPED_MODELS_DIR / spec.finding.value
    card = card_load(folder)
    if card.calibration is not None:
        raise ValueError(f"{card.label} is calibrated already ({folder / 'card.json'})")
    raw_card = json.loads((folder / "card.json").read_text())
    session = onnx_session(card.onnx_path)
    generate = phantom_generator()
    started = time.monotonic()
    splits = {}
    for name, start, count in (
        ("validation", VALIDATION_SEED_START, validation_studies or spec.validation_studies),
        ("held_out", TEST_SEED_START, test_studies or spec.test_studies),
    ):
        predictions = studies_predict(
            session,
            phantom_studies(spec, generate=generate, seeds=seed_range(start, count),
                            label=name, log=log),
        )  # fmt: skip
        splits[name] = (predictions.scores(card.aggregation), predictions.positive, predictions)
    scores, positive, validation = splits["validation"]
    calibration = platt_fit(scores, positive)
    point = raw_card["operating_point"]
    raw_threshold = float(point["threshold"])
    point["threshold_raw"] = raw_threshold
    point["threshold"] = calibration.value(raw_threshold)
    if "highest_threshold_reaching_sensitivity" in point:
        point["highest_threshold_reaching_sensitivity"] = calibration.value(
            float(point["highest_threshold_reaching_sensitivity"])
        )
    # The same studies are flagged at the mapped threshold (the map is monotone): checked.
    for split_scores, _, _ in splits.values():
        mapped = calibration.apply(split_scores) >= point["threshold"]
        if not np.array_equal(split_scores >= raw_threshold, mapped):
            raise RuntimeError("calibration changed which studies are flagged")
    raw_card["calibration"] = {
        **calibration.as_json(),
        "fitted_on": (
            f"validation phantoms, seeds {validation.seed_span} "
            f"({int(positive.sum())} positive of {positive.size}, prevalence "
            f"{positive.mean():.2f}): study scores "
            f"({card.aggregation}) through p = sigmoid(a * logit(raw) + b), maximum likelihood "
            "with Platt's smoothed targets"
        ),
        "meaning": (
            "an estimated probability at the validation prevalence; ranking, AUC, sensitivity "
            "and specificity are those of the raw score"
        ),
        "validation": _split_report(scores, positive, calibration),
        "held_out": _split_report(splits["held_out"][0], splits["held_out"][1], calibration),
    }
    raw_card["version"] = _bumped(str(raw_card["version"]))
    staged = folder / "card.json.partial"
    staged.write_text(json.dumps(raw_card, indent=2) + "\n")
    os.replace(staged, folder / "card.json")
    log(
        f"{spec.finding}: calibrated a={calibration.a:.4f} b={calibration.b:.4f}; threshold "
        f"{raw_threshold:.6f} -> {point['threshold']:.4f}; ECE validation "
        f"{raw_card['calibration']['validation']['ece_raw']} -> "
        f"{raw_card['calibration']['validation']['ece_calibrated']}, held-out "
        f"{raw_card['calibration']['held_out']['ece_raw']} -> "
        f"{raw_card['calibration']['held_out']['ece_calibrated']}; "
        f"{time.monotonic() - started:.0f}s"
    )
    return raw_card
