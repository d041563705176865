"""Small factories for rows the API tests need (ingest itself is tested against real peers)."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from pathlib import Path

import pydicom
from django.db import transaction
from django.utils import timezone
from pydicom.uid import generate_uid

from inference.phantoms import phantom_generate, phantom_write
from triage import broadcast
from triage.findings import Finding
from worklist.models import Patient, Study, WorklistItem
from worklist.services.studies import study_mark_ready

_counter = itertools.count(1)


def ready_study(
    *,
    priority: str = "ROUTINE",
    location: str = "",
    is_emergency: bool = False,
    modality: str = "CT",
    received_at: datetime | None = None,
) -> WorklistItem:
    number = next(_counter)
    at = received_at or timezone.now() - timedelta(minutes=1)
    patient = Patient.objects.create(
        patient_id=f"MRN{number:05d}", name=f"Testperson^Number{number}"
    )
    with transaction.atomic():
        study = Study.objects.create(
            study_instance_uid=f"1.2.826.0.1.3680043.10.1453.9.{number}",
            patient=patient,
            accession_number=f"ACC{number:05d}",
            modality=modality,
            order_priority=priority,
            patient_location=location,
            is_emergency=is_emergency,
            first_received_at=at,
            last_instance_at=at,
        )
        # No triage task: a study without instances has nothing to route, and a worker writing
        # while a transactional test flushes the database can deadlock the flush. Dashboards
        # are told, as the workflow's announcement does.
        item = study_mark_ready(study=study, now=at)
        broadcast.worklist_item_changed(item_id=item.pk)
        return item


FLAGGED_HEAD_CT_SEED = 9_100_001  # held out; the demonstration ICH model flags it


def flagged_head_ct_files(
    out: Path, *, copy: int, location: str | None = None
) -> tuple[str, list[Path]]:
    """A held-out head CT phantom the demonstration ICH model flags (seed 9_100_001), as a STAT
    study of its own (new study, series and instance UIDs) from `location` (ED-RESUS-`copy`
    unless told); its Study Instance UID and files."""
    phantom = phantom_generate(
        Finding.INTRACRANIAL_HEMORRHAGE, positive=True, seed=FLAGGED_HEAD_CT_SEED
    )
    paths = [p for p in phantom_write(phantom, out_dir=out / "source", seed=FLAGGED_HEAD_CT_SEED)
             if p.suffix == ".dcm"]  # fmt: skip
    study_uid, series_uid = generate_uid(), generate_uid()
    written = []
    (out / "copy").mkdir()
    for path in paths:
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.AccessionNumber = f"BRK{copy:05d}"
        ds.CurrentPatientLocation = location or f"ED-RESUS-{copy}"
        ds.RequestedProcedurePriority = "STAT"
        written.append(out / "copy" / f"{ds.SOPInstanceUID}.dcm")
        ds.save_as(written[-1], enforce_file_format=True)
    return study_uid, written
