"""Which models apply to a study, and which series each reads, from modality, body part and series.

Each model card carries an ApplicabilityRule, so a site's own model brings its own rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from triage.findings import Finding


@dataclass(frozen=True, kw_only=True)
class SeriesDescriptor:
    uid: str
    modality: str
    body_part: str
    description: str
    instance_count: int
    slice_thickness: float | None = None
    contrast_agent: str = ""


@dataclass(frozen=True, kw_only=True)
class StudyDescriptor:
    modality: str
    body_part: str
    description: str
    series: Sequence[SeriesDescriptor]


class SeriesSelection(StrEnum):
    THINNEST = "thinnest"  # the thinnest slices, then the most images
    LARGEST = "largest"  # the most images


@dataclass(frozen=True, kw_only=True)
class ApplicabilityRule:
    finding: Finding
    modalities: frozenset[str]
    body_parts: frozenset[str] = frozenset()
    description_keywords: tuple[str, ...] = ()
    requires_contrast: bool | None = None  # None: either
    min_instances: int = 1
    max_slice_thickness: float | None = None
    # A series whose study or series description holds one of these is never read (say
    # "SCOUT" or "PERFUSION"); upper case, from the card's applies_to.exclude_keywords.
    exclude_keywords: tuple[str, ...] = ()

    def series_applies(self, study: StudyDescriptor, series: SeriesDescriptor) -> bool:
        if series.modality not in self.modalities or series.instance_count < self.min_instances:
            return False
        if (
            self.max_slice_thickness is not None
            and series.slice_thickness is not None
            and series.slice_thickness > self.max_slice_thickness
        ):
            return False
        text = " ".join((study.description, series.description)).upper()
        if any(keyword in text for keyword in self.exclude_keywords):
            return False
        anatomy_matches = bool(
            self.body_parts & {study.body_part.upper(), series.body_part.upper()}
        ) or any(keyword in text for keyword in self.description_keywords)
        if not anatomy_matches:
            return False
        if self.requires_contrast is not None:
            if contrast_given(text=text, agent=series.contrast_agent) != self.requires_contrast:
                return False
        return True


_WITHOUT_CONTRAST = (
    "WO CONTRAST",
    "W/O",
    "WITHOUT CONTRAST",
    "NON-CONTRAST",
    "NONCONTRAST",
    "NON CONTRAST",
    "PLAIN",
    " C-",
)
_WITH_CONTRAST = ("CONTRAST", " C+", "CTPA", "ANGIO", "CTA ", "ARTERIAL", "PORTAL")


def contrast_given(*, text: str, agent: str) -> bool:
    """Contrast from the Contrast/Bolus Agent attribute, else from the descriptions' wording."""
    if agent.strip():
        return True
    padded = f" {text.upper()} "
    if any(phrase in padded for phrase in _WITHOUT_CONTRAST):
        return False
    return any(phrase in padded for phrase in _WITH_CONTRAST)


def series_select(
    study: StudyDescriptor,
    rule: ApplicabilityRule,
    *,
    selection: SeriesSelection = SeriesSelection.THINNEST,
) -> SeriesDescriptor | None:
    """The series a model should read: among those that qualify, the thinnest slices (then the
    most images); `largest` prefers the most images."""
    candidates = [series for series in study.series if rule.series_applies(study, series)]
    if not candidates:
        return None
    if selection == SeriesSelection.LARGEST:
        return max(candidates, key=lambda series: series.instance_count)
    return min(
        candidates,
        key=lambda series: (
            series.slice_thickness if series.slice_thickness is not None else float("inf"),
            -series.instance_count,
        ),
    )
