"""One ingest path for C-STORE and STOW-RS: check, store durably, register, then answer."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Case, F, PositiveIntegerField, Value, When
from django.utils import timezone

from worklist import storage
from worklist.dicom import status
from worklist.dicom.header import InstanceHeader, RejectedObject, header_read
from worklist.models import Instance, Patient, QuarantinedObject, Series, Study

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
) -> IngestResult:
    """Store one staged Part 10 file. Success is returned only once file and row are durable.

    The staged file has already been fsynced; it is consumed (stored, quarantined or discarded).
    Never raises for bad input: refusals are quarantined and answered with a failure status.
    """
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
            )
    except RejectedObject as refusal:
        return _quarantine(
            staged_path=staged_path,
            source=source,
            calling_ae_title=calling_ae_title,
            peer_address=peer_address,
            status_code=refusal.status_code,
            reason=refusal.reason,
            sop_instance_uid=expected_sop_instance_uid or "",
        )

    existing = (
        Instance.objects.filter(sop_instance_uid=header.sop_instance_uid)
        .values_list("series__study_id", flat=True)
        .first()
    )
    if existing is not None:
        storage.staged_file_discard(staged_path)
        return _duplicate(header, study_id=existing)

    relative_path = storage.instance_relative_path(
        study_uid=header.study_instance_uid,
        series_uid=header.series_instance_uid,
        sop_uid=header.sop_instance_uid,
    )
    size = staged_path.stat().st_size
    storage.staged_file_commit(staged_path, relative_path)
    try:
        study_id = _instance_register(
            header=header,
            relative_path=relative_path,
            size_bytes=size,
            source=source,
            calling_ae_title=calling_ae_title,
            received_at=timezone.now(),
        )
    except IntegrityError:
        # Another association registered the same SOP instance a moment ago: same object.
        study_id = Study.objects.get(study_instance_uid=header.study_instance_uid).pk
        return _duplicate(header, study_id=study_id)
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


def _duplicate(header: InstanceHeader, *, study_id: int) -> IngestResult:
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


def location_is_emergency(location: str) -> bool:
    normalised = location.strip().upper()
    for prefix in settings.WORKLIST_ED_LOCATIONS:
        if normalised == prefix or (
            normalised.startswith(prefix) and not normalised[len(prefix)].isalnum()
        ):
            return True
    return False


@transaction.atomic
def _instance_register(
    *,
    header: InstanceHeader,
    relative_path: str,
    size_bytes: int,
    source: str,
    calling_ae_title: str,
    received_at: datetime,
) -> int:
    study = Study.objects.filter(study_instance_uid=header.study_instance_uid).first()
    if study is None:
        study = _study_create(header=header, calling_ae_title=calling_ae_title, at=received_at)
    else:
        # A late instance re-arms the quiet period and re-opens a ready study for triage.
        Study.objects.filter(pk=study.pk).update(
            last_instance_at=received_at,
            reopened_count=Case(
                When(state=Study.State.READY, then=F("reopened_count") + 1),
                default=F("reopened_count"),
                output_field=PositiveIntegerField(),
            ),
            state=Value(Study.State.RECEIVING),
        )
    series, _ = Series.objects.get_or_create(
        series_instance_uid=header.series_instance_uid,
        defaults={
            "study": study,
            "modality": header.modality,
            "body_part": header.body_part,
            "description": header.series_description,
            "series_number": header.series_number,
            "slice_thickness": header.slice_thickness,
            "contrast_agent": header.contrast_agent,
        },
    )
    with transaction.atomic():  # savepoint: a racing duplicate must not poison the outer block
        Instance.objects.create(
            sop_instance_uid=header.sop_instance_uid,
            sop_class_uid=header.sop_class_uid,
            series=series,
            instance_number=header.instance_number,
            transfer_syntax_uid=header.transfer_syntax_uid,
            relative_path=relative_path,
            size_bytes=size_bytes,
            source=source,
            calling_ae_title=calling_ae_title,
            received_at=received_at,
        )
    return study.pk


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
    location = header.patient_location or settings.WORKLIST_LOCATION_BY_AE.get(
        calling_ae_title.upper(), ""
    )
    study, _ = Study.objects.get_or_create(
        study_instance_uid=header.study_instance_uid,
        defaults={
            "patient": patient,
            "accession_number": header.accession_number,
            "modality": header.modality,
            "body_part": header.body_part,
            "description": header.study_description,
            "order_priority": order_priority_for(
                requested=header.requested_priority, calling_ae_title=calling_ae_title
            ),
            "patient_location": location,
            "is_emergency": location_is_emergency(location),
            "calling_ae_title": calling_ae_title,
            "first_received_at": at,
            "last_instance_at": at,
        },
    )
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
) -> IngestResult:
    size = staged_path.stat().st_size
    relative = storage.staged_file_quarantine(staged_path)
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
    return IngestResult(status=status_code, sop_instance_uid=sop_instance_uid, reason=reason)
