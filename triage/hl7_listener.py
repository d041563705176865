"""The MLLP listener: python-hl7's asyncio streams, one task per connection, each message
stored and applied in a worker thread (the ORM is synchronous) before its ACK is written.
Peers not on HL7_ALLOWED_PEERS are closed at once; a broken or oversized frame is answered AR
and the connection goes on; the listener survives everything a peer sends."""

from __future__ import annotations

import asyncio
import logging

import hl7.mllp
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections

from triage.audit import audit_record
from triage.hl7_inbound import (
    MAX_MESSAGE_CHARS,
    Answer,
    hl7_ack,
    hl7_message_receive,
    hl7_parse_or_none,
)

logger = logging.getLogger(__name__)


def peer_allowed(address: str) -> bool:
    return bool(settings.HL7_OPEN_ACCESS) or address in settings.HL7_ALLOWED_PEERS


def _receive(raw: str, peer: str) -> str:
    close_old_connections()
    try:
        answer, message = hl7_message_receive(raw=raw, peer=peer)
    except Exception:
        logger.exception("hl7 message from peer=%s could not be stored", peer)
        answer = Answer(code="AE", reason="could not be stored here; send it again")
        message = hl7_parse_or_none(raw)
    return hl7_ack(answer=answer, message=message)


def _refused_peer(peer: str) -> None:
    close_old_connections()
    audit_record(action="hl7.peer_refused", actor_id=None, channel="hl7", remote_addr=peer or None)


async def _connection(reader: hl7.mllp.HL7StreamReader, writer: hl7.mllp.HL7StreamWriter) -> None:
    peer = str((writer.get_extra_info("peername") or ("",))[0])
    if not peer_allowed(peer):
        logger.warning("hl7 peer refused peer=%s (not in HL7_ALLOWED_PEERS)", peer)
        await sync_to_async(_refused_peer, thread_sensitive=False)(peer)
        writer.close()
        return
    try:
        while True:
            try:
                block = await reader.readblock()
            except asyncio.IncompleteReadError:
                return  # the peer closed the connection
            except (ValueError, hl7.mllp.InvalidBlockError) as exc:
                reason = (
                    f"message over {MAX_MESSAGE_CHARS} bytes"
                    if isinstance(exc, ValueError)
                    else "frame does not start with <VT>"
                )
                writer.writeblock(
                    hl7_ack(answer=Answer(code="AR", reason=reason), message=None).encode()
                )
                await writer.drain()
                continue
            raw = block.decode("utf-8", errors="replace")
            ack = await sync_to_async(_receive, thread_sensitive=False)(raw, peer)
            writer.writeblock(ack.encode("utf-8"))
            await writer.drain()
    except (ConnectionError, OSError):
        return
    finally:
        writer.close()


async def hl7_listener_serve(*, host: str, port: int, ready: asyncio.Event | None = None) -> None:
    server = await hl7.mllp.start_hl7_server(
        _connection, host=host, port=port, limit=MAX_MESSAGE_CHARS, encoding="utf-8"
    )
    async with server:
        if ready is not None:
            ready.set()
        await server.serve_forever()
