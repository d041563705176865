from __future__ import annotations

from django.contrib import admin

from worklist.models import Instance, QuarantinedObject, Series, WorklistItem


@admin.register(QuarantinedObject)
class QuarantinedObjectAdmin(admin.ModelAdmin):
    list_display = ["id", "received_at", "source", "calling_ae_title", "status_code", "reason"]
    list_filter = ["source", "status_code"]
    readonly_fields = [field.name for field in QuarantinedObject._meta.fields]


admin.site.register(Series)
admin.site.register(Instance)
admin.site.register(WorklistItem)
