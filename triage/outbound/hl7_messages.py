"""HL7 v2.5 for the RIS, on python-hl7: the ORU^R01 a result becomes, and the reading of the
receiver's ACK. Chosen over hl7apy for its asyncio MLLP streams (the listener and the sender
share them) and its tolerant parser: real feeds bend the standard, and we must still answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import hl7

from triage.outbound.result import (
    LOCAL_SCHEME,
    NOT_DETECTED,
    NOT_FOR_DIAGNOSIS,
    SUSPECTED,
    ResultFacts,
)

SENDING_APPLICATION = "ED_TRIAGE"
SEGMENT_END = "\r"
_ESCAPES = {"\\": "\\E\\", "|": "\\F\\", "^": "\\S\\", "&": "\\T\\", "~": "\\R\\"}


def hl7_escape(value: object) -> str:
    """A value as HL7 field text: delimiters escaped, line breaks and controls dropped."""
    text = "".join(ch if ch.isprintable() else " " for ch in str(value))
    return "".join(_ESCAPES.get(ch, ch) for ch in text)


def _components(*parts: object) -> str:
    return "^".join(hl7_escape(part) for part in parts).rstrip("^")


@dataclass(frozen=True, kw_only=True)
class PatientFacts:
    """PID from the study: the one place these values are put together (never logged)."""

    patient_id: str
    issuer: str
    name: str  # DICOM PN: family^given^middle^prefix^suffix, the same order as HL7 XPN
    birth_date: str
    sex: str


def oru_build(
    *,
    control_id: str,
    facts: ResultFacts,
    patient: PatientFacts,
    accession_number: str,
    study_description: str,
    observed_at: datetime,
    receiving_application: str = "RIS",
) -> str:
    """The ORU^R01 for one AI result: status P when the AI says it, C when a radiologist
    dismissed the flag (the finding then reads "not detected")."""
    status = "C" if facts.dismissed else "P"
    when = observed_at.strftime("%Y%m%d%H%M%S%z")
    finding_value, finding_meaning = facts.finding_code
    answer = NOT_DETECTED if (facts.dismissed or not facts.flagged) else SUSPECTED
    name = "^".join(hl7_escape(part) for part in patient.name.split("^")[:5]).rstrip("^")
    segments = [
        "|".join(
            [
                "MSH",
                "^~\\&",
                SENDING_APPLICATION,
                "",
                hl7_escape(receiving_application),
                "",
                when,
                "",
                "ORU^R01^ORU_R01",
                hl7_escape(control_id),
                "P",
                "2.5",
                "",
                "",
                "AL",
                "NE",
                "",
                "UNICODE UTF-8",
            ]
        ),
        "|".join(
            [
                "PID",
                "1",
                "",
                _components(patient.patient_id, "", "", patient.issuer, "MR"),
                "",
                name,
                "",
                hl7_escape(patient.birth_date),
                hl7_escape(patient.sex[:1]),
            ]
        ),
        "|".join(
            [
                "OBR",
                "1",
                "",
                hl7_escape(accession_number),
                _components("AITRIAGE", f"AI triage: {study_description}"[:199], LOCAL_SCHEME),
                "",
                "",
                when,
                *[""] * 10,
                hl7_escape(accession_number),  # OBR-18, placer field 1: the accession
                *[""] * 3,
                when,  # OBR-22 results reported
                "",
                "",
                status,  # OBR-25
            ]
        ),
    ]
    observations = [
        (
            "CWE",
            _components(finding_value, finding_meaning, "SCT"),
            _components(*answer, "SCT"),
            "",
        ),
        (
            "NM",
            _components("AISCORE", "AI triage score", LOCAL_SCHEME),
            f"{facts.score:.4f}",
            _components("1", "no units", "UCUM"),
        ),
        (
            "ST",
            _components("AIMODEL", "Algorithm", LOCAL_SCHEME),
            hl7_escape(f"{facts.model_identity}; {NOT_FOR_DIAGNOSIS}"),
            "",
        ),
    ]
    for index, (value_type, code, value, units) in enumerate(observations, start=1):
        segments.append(
            "|".join(
                ["OBX", str(index), value_type, code, "", value, units, "", "", "", "", status]
            )
        )
    if facts.dismissed:
        segments.append("NTE|1||Flag dismissed by a radiologist as a false positive")
    message = SEGMENT_END.join(segments)
    hl7.parse(message)  # what we send parses with the library the peers use
    return message


@dataclass(frozen=True, kw_only=True)
class Acknowledgement:
    code: str  # AA, AE, AR (CA, CE, CR in enhanced mode)
    control_id: str  # MSA-2: the message it answers
    text: str

    @property
    def accepted(self) -> bool:
        return self.code in ("AA", "CA")


def ack_read(raw: str) -> Acknowledgement:
    """The MSA of an ACK (and ERR's text when the receiver gave one); ValueError if it is not
    an acknowledgement."""
    try:
        message = hl7.parse(raw)
        msa = message.segment("MSA")
    except (KeyError, IndexError, hl7.ParseException) as exc:
        raise ValueError("the answer is not an HL7 acknowledgement") from exc
    text = str(msa(3)) if len(msa) > 3 else ""
    try:
        err = message.segment("ERR")
        text = text or str(err(8) if len(err) > 8 else err(1))
    except KeyError:
        pass
    return Acknowledgement(code=str(msa(1)), control_id=str(msa(2)), text=text[:200])
