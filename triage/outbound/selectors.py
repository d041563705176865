"""Reads of the outbox for the administrator's page and the Django admin."""

from __future__ import annotations

from django.db.models import Count, Max, Q, QuerySet

from triage.models import OutboundDestination, OutboundMessage


def destinations_health() -> QuerySet[OutboundDestination]:
    """Destinations with when each last took a message, and how many wait or failed."""
    State = OutboundMessage.State
    return OutboundDestination.objects.annotate(
        last_success=Max("messages__delivered_at"),
        waiting_count=Count("messages", filter=Q(messages__state=State.WAITING)),
        failed_count=Count("messages", filter=Q(messages__state=State.FAILED)),
    ).order_by("name")


def destination_latest_problem(destination: OutboundDestination) -> str:
    latest = (
        destination.messages.exclude(last_error="")
        .exclude(state=OutboundMessage.State.DELIVERED)
        .order_by("-last_attempt_at")
        .only("last_error")
        .first()
    )
    return latest.last_error if latest is not None else ""


def messages_undelivered(*, limit: int = 100) -> QuerySet[OutboundMessage]:
    return (
        OutboundMessage.objects.exclude(state=OutboundMessage.State.DELIVERED)
        .select_related("destination", "run")
        .order_by("-created_at")[:limit]
    )
