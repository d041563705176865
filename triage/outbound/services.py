"""The outbox: results become messages (rows, in the result's transaction), messages are sent
after commit by an idempotent task, retried with backoff until the peer takes them, and
visible to administrators while they wait or fail (DESIGN.md, 9).

The DICOM and network stacks (highdicom, pynetdicom) are imported where a message is sent, not
here: every process records results, only the outbound workers send them.

A message's identity is deterministic (UIDs from the result, control ids from the row), so a
send repeated after a crash replaces at the peer rather than duplicating.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from inference.leases import lease_renewed
from inference.models import InferenceRun
from triage.audit import audit_record
from triage.findings import finding_spec
from triage.models import OutboundDestination, OutboundMessage
from triage.outbound.errors import DeliveryDeferred, DeliveryRefused, ObjectNotBuilt
from triage.outbound.hl7_messages import PatientFacts, oru_build
from triage.outbound.result import ResultFacts
from triage.queueing import task_queue_after_commit
from worklist import storage
from worklist.dicom.tls import sender_tls_context

if TYPE_CHECKING:
    import pydicom

logger = logging.getLogger(__name__)

Kind = OutboundMessage.Kind
Status = OutboundMessage.Status
State = OutboundMessage.State


# ------------------------------------------------------------------------ destinations


def _host_port(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    return host, int(port)


def destinations_seed() -> list[OutboundDestination]:
    """The destinations named by OUTBOUND_DICOM / OUTBOUND_STOW / OUTBOUND_HL7, created or
    updated (idempotent); a malformed entry raises ValueError naming it."""
    wanted: list[dict[str, Any]] = []
    for entry in settings.OUTBOUND_DICOM:
        tls = entry.startswith("tls:")
        ae_title, _, address = entry.removeprefix("tls:").partition("@")
        host, port = _host_port(address)
        if not ae_title or len(ae_title) > 16:
            raise ValueError(f"OUTBOUND_DICOM expects [tls:]AE@HOST:PORT, got {entry!r}")
        wanted.append({"name": f"dicom {entry}", "kind": "dicom", "ae_title": ae_title,
                       "host": host, "port": port, "tls": tls})  # fmt: skip
    for url in settings.OUTBOUND_STOW:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"OUTBOUND_STOW expects http(s) URLs, got {url!r}")
        wanted.append({"name": f"stow {url}"[:64], "kind": "stow", "url": url,
                       "token": settings.OUTBOUND_STOW_TOKEN})  # fmt: skip
    for entry in settings.OUTBOUND_HL7:
        host, port = _host_port(entry)
        wanted.append({"name": f"hl7 {entry}", "kind": "hl7", "host": host, "port": port})
    seeded = []
    for fields in wanted:
        destination, _ = OutboundDestination.objects.update_or_create(
            name=fields.pop("name"), defaults={**fields, "from_environment": True}
        )
        seeded.append(destination)
    # One the environment no longer names (an entry changed to `tls:`, say) stops sending.
    OutboundDestination.objects.filter(from_environment=True, active=True).exclude(
        pk__in=[destination.pk for destination in seeded]
    ).update(active=False)
    return seeded


def _wants(destination: OutboundDestination, run: InferenceRun) -> bool:
    if destination.findings and run.finding not in destination.findings:
        return False
    return bool(run.flagged) or destination.send_unflagged


def _kinds_for(destination: OutboundDestination, *, flagged: bool) -> list[str]:
    if destination.kind == OutboundDestination.Kind.HL7:
        return [Kind.ORU]
    return [Kind.SC, Kind.SR] if flagged else [Kind.SR]  # a preview only of what was flagged


# ------------------------------------------------------------------------------ outbox


def _message_add(
    *, destination: OutboundDestination, run: InferenceRun, kind: str, status: str, now: datetime
) -> OutboundMessage | None:
    message, created = OutboundMessage.objects.get_or_create(
        destination=destination,
        run=run,
        kind=kind,
        result_status=status,
        defaults={
            "study_id": run.study_id,
            "created_at": now,
            # If the task sent after commit never runs, the periodic duties send it then.
            "next_attempt_at": now + timedelta(seconds=settings.OUTBOUND_LEASE_SECONDS),
        },
    )
    if not created:
        return None
    if kind == Kind.ORU:
        message.reference = f"EDT{message.pk}{status}"  # MSH-10, at most 20 characters
        message.save(update_fields=["reference"])
    _send_after_commit(message.pk)
    return message


def _send_after_commit(message_id: int) -> None:
    from triage.tasks import outbound_send

    task_queue_after_commit(outbound_send, message_id)


def outbound_results_enqueue(*, run: InferenceRun, now: datetime | None = None) -> int:
    """The messages a recorded result causes, one per destination and kind, written in the
    caller's transaction (the result's). Returns how many were added."""
    if run.state != InferenceRun.State.COMPLETE or run.score is None:
        return 0
    now = now or timezone.now()
    added = 0
    for destination in OutboundDestination.objects.filter(active=True):
        if not _wants(destination, run):
            continue
        for kind in _kinds_for(destination, flagged=bool(run.flagged)):
            added += _message_add(
                destination=destination, run=run, kind=kind, status=Status.PRELIMINARY, now=now
            ) is not None  # fmt: skip
    return added


def outbound_corrections_enqueue(*, study_id: int, finding: str) -> int:
    """A radiologist dismissed the flag as a false positive: every RIS told of it is sent a
    correction (status C). In the caller's transaction."""
    now = timezone.now()
    added = 0
    sent = OutboundMessage.objects.filter(
        study_id=study_id, run__finding=finding, kind=Kind.ORU, result_status=Status.PRELIMINARY
    ).select_related("destination", "run")
    for original in sent:
        added += _message_add(
            destination=original.destination, run=original.run, kind=Kind.ORU,
            status=Status.CORRECTED, now=now,
        ) is not None  # fmt: skip
    return added


# ----------------------------------------------------------------------------- sending


def _facts(message: OutboundMessage) -> ResultFacts:
    run = message.run
    return ResultFacts(
        run_id=run.pk,
        study_instance_uid=message.study.study_instance_uid,
        series_set=run.series_set,
        finding=run.finding,
        finding_label=finding_spec(run.finding).label,
        flagged=bool(run.flagged),
        score=float(run.score or 0.0),
        model_name=run.model_name,
        model_version=run.model_version,
        demonstration=run.demonstration,
        dismissed=message.result_status == Status.CORRECTED,
    )


def _key_source(run: InferenceRun) -> pydicom.Dataset:
    import pydicom

    from triage.outbound.dicom_objects import source_header

    if run.key_instance is None:
        raise ObjectNotBuilt("the result has no key image")
    try:
        source = pydicom.dcmread(
            storage.storage_path(run.key_instance.relative_path), stop_before_pixels=True
        )
    except (OSError, storage.UnsafeStoragePath, pydicom.errors.InvalidDicomError) as exc:
        raise ObjectNotBuilt(f"the key image cannot be read: {type(exc).__name__}") from exc
    return source_header(source)


def _heat_map(run: InferenceRun) -> bytes:
    if not run.heatmap_path:
        raise ObjectNotBuilt("the result has no heat map")
    try:
        return storage.storage_path(run.heatmap_path).read_bytes()
    except (OSError, storage.UnsafeStoragePath) as exc:
        raise ObjectNotBuilt(f"the heat map cannot be read: {type(exc).__name__}") from exc


def _dicom_objects(message: OutboundMessage, facts: ResultFacts) -> list[pydicom.Dataset]:
    from triage.outbound.dicom_objects import (
        preview_reference,
        secondary_capture_build,
        structured_report_build,
    )

    source = _key_source(message.run)
    if message.kind == Kind.SC:
        preview = secondary_capture_build(
            source=source, heat_map_png=_heat_map(message.run), facts=facts
        )
        message.reference = preview.sop_instance_uid
        return [preview.dataset]
    report = structured_report_build(
        source=source,
        preview=preview_reference(source=source, facts=facts) if facts.flagged else None,
        facts=facts,
    )
    message.reference = report.sop_instance_uid
    return [report.dataset]


def _oru(message: OutboundMessage, facts: ResultFacts) -> str:
    study = message.study
    patient = study.patient
    return oru_build(
        control_id=message.reference,
        facts=facts,
        patient=PatientFacts(
            patient_id=patient.patient_id,
            issuer=patient.issuer,
            name=patient.name,
            birth_date=patient.birth_date,
            sex=patient.sex,
        ),
        accession_number=study.accession_number,
        study_description=study.description,
        observed_at=message.run.finished_at or message.created_at,
        receiving_application=settings.OUTBOUND_RECEIVING_APPLICATION,
    )


def _transmit(message: OutboundMessage) -> None:
    from triage.outbound import transport

    destination = message.destination
    facts = _facts(message)
    if message.kind == Kind.ORU:
        transport.hl7_send(
            message=_oru(message, facts),
            control_id=message.reference,
            host=destination.host,
            port=int(destination.port or 0),
        )
    elif destination.kind == OutboundDestination.Kind.STOW:
        transport.dicomweb_store(
            datasets=_dicom_objects(message, facts), url=destination.url, token=destination.token
        )
    else:
        transport.dicom_store(
            datasets=_dicom_objects(message, facts),
            host=destination.host,
            port=int(destination.port or 0),
            called_ae=destination.ae_title,
            calling_ae=settings.OUTBOUND_CALLING_AE_TITLE,
            tls=sender_tls_context() if destination.tls else None,
        )


def _claim(message_id: int, now: datetime) -> OutboundMessage | None:
    with transaction.atomic():
        message = (
            OutboundMessage.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("destination", "run", "run__key_instance", "study", "study__patient")
            .filter(pk=message_id, state=State.WAITING)
            .first()
        )
        if message is None or (message.lease_until is not None and message.lease_until > now):
            return None  # delivered, failed, or another worker holds it
        message.lease_until = now + timedelta(seconds=settings.OUTBOUND_LEASE_SECONDS)
        message.attempts += 1
        message.last_attempt_at = now
        message.save(update_fields=["lease_until", "attempts", "last_attempt_at"])
    return message


def retry_delay(attempts: int) -> float:
    base = settings.OUTBOUND_RETRY_SECONDS
    return float(min(settings.OUTBOUND_RETRY_MAX_SECONDS, base * 2 ** max(0, attempts - 1)))


def outbound_message_send(*, message_id: int) -> str | None:
    """Send one waiting message once and record the outcome; the new state, or None when there
    was nothing to do (already delivered or failed, or held by another worker)."""
    now = timezone.now()
    message = _claim(message_id, now)
    if message is None:
        return None
    outcome = "delivered"
    lease = OutboundMessage.objects.filter(pk=message.pk, state=State.WAITING)
    try:
        # Renewed while the peer takes its time: a slow but live send is never sent twice.
        with lease_renewed(
            lambda: lease.update(
                lease_until=timezone.now() + timedelta(seconds=settings.OUTBOUND_LEASE_SECONDS)
            ),
            every=settings.OUTBOUND_LEASE_SECONDS / 3,
            name=f"lease-outbound-{message.pk}",
        ):
            _transmit(message)
    except (ObjectNotBuilt, DeliveryRefused) as exc:
        outcome = type(exc).__name__
        message.state, message.last_error = State.FAILED, str(exc)[:512]
    except DeliveryDeferred as exc:
        outcome = type(exc).__name__
        message.last_error = str(exc)[:512]
        message.next_attempt_at = timezone.now() + timedelta(seconds=retry_delay(message.attempts))
    except Exception as exc:  # a fault of ours: logged with its trace, retried like a peer's
        outcome = type(exc).__name__
        logger.exception("outbound message=%s could not be sent", message.pk)
        message.last_error = f"{type(exc).__name__} while sending"
        message.next_attempt_at = timezone.now() + timedelta(seconds=retry_delay(message.attempts))
    else:
        message.state, message.last_error = State.DELIVERED, ""
        message.delivered_at = timezone.now()
    message.lease_until = None
    message.save(
        update_fields=[
            "state", "last_error", "next_attempt_at", "delivered_at", "lease_until", "reference",
        ]
    )  # fmt: skip
    # The reason stays on the row (the admin page shows it): a peer's own words may quote a
    # patient, so the log says only how the attempt ended.
    logger.info(
        "outbound message=%s kind=%s destination=%s attempt=%s state=%s outcome=%s",
        message.pk,
        message.kind,
        message.destination_id,
        message.attempts,
        message.state,
        outcome,
    )
    return str(message.state)


def outbound_messages_send_due(*, now: datetime | None = None) -> list[int]:
    """Waiting messages whose retry time has come and that no worker holds: pushed forward by a
    lease (so one is not queued twice) and returned for the caller to send."""
    now = now or timezone.now()
    with transaction.atomic():
        due = list(
            OutboundMessage.objects.select_for_update(skip_locked=True)
            .filter(state=State.WAITING, next_attempt_at__lte=now)
            .exclude(lease_until__gt=now)
            .order_by("next_attempt_at")
            .values_list("pk", flat=True)[:200]
        )
        OutboundMessage.objects.filter(pk__in=due).update(
            next_attempt_at=now + timedelta(seconds=settings.OUTBOUND_LEASE_SECONDS)
        )
    return due


def outbound_message_resend(
    *, message_id: int, actor_id: int | None, remote_addr: str = ""
) -> bool:
    """An administrator sends a failed (or waiting) message again now; audited."""
    with transaction.atomic():
        message = OutboundMessage.objects.select_for_update().filter(pk=message_id).first()
        if message is None or message.state == State.DELIVERED:
            return False
        message.state = State.WAITING
        message.next_attempt_at = timezone.now()
        message.lease_until = None
        message.save(update_fields=["state", "next_attempt_at", "lease_until"])
        audit_record(
            action="outbound.resend",
            actor_id=actor_id,
            channel="admin",
            study_id=message.study_id,
            remote_addr=remote_addr or None,
            detail={"message": message.pk, "kind": message.kind},
        )
        _send_after_commit(message.pk)
    return True
