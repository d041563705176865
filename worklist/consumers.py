"""`/ws/worklist/`: live worklist events for radiologists' dashboards.

Out: {"type": "item", "item": {...the API's worklist item...}} whenever an item is added,
re-ranked, claimed, read or its AI state changes. In: {"type": "resync"} -> {"type": "items", ...}.
"""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from triage import broadcast
from triage.consumers import CLOSE_FORBIDDEN, CLOSE_UNAUTHENTICATED
from triage.roles import Role, user_has_role
from worklist import selectors
from worklist.serializers import WorklistItemSerializer


class WorklistConsumer(AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        if not await database_sync_to_async(user_has_role)(
            user, Role.RADIOLOGIST, Role.ADMINISTRATOR
        ):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        await self.channel_layer.group_add(broadcast.GROUP_WORKLIST, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(broadcast.GROUP_WORKLIST, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if isinstance(content, dict) and content.get("type") == "resync":
            await self.send_json({"type": "items", "items": await self._items()})
        else:
            await self.send_json({"type": "error", "detail": "unknown message type"})

    async def worklist_item(self, event: dict[str, Any]) -> None:
        item = await self._item(event["item_id"])
        if item is not None:
            await self.send_json({"type": "item", "item": item})

    @database_sync_to_async
    def _item(self, item_id: int) -> dict[str, Any] | None:
        item = selectors.worklist_items().filter(pk=item_id).first()
        return dict(WorklistItemSerializer(item).data) if item is not None else None

    @database_sync_to_async
    def _items(self) -> list[dict[str, Any]]:
        return [
            dict(row)
            for row in WorklistItemSerializer(selectors.worklist_items()[:200], many=True).data
        ]
