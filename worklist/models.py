"""Patient / Study / Series / Instance as received, quarantined objects, and the worklist item."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Patient(models.Model):
    # PHI lives here and nowhere else: never log these fields.
    patient_id = models.CharField(max_length=64, blank=True)
    issuer = models.CharField(max_length=64, blank=True)
    name = models.CharField(max_length=324, blank=True)
    birth_date = models.CharField(max_length=8, blank=True)
    sex = models.CharField(max_length=16, blank=True)
    # From the hospital's ADT feed (HL7): where the patient is now, which beats an image tag.
    patient_class = models.CharField(max_length=8, blank=True, help_text="PV1-2: E, I, O...")
    current_location = models.CharField(max_length=64, blank=True)
    location_updated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["patient_id", "issuer"],
                condition=~models.Q(patient_id=""),
                name="patient_unique_identifier",
            )
        ]

    def __str__(self) -> str:
        return f"Patient #{self.pk}"  # no identifiers: this string ends up in logs


class Study(models.Model):
    class State(models.TextChoices):
        RECEIVING = "receiving"  # instances still arriving; the quiet period is running
        READY = "ready"  # quiet period passed (or a STOW-RS request delivered it whole)

    class AIState(models.TextChoices):
        AWAITING = "awaiting", "awaiting study"
        PENDING = "pending"
        NOT_ELIGIBLE = "not_eligible", "not eligible"
        COMPLETE = "complete"
        FAILED = "failed", "AI unavailable"

    study_instance_uid = models.CharField(max_length=64, unique=True)
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="studies")
    accession_number = models.CharField(max_length=64, blank=True, db_index=True)
    modality = models.CharField(max_length=16, blank=True)
    body_part = models.CharField(max_length=64, blank=True)
    description = models.CharField(max_length=128, blank=True)
    study_date = models.CharField(max_length=8, blank=True, help_text="DICOM DA, as sent")
    study_time = models.CharField(max_length=16, blank=True, help_text="DICOM TM, as sent")
    order_priority = models.CharField(max_length=16)
    patient_location = models.CharField(max_length=64, blank=True)
    is_emergency = models.BooleanField(default=False)
    calling_ae_title = models.CharField(max_length=16, blank=True)
    first_received_at = models.DateTimeField()
    last_instance_at = models.DateTimeField()
    state = models.CharField(max_length=16, choices=State.choices, default=State.RECEIVING)
    ready_at = models.DateTimeField(null=True, blank=True)
    reopened_count = models.PositiveIntegerField(default=0)
    ai_state = models.CharField(max_length=16, choices=AIState.choices, default=AIState.AWAITING)
    ai_detail = models.CharField(max_length=256, blank=True)
    applicable_findings = models.JSONField(default=list, blank=True)
    simulated = models.BooleanField(
        default=False,
        help_text="seeded by the demo's simulated history: no images, never shown as a study",
    )

    class Meta:
        verbose_name_plural = "studies"
        indexes = [
            models.Index(fields=["state", "last_instance_at"], name="study_quiet_idx"),
            # QIDO-RS: newest first, a page at a time; study date ranges.
            models.Index(fields=["-first_received_at", "id"], name="study_received_idx"),
            models.Index(fields=["study_date"], name="study_date_idx"),
        ]

    def __str__(self) -> str:
        return f"Study #{self.pk} {self.study_instance_uid}"


class Series(models.Model):
    series_instance_uid = models.CharField(max_length=64, unique=True)
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="series")
    modality = models.CharField(max_length=16, blank=True)
    body_part = models.CharField(max_length=64, blank=True)
    description = models.CharField(max_length=128, blank=True)
    series_number = models.IntegerField(null=True, blank=True)
    slice_thickness = models.FloatField(null=True, blank=True)
    contrast_agent = models.CharField(max_length=64, blank=True)

    class Meta:
        verbose_name_plural = "series"

    def __str__(self) -> str:
        return f"Series #{self.pk} {self.series_instance_uid}"


class Instance(models.Model):
    class Source(models.TextChoices):
        DICOM = "dicom", "DICOM C-STORE"
        STOW = "stow", "DICOMweb STOW-RS"

    sop_instance_uid = models.CharField(max_length=64, unique=True)
    sop_class_uid = models.CharField(max_length=64)
    series = models.ForeignKey(Series, on_delete=models.CASCADE, related_name="instances")
    instance_number = models.IntegerField(null=True, blank=True)
    transfer_syntax_uid = models.CharField(max_length=64)
    relative_path = models.CharField(max_length=255)
    size_bytes = models.BigIntegerField()
    source = models.CharField(max_length=8, choices=Source.choices)
    calling_ae_title = models.CharField(max_length=16, blank=True)
    received_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"Instance #{self.pk} {self.sop_instance_uid}"


class Transfer(models.Model):
    """One DICOM association delivering instances of one study, while it is open.

    Written by the ingest transaction of the association's first instance of the study (and
    about twice a second after), deleted when the association ends. A study whose last open
    transfer is released becomes ready at once (`worklist.services.transfers`); a transfer left
    by a listener that died stops counting once it is a quiet period old, and the quiet period
    is always the fallback.
    """

    association = models.CharField(max_length=96, help_text="host/pid/association of a listener")
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="transfers")
    last_instance_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["association", "study"], name="transfer_unique")
        ]
        indexes = [models.Index(fields=["study", "last_instance_at"], name="transfer_study_idx")]

    def __str__(self) -> str:
        return f"Transfer of study #{self.study_id} over {self.association}"


class QuarantinedObject(models.Model):
    """Bytes we refused, kept for an administrator to inspect."""

    received_at = models.DateTimeField(db_index=True)
    source = models.CharField(max_length=8, choices=Instance.Source.choices)
    calling_ae_title = models.CharField(max_length=16, blank=True)
    peer_address = models.CharField(max_length=64, blank=True)
    reason = models.CharField(max_length=512)
    status_code = models.PositiveIntegerField(help_text="DICOM status answered to the sender")
    sop_instance_uid = models.CharField(max_length=64, blank=True)
    relative_path = models.CharField(max_length=255)
    size_bytes = models.BigIntegerField()

    class Meta:
        ordering = ["-received_at"]

    def __str__(self) -> str:
        return f"Quarantined #{self.pk}: {self.reason}"


class WorklistItem(models.Model):
    class Status(models.TextChoices):
        UNREAD = "unread", "Unread"
        IN_PROGRESS = "in_progress", "In progress"
        READ = "read", "Read"

    study = models.OneToOneField(Study, on_delete=models.CASCADE, related_name="worklist_item")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.UNREAD)
    received_at = models.DateTimeField()
    read_by = models.DateTimeField(help_text="Deadline; the worklist is ordered by it")
    claimed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="claimed_items",
    )
    claimed_at = models.DateTimeField(null=True, blank=True)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["read_by", "id"]
        indexes = [
            models.Index(fields=["read_by", "id"], name="worklist_deadline_idx"),
            models.Index(fields=["status", "read_by", "id"], name="worklist_status_deadline_idx"),
        ]

    def __str__(self) -> str:
        return f"Worklist item #{self.pk} (study #{self.study_id})"


class Order(models.Model):
    """An imaging order from the RIS (HL7 ORM^O01 / OMI^O23), matched to its study by accession
    number. Until images arrive it is on the worklist as "awaiting images"."""

    class Status(models.TextChoices):
        ORDERED = "ordered"
        CANCELLED = "cancelled"

    accession_number = models.CharField(max_length=64, unique=True)
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="orders")
    placer_order_number = models.CharField(max_length=64, blank=True)
    procedure = models.CharField(max_length=128, blank=True)
    priority = models.CharField(max_length=16, help_text="a WORKLIST_PRIORITY_TARGET_MINUTES key")
    ordering_provider = models.CharField(max_length=128, blank=True)
    reason = models.CharField(max_length=256, blank=True)
    patient_location = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ORDERED)
    ordered_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    study = models.OneToOneField(
        Study, null=True, blank=True, on_delete=models.SET_NULL, related_name="order"
    )

    class Meta:
        indexes = [models.Index(fields=["study", "status"], name="order_awaiting_idx")]

    def __str__(self) -> str:
        return f"Order #{self.pk}"  # no accession or patient: this string ends up in logs


class Hl7InboundMessage(models.Model):
    """Every HL7 message the listener received, with the acknowledgement it was answered."""

    received_at = models.DateTimeField(db_index=True)
    peer = models.CharField(max_length=64)
    message_type = models.CharField(max_length=16, blank=True)
    control_id = models.CharField(max_length=64, blank=True)
    ack_code = models.CharField(max_length=2)
    reason = models.CharField(max_length=256, blank=True)
    raw = models.TextField(help_text="PHI: shown to administrators only, never logged")

    def __str__(self) -> str:
        return f"HL7 #{self.pk} {self.message_type} {self.ack_code}"
