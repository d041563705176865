"""The catalogue of findings the product flags: names, severity and read-by targets."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Finding(StrEnum):
    INTRACRANIAL_HEMORRHAGE = "intracranial_hemorrhage"
    PULMONARY_EMBOLISM = "pulmonary_embolism"
    PNEUMOTHORAX = "pneumothorax"
    FRACTURE = "fracture"


@dataclass(frozen=True, kw_only=True)
class FindingSpec:
    finding: Finding
    label: str
    severity: int  # 1 is the most severe
    target_minutes: int  # read-by target once the AI flags it


CATALOGUE: dict[Finding, FindingSpec] = {
    spec.finding: spec
    for spec in (
        FindingSpec(
            finding=Finding.INTRACRANIAL_HEMORRHAGE,
            label="Intracranial hemorrhage",
            severity=1,
            target_minutes=10,
        ),
        FindingSpec(
            finding=Finding.PULMONARY_EMBOLISM,
            label="Pulmonary embolism",
            severity=1,
            target_minutes=15,
        ),
        FindingSpec(
            finding=Finding.PNEUMOTHORAX, label="Pneumothorax", severity=2, target_minutes=15
        ),
        FindingSpec(
            finding=Finding.FRACTURE, label="Unstable fracture", severity=2, target_minutes=30
        ),
    )
}


def finding_spec(finding: Finding | str) -> FindingSpec:
    return CATALOGUE[Finding(finding)]
