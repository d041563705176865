from django.contrib import admin

from triage.models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ["at", "action", "actor", "study", "channel", "remote_addr"]
    list_filter = ["action", "channel"]
    readonly_fields = [field.name for field in AuditEvent._meta.fields]

    def has_change_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False

    def has_delete_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False
