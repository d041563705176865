"""HL7 v2 in: ADT (A01, A02, A03, A04, A08), orders (ORM^O01, OMI^O23) and final reports
(ORU^R01, read for labels by `triage.reports`) from the hospital, parsed with python-hl7 into
plain values for the worklist's order services, stored with the acknowledgement they got.
AA is answered only after the message and its effects committed; AE or AR, with the reason,
when it cannot be used. Dashboards hear of re-ranked studies after
commit. The raw message stays in the database: logs carry its type and control id only."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import hl7
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from triage import broadcast
from triage.outbound.hl7_messages import SENDING_APPLICATION
from triage.reports import report_file
from worklist.models import Hl7InboundMessage
from worklist.services.orders import (
    OrderFacts,
    OrderRefused,
    PatientIdentity,
    order_record,
    patient_moved,
)

logger = logging.getLogger(__name__)

ADT_EVENTS = {"A01", "A02", "A03", "A04", "A08"}
ORDER_TYPES = {("ORM", "O01"), ("OMI", "O23")}
MAX_MESSAGE_CHARS = 1_000_000


@dataclass(frozen=True, kw_only=True)
class Answer:
    code: str  # AA, AE, AR
    reason: str = ""


def _value(message: hl7.Message, path: str) -> str:
    try:
        return str(message[path]).strip()
    except (KeyError, IndexError):
        return ""


def _identity(message: hl7.Message) -> PatientIdentity:
    family, given = _value(message, "PID.F5.R1.C1"), _value(message, "PID.F5.R1.C2")
    return PatientIdentity(
        patient_id=_value(message, "PID.F3.R1.C1")[:64],
        issuer=_value(message, "PID.F3.R1.C4")[:64],
        name="^".join(part for part in (family, given) if part)[:324],
        birth_date=_value(message, "PID.F7.R1.C1")[:8],
        sex=_value(message, "PID.F8")[:16],
    )


def _location(message: hl7.Message) -> str:
    """PV1-3 (point of care^room^bed) as one location, e.g. ED-MAJORS-3."""
    parts = [_value(message, f"PV1.F3.R1.C{index}") for index in (1, 2, 3)]
    return "-".join(part for part in parts if part)[:64]


def _priority(message: hl7.Message) -> str:
    """OBR-27's priority component (TQ, v2.4 and before) or TQ1-9 (v2.5), mapped to ours."""
    code = (_value(message, "TQ1.F9.R1.C1") or _value(message, "OBR.F27.R1.C6")).upper()
    mapped = settings.HL7_PRIORITY_MAP.get(code, "")
    return mapped if mapped in settings.WORKLIST_PRIORITY_TARGET_MINUTES else ""


def _order_facts(message: hl7.Message, message_type: str) -> OrderFacts:
    accession = (
        (_value(message, "IPC.F1.R1.C1") if message_type == "OMI" else "")
        or _value(message, "OBR.F18.R1.C1")
        or _value(message, "OBR.F3.R1.C1")
    )
    provider = " ".join(
        part
        for part in (_value(message, "OBR.F16.R1.C3"), _value(message, "OBR.F16.R1.C2"))
        if part
    )
    return OrderFacts(
        accession_number=accession[:64],
        patient=_identity(message),
        control=_value(message, "ORC.F1").upper(),
        placer_order_number=_value(message, "ORC.F2.R1.C1")[:64],
        procedure=(_value(message, "OBR.F4.R1.C2") or _value(message, "OBR.F4.R1.C1"))[:128],
        priority=_priority(message),
        ordering_provider=provider[:128],
        reason=(_value(message, "OBR.F31.R1.C2") or _value(message, "OBR.F31.R1.C1"))[:256],
        patient_class=_value(message, "PV1.F2")[:8],
        patient_location=_location(message),
    )


def _apply(message: hl7.Message, message_type: str, event: str) -> list[int]:
    if message_type == "ADT":
        if event not in ADT_EVENTS:
            raise OrderRefused(f"ADT^{event} is not handled (A01, A02, A03, A04, A08 are)")
        return patient_moved(
            identity=_identity(message),
            patient_class=_value(message, "PV1.F2"),
            location=_location(message),
            discharged=event == "A03",
        )
    if (message_type, event) in ORDER_TYPES:
        return order_record(facts=_order_facts(message, message_type))
    if (message_type, event) == ("ORU", "R01"):
        _report_apply(message)
        return []
    raise OrderRefused(
        f"{message_type}^{event} is not handled (ADT, ORM^O01, OMI^O23, ORU^R01 are)"
    )


def _report_apply(message: hl7.Message) -> None:
    """A radiology report: OBR-25 F (final) or C (corrected) is filed; P (preliminary) and
    others are refused with the reason, since only a final report is truth."""
    status = _value(message, "OBR.F25").upper()[:1]
    if status not in ("F", "C"):
        raise OrderRefused(f"ORU^R01 with result status {status or 'none'!r}: only final (F) "
                           "or corrected (C) reports are read")  # fmt: skip
    accession = (_value(message, "OBR.F18.R1.C1") or _value(message, "OBR.F3.R1.C1"))[:64]
    if not accession:
        raise OrderRefused("ORU^R01 without an accession number (OBR-3 or OBR-18)")
    if _value(message, "MSH.F3.R1.C1").upper() == SENDING_APPLICATION:
        raise OrderRefused(f"ORU^R01 from {SENDING_APPLICATION} is our own AI result, not a report")
    lines = []
    try:
        for segment in message.segments("OBX"):
            if len(segment) > 5 and str(segment[2]).strip().upper() in ("TX", "FT", "ST"):
                lines.extend(str(segment[5]).split("~"))
    except KeyError:  # python-hl7: no OBX segment at all
        lines = []
    if not [line for line in lines if line.strip()]:
        raise OrderRefused("ORU^R01 without report text (OBX-5 of a TX, FT or ST OBX)")
    # TX lines are the report's wrapped lines: joined with spaces (a sentence may run over
    # two); FT's \.br\ is a line break.
    report_file(
        accession=accession,
        text=" ".join(lines).replace("\\.br\\", "\n"),
        status=status,
        control_id=_value(message, "MSH.F10"),
    )


def _stored(*, raw: str, peer: str, message_type: str, control_id: str, answer: Answer) -> None:
    Hl7InboundMessage.objects.create(
        received_at=timezone.now(),
        peer=peer[:64],
        message_type=message_type[:16],
        control_id=control_id[:64],
        ack_code=answer.code,
        reason=answer.reason[:256],
        raw=raw[:MAX_MESSAGE_CHARS],
    )


def hl7_parse_or_none(raw: str) -> hl7.Message | None:
    """The message with its MSH, or None for text that is not HL7 v2."""
    try:
        message = hl7.parse(raw.replace("\n", "\r"))
        message.segment("MSH")
    except Exception:  # python-hl7 raises several kinds for broken text
        return None
    return message


def hl7_message_receive(*, raw: str, peer: str) -> tuple[Answer, hl7.Message | None]:
    """Store and apply one received message; the answer to send, and the parsed message (None
    when it did not parse: the caller answers without echoing it)."""
    message = hl7_parse_or_none(raw)
    if message is None:
        answer = Answer(code="AR", reason="not an HL7 v2 message (no MSH segment)")
        _stored(raw=raw, peer=peer, message_type="", control_id="", answer=answer)
        logger.info("hl7 refused peer=%s reason=%s", peer, answer.reason)
        return answer, None
    message_type = _value(message, "MSH.F9.R1.C1").upper()
    event = _value(message, "MSH.F9.R1.C2").upper()
    control_id = _value(message, "MSH.F10")
    kind = f"{message_type}^{event}"
    try:
        with transaction.atomic():
            changed = _apply(message, message_type, event)
            answer = Answer(code="AA")
            _stored(raw=raw, peer=peer, message_type=kind, control_id=control_id, answer=answer)
            for item_id in changed:
                broadcast.worklist_item_changed(item_id=item_id)  # sent after commit
    except OrderRefused as refusal:
        answer = Answer(code="AE", reason=str(refusal))
        _stored(raw=raw, peer=peer, message_type=kind, control_id=control_id, answer=answer)
    logger.info(
        "hl7 received peer=%s type=%s control=%s answer=%s%s",
        peer,
        kind,
        control_id[:20].encode("ascii", "replace").decode(),
        answer.code,
        f" reason={answer.reason}" if answer.reason else "",
    )
    return answer, message


def hl7_ack(*, answer: Answer, message: hl7.Message | None) -> str:
    """The ACK for a received message (MSA-3 carries the reason of an AE / AR)."""
    if message is None:
        now = timezone.now().strftime("%Y%m%d%H%M%S")
        return f"MSH|^~\\&|ED_TRIAGE||||{now}||ACK|NACK{now}|P|2.5\rMSA|AR||{answer.reason}"
    ack = message.create_ack(answer.code, application="ED_TRIAGE")
    if answer.reason:
        ack.segment("MSA").assign_field(answer.reason.replace("|", "/").replace("^", " "), 3)
    return str(ack)
