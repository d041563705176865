"""WebSocket routes."""

from __future__ import annotations

from django.urls import path

from triage.consumers import AlertConsumer, WorklistConsumer

websocket_urlpatterns = [
    path("ws/worklist/", WorklistConsumer.as_asgi()),
    path("ws/alerts/", AlertConsumer.as_asgi()),
]
