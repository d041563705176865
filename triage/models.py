"""Audit trail. Every view of a study and every clinical action writes one row."""

from __future__ import annotations

from typing import Self

from django.conf import settings
from django.db import models
from django.utils import timezone


class AuditEvent(models.Model):
    at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT
    )
    action = models.CharField(max_length=64, db_index=True)
    study = models.ForeignKey(
        "worklist.Study", null=True, blank=True, on_delete=models.PROTECT, related_name="audit"
    )
    channel = models.CharField(max_length=16, help_text="page, api, admin, dicom, system")
    remote_addr = models.GenericIPAddressField(null=True, blank=True)
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.action} study={self.study_id}"


class StaffProfile(models.Model):
    """Where a clinician works (alert routing) and whether a radiologist is on duty."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="staff_profile"
    )
    locations = models.CharField(
        max_length=256, blank=True, help_text="comma-separated location prefixes, e.g. ED,ICU"
    )
    on_duty = models.BooleanField(default=True)

    def __str__(self) -> str:
        return f"Profile of user #{self.user_id}"

    def location_prefixes(self) -> list[str]:
        return [part.strip().upper() for part in self.locations.split(",") if part.strip()]


class AlertCounter(models.Model):
    """One row: the last alert sequence number. Locked while an alert is raised, so sequence
    order is commit order and a dashboard resuming after N never misses a lower number."""

    last_seq = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"Alert counter at {self.last_seq}"

    @classmethod
    def locked(cls) -> AlertCounter:
        """The row, locked until the transaction ends: alert numbering and per-recipient
        delivery decisions are serialised on it."""
        counter, _ = cls.objects.select_for_update().get_or_create(pk=1)
        return counter


class Alert(models.Model):
    class State(models.TextChoices):
        OPEN = "open"
        ESCALATED = "escalated"
        ACKNOWLEDGED = "acknowledged"
        CONFIRMED = "confirmed"
        DISMISSED = "dismissed"

    OPEN_STATES = (State.OPEN, State.ESCALATED)

    seq = models.BigIntegerField(unique=True)
    study = models.ForeignKey("worklist.Study", on_delete=models.PROTECT, related_name="alerts")
    finding = models.CharField(max_length=32)
    run = models.ForeignKey(
        "inference.InferenceRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    score = models.FloatField(null=True, blank=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.OPEN)
    tier = models.PositiveSmallIntegerField(default=1, help_text="1 radiologists, 2 escalated")
    clinicians_notified = models.BooleanField(default=False)
    raised_at = models.DateTimeField()
    escalate_at = models.DateTimeField(db_index=True)
    escalated_at = models.DateTimeField(null=True, blank=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    acknowledged_from = models.CharField(max_length=32, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["study", "finding"], name="one_alert_per_study_finding")
        ]
        indexes = [models.Index(fields=["state", "escalate_at"], name="alert_escalation_idx")]
        ordering = ["seq"]

    def __str__(self) -> str:
        return f"Alert {self.seq} {self.finding} study={self.study_id} {self.state}"


class AdministratorSetting(models.Model):
    """An administrator's setting for one scope (a threshold, a model's mode). Rows are never
    edited: a change adds a row and retires the one of that scope it replaces, so the history
    says who set what, when and why."""

    active = models.BooleanField(default=True)
    changed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT)
    changed_at = models.DateTimeField()
    reason = models.CharField(max_length=500)
    replaces = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        abstract = True

    @classmethod
    def replace_active(
        cls, *, scope: dict[str, str], user: object, reason: str, **values: object
    ) -> tuple[Self, Self | None]:
        """Retire the active row of `scope` (locked) and add its successor with `values`; in the
        caller's transaction. The new row and the one it replaced (None: the first)."""
        rows = cls._default_manager  # the concrete model's (an abstract one has no `objects`)
        previous = rows.select_for_update().filter(active=True, **scope).first()
        if previous is not None:
            previous.active = False
            previous.save(update_fields=["active"])
        row = rows.create(
            **scope,
            **values,
            changed_by=user,
            changed_at=timezone.now(),
            reason=reason.strip()[:500],
            replaces=previous,
        )
        return row, previous


class ThresholdPolicy(AdministratorSetting):
    """An administrator's threshold for a finding, optionally narrowed to a location prefix or a
    modality."""

    finding = models.CharField(max_length=32)
    location_prefix = models.CharField(max_length=64, blank=True)
    modality = models.CharField(max_length=16, blank=True)
    value = models.FloatField()

    class Meta:
        ordering = ["-changed_at", "-id"]
        indexes = [models.Index(fields=["finding", "active"], name="threshold_active_idx")]

    def __str__(self) -> str:
        scope = "/".join(part for part in (self.location_prefix, self.modality) if part) or "all"
        return f"{self.finding} [{scope}] {self.value:.3f}"


class ModelMode(AdministratorSetting):
    """How a model runs, for every location or for those within a location prefix: live
    (flags, deadlines, alerts, results out), shadow (runs, its results stored for
    administrators only, nothing else) or off (not run). No row: live."""

    class Mode(models.TextChoices):
        LIVE = "live", "live"
        SHADOW = "shadow", "shadow (administrators only)"
        OFF = "off", "off"

    model_name = models.CharField(max_length=64)
    location_prefix = models.CharField(max_length=64, blank=True)
    mode = models.CharField(max_length=8, choices=Mode.choices)

    class Meta:
        ordering = ["-changed_at", "-id"]
        indexes = [models.Index(fields=["model_name", "active"], name="model_mode_active_idx")]

    def __str__(self) -> str:
        return f"{self.model_name} [{self.location_prefix or 'all'}] {self.mode}"


class Feedback(models.Model):
    """A radiologist's ground truth on an AI result: confirmed, false positive, or missed."""

    class Verdict(models.TextChoices):
        CONFIRMED = "confirmed"
        FALSE_POSITIVE = "false_positive", "false positive"
        MISSED = "missed", "missed finding"

    class Reason(models.TextChoices):
        NONE = "", "-"
        ARTEFACT = "artefact"
        OTHER_FINDING = "other_finding", "other finding"
        NORMAL_VARIANT = "normal_variant", "normal variant"
        OTHER = "other"

    study = models.ForeignKey("worklist.Study", on_delete=models.CASCADE, related_name="feedback")
    finding = models.CharField(max_length=32)
    run = models.ForeignKey(
        "inference.InferenceRun",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="feedback",
    )
    verdict = models.CharField(max_length=16, choices=Verdict.choices)
    reason = models.CharField(max_length=16, choices=Reason.choices, blank=True)
    comment = models.CharField(max_length=500, blank=True)
    score = models.FloatField(null=True, blank=True)
    flagged = models.BooleanField(null=True, blank=True)
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT)
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["study", "finding", "author"], name="one_feedback_per_reader"
            )
        ]

    def __str__(self) -> str:
        return f"{self.verdict} {self.finding} study={self.study_id}"

    @property
    def truth(self) -> bool:
        """Whether the finding is truly present according to the reader."""
        return self.verdict in (self.Verdict.CONFIRMED, self.Verdict.MISSED)


class ReportLabel(models.Model):
    """A finding's label read from a study's final radiology report (triage.reports): the second
    ground truth beside radiologist feedback. A corrected report replaces the labels."""

    class Label(models.TextChoices):
        PRESENT = "present"
        ABSENT = "absent"
        UNCERTAIN = "uncertain"
        NOT_MENTIONED = "not_mentioned", "not mentioned"

    study = models.ForeignKey(
        "worklist.Study", on_delete=models.CASCADE, related_name="report_labels"
    )
    finding = models.CharField(max_length=32)
    label = models.CharField(max_length=16, choices=Label.choices)
    status = models.CharField(max_length=1, help_text="OBR-25: F final, C corrected")
    control_id = models.CharField(max_length=64, blank=True, help_text="MSH-10 of the report")
    received_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["study", "finding"], name="report_label_once")
        ]

    def __str__(self) -> str:
        return f"{self.finding} {self.label} (study #{self.study_id})"


class ValidationRun(models.Model):
    """A model run over a labelled data set: the scores behind the operating-point explorer."""

    finding = models.CharField(max_length=32)
    model_name = models.CharField(max_length=64)
    model_version = models.CharField(max_length=32)
    dataset = models.CharField(max_length=255)
    description = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT
    )
    cases = models.PositiveIntegerField(default=0)
    failures = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Validation {self.finding} {self.model_name} {self.model_version} ({self.cases})"


class ValidationCase(models.Model):
    validation = models.ForeignKey(ValidationRun, on_delete=models.CASCADE, related_name="results")
    case = models.CharField(max_length=128)
    label = models.BooleanField()
    score = models.FloatField()
    subgroups = models.JSONField(
        default=dict, blank=True, help_text="triage.subgroups: manufacturer, station, bands..."
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["validation", "case"], name="validation_case_once")
        ]

    def __str__(self) -> str:
        return f"{self.case}: {self.label} {self.score:.3f}"


class AlertDigest(models.Model):
    """Alerts held back from one recipient by the rate cap, sent to them as one notification."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="alert_digests"
    )
    opened_at = models.DateTimeField()
    due_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-opened_at"]
        indexes = [models.Index(fields=["sent_at", "due_at"], name="digest_due_idx")]

    def __str__(self) -> str:
        return f"Digest #{self.pk} for user #{self.user_id}"


class AlertDelivery(models.Model):
    """How one recipient was told of one alert: interrupted at once, held for a digest by the
    rate cap, or interrupted by its escalation (which the cap never holds back)."""

    class Mode(models.TextChoices):
        IMMEDIATE = "immediate"
        DIGEST = "digest"
        ESCALATION = "escalation"

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="deliveries")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="alert_deliveries"
    )
    mode = models.CharField(max_length=16, choices=Mode.choices)
    decided_at = models.DateTimeField()
    digest = models.ForeignKey(
        AlertDigest, null=True, blank=True, on_delete=models.SET_NULL, related_name="deliveries"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["alert", "user"], name="one_delivery_per_recipient")
        ]
        indexes = [models.Index(fields=["user", "decided_at"], name="delivery_user_time_idx")]

    def __str__(self) -> str:
        return f"Alert {self.alert_id} to user #{self.user_id}: {self.mode}"


class TriageDispatch(models.Model):
    """A ready study's triage task, sent and not yet done: a row the periodic duties use to send
    it again when its worker died or the message was lost (the broker alone would wait out its
    visibility timeout)."""

    study = models.OneToOneField(
        "worklist.Study", on_delete=models.CASCADE, related_name="triage_dispatch"
    )
    sent_at = models.DateTimeField()
    sends = models.PositiveIntegerField(default=1)
    routed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["routed_at", "sent_at"], name="triage_dispatch_due_idx")]

    def __str__(self) -> str:
        return f"Triage of study #{self.study_id}, sent {self.sends}x"


class OutboundDestination(models.Model):
    """A system the results are sent to: a PACS (DICOM C-STORE or DICOMweb STOW-RS) or a RIS /
    interface engine (HL7 v2 over MLLP). Configured by an administrator; the environment seeds
    them (OUTBOUND_DICOM, OUTBOUND_STOW, OUTBOUND_HL7)."""

    class Kind(models.TextChoices):
        DICOM = "dicom", "DICOM C-STORE"
        STOW = "stow", "DICOMweb STOW-RS"
        HL7 = "hl7", "HL7 v2 ORU over MLLP"

    name = models.CharField(max_length=64, unique=True)
    kind = models.CharField(max_length=8, choices=Kind.choices)
    ae_title = models.CharField(max_length=16, blank=True, help_text="DICOM: the called AE")
    tls = models.BooleanField(
        default=False, help_text="DICOM: over TLS (the PACS's certificate checked)"
    )
    host = models.CharField(max_length=255, blank=True)
    port = models.PositiveIntegerField(null=True, blank=True)
    url = models.URLField(blank=True, help_text="STOW-RS: the DICOMweb base URL")
    token = models.CharField(max_length=512, blank=True, help_text="STOW-RS: bearer token")
    findings = models.JSONField(default=list, blank=True, help_text="empty: every finding")
    send_unflagged = models.BooleanField(
        default=False, help_text="also send results the AI did not flag (SR and ORU, no preview)"
    )
    active = models.BooleanField(default=True)
    from_environment = models.BooleanField(default=False, editable=False)

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()})"


class OutboundMessage(models.Model):
    """One object or message for one destination, written in the transaction of the result
    that causes it and sent after commit until the peer acknowledges it (DESIGN.md, 9)."""

    class Kind(models.TextChoices):
        SC = "sc", "DICOM Secondary Capture preview"
        SR = "sr", "DICOM Structured Report (TID 1500)"
        ORU = "oru", "HL7 ORU^R01"

    class Status(models.TextChoices):
        PRELIMINARY = "P", "preliminary (AI)"
        CORRECTED = "C", "corrected (dismissed by a radiologist)"

    class State(models.TextChoices):
        WAITING = "waiting"
        DELIVERED = "delivered"
        FAILED = "failed"

    destination = models.ForeignKey(
        OutboundDestination, on_delete=models.PROTECT, related_name="messages"
    )
    kind = models.CharField(max_length=8, choices=Kind.choices)
    result_status = models.CharField(max_length=1, choices=Status.choices)
    run = models.ForeignKey("inference.InferenceRun", on_delete=models.CASCADE, related_name="+")
    study = models.ForeignKey("worklist.Study", on_delete=models.CASCADE, related_name="+")
    state = models.CharField(max_length=16, choices=State.choices, default=State.WAITING)
    created_at = models.DateTimeField()
    next_attempt_at = models.DateTimeField()
    lease_until = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    delivered_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=512, blank=True)
    reference = models.CharField(
        max_length=64, blank=True, help_text="the SOP Instance UID or HL7 control id sent"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["destination", "run", "kind", "result_status"],
                name="outbound_once_per_result",
            )
        ]
        indexes = [
            models.Index(fields=["state", "next_attempt_at"], name="outbound_due_idx"),
            models.Index(fields=["destination", "state"], name="outbound_destination_idx"),
        ]

    def __str__(self) -> str:
        return f"Outbound #{self.pk} {self.kind}/{self.result_status} to {self.destination_id}"
