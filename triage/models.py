"""Audit trail. Every view of a study and every clinical action writes one row."""

from __future__ import annotations

from django.conf import settings
from django.db import models


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
