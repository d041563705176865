"""The one module that pushes events to WebSocket consumers, always after commit.

Channel messages carry database ids only; each consumer loads what its user may see.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

logger = logging.getLogger(__name__)

GROUP_WORKLIST = "worklist"
GROUP_ALERTS = "alerts"


def user_alerts_group(user_id: int) -> str:
    """One recipient's alert sockets (digests are addressed to one person)."""
    return f"alerts.user.{user_id}"


_server_loop: asyncio.AbstractEventLoop | None = None


def use_server_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Send on the ASGI server's own loop (the demo's in-memory layer lives in that loop)."""
    global _server_loop
    _server_loop = loop


def _send(group: str, message: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    for attempt in range(SEND_ATTEMPTS):
        try:
            if _server_loop is not None and _server_loop.is_running():
                asyncio.run_coroutine_threadsafe(
                    layer.group_send(group, message), _server_loop
                ).result(timeout=5)
            else:
                async_to_sync(layer.group_send)(group, message)
            return
        except Exception:
            # Once more at once: after a Redis restart the first send goes out on a pooled
            # connection from before it, which fails once (a push lost for nothing).
            if attempt < SEND_ATTEMPTS - 1:
                continue
            # The database is the truth: a lost push is covered by resume and periodic resync.
            logger.exception("broadcast to %s failed", group)


SEND_ATTEMPTS = 2


def broadcast_on_commit(group: str, message: dict[str, Any]) -> None:
    json.dumps(message)  # ids and strings only: a non-serialisable event fails here, not later
    transaction.on_commit(lambda: _send(group, message))


def worklist_item_changed(*, item_id: int) -> None:
    broadcast_on_commit(GROUP_WORKLIST, {"type": "worklist.item", "item_id": item_id})


def alert_changed(*, alert_id: int, seq: int, version: str) -> None:
    """`version` (state:tier:clinicians-told) lets every socket of a process share one lookup."""
    broadcast_on_commit(
        GROUP_ALERTS,
        {"type": "alert.changed", "alert_id": alert_id, "seq": seq, "version": version},
    )


def digest_sent(*, user_id: int, digest_id: int) -> None:
    broadcast_on_commit(
        user_alerts_group(user_id), {"type": "alert.digest", "digest_id": digest_id}
    )
