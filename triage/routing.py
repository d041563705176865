"""WebSocket routes. The live worklist and alert consumers join here as they are built."""

from __future__ import annotations

from typing import Any

websocket_urlpatterns: list[Any] = []
