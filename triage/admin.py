from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse

from triage.audit import audit_record, audit_study_view
from triage.models import (
    AlertDelivery,
    AlertDigest,
    AuditEvent,
    OutboundDestination,
    OutboundMessage,
)
from triage.outbound.selectors import destination_latest_problem, destinations_health
from triage.outbound.services import outbound_message_resend
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


@admin.register(OutboundDestination)
class OutboundDestinationAdmin(admin.ModelAdmin):
    """Where results go, with each destination's health: when it last took a message, how many
    wait, how many failed and why the latest did."""

    list_display = [
        "name", "kind", "active", "last_delivered", "waiting", "failed", "latest_problem",
    ]  # fmt: skip
    list_filter = ["kind", "active"]
    readonly_fields = ["from_environment"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[OutboundDestination]:
        return destinations_health()

    @admin.display(description="last delivered", ordering="last_success")
    def last_delivered(self, obj: Any) -> Any:
        return obj.last_success or "never"

    @admin.display(description="waiting", ordering="waiting_count")
    def waiting(self, obj: Any) -> int:
        return int(obj.waiting_count)

    @admin.display(description="failed", ordering="failed_count")
    def failed(self, obj: Any) -> int:
        return int(obj.failed_count)

    @admin.display(description="latest problem")
    def latest_problem(self, obj: OutboundDestination) -> str:
        return destination_latest_problem(obj)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        audit_record(
            action="outbound.destination_change" if change else "outbound.destination_add",
            actor_id=request.user.pk,
            channel="admin",
            remote_addr=request.META.get("REMOTE_ADDR"),
            detail={"destination": obj.pk, "changed": list(form.changed_data)},
        )

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        audit_record(
            action="outbound.destination_delete",
            actor_id=request.user.pk,
            channel="admin",
            remote_addr=request.META.get("REMOTE_ADDR"),
            detail={"destination": obj.pk, "name": obj.name},
        )
        super().delete_model(request, obj)


@admin.register(OutboundMessage)
class OutboundMessageAdmin(ReadOnlyAdmin):
    list_display = [
        "id", "destination", "kind", "result_status", "state", "attempts", "created_at",
        "delivered_at", "last_error",
    ]  # fmt: skip
    list_filter = ["state", "kind", "destination"]
    actions = ["send_again"]

    @admin.action(description="Send the selected messages again now")
    def send_again(self, request: HttpRequest, queryset: QuerySet[OutboundMessage]) -> None:
        sent = sum(
            outbound_message_resend(
                message_id=message_id,
                actor_id=request.user.pk,
                remote_addr=request.META.get("REMOTE_ADDR", ""),
            )
            for message_id in queryset.values_list("pk", flat=True)
        )
        self.message_user(request, f"{sent} message(s) queued to send again.", messages.SUCCESS)
