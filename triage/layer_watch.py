"""Tells this process's sockets when the channel layer's Redis has restarted or come back.

A Redis restart loses every group membership (they live in Redis), and what was pushed while
Redis was unreachable is lost too. A socket whose own read failed is closed and its page
reconnects and resumes, but channels_redis reads for all of a process's sockets through one
of them: the others stay open and hear nothing more, until their page's next resync (30 s),
measured with 200 dashboards in bench/redis_restart.py (195 heard nothing). So one watcher per
process asks Redis for its run id every WATCH_SECONDS while sockets are open; when the run id
changes, or Redis answers again after failing, every socket is told (`layer_restarted`, with the
time from which pushes may have been lost): it joins its groups again and catches up from the
database.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from datetime import datetime, timedelta
from typing import Any, Protocol

from django.conf import settings
from django.utils import timezone

log = logging.getLogger(__name__)

WATCH_SECONDS = 0.5
TELL_ATTEMPTS = 5


class Watched(Protocol):
    async def layer_restarted(self, since: datetime) -> None: ...


_sockets: weakref.WeakSet[Any] = weakref.WeakSet()
_watcher: asyncio.Task[None] | None = None


def layer_redis_url() -> str | None:
    """The channel layer's Redis, or None when the layer is not Redis (the in-memory layer
    loses nothing to a restart but the process's own)."""
    layer: dict[str, Any] = settings.CHANNEL_LAYERS.get("default", {})
    if not str(layer.get("BACKEND", "")).startswith("channels_redis."):
        return None
    hosts = layer.get("CONFIG", {}).get("hosts") or ["redis://127.0.0.1:6379"]
    host = hosts[0]
    if isinstance(host, dict):
        return str(host["address"])
    if isinstance(host, (tuple, list)):
        return f"redis://{host[0]}:{host[1]}"
    return str(host)


def socket_watch(socket: Watched) -> None:
    """Tell `socket` of a layer restart until `socket_unwatch`; the watcher runs while any
    socket of this process is watched."""
    global _watcher
    url = layer_redis_url()
    if url is None:
        return
    _sockets.add(socket)
    if _watcher is None or _watcher.done():
        _watcher = asyncio.get_running_loop().create_task(_watch(url), name="layer-watch")


def socket_unwatch(socket: Watched) -> None:
    _sockets.discard(socket)


async def _run_id(client: Any) -> str | None:
    """Redis's run id, or None while it cannot be reached. Asked twice: the first question
    after a restart goes out on the connection from before it, which fails once."""
    for _ in range(2):
        try:
            info = await asyncio.wait_for(client.info("server"), timeout=WATCH_SECONDS)
        except Exception as failed:  # noqa: BLE001 - redis-py's errors, OSError, timeouts
            log.debug("channel layer unreachable: %s", type(failed).__name__)
            continue
        return str(info.get("run_id") or "")
    return None


async def _watch(url: str) -> None:
    import redis.asyncio as redis

    client = redis.Redis.from_url(url, socket_connect_timeout=WATCH_SECONDS)
    known = await _run_id(client)
    reachable = known is not None
    # Pushes may have been lost from a little before the last answer that was still good.
    since = timezone.now() - timedelta(seconds=2 * WATCH_SECONDS)
    try:
        while _sockets:
            await asyncio.sleep(WATCH_SECONDS)
            run_id = await _run_id(client)
            if run_id is None:
                if reachable:
                    log.warning("channel layer (Redis) unreachable; sockets will catch up")
                reachable = False
                continue
            if not reachable or run_id != known:
                log.warning(
                    "channel layer (Redis) %s: %d sockets rejoin their groups and catch up",
                    "restarted" if run_id != known else "reachable again",
                    len(_sockets),
                )
                for socket in list(_sockets):
                    asyncio.ensure_future(_tell(socket, since))
            known, reachable = run_id, True
            since = timezone.now() - timedelta(seconds=2 * WATCH_SECONDS)
    finally:
        await client.aclose()


async def _tell(socket: Watched, since: datetime) -> None:
    """`layer_restarted`, tried again a few times: the layer's pooled connections from before
    the restart fail once each before the pool replaces them."""
    for attempt in range(TELL_ATTEMPTS):
        try:
            await socket.layer_restarted(since)
            return
        except Exception:  # one socket's failure (closing, say) must not stop the others
            if attempt == TELL_ATTEMPTS - 1:
                log.exception("a socket could not catch up after the channel layer came back")
                return
            await asyncio.sleep(0.2 * (attempt + 1))
