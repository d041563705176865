from django.contrib import admin

from triage.models import AlertDelivery, AlertDigest, AuditEvent


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
