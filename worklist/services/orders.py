"""Orders and patient context from the hospital (the RIS and the ADT feed), in plain values.

An order's priority and the patient's current location override what the images' tags say;
a study is matched to its order by accession number (and patient identifier when both carry
one). Deadlines follow the one rule: a later event may bring one earlier, never later.
Each service runs in the caller's transaction and returns the worklist items it changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from worklist.locations import location_is_emergency
from worklist.models import Order, Patient, Study, WorklistItem
from worklist.ranking import worklist_item_rank


class OrderRefused(ValueError):
    """The message cannot be applied; the reason names no patient."""


@dataclass(frozen=True, kw_only=True)
class PatientIdentity:
    patient_id: str
    issuer: str = ""
    name: str = ""
    birth_date: str = ""
    sex: str = ""


@dataclass(frozen=True, kw_only=True)
class OrderFacts:
    accession_number: str
    patient: PatientIdentity
    control: str  # ORC-1: NW new, XO changed, CA / OC / DC cancelled, ...
    placer_order_number: str = ""
    procedure: str = ""
    priority: str = ""  # already mapped to a worklist priority
    ordering_provider: str = ""
    reason: str = ""
    patient_class: str = ""
    patient_location: str = ""


CANCEL_CONTROLS = {"CA", "OC", "DC", "CR", "OD"}


def _patient_for(identity: PatientIdentity) -> Patient:
    if not identity.patient_id:
        raise OrderRefused("PID-3 carries no patient identifier")
    patient, created = Patient.objects.select_for_update().get_or_create(
        patient_id=identity.patient_id,
        issuer=identity.issuer,
        defaults={"name": identity.name, "birth_date": identity.birth_date, "sex": identity.sex},
    )
    return patient


def _open_studies(patient: Patient) -> list[Study]:
    """The patient's studies not yet read: those a new location or priority still matters to."""
    return list(
        Study.objects.select_for_update(of=("self",))
        .filter(patient=patient)
        .exclude(worklist_item__status=WorklistItem.Status.READ)
    )


def _study_context_apply(study: Study, *, priority: str, location: str) -> list[int]:
    """Set the study's priority and location from the hospital's systems; re-rank it."""
    fields = []
    if priority and priority != study.order_priority:
        study.order_priority = priority
        fields.append("order_priority")
    if location and location != study.patient_location:
        study.patient_location = location
        study.is_emergency = location_is_emergency(location)
        fields += ["patient_location", "is_emergency"]
    if not fields:
        return []
    study.save(update_fields=fields)
    if not WorklistItem.objects.filter(study=study).exists():
        return []  # ranked when it becomes ready, with these values
    item, changed = worklist_item_rank(study=study)
    return [item.pk]


def order_record(*, facts: OrderFacts, now: datetime | None = None) -> list[int]:
    """Record (or update, or cancel) an order and apply it to its study if images came first."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("order_record runs inside the caller's transaction")
    if not facts.accession_number:
        raise OrderRefused("the order carries no accession number")
    now = now or timezone.now()
    patient = _patient_for(facts.patient)
    order = (
        Order.objects.select_for_update().filter(accession_number=facts.accession_number).first()
    )
    if order is not None and order.patient_id != patient.pk:
        raise OrderRefused("the accession number belongs to another patient's order")
    status = Order.Status.CANCELLED if facts.control in CANCEL_CONTROLS else Order.Status.ORDERED
    values = {
        "patient": patient,
        "placer_order_number": facts.placer_order_number,
        "procedure": facts.procedure,
        "ordering_provider": facts.ordering_provider,
        "reason": facts.reason,
        "status": status,
        "updated_at": now,
    }
    if facts.priority:
        values["priority"] = facts.priority
    if facts.patient_location:
        values["patient_location"] = facts.patient_location
    if order is None:
        if not facts.priority:
            raise OrderRefused("the order carries no priority (OBR-27 or TQ1-9)")
        order = Order.objects.create(
            accession_number=facts.accession_number, ordered_at=now, **values
        )
    else:
        for name, value in values.items():
            setattr(order, name, value)
        order.save()
    if facts.patient_location:
        _patient_location_set(patient, facts.patient_class, facts.patient_location, now)
    study = order.study or order_study_match(order=order)
    if study is None or status == Order.Status.CANCELLED:
        return []
    return _study_context_apply(
        study, priority=order.priority, location=patient.current_location or order.patient_location
    )


def order_study_match(*, order: Order) -> Study | None:
    """The study whose accession number is the order's (same patient, where both say), linked."""
    study = (
        Study.objects.select_for_update(of=("self",))
        .filter(accession_number=order.accession_number, order__isnull=True)
        .select_related("patient")
        .first()
    )
    if study is None:
        return None
    if study.patient.patient_id and study.patient.patient_id != order.patient.patient_id:
        return None  # same accession, another patient: never merged
    order.study = study
    order.save(update_fields=["study"])
    return study


def _patient_location_set(
    patient: Patient, patient_class: str, location: str, now: datetime
) -> None:
    patient.current_location = location[:64]
    patient.patient_class = patient_class[:8] or patient.patient_class
    patient.location_updated_at = now
    patient.save(update_fields=["current_location", "patient_class", "location_updated_at"])


def patient_moved(
    *, identity: PatientIdentity, patient_class: str, location: str, discharged: bool = False
) -> list[int]:
    """ADT: the patient is admitted, transferred, registered, updated or discharged. The new
    location is shown on every study of theirs not yet read."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("patient_moved runs inside the caller's transaction")
    patient = _patient_for(identity)
    now = timezone.now()
    if discharged:
        _patient_location_set(patient, patient_class, "", now)
        return []
    if not location:
        return []  # an update that says nothing of where the patient is
    _patient_location_set(patient, patient_class, location, now)
    changed: list[int] = []
    for study in _open_studies(patient):
        changed += _study_context_apply(study, priority="", location=patient.current_location)
    return changed


def order_context_for_new_study(*, accession_number: str, patient_id: str) -> Order | None:
    """At a study's first instance: its order, if the RIS sent one (same patient)."""
    if not accession_number:
        return None
    order = (
        Order.objects.filter(
            accession_number=accession_number, status=Order.Status.ORDERED, study__isnull=True
        )
        .select_related("patient")
        .first()
    )
    if order is None or (patient_id and order.patient.patient_id != patient_id):
        return None
    return order
