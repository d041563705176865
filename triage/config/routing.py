"""WebSocket routes."""

from __future__ import annotations

from django.urls import path, re_path

from triage.consumers import AlertConsumer, UnknownSocket, WorklistConsumer

websocket_urlpatterns = [
    path("ws/worklist/", WorklistConsumer.as_asgi()),
    path("ws/alerts/", AlertConsumer.as_asgi()),
    re_path(r"", UnknownSocket.as_asgi()),  # last: every other path
]
