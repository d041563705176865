"""What one AI result says, in plain values: the input every outbound builder shares."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

# SNOMED CT codes for the findings, the answers, and a private scheme for the product's own
# concepts (a "99" designator is reserved for local codes by DICOM PS3.16 and HL7 table 0396).
FINDING_CODES: dict[str, tuple[str, str]] = {
    "intracranial_hemorrhage": ("1386000", "Intracranial hemorrhage"),
    "pulmonary_embolism": ("59282003", "Pulmonary embolism"),
    "pneumothorax": ("36118008", "Pneumothorax"),
    "fracture": ("125605004", "Fracture of bone"),
}
SUSPECTED = ("415684004", "Suspected")
NOT_DETECTED = ("260415000", "Not detected")
LOCAL_SCHEME = "99EDTRIAGE"
NOT_FOR_DIAGNOSIS = "AI triage result - not for diagnosis"
DEMONSTRATION_NOTICE = "demonstration model trained on synthetic phantoms"


@dataclass(frozen=True, kw_only=True)
class ResultFacts:
    run_id: int
    study_instance_uid: str
    series_set: str  # the hash of the instances the model read: the result's identity
    finding: str
    finding_label: str
    flagged: bool
    score: float
    model_name: str
    model_version: str
    demonstration: bool
    dismissed: bool = False  # a radiologist marked the flag a false positive

    @property
    def finding_code(self) -> tuple[str, str]:
        return FINDING_CODES[self.finding]

    @property
    def model_identity(self) -> str:
        identity = f"{self.model_name} {self.model_version}"
        return f"{identity} ({DEMONSTRATION_NOTICE})" if self.demonstration else identity

    def uid(self, purpose: str) -> str:
        """A UID derived from the result alone: a re-send replaces, never duplicates. A name-
        based (v5) UUID as a 2.25 UID (PS3.5 B.2); pydicom's generate_uid ignores its entropy
        sources without a prefix, and this product has no registered root."""
        name = "|".join(
            [
                "ed-triage-result",
                self.study_instance_uid,
                self.model_name,
                self.model_version,
                self.series_set,
                self.finding,
                purpose,
            ]
        )
        return f"2.25.{uuid.uuid5(uuid.NAMESPACE_OID, name).int}"
