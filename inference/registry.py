"""The model registry: each model is a folder with an ONNX file and a card (card.json).

Cards are verified against their checksums at load; a model that fails is refused with a clear
reason and the others keep serving. Sites add their own folders without code changes.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inference.routing import ApplicabilityRule
from triage.findings import Finding

logger = logging.getLogger(__name__)

SHIPPED_MODELS_DIR = Path(__file__).resolve().parent / "models"
DEMONSTRATION_NOTICE = (
    "Demonstration model trained on synthetic phantoms; no clinical validity, not for patient care."
)


@dataclass(frozen=True, kw_only=True)
class ModelCard:
    name: str
    finding: Finding
    version: str
    folder: Path
    file: str
    sha256: str
    applies_to: ApplicabilityRule
    series_selection: str
    preprocessing: dict[str, Any]
    outputs: dict[str, str]
    aggregation: str
    threshold: float
    demonstration: bool
    intended_use: str
    metrics: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def onnx_path(self) -> Path:
        return self.folder / self.file

    @property
    def label(self) -> str:
        return f"{self.name} {self.version}"


@dataclass(frozen=True)
class RefusedModel:
    folder: Path
    reason: str


@dataclass(frozen=True)
class Registry:
    models: dict[str, ModelCard]
    refused: list[RefusedModel]

    def for_finding(self, finding: Finding | str) -> list[ModelCard]:
        return [card for card in self.models.values() if card.finding == Finding(finding)]


class CardError(Exception):
    pass


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(chunk)
    return digest.hexdigest()


def card_load(folder: Path) -> ModelCard:
    """Read and verify one model folder; raise CardError with the reason it is refused."""
    try:
        raw = json.loads((folder / "card.json").read_text())
    except (OSError, ValueError) as exc:
        raise CardError(f"unreadable card.json: {exc}") from exc
    try:
        rule = raw["applies_to"]
        card = ModelCard(
            name=str(raw["name"]),
            finding=Finding(raw["finding"]),
            version=str(raw["version"]),
            folder=folder,
            file=str(raw.get("file", "model.onnx")),
            sha256=str(raw["sha256"]).lower(),
            applies_to=ApplicabilityRule(
                finding=Finding(raw["finding"]),
                modalities=frozenset(m.upper() for m in rule["modalities"]),
                body_parts=frozenset(b.upper() for b in rule.get("body_parts", [])),
                description_keywords=tuple(k.upper() for k in rule.get("description_keywords", [])),
                requires_contrast=rule.get("requires_contrast"),
                min_instances=int(rule.get("min_instances", 1)),
                max_slice_thickness=rule.get("max_slice_thickness"),
            ),
            series_selection=str(raw.get("series_selection", "thinnest")),
            preprocessing=dict(raw["preprocessing"]),
            outputs=dict(raw.get("outputs", {"logit": "logit", "activation_map": "cam"})),
            aggregation=str(raw.get("aggregation", "max")),
            threshold=float(raw["operating_point"]["threshold"]),
            demonstration=bool(raw.get("demonstration", False)),
            intended_use=str(raw.get("intended_use", "")),
            metrics=dict(raw.get("metrics", {})),
            raw=raw,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CardError(f"invalid card: {type(exc).__name__}: {exc}") from exc
    if not card.onnx_path.is_file():
        raise CardError(f"model file {card.file} is missing")
    actual = file_sha256(card.onnx_path)
    if actual != card.sha256:
        raise CardError(
            f"checksum mismatch for {card.file}: card says {card.sha256[:12]}..., "
            f"file is {actual[:12]}..."
        )
    return card


def model_folders(roots: Iterable[Path]) -> list[Path]:
    folders = []
    for root in roots:
        if (root / "card.json").is_file():
            folders.append(root)
        elif root.is_dir():
            folders.extend(sorted(path.parent for path in root.glob("*/card.json")))
    return folders


def registry_load(roots: Sequence[Path]) -> Registry:
    """Load every model under `roots`; a later root's model replaces an earlier one's by name."""
    models: dict[str, ModelCard] = {}
    refused: list[RefusedModel] = []
    for folder in model_folders(roots):
        try:
            card = card_load(folder)
        except CardError as error:
            logger.error("model refused: %s: %s", folder, error)
            refused.append(RefusedModel(folder, str(error)))
            continue
        models[card.name] = card
    return Registry(models=models, refused=refused)
