"""Inference runs: one per (study, model version, series set), with its result and timings."""

from __future__ import annotations

from django.db import models


class InferenceRun(models.Model):
    class State(models.TextChoices):
        QUEUED = "queued"
        COMPLETE = "complete"
        FAILED = "failed"

    study = models.ForeignKey(
        "worklist.Study", on_delete=models.CASCADE, related_name="inference_runs"
    )
    finding = models.CharField(max_length=32)
    model_name = models.CharField(max_length=64)
    model_version = models.CharField(max_length=32)
    model_sha256 = models.CharField(max_length=64)
    demonstration = models.BooleanField(default=True)
    series = models.ForeignKey("worklist.Series", on_delete=models.CASCADE, related_name="+")
    series_set = models.CharField(max_length=64, help_text="hash of the SOP instances read")
    current = models.BooleanField(default=True, help_text="part of the study's latest routing")
    shadow = models.BooleanField(
        default=False,
        help_text="run in shadow mode: its result is for administrators only (never current)",
    )
    state = models.CharField(max_length=16, choices=State.choices, default=State.QUEUED)
    error = models.CharField(max_length=512, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    score = models.FloatField(null=True, blank=True)
    threshold = models.FloatField(null=True, blank=True)
    flagged = models.BooleanField(null=True, blank=True)
    key_instance = models.ForeignKey(
        "worklist.Instance", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    heatmap_path = models.CharField(max_length=255, blank=True)
    acquisition = models.JSONField(
        default=dict, blank=True, help_text="inference.acquisition bands of the series scored"
    )
    slice_scores = models.JSONField(
        default=list, blank=True, help_text="[[SOP Instance UID, probability], ...] per slice"
    )
    provider = models.CharField(max_length=64, blank=True)
    slices = models.PositiveIntegerField(null=True, blank=True)
    queued_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    queue_wait_ms = models.FloatField(null=True, blank=True)
    decode_ms = models.FloatField(null=True, blank=True)
    inference_ms = models.FloatField(null=True, blank=True)
    # A worker holds the run while it computes, renewing the lease every few seconds; a lease
    # that runs out means the worker is gone, and the run is sent again (never while held).
    lease_until = models.DateTimeField(null=True, blank=True)
    redeliveries = models.PositiveIntegerField(default=0)
    redelivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["study", "model_name", "model_version", "series_set"],
                name="inference_run_once_per_input",
            )
        ]
        indexes = [
            models.Index(fields=["study", "current"], name="inference_current_idx"),
            models.Index(fields=["state"], name="inference_state_idx"),
        ]

    def __str__(self) -> str:
        return f"Run #{self.pk} {self.model_name} study={self.study_id} {self.state}"
