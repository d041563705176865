"""The catalogue of findings the product flags: names, severity and read-by targets."""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum


class Finding(StrEnum):
    INTRACRANIAL_HEMORRHAGE = "intracranial_hemorrhage"
    PULMONARY_EMBOLISM = "pulmonary_embolism"
    PNEUMOTHORAX = "pneumothorax"
    FRACTURE = "fracture"


FINDINGS: tuple[str, ...] = tuple(finding.value for finding in Finding)


@dataclass(frozen=True, kw_only=True)
class FindingSpec:
    finding: Finding
    label: str
    severity: int  # 1 is the most severe
    target_minutes: int  # read-by target once the AI flags it
    ack_target_seconds: int  # an alert nobody acknowledges escalates after this
    clinicians_immediately: bool  # else the location's clinicians hear after a radiologist confirms


CATALOGUE: dict[Finding, FindingSpec] = {
    spec.finding: spec
    for spec in (
        FindingSpec(
            finding=Finding.INTRACRANIAL_HEMORRHAGE,
            label="Intracranial hemorrhage",
            severity=1,
            target_minutes=10,
            ack_target_seconds=120,
            clinicians_immediately=True,
        ),
        FindingSpec(
            finding=Finding.PULMONARY_EMBOLISM,
            label="Pulmonary embolism",
            severity=1,
            target_minutes=15,
            ack_target_seconds=180,
            clinicians_immediately=False,
        ),
        FindingSpec(
            finding=Finding.PNEUMOTHORAX,
            label="Pneumothorax",
            severity=2,
            target_minutes=15,
            ack_target_seconds=180,
            clinicians_immediately=True,
        ),
        FindingSpec(
            finding=Finding.FRACTURE,
            label="Unstable fracture",
            severity=2,
            target_minutes=30,
            ack_target_seconds=300,
            clinicians_immediately=False,
        ),
    )
}


def finding_spec(finding: Finding | str) -> FindingSpec:
    """The catalogue entry, with the site's overrides from settings applied."""
    from django.conf import settings

    spec = CATALOGUE[Finding(finding)]
    ack = getattr(settings, "ALERT_ACK_TARGET_SECONDS", {}).get(spec.finding.value.upper())
    immediate = getattr(settings, "ALERT_CLINICIANS_IMMEDIATELY", None)
    return replace(
        spec,
        ack_target_seconds=int(ack) if ack else spec.ack_target_seconds,
        clinicians_immediately=(
            spec.finding.value in immediate
            if immediate is not None
            else spec.clinicians_immediately
        ),
    )
