"""The dashboards' WebSockets.

`/ws/worklist/` (radiologists, administrators): out {"type": "item", "item_id": N} whenever an
item is added, re-ranked, claimed, read or its AI state changes; in {"type": "resync"} -> out
{"type": "items", "item_ids": [...]} (deadline order). Frames carry ids only: the page fetches
its rows once per burst of frames (`/worklist/rows/`), as the user it is, so a socket never
serialises what its page does not show.

`/ws/alerts/`: alerts addressed to the user's roles and locations, with resume and resync.

Frames in: {"type": "resume", "after": SEQ}, {"type": "resync"}, {"type": "ack", "alert_id": N,
"screen": "dashboard"}. Frames out: {"type": "alert", "seq": ..., "delivery": "immediate" |
"digest", ...}, {"type": "digest", "digest_id": ..., "alerts": [...]} (the rate cap's digest, to its
recipient only), {"type": "error", ...}.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Any

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from triage import broadcast
from triage.alerts import (
    AlertNotAllowed,
    alert_acknowledge,
    alert_changes_since,
    alert_frame,
    alerts_for_frames,
    alerts_visible,
)
from triage.audit import audit_record, ip_or_none
from triage.deliveries import digest_frame, held_alert_ids, held_recipient_ids, recent_digests
from triage.layer_watch import socket_unwatch, socket_watch
from triage.models import Alert, AlertDigest
from triage.roles import Role, user_has_role
from triage.selectors import worklist_items
from triage.visibility import alert_visible, viewer_for

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404

Scope = dict[str, Any]
# (frame, who may see it, who hears of it in a digest rather than at once)
Loaded = tuple[dict[str, Any], Scope, frozenset[int]]
_shared_frames: dict[tuple[int, str], asyncio.Future[Loaded | None]] = {}
# since -> (loop time the read began, the read)
_shared_changes: dict[datetime, tuple[float, asyncio.Future[list[tuple[int, str]]]]] = {}


def _forget_later(key: Any, shared: dict[Any, Any] = _shared_frames) -> None:
    asyncio.get_running_loop().call_later(30, shared.pop, key, None)


@database_sync_to_async
def _alert_frame_and_scope(alert_id: int) -> Loaded | None:
    """The frame of one alert version, what decides who may see it, and who was held back."""
    alert = alerts_for_frames().filter(pk=alert_id).first()
    if alert is None:
        return None
    scope = {
        "tier": alert.tier,
        "clinicians_notified": alert.clinicians_notified,
        "location": alert.study.patient_location,
    }
    return alert_frame(alert), scope, held_recipient_ids(alert_id=alert.pk)


def _with_delivery(frame: dict[str, Any], *, held: bool) -> dict[str, Any]:
    """A held alert is listed quietly until it escalates; everything else interrupts."""
    quiet = held and frame["state"] != Alert.State.ESCALATED
    return {**frame, "delivery": "digest" if quiet else "immediate"}


MAX_FRAME_CHARACTERS = 64 * 1024


RESUME_HAVE_LIMIT = 1000  # [seq, state] pairs a resuming page may name


class JsonFrames(AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    """A frame that is not JSON text (binary, not JSON, over 64 KiB, nested too deeply) is
    answered with an error frame, and the socket stays open."""

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            # However the socket ends (closed, or its consumer failed when the channel layer
            # went away, when `disconnect` is not called), the layer's watcher forgets it.
            socket_unwatch(self)

    async def dispatch(self, message: dict[str, Any]) -> None:
        """As Channels' own, less the stale-connection check it runs (in a thread) before every
        message: each database access here goes through `database_sync_to_async`, which makes
        that check around itself, and an alert fanned out to a thousand sockets of a process
        would otherwise queue a thousand thread hops that touch no database (a quarter of the
        server's time in the fan-out bench)."""
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def refuse(self, code: int) -> None:
        """Audit the denied socket (who, from where, which), then accept and close at once with
        `code`: closed before the handshake completes, a browser would see only an HTTP 403
        and close code 1006, never 4401 (sign in again) or 4403. Nothing is sent in between."""
        user = self.scope.get("user")
        client = self.scope.get("client") or ("", 0)
        await database_sync_to_async(audit_record)(
            action="access.denied",
            actor_id=user.pk if user is not None and user.is_authenticated else None,
            channel="socket",
            remote_addr=ip_or_none(str(client[0] or "")),
            detail={"path": str(self.scope.get("path", ""))[:200], "status": code},
        )
        await self.accept()
        await self.close(code=code)

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any
    ) -> None:
        # A socket lives for days: its user's roles are read again for each message (the
        # per-object cache of `role_names_of` is for one request).
        user = self.scope.get("user")
        if user is not None:
            user.__dict__.pop("_role_names_cache", None)
        if text_data is None or len(text_data) > MAX_FRAME_CHARACTERS:
            await self.send_json(
                {"type": "error", "detail": "frames are JSON text of at most 64 KiB"}
            )
            return
        try:
            content = json.loads(text_data)
        except (ValueError, RecursionError):
            await self.send_json({"type": "error", "detail": "the frame is not JSON"})
            return
        await self.receive_json(content, **kwargs)


class AlertConsumer(JsonFrames):
    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.refuse(CLOSE_UNAUTHENTICATED)
            return
        allowed = await database_sync_to_async(user_has_role)(
            user, Role.RADIOLOGIST, Role.CLINICIAN, Role.ADMINISTRATOR
        )
        if not allowed:
            await self.refuse(CLOSE_FORBIDDEN)
            return
        self.sent: set[tuple[int, str]] = set()  # (seq, state) already on this socket
        self.viewer = await database_sync_to_async(viewer_for)(user)
        self.groups_joined = [broadcast.GROUP_ALERTS, broadcast.user_alerts_group(user.pk)]
        await self._groups_join()
        await self.accept()
        socket_watch(self)

    async def disconnect(self, code: int) -> None:
        socket_unwatch(self)
        for group in getattr(self, "groups_joined", ()):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def _groups_join(self) -> None:
        """Join (again: idempotent) the socket's groups. Membership lapses after the layer's
        group expiry (a day) and is lost when Redis restarts."""
        for group in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)

    async def layer_restarted(self, since: datetime) -> None:
        """Redis restarted or came back (triage.layer_watch): join again, then hear each alert
        change since `since` as if it had been pushed (one read per process, shared by every
        socket; visibility and delivery as for a push; what the socket has, it is not sent)."""
        await self._groups_join()
        loop = asyncio.get_running_loop()
        joined = loop.time()
        # A read begun before this socket was back in its groups may miss a change pushed
        # meanwhile: shared only when begun after.
        shared = _shared_changes.get(since)
        if shared is None or shared[0] < joined:
            pending = asyncio.ensure_future(database_sync_to_async(alert_changes_since)(since))
            shared = _shared_changes[since] = (loop.time(), pending)
            pending.add_done_callback(lambda _: _forget_later(since, _shared_changes))
        for alert_id, version in await asyncio.shield(shared[1]):
            await self.alert_changed({"alert_id": alert_id, "version": version})

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        kind = content.get("type") if isinstance(content, dict) else None
        if kind == "resume":
            after = content.get("after", 0)
            if not isinstance(after, int) or after < 0:
                await self.send_json({"type": "error", "detail": "resume needs an integer after"})
                return
            # What the page already holds ([seq, state] pairs, from before a reconnect): a frame
            # it has is not sent again, by the resume or by a catch-up after a layer restart.
            have = content.get("have", [])
            if not isinstance(have, list) or len(have) > RESUME_HAVE_LIMIT:
                await self.send_json({"type": "error", "detail": "resume: have is a short list"})
                return
            for pair in have:
                if (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], int)
                        and isinstance(pair[1], str) and len(pair[1]) <= 32):  # fmt: skip
                    self.sent.add((pair[0], pair[1]))
            for frame in await self._frames(after_seq=after):
                await self._send_once(frame)
        elif kind == "resync":  # the dashboard resyncs every 30 s
            await self._groups_join()
            for frame in await self._frames(open_only=True):
                await self._send_once(frame, force=True)
            for frame in await self._recent_digests():
                await self.send_json(frame)
        elif kind == "ack":
            alert_id = content.get("alert_id")
            if not isinstance(alert_id, int):
                await self.send_json({"type": "error", "detail": "ack needs an integer alert_id"})
                return
            try:
                frame = await self._acknowledge(alert_id, str(content.get("screen") or "dashboard"))
            except (AlertNotAllowed, Alert.DoesNotExist):
                await self.send_json({"type": "error", "detail": "no such alert for you"})
                return
            await self._send_once(frame)
        else:
            await self.send_json({"type": "error", "detail": "unknown message type"})

    async def alert_changed(self, event: dict[str, Any]) -> None:
        # Every socket in this process receives the same event: one database read serves all.
        key = (event["alert_id"], str(event.get("version", "")))
        pending = _shared_frames.get(key)
        if pending is None:
            pending = asyncio.ensure_future(_alert_frame_and_scope(event["alert_id"]))
            _shared_frames[key] = pending
            pending.add_done_callback(lambda _: _forget_later(key))
        loaded = await asyncio.shield(pending)  # a closing socket must not cancel the others
        if loaded is None:
            return
        frame, scope, held = loaded
        if alert_visible(self.viewer, **scope):
            await self._send_once(_with_delivery(frame, held=self.scope["user"].pk in held))

    async def alert_digest(self, event: dict[str, Any]) -> None:
        frame = await self._digest(event["digest_id"])
        if frame is not None:
            await self.send_json(frame)

    async def _send_once(self, frame: dict[str, Any], *, force: bool = False) -> None:
        key = (frame["seq"], frame["state"])
        if key in self.sent and not force:
            return
        self.sent.add(key)
        await self.send_json(frame)

    @database_sync_to_async
    def _frames(
        self, *, after_seq: int | None = None, open_only: bool = False
    ) -> list[dict[str, Any]]:
        user = self.scope["user"]
        alerts = alerts_visible(user=user, after_seq=after_seq, open_only=open_only)
        held = held_alert_ids(user=user, alert_ids=[alert.pk for alert in alerts])
        return [_with_delivery(alert_frame(alert), held=alert.pk in held) for alert in alerts]

    @database_sync_to_async
    def _recent_digests(self) -> list[dict[str, Any]]:
        return [digest_frame(digest) for digest in recent_digests(user=self.scope["user"])]

    @database_sync_to_async
    def _digest(self, digest_id: int) -> dict[str, Any] | None:
        digest = AlertDigest.objects.filter(pk=digest_id, user_id=self.scope["user"].pk).first()
        return digest_frame(digest) if digest is not None else None

    @database_sync_to_async
    def _acknowledge(self, alert_id: int, screen: str) -> dict[str, Any]:
        alert = alert_acknowledge(alert_id=alert_id, user=self.scope["user"], screen=screen)
        alert = alerts_for_frames().get(pk=alert.pk)
        return _with_delivery(alert_frame(alert), held=False)


class WorklistConsumer(JsonFrames):
    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.refuse(CLOSE_UNAUTHENTICATED)
            return
        if not await database_sync_to_async(user_has_role)(
            user, Role.RADIOLOGIST, Role.ADMINISTRATOR
        ):
            await self.refuse(CLOSE_FORBIDDEN)
            return
        await self.channel_layer.group_add(broadcast.GROUP_WORKLIST, self.channel_name)
        await self.accept()
        socket_watch(self)

    async def disconnect(self, code: int) -> None:
        socket_unwatch(self)
        await self.channel_layer.group_discard(broadcast.GROUP_WORKLIST, self.channel_name)

    async def layer_restarted(self, since: datetime) -> None:
        """Redis restarted or came back: join again; the page fetches its rows once more."""
        await self.channel_layer.group_add(broadcast.GROUP_WORKLIST, self.channel_name)
        await self.send_json({"type": "items", "item_ids": await self._item_ids()})

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if isinstance(content, dict) and content.get("type") == "resync":
            await self.channel_layer.group_add(broadcast.GROUP_WORKLIST, self.channel_name)
            await self.send_json({"type": "items", "item_ids": await self._item_ids()})
        else:
            await self.send_json({"type": "error", "detail": "unknown message type"})

    async def worklist_item(self, event: dict[str, Any]) -> None:
        await self.send_json({"type": "item", "item_id": event["item_id"]})

    @database_sync_to_async
    def _item_ids(self) -> list[int]:
        return list(worklist_items().values_list("pk", flat=True)[:200])


class UnknownSocket(AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    """Any other /ws/ path: refused with 4404, not a server error."""

    async def connect(self) -> None:
        await self.accept()  # as `JsonFrames.refuse`: so that a browser sees the code
        await self.close(code=CLOSE_NOT_FOUND)
