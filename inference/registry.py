"""The model registry: each model is a folder with an ONNX file and a card (card.json).

Cards are parsed into typed values and verified against their checksums at load; a model whose
card is malformed or whose file fails is refused with a clear reason and the others keep serving.
Sites add their own folders without code changes.

Nothing here imports ONNX Runtime (or numpy): web processes read cards through
`registry_current()` without loading an inference engine.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from django.conf import settings

from inference.calibration import Calibration
from inference.routing import ApplicabilityRule, SeriesSelection
from triage.findings import Finding

logger = logging.getLogger(__name__)

SHIPPED_MODELS_DIR = Path(__file__).resolve().parent / "models"
DEMONSTRATION_NOTICE = (
    "Demonstration model trained on synthetic phantoms; no clinical validity, not for patient care."
)


class CardError(Exception):
    pass


# ----------------------------------------------------------------------- typed card values


class PreprocessingKind(StrEnum):
    CT_SLICES = "ct_slices"
    RADIOGRAPH = "radiograph"


@dataclass(frozen=True)
class Window:
    """A display window in Hounsfield units."""

    center: float
    width: float


@dataclass(frozen=True, kw_only=True)
class CtSlicesPreprocessing:
    """One input per slice: for each window, the slice and `neighbours` slices either side."""

    kind: ClassVar[PreprocessingKind] = PreprocessingKind.CT_SLICES
    size: int
    windows: tuple[Window, ...]
    neighbours: int = 1

    @property
    def channels(self) -> int:
        return len(self.windows) * (2 * self.neighbours + 1)

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "size": self.size,
            "windows": [[window.center, window.width] for window in self.windows],
            "neighbours": self.neighbours,
        }


@dataclass(frozen=True, kw_only=True)
class RadiographPreprocessing:
    """One input per image, intensities in [0, 1] with bright = dense."""

    kind: ClassVar[PreprocessingKind] = PreprocessingKind.RADIOGRAPH
    size: int

    @property
    def channels(self) -> int:
        return 1

    def as_json(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "size": self.size}


Preprocessing = CtSlicesPreprocessing | RadiographPreprocessing


class AggregationMethod(StrEnum):
    MAX = "max"
    TOPK_MEAN = "topk_mean"


@dataclass(frozen=True)
class Aggregation:
    """How slice probabilities become a study score: `max`, or `topk_mean:K` (mean of the K
    highest). The key slice is the most probable one either way."""

    method: AggregationMethod
    k: int = 1  # topk_mean only

    @classmethod
    def parse(cls, text: str) -> Aggregation:
        if text == AggregationMethod.MAX.value:
            return cls(AggregationMethod.MAX)
        prefix = f"{AggregationMethod.TOPK_MEAN.value}:"
        if text.startswith(prefix) and re.fullmatch(r"[1-9][0-9]*", text[len(prefix) :]):
            return cls(AggregationMethod.TOPK_MEAN, int(text[len(prefix) :]))
        raise ValueError(f"unknown aggregation {text!r}; use max or topk_mean:K (K >= 1)")

    def __str__(self) -> str:
        if self.method is AggregationMethod.MAX:
            return self.method.value
        return f"{self.method.value}:{self.k}"


@dataclass(frozen=True, kw_only=True)
class ModelOutputs:
    """The names of the model's outputs: the slice logit (N, 1) and the activation map
    (N, h, w). Outputs are read by these names, whatever order the model lists them in."""

    logit: str = "logit"
    activation_map: str = "cam"

    def as_json(self) -> dict[str, str]:
        return {"logit": self.logit, "activation_map": self.activation_map}


@dataclass(frozen=True, kw_only=True)
class ModelCard:
    name: str
    finding: Finding
    version: str
    folder: Path
    file: str
    sha256: str
    applies_to: ApplicabilityRule
    series_selection: SeriesSelection
    preprocessing: Preprocessing
    outputs: ModelOutputs
    aggregation: Aggregation
    threshold: float
    demonstration: bool
    intended_use: str
    metrics: dict[str, Any] = field(default_factory=dict)
    # Measured on the other-site generator (inference.other_site), when it has been.
    other_site: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    # None: scores are the model's raw probabilities (a card without a `calibration` block).
    calibration: Calibration | None = None

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


# ------------------------------------------------------------------------- card parsing


Choice = TypeVar("Choice", bound=StrEnum)


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


class _Fields:
    """Typed reads from one JSON object of a card; every error names the field. A field with
    a default may be absent; one without is required."""

    def __init__(self, raw: object, where: str = "") -> None:
        if not isinstance(raw, dict):
            raise CardError(f"{where or 'card'}: expected an object, got {_type_name(raw)}")
        self.raw: dict[str, Any] = raw
        self.where = where

    def name(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def value(self, key: str, *, required: bool) -> Any:
        if key not in self.raw:
            if required:
                raise CardError(f"missing field {self.name(key)}")
            return None
        return self.raw[key]

    def wrong(self, key: str, expected: str, value: object) -> CardError:
        return CardError(
            f"{self.name(key)}: expected {expected}, got {value!r} ({_type_name(value)})"
        )

    def only(self, allowed: Iterable[str]) -> None:
        unknown = sorted(set(self.raw) - set(allowed))
        if unknown:
            where = self.where or "card"
            raise CardError(f"{where}: unknown field(s) {', '.join(unknown)}")

    def text(self, key: str, default: str | None = None) -> str:
        if default is not None and key not in self.raw:
            return default
        value = self.value(key, required=True)
        if not isinstance(value, str) or not value.strip():
            raise self.wrong(key, "a non-empty string", value)
        return value

    def choice(
        self, key: str, kind: type[Choice], *, what: str, default: str | None = None
    ) -> Choice:
        text = self.text(key, default=default)
        try:
            return kind(text)
        except ValueError:
            allowed = ", ".join(member.value for member in kind)
            raise CardError(
                f"{self.name(key)}: unknown {what} {text!r}; use one of {allowed}"
            ) from None

    def number(self, key: str) -> float:
        value = self.value(key, required=True)
        return self._as_number(key, value)

    def _as_number(self, key: str, value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.wrong(key, "a number", value)
        return value

    def optional_number(self, key: str) -> float | None:
        value = self.value(key, required=False)
        return None if value is None else self._as_number(key, value)

    def integer(self, key: str, *, minimum: int, default: int | None = None) -> int:
        if default is not None and key not in self.raw:
            return default
        value = self.value(key, required=True)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.wrong(key, f"a whole number >= {minimum}", value)
        return value

    def boolean(self, key: str, default: bool) -> bool:
        if key not in self.raw:
            return default
        value = self.value(key, required=True)
        if not isinstance(value, bool):
            raise self.wrong(key, "true or false", value)
        return value

    def optional_boolean(self, key: str) -> bool | None:
        value: bool | None = self.optional(key, bool, "true, false or null")
        return value

    def texts(self, key: str, *, required: bool = False) -> tuple[str, ...]:
        if not required and key not in self.raw:
            return ()
        value = self.value(key, required=True)
        if not isinstance(value, list) or not all(
            isinstance(item, str) and item.strip() for item in value
        ):
            raise self.wrong(key, "a list of non-empty strings", value)
        if required and not value:
            raise self.wrong(key, "a non-empty list of strings", value)
        return tuple(value)

    def optional(self, key: str, kind: type, expected: str) -> Any:
        """The value if present and of `kind`, else None if absent."""
        value = self.value(key, required=False)
        if value is not None and not isinstance(value, kind):
            raise self.wrong(key, expected, value)
        return value

    def child(self, key: str) -> _Fields:
        return _Fields(self.value(key, required=True), self.name(key))


def applicability_parse(finding: Finding, fields: _Fields) -> ApplicabilityRule:
    fields.only(
        {
            "modalities",
            "body_parts",
            "description_keywords",
            "exclude_keywords",
            "requires_contrast",
            "min_instances",
            "max_slice_thickness",
        }
    )
    return ApplicabilityRule(
        finding=finding,
        modalities=frozenset(m.upper() for m in fields.texts("modalities", required=True)),
        body_parts=frozenset(b.upper() for b in fields.texts("body_parts")),
        description_keywords=tuple(k.upper() for k in fields.texts("description_keywords")),
        exclude_keywords=tuple(k.upper() for k in fields.texts("exclude_keywords")),
        requires_contrast=fields.optional_boolean("requires_contrast"),
        min_instances=fields.integer("min_instances", minimum=1, default=1),
        max_slice_thickness=fields.optional_number("max_slice_thickness"),
    )


def _window_parse(fields: _Fields, index: int, value: object) -> Window:
    name = f"{fields.name('windows')}[{index}]"
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    ):
        raise CardError(f"{name}: expected [center, width] numbers, got {value!r}")
    center, width = value
    if width <= 0:
        raise CardError(f"{name}: the width must be positive, got {width!r}")
    return Window(center, width)


def preprocessing_parse(fields: _Fields) -> Preprocessing:
    kind = fields.choice("kind", PreprocessingKind, what="pre-processing kind")
    if kind is PreprocessingKind.RADIOGRAPH:
        fields.only({"kind", "size"})
        return RadiographPreprocessing(size=fields.integer("size", minimum=1))
    fields.only({"kind", "size", "windows", "neighbours"})
    windows = fields.value("windows", required=True)
    if not isinstance(windows, list) or not windows:
        raise CardError(f"{fields.name('windows')}: expected a non-empty list of [center, width]")
    return CtSlicesPreprocessing(
        size=fields.integer("size", minimum=1),
        windows=tuple(_window_parse(fields, index, value) for index, value in enumerate(windows)),
        neighbours=fields.integer("neighbours", minimum=0, default=1),
    )


def outputs_parse(fields: _Fields) -> ModelOutputs:
    fields.only({"logit", "activation_map"})
    outputs = ModelOutputs(logit=fields.text("logit"), activation_map=fields.text("activation_map"))
    if outputs.logit == outputs.activation_map:
        raise CardError(f"{fields.where}: logit and activation_map name the same output")
    return outputs


def calibration_parse(fields: _Fields) -> Calibration:
    method = fields.text("method")
    if method != "platt":
        raise CardError(f"{fields.where}.method: expected 'platt', got {method!r}")
    a, b = fields.number("a"), fields.number("b")
    if not (math.isfinite(a) and math.isfinite(b)) or a <= 0:
        raise CardError(f"{fields.where}: expected finite a > 0 and b, got a={a!r} b={b!r}")
    return Calibration(a=float(a), b=float(b))


def card_parse(raw: object, *, folder: Path) -> ModelCard:
    """The typed card of one card.json's contents; raise CardError naming what is wrong."""
    fields = _Fields(raw)
    finding = fields.choice("finding", Finding, what="finding")
    sha256 = fields.text("sha256").lower()
    if not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise CardError(f"sha256: expected 64 hexadecimal digits, got {sha256!r}")
    selection = fields.choice(
        "series_selection", SeriesSelection, what="selection", default=SeriesSelection.THINNEST
    )
    aggregation_text = fields.text("aggregation", default=AggregationMethod.MAX.value)
    try:
        aggregation = Aggregation.parse(aggregation_text)
    except ValueError as exc:
        raise CardError(f"aggregation: {exc}") from None
    operating_point = fields.child("operating_point")
    threshold = operating_point.number("threshold")
    if not 0.0 <= threshold <= 1.0:
        raise CardError(f"operating_point.threshold: expected a probability, got {threshold!r}")
    file = fields.text("file", default="model.onnx")
    if Path(file).name != file:
        raise CardError(f"file: expected a file name in the model folder, got {file!r}")
    metrics: dict[str, Any] | None = fields.optional("metrics", dict, "an object")
    other_site: dict[str, Any] | None = fields.optional("other_site", dict, "an object")
    calibration = (
        calibration_parse(fields.child("calibration")) if "calibration" in fields.raw else None
    )
    intended_use: str | None = fields.optional("intended_use", str, "a string")
    return ModelCard(
        name=fields.text("name"),
        finding=finding,
        version=fields.text("version"),
        folder=folder,
        file=file,
        sha256=sha256,
        applies_to=applicability_parse(finding, fields.child("applies_to")),
        series_selection=selection,
        preprocessing=preprocessing_parse(fields.child("preprocessing")),
        outputs=(
            outputs_parse(fields.child("outputs")) if "outputs" in fields.raw else ModelOutputs()
        ),
        aggregation=aggregation,
        threshold=float(threshold),
        demonstration=fields.boolean("demonstration", default=False),
        intended_use=intended_use or "",
        metrics=dict(metrics or {}),
        other_site=dict(other_site or {}),
        raw=fields.raw,
        calibration=calibration,
    )


# ---------------------------------------------------------------------------- loading


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(chunk)
    return digest.hexdigest()


def card_load(folder: Path) -> ModelCard:
    """Read, parse and verify one model folder; raise CardError with the reason it is refused."""
    try:
        raw = json.loads((folder / "card.json").read_text())
    except (OSError, ValueError) as exc:
        raise CardError(f"unreadable card.json: {exc}") from exc
    try:
        card = card_parse(raw, folder=folder)
    except CardError as exc:
        raise CardError(f"invalid card: {exc}") from exc
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


@lru_cache(maxsize=1)
def registry_current() -> Registry:
    """This process's registry: the models under settings.INFERENCE_MODEL_DIRS, loaded once."""
    return registry_load([Path(root) for root in settings.INFERENCE_MODEL_DIRS])
