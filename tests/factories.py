"""Small factories for rows the API tests need (ingest itself is tested against real peers)."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from triage import broadcast
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
