"""A model against the "other hospital" (`inference.other_site`): the generator it never saw.

torch-free. The data set is written as DICOM and read back through `inference.scoring.
folder_score`, exactly as `validate_model` and a worker read a site's studies, so the storage
variants of the other site (12- or 16-bit unsigned, its intercepts and slopes, padding, slice
order, shuffled files) are part of what is measured. Figures: AUC, sensitivity and specificity
at the card's shipped threshold, each with a 95% bootstrap interval, and sensitivity per lesion
type.
"""

from __future__ import annotations

import csv
import hashlib
import inspect
import json
import os
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from inference.other_site import GENERATORS, SEED_START, other_site_dataset_write
from inference.pipeline import DecodeError
from inference.registry import card_load
from inference.scoring import FolderError, folder_score
from inference.training.data import Log
from inference.training.metrics import study_metrics
from triage.findings import Finding

OTHER_SITE_DIR = Path(__file__).resolve().parent.parent / "other_site"
SHARED = ("__init__.py", "volume.py", "writer.py")
SUPPORTED = tuple(str(finding) for finding in GENERATORS)
DESCRIPTIONS = {
    "intracranial_hemorrhage": "head CT written apart from the training phantoms (other anatomy "
    "construction, bleed shapes, 256-px matrix, 12-bit unsigned storage)",
    "pulmonary_embolism": "CT pulmonary angiograms written apart from the training phantoms "
    "(other chest, heart and great vessels, random arterial and venous trees, embolus shapes "
    "and mimics including a poor bolus, 256-px matrix, 16-bit signed storage)",
    "pneumothorax": "chest radiographs written apart from the training phantoms (projected "
    "thickness maps, other ribs, markings and pneumothorax shapes including the supine deep "
    "sulcus, mimics such as bullae and monitoring leads, non-square 0.9 mm DX, 14-bit "
    "MONOCHROME1, edge enhancement, collimation)",
    "fracture": "cervical-spine CT written apart from the training phantoms (other vertebra and "
    "arch construction, fracture shapes and mimics, 256-px matrix, 16-bit unsigned storage with "
    "slope 0.5)",
}


def other_site_fingerprint(finding: str) -> str:
    """SHA-256 over the code that makes one finding's other-site studies: its generator module
    and the shared volume, writer and package files."""
    generate, _ = GENERATORS[Finding(finding)]
    module = Path(inspect.getfile(generate))
    digest = hashlib.sha256()
    for path in sorted({module, *(OTHER_SITE_DIR / name for name in SHARED)}):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _dataset_labels(
    dataset: Path,
    *,
    finding: str,
    studies: int,
    fingerprint: str,
    reuse: bool,
    progress: Callable[[int, int], None],
) -> dict[str, bool]:
    """The labels of the data set in `dataset`: written there, or, with `reuse`, read back when
    the folder holds exactly this data set (finding, studies, generator code); a folder holding
    anything else is refused rather than silently measured."""
    wanted = {
        "finding": finding,
        "studies": studies,
        "seed_start": SEED_START,
        "generator_sha256": fingerprint,
    }
    described = dataset / "dataset.json"
    if reuse and dataset.exists() and any(dataset.iterdir()):
        found = json.loads(described.read_text()) if described.exists() else None
        if found != wanted:
            differs = sorted(k for k in wanted if not found or found.get(k) != wanted[k])
            raise ValueError(
                f"--work {dataset} holds another data set (differs in: {', '.join(differs)}); "
                "give an empty or new folder"
            )
        with open(dataset / "labels.csv", newline="") as handle:
            return {row["study"]: row["label"] == "1" for row in csv.DictReader(handle)}
    labels = other_site_dataset_write(dataset, finding=finding, studies=studies, progress=progress)
    described.write_text(json.dumps(wanted, indent=1) + "\n")
    return labels


def other_site_evaluate(
    *,
    folder: Path,
    studies: int,
    work: Path | None = None,
    record: bool = False,
    log: Log = print,
) -> dict[str, Any]:
    """Score `studies` other-site studies with the model in `folder`; with `record`, write the
    result into its card under "other_site" (the model file is not changed)."""
    card = card_load(folder)
    if str(card.finding) not in SUPPORTED:
        raise ValueError(f"the other site has no studies for {card.finding} yet (only {SUPPORTED})")
    started = time.monotonic()
    # read once: the card names the code the data set was written (or checked) with
    fingerprint = other_site_fingerprint(str(card.finding))
    with tempfile.TemporaryDirectory(prefix="other-site-") as scratch:
        dataset = work or Path(scratch)

        def written(done: int, total: int) -> None:
            if done % 10 == 0 or done == total:
                elapsed = time.monotonic() - started
                log(f"  other site: {done}/{total} studies written, {elapsed:.0f}s")

        labels = _dataset_labels(
            dataset, finding=str(card.finding), studies=studies, fingerprint=fingerprint,
            reuse=work is not None, progress=written,
        )  # fmt: skip
        scores, truth, subtypes, unscored = [], [], [], []
        scoring = time.monotonic()
        for done, (name, positive) in enumerate(sorted(labels.items()), start=1):
            try:
                score, _ = folder_score(card, dataset / name, threads=2)
            except (FolderError, DecodeError) as failure:
                # a study the model cannot read is reported, not scored, and the run goes on
                unscored.append(name)
                log(f"  {name}: not scored ({failure})")
                continue
            scores.append(score)
            truth.append(positive)
            subtypes.append(json.loads((dataset / name / "truth.json").read_text())["subtype"])
            if done % 10 == 0 or done == len(labels):
                log(f"  scored {done}/{len(labels)}, {time.monotonic() - scoring:.0f}s")
    if len(set(truth)) < 2:
        raise ValueError(f"too few studies could be scored ({len(scores)} of {len(labels)})")
    score_array, truth_array = np.asarray(scores), np.asarray(truth, dtype=bool)
    threshold = card.threshold
    result: dict[str, Any] = {
        "generator": f"inference.other_site: {DESCRIPTIONS[str(card.finding)]}; never used for "
        "training, validation or operating points",
        "generator_sha256": fingerprint,
        "seeds": f"{SEED_START}-{SEED_START + len(labels) - 1}",
        "threshold": threshold,
        "unscored": unscored,
        **study_metrics(score_array, truth_array, threshold=threshold),
        "sensitivity_by_subtype": {
            subtype: round(float((score_array[chosen] >= threshold).mean()), 4)
            for subtype in sorted(set(subtypes))
            if (chosen := truth_array & (np.asarray(subtypes) == subtype)).any()
        },
        "measured_at": datetime.now(UTC).strftime("%Y-%m-%d"),
        "seconds": round(time.monotonic() - started, 1),
    }
    log(
        f"{card.label} on the other site ({len(scores)} studies, "
        f"{int(truth_array.sum())} positive"
        + (f"; {len(unscored)} could not be scored" if unscored else "")
        + f"): AUC {result['auc']} {result['auc_ci95']}, "
        f"at the shipped threshold {threshold:.4f}: "
        f"sensitivity {result['sensitivity']} {result['sensitivity_ci95']}, specificity "
        f"{result['specificity']} {result['specificity_ci95']}; by type "
        f"{result['sensitivity_by_subtype']}; {result['seconds']:.0f}s"
    )
    if record:
        raw = json.loads((folder / "card.json").read_text())
        raw["other_site"] = result
        staged = folder / "card.json.partial"
        staged.write_text(json.dumps(raw, indent=2) + "\n")
        os.replace(staged, folder / "card.json")
        log(f"recorded in {folder / 'card.json'}")
    return result
