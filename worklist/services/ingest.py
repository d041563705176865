"""One ingest path for C-STORE and STOW-RS: check, store durably, register, then answer.

Registering an instance is the hot path of the DICOM listener (hundreds of instances a second,
from several associations and processes at once), so it is a few hand-written statements in one
transaction rather than ORM calls; first instances of a study or series take the ORM path.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import NamedTuple

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from worklist import storage
from worklist.dicom import status
from worklist.dicom.header import InstanceHeader, RejectedObject, header_read
from worklist.dicom.identifiers import uid_is_valid
from worklist.locations import location_is_emergency
from worklist.models import Instance, Patient, QuarantinedObject, Series, Study
from worklist.services.orders import order_context_for_new_study
from worklist.services.transfers import AssociationTransfers, transfer_row_write

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class IngestResult:
    status: int
    sop_class_uid: str = ""
    sop_instance_uid: str = ""
    study_id: int | None = None
    study_instance_uid: str = ""
    duplicate: bool = False
    reason: str = ""

    @property
    def stored(self) -> bool:
        return self.status == status.SUCCESS


def instance_ingest(
    *,
    staged_path: Path,
    source: str,
    calling_ae_title: str = "",
    peer_address: str = "",
    expected_sop_class_uid: str | None = None,
    expected_sop_instance_uid: str | None = None,
    expected_study_instance_uid: str | None = None,
    transfers: AssociationTransfers | None = None,
) -> IngestResult:
    """Store one staged Part 10 file. Success is returned only once file and row are durable.

    The staged file has already been fsynced; it is consumed (stored, quarantined or discarded).
    `transfers` is the DICOM association's record of the studies it delivers (its release may
    make them ready at once).
    Never raises for bad input: refusals are quarantined and answered with a failure status.
    """
    refuse = partial(
        _quarantine,
        staged_path=staged_path,
        source=source,
        calling_ae_title=calling_ae_title,
        peer_address=peer_address,
    )
    try:
        header = header_read(
            staged_path,
            expected_sop_class_uid=expected_sop_class_uid,
            expected_sop_instance_uid=expected_sop_instance_uid,
        )
        if expected_study_instance_uid and header.study_instance_uid != expected_study_instance_uid:
            raise RejectedObject(
                status.DATASET_DOES_NOT_MATCH_SOP_CLASS,
                "instance belongs to another study than the one in the request URL",
                sop_class_uid=header.sop_class_uid,
                sop_instance_uid=header.sop_instance_uid,
            )
    except RejectedObject as refusal:
        return refuse(
            status_code=refusal.status_code,
            reason=refusal.reason,
            sop_instance_uid=refusal.sop_instance_uid or expected_sop_instance_uid or "",
            sop_class_uid=refusal.sop_class_uid,
        )

    try:
        relative_path = storage.instance_relative_path(
            study_uid=header.study_instance_uid,
            series_uid=header.series_instance_uid,
            sop_uid=header.sop_instance_uid,
        )
    except storage.UnsafeStoragePath as unsafe:
        return refuse(
            status_code=status.CANNOT_UNDERSTAND,
            reason=str(unsafe),
            sop_instance_uid=header.sop_instance_uid,
            sop_class_uid=header.sop_class_uid,
        )
    try:
        study_id = _instance_register(
            header=header,
            staged_path=staged_path,
            relative_path=relative_path,
            size_bytes=staged_path.stat().st_size,
            source=source,
            calling_ae_title=calling_ae_title,
            received_at=timezone.now(),
            transfers=transfers,
        )
    except (PatientConflict, storage.UnsafeStoragePath) as refused:
        return refuse(
            status_code=status.CANNOT_UNDERSTAND,
            reason=str(refused),
            sop_instance_uid=header.sop_instance_uid,
            sop_class_uid=header.sop_class_uid,
        )
    if study_id is None:
        storage.staged_file_discard(staged_path)
        return _duplicate(header)
    logger.debug(
        "stored instance sop=%s study=%s source=%s ae=%s",
        header.sop_instance_uid,
        study_id,
        source,
        calling_ae_title,
    )
    return IngestResult(
        status=status.SUCCESS,
        sop_class_uid=header.sop_class_uid,
        sop_instance_uid=header.sop_instance_uid,
        study_id=study_id,
        study_instance_uid=header.study_instance_uid,
    )


def _duplicate(header: InstanceHeader) -> IngestResult:
    # Rare path: the study of the copy already stored (normally the header's study).
    study_id = (
        Instance.objects.filter(sop_instance_uid=header.sop_instance_uid)
        .values_list("series__study_id", flat=True)
        .first()
    )
    logger.debug("duplicate instance sop=%s study=%s", header.sop_instance_uid, study_id)
    return IngestResult(
        status=status.SUCCESS,
        sop_class_uid=header.sop_class_uid,
        sop_instance_uid=header.sop_instance_uid,
        study_id=study_id,
        study_instance_uid=header.study_instance_uid,
        duplicate=True,
    )


def order_priority_for(*, requested: str, calling_ae_title: str) -> str:
    known = settings.WORKLIST_PRIORITY_TARGET_MINUTES
    if requested in known:
        return requested
    by_ae = settings.WORKLIST_PRIORITY_BY_AE.get(calling_ae_title.upper(), "")
    if by_ae in known:
        return by_ae
    return settings.WORKLIST_DEFAULT_PRIORITY


# How far ahead of an instance's arrival the quiet period's anchor (Study.last_instance_at) is
# set when a late instance re-arms it. Instances arriving before the anchor leave the study row
# alone, so a series streaming in writes the row about twice a second instead of once per
# instance. The quiet period is never shortened: every instance's transaction either moves the
# anchor to at least its own arrival, or finds it already there; the stabiliser needs
# anchor + STUDY_STABLE_SECONDS <= now; and while the transaction runs, the study row is
# share-locked, which the stabiliser's SELECT ... FOR UPDATE SKIP LOCKED skips. A study can
# therefore become ready up to this much later than the quiet period alone would allow, and
# last_instance_at may lead the true last arrival by as much.
REARM_AHEAD = timedelta(milliseconds=500)

# UID -> primary key of studies and series this process has registered instances into. Only a
# hint: every use re-reads (and share-locks) the rows in the transaction that inserts the
# instance, and a miss (deleted, re-created, or created by another process) takes the ORM path.
_known_study_ids: dict[str, int] = {}
_known_series_ids: dict[str, int] = {}
KNOWN_ROWS_LIMIT = 10_000


def _known_rows_forget(header: InstanceHeader) -> None:
    _known_study_ids.pop(header.study_instance_uid, None)
    _known_series_ids.pop(header.series_instance_uid, None)


def _known_rows_remember(header: InstanceHeader, *, study_id: int, series_id: int) -> None:
    if len(_known_series_ids) > KNOWN_ROWS_LIMIT:
        _known_study_ids.clear()
        _known_series_ids.clear()
    _known_study_ids[header.study_instance_uid] = study_id
    _known_series_ids[header.series_instance_uid] = series_id


def _instance_register(
    *,
    header: InstanceHeader,
    staged_path: Path,
    relative_path: str,
    size_bytes: int,
    source: str,
    calling_ae_title: str,
    received_at: datetime,
    transfers: AssociationTransfers | None,
) -> int | None:
    """Register the instance and move its file into place; the study id, or None for a duplicate.

    The file is renamed into place (durably) after the row is inserted and before it commits: a
    duplicate never touches the copy already stored, and a committed row always has its file.
    """
    transfer_written = False
    try:
        with transaction.atomic():
            rows = _known_rows_share_lock(header=header, received_at=received_at)
            if rows is None:  # first instance of the study or series here, or stale ids
                study_id, series_id = _rows_get_or_create(
                    header=header, calling_ae_title=calling_ae_title, received_at=received_at
                )
                rows = _rows_share_lock(
                    study_id=study_id, series_id=series_id, received_at=received_at
                )
                if rows is None:
                    raise Study.DoesNotExist(f"study #{study_id} vanished while registering")
            _patient_check(header, rows)
            inserted = _instance_insert(
                header=header,
                series_id=rows.series_id,
                relative_path=relative_path,
                size_bytes=size_bytes,
                source=source,
                calling_ae_title=calling_ae_title,
                received_at=received_at,
            )
            if not inserted:
                # Stored already (perhaps by another association a moment ago, whose commit the
                # insert waited for). Undo anything this transaction created for it.
                transaction.set_rollback(True)
                return None
            storage.staged_file_commit(staged_path, relative_path)
            if rows.must_rearm:
                _study_rearm(study_id=rows.study_id, received_at=received_at)
            if transfers is not None and transfers.row_due(rows.study_id):
                transfer_row_write(transfers=transfers, study_id=rows.study_id, at=received_at)
                transfer_written = True
    except Exception:
        _known_rows_forget(header)
        raise
    _known_rows_remember(header, study_id=rows.study_id, series_id=rows.series_id)
    if transfers is not None and transfer_written:  # committed: the release will see it
        transfers.written[rows.study_id] = time.monotonic()
    return rows.study_id


class _LockedRows(NamedTuple):
    study_id: int
    series_id: int
    must_rearm: bool  # the study is ready, or its quiet period's anchor is before this arrival
    patient_id: str  # of the study's patient (PHI: compared, never logged)
    issuer: str


class PatientConflict(Exception):
    """The instance names another patient than the study it belongs to (no PHI in the text)."""


def _patient_check(header: InstanceHeader, rows: _LockedRows) -> None:
    """An instance of a study held here must be of that study's patient: a different Patient ID
    (or issuer), where both say one, would merge two patients' images into one study."""
    if not header.patient_id or not rows.patient_id:
        return
    if (header.patient_id, header.issuer_of_patient_id) != (rows.patient_id, rows.issuer):
        raise PatientConflict(
            f"the instance's Patient ID differs from that of study #{rows.study_id}, which"
            " already holds this Study Instance UID"
        )


def _known_rows_share_lock(*, header: InstanceHeader, received_at: datetime) -> _LockedRows | None:
    study_id = _known_study_ids.get(header.study_instance_uid)
    series_id = _known_series_ids.get(header.series_instance_uid)
    if study_id is None or series_id is None:
        return None
    return _rows_share_lock(study_id=study_id, series_id=series_id, received_at=received_at)


_ROWS_READ = (
    "SELECT study.state = %s OR study.last_instance_at < %s, patient.patient_id, patient.issuer"
    " FROM worklist_study study, worklist_series series, worklist_patient patient"
    " WHERE study.id = %s AND series.id = %s AND patient.id = study.patient_id"
)
_ROWS_SHARE_LOCK_POSTGRESQL = _ROWS_READ + " FOR KEY SHARE OF study, series"


def _rows_share_lock(*, study_id: int, series_id: int, received_at: datetime) -> _LockedRows | None:
    """Share-lock the study and series rows, and see whether the study needs re-arming.

    None when either row is gone (deleted, perhaps re-created under another id).

    The lock (PostgreSQL; SQLite serialises write transactions anyway) keeps both rows from being
    deleted, and the study from being marked ready, until this transaction ends. It does not
    block other ingest transactions.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            _ROWS_SHARE_LOCK_POSTGRESQL if connection.vendor == "postgresql" else _ROWS_READ,
            [
                Study.State.READY,
                connection.ops.adapt_datetimefield_value(received_at),
                study_id,
                series_id,
            ],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    return _LockedRows(
        study_id=study_id,
        series_id=series_id,
        must_rearm=bool(row[0]),
        patient_id=row[1],
        issuer=row[2],
    )


def _instance_insert(
    *,
    header: InstanceHeader,
    series_id: int,
    relative_path: str,
    size_bytes: int,
    source: str,
    calling_ae_title: str,
    received_at: datetime,
) -> bool:
    """Insert the instance row unless its SOP Instance UID is registered already."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO worklist_instance (sop_instance_uid, sop_class_uid, series_id,"
            " instance_number, transfer_syntax_uid, relative_path, size_bytes, source,"
            " calling_ae_title, received_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (sop_instance_uid) DO NOTHING RETURNING id",
            [
                header.sop_instance_uid,
                header.sop_class_uid,
                series_id,
                header.instance_number,
                header.transfer_syntax_uid,
                relative_path,
                size_bytes,
                source,
                calling_ae_title,
                connection.ops.adapt_datetimefield_value(received_at),
            ],
        )
        return cursor.fetchone() is not None


def _study_rearm(*, study_id: int, received_at: datetime) -> None:
    """Restart the quiet period; a study already marked ready is re-opened for triage.

    The condition is re-checked here: another ingest transaction may have moved the study since
    this one read it, and a re-open must be counted once.
    """
    anchor = connection.ops.adapt_datetimefield_value(received_at + REARM_AHEAD)
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE worklist_study SET last_instance_at = %s, state = %s,"
            " reopened_count = reopened_count + CASE WHEN state = %s THEN 1 ELSE 0 END"
            " WHERE id = %s AND (state = %s OR last_instance_at < %s)",
            [
                anchor,
                Study.State.RECEIVING,
                Study.State.READY,
                study_id,
                Study.State.READY,
                connection.ops.adapt_datetimefield_value(received_at),
            ],
        )


def _rows_get_or_create(
    *, header: InstanceHeader, calling_ae_title: str, received_at: datetime
) -> tuple[int, int]:
    """The study and series ids for this instance, creating the rows if they do not exist."""
    study_id = (
        Study.objects.filter(study_instance_uid=header.study_instance_uid)
        .values_list("pk", flat=True)
        .first()
    )
    if study_id is None:
        study_id = _study_create(
            header=header, calling_ae_title=calling_ae_title, at=received_at
        ).pk
    series, _ = Series.objects.get_or_create(
        series_instance_uid=header.series_instance_uid,
        defaults={
            "study_id": study_id,
            "modality": header.modality,
            "body_part": header.body_part,
            "description": header.series_description,
            "series_number": header.series_number,
            "slice_thickness": header.slice_thickness,
            "contrast_agent": header.contrast_agent,
        },
    )
    return study_id, series.pk


def _study_create(*, header: InstanceHeader, calling_ae_title: str, at: datetime) -> Study:
    if header.patient_id:
        patient, _ = Patient.objects.get_or_create(
            patient_id=header.patient_id,
            issuer=header.issuer_of_patient_id,
            defaults={
                "name": header.patient_name,
                "birth_date": header.patient_birth_date,
                "sex": header.patient_sex,
            },
        )
    else:
        patient = Patient.objects.create(
            name=header.patient_name, birth_date=header.patient_birth_date, sex=header.patient_sex
        )
    # The hospital's systems know better than the image tags: the order's priority, and the
    # patient's current location from the ADT feed (or the order's), when there are.
    order = order_context_for_new_study(
        accession_number=header.accession_number, patient_id=header.patient_id
    )
    location = (
        patient.current_location
        or (order.patient_location if order is not None else "")
        or header.patient_location
        or settings.WORKLIST_LOCATION_BY_AE.get(calling_ae_title.upper(), "")
    )
    priority = (
        order.priority
        if order is not None
        else order_priority_for(
            requested=header.requested_priority, calling_ae_title=calling_ae_title
        )
    )
    study, created = Study.objects.get_or_create(
        study_instance_uid=header.study_instance_uid,
        defaults={
            "patient": patient,
            "accession_number": header.accession_number,
            "modality": header.modality,
            "body_part": header.body_part,
            "description": header.study_description,
            "study_date": header.study_date,
            "study_time": header.study_time,
            "order_priority": priority,
            "patient_location": location,
            "is_emergency": location_is_emergency(location),
            "calling_ae_title": calling_ae_title,
            "first_received_at": at,
            "last_instance_at": at,
        },
    )
    if created and order is not None:
        order.study = study
        order.save(update_fields=["study"])
    return study


def _quarantine(
    *,
    staged_path: Path,
    source: str,
    calling_ae_title: str,
    peer_address: str,
    status_code: int,
    reason: str,
    sop_instance_uid: str,
    sop_class_uid: str = "",
) -> IngestResult:
    size = staged_path.stat().st_size
    relative = storage.staged_file_quarantine(staged_path)
    if not uid_is_valid(sop_instance_uid):
        sop_instance_uid = ""  # a sender's value that is not a UID is kept only inside the file
    record = QuarantinedObject.objects.create(
        received_at=timezone.now(),
        source=source,
        calling_ae_title=calling_ae_title,
        peer_address=peer_address,
        reason=reason,
        status_code=status_code,
        sop_instance_uid=sop_instance_uid,
        relative_path=relative,
        size_bytes=size,
    )
    logger.warning(
        # The reason may quote header values; it stays in the database, not in the log.
        "quarantined object #%s from ae=%s status=0x%04X",
        record.pk,
        calling_ae_title,
        status_code,
    )
    return IngestResult(
        status=status_code,
        sop_class_uid=sop_class_uid if uid_is_valid(sop_class_uid) else "",
        sop_instance_uid=sop_instance_uid,
        reason=reason,
    )
