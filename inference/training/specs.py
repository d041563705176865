"""What each shipped model is: pre-processing, applicability, seed ranges and training defaults.

torch-free. The defaults here are the settings the shipped models were trained with, so
`manage.py train_model --finding F --seed N` reproduces a shipped model without further flags.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from inference.registry import (
    Aggregation,
    AggregationMethod,
    CtSlicesPreprocessing,
    Preprocessing,
    RadiographPreprocessing,
    Window,
)
from triage.findings import Finding

# Seed ranges: disjoint, so no held-out phantom is ever generated for training or validation.
TRAIN_SEED_START = 1_000_000
VALIDATION_SEED_START = 5_000_000
TEST_SEED_START = 9_000_000
DEFAULT_SEED = 20_240_601  # torch / sampling seed of the shipped models
CAM_CELLS = 8  # the activation map is CAM_CELLS x CAM_CELLS cells over the whole input

INTENDED_USE = (
    "Demonstration model trained on synthetic phantoms by this repository. It has no clinical "
    "validity, has never seen a real patient image, and must not be used to guide patient care."
)


@dataclass(frozen=True, kw_only=True)
class TrainingSpec:
    finding: Finding
    modality_label: str  # words for the card's training_data sentence
    preprocessing: Preprocessing
    applies_to: dict[str, Any]  # written to the card as is
    series_selection: str = "thinnest"
    # Study-score aggregations tried on validation; the first is the default and another one
    # replaces it only when it is clearly better there (see build.aggregation_select).
    aggregations: tuple[Aggregation, ...] = (Aggregation(AggregationMethod.MAX),)
    train_studies: int = 600
    validation_studies: int = 300
    test_studies: int = 500
    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 3e-3
    # CT: the training pool holds every positive slice and up to this many negatives per study;
    # each epoch draws `negatives_per_positive` negatives per positive, `hard_fraction` of them
    # the pool's highest-scoring (hard-negative mining). None: every input, every epoch.
    negative_slices_per_study: int = 24
    positive_slices_per_study: int | None = None  # None: every positive slice
    negatives_per_positive: float | None = 2.0
    hard_fraction: float = 0.5
    widths: tuple[int, ...] = (16, 32, 48, 64)
    repeats: tuple[int, ...] = (0, 1, 1, 1)  # extra stride-1 convolutions per block
    downsample_first: bool = False
    pooling: str = "lse"
    cell_loss_weight: float = 1.0  # weight of the lesion-mask loss on the activation map
    min_sensitivity: float = 0.95

    @property
    def is_ct(self) -> bool:
        return isinstance(self.preprocessing, CtSlicesPreprocessing)

    @property
    def in_channels(self) -> int:
        return self.preprocessing.channels


SPECS: dict[Finding, TrainingSpec] = {
    spec.finding: spec
    for spec in (
        TrainingSpec(
            finding=Finding.INTRACRANIAL_HEMORRHAGE,
            modality_label="non-contrast head CT",
            preprocessing=CtSlicesPreprocessing(
                size=64,
                windows=(Window(40, 80), Window(80, 200)),
                neighbours=1,
            ),
            applies_to={
                "modalities": ["CT"],
                "body_parts": ["HEAD", "BRAIN", "SKULL"],
                "description_keywords": ["HEAD", "BRAIN", "CRANI"],
                "requires_contrast": False,
                "min_instances": 16,
                "max_slice_thickness": 5.0,
            },
        ),
        TrainingSpec(
            finding=Finding.PULMONARY_EMBOLISM,
            modality_label="CT pulmonary angiogram",
            # Full phantom resolution (a segmental embolus is 2 px wide at 64) and a narrow window
            # that sets a 20-50 HU filling defect apart from 130-180 HU mixing artefact.
            preprocessing=CtSlicesPreprocessing(
                size=128,
                windows=(Window(100, 700), Window(100, 250)),
                neighbours=1,
            ),
            applies_to={
                "modalities": ["CT"],
                "body_parts": ["CHEST", "THORAX", "LUNG"],
                "description_keywords": ["CTPA", "PULMONARY ANGIO", "CHEST", "THORAX"],
                "requires_contrast": True,
                "min_instances": 32,
                "max_slice_thickness": 3.0,
            },
            # Long thin-slice series (~180 slices): more studies for variety, a larger negative
            # pool per study, evenly spaced positives (adjacent 1 mm slices are near-duplicates),
            # and a smaller validation set to keep phantom generation within minutes.
            train_studies=700,
            validation_studies=200,
            negative_slices_per_study=24,
            positive_slices_per_study=8,
            epochs=20,
        ),
        TrainingSpec(
            finding=Finding.PNEUMOTHORAX,
            modality_label="chest radiograph",
            preprocessing=RadiographPreprocessing(size=128),
            applies_to={
                "modalities": ["CR", "DX"],
                "body_parts": ["CHEST", "THORAX"],
                "description_keywords": ["CHEST", "THORAX", "CXR"],
                "requires_contrast": None,
                "min_instances": 1,
                "max_slice_thickness": None,
            },
            train_studies=800,
            epochs=8,
            batch_size=32,
            negatives_per_positive=None,
        ),
        TrainingSpec(
            finding=Finding.FRACTURE,
            modality_label="cervical-spine CT",
            preprocessing=CtSlicesPreprocessing(
                size=64,
                windows=(Window(500, 2000), Window(40, 400)),
                neighbours=1,
            ),
            applies_to={
                "modalities": ["CT"],
                "body_parts": ["CSPINE", "NECK"],
                "description_keywords": ["C-SPINE", "CSPINE", "CERVICAL"],
                "requires_contrast": None,
                "min_instances": 16,
                "max_slice_thickness": 3.0,
            },
        ),
    )
}


def training_spec(finding: Finding | str) -> TrainingSpec:
    return SPECS[Finding(finding)]


def seed_range(start: int, count: int) -> range:
    return range(start, start + count)


def study_is_positive(seed: int, start: int) -> bool:
    """Balanced classes: even offsets in a seed range are positive studies, odd ones negative."""
    return (seed - start) % 2 == 0
