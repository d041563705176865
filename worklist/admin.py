from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse

from triage.audit import audit_study_view
from worklist.models import Instance, QuarantinedObject, Series, Study, WorklistItem


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


@admin.register(QuarantinedObject)
class QuarantinedObjectAdmin(admin.ModelAdmin):
    list_display = ["id", "received_at", "source", "calling_ae_title", "status_code", "reason"]
    list_filter = ["source", "status_code"]
    readonly_fields = [field.name for field in QuarantinedObject._meta.fields]


admin.site.register(Series)
admin.site.register(Instance)
admin.site.register(WorklistItem)
