from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse

from triage.audit import audit_study_view
from triage.models import AlertDelivery, AlertDigest, AuditEvent
from worklist.models import Study


class ReadOnlyAdmin(admin.ModelAdmin):
    """Records of what happened: listed and searchable, never edited."""

    def has_add_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False

    def has_delete_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["at", "action", "actor", "study", "channel", "remote_addr"]
    list_filter = ["action", "channel"]


@admin.register(AlertDelivery)
class AlertDeliveryAdmin(ReadOnlyAdmin):
    list_display = ["alert", "user", "mode", "decided_at", "digest"]
    list_filter = ["mode"]


@admin.register(AlertDigest)
class AlertDigestAdmin(ReadOnlyAdmin):
    list_display = ["id", "user", "opened_at", "due_at", "sent_at"]


# Registered here, where the audit lives: every view of a study is audited, the admin's too.
@admin.register(Study)
class StudyAdmin(admin.ModelAdmin):
    list_display = ["id", "accession_number", "modality", "state", "ai_state", "first_received_at"]
    list_filter = ["state", "ai_state", "modality", "is_emergency"]
    search_fields = ["accession_number", "study_instance_uid"]
    raw_id_fields = ["patient"]

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        if object_id.isdigit():
            audit_study_view(request=request, study_id=int(object_id), channel="admin")
        return super().change_view(request, object_id, form_url, extra_context)
