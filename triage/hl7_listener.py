"""The MLLP listener: python-hl7's asyncio streams, one task per connection, each message
stored and applied in a worker thread (the ORM is synchronous) before its ACK is written.
Peers not on HL7_ALLOWED_PEERS are closed at once; a broken or oversized frame is answered AR
and skipped to its end, so the connection goes on; the listener survives everything a peer
sends. The framing is read here (it is three bytes); python-hl7 parses and acknowledges."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

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


START, END = b"\x0b", b"\x1c\r"


async def _frames(reader: asyncio.StreamReader) -> AsyncIterator[bytes | Answer]:
    """The MLLP frames a peer sends, or the AR owed for what is not one: bytes before <VT>, or a
    frame over MAX_MESSAGE_CHARS (skipped to its end, so the next frame is read intact)."""
    buffer = bytearray()
    skipping = False
    while True:
        chunk = await reader.read(65536)
        if not chunk:
            return
        buffer += chunk
        while True:
            end = buffer.find(END)
            if skipping:
                if end < 0:
                    del buffer[: max(0, len(buffer) - 1)]  # keep a possible half separator
                    break
                del buffer[: end + len(END)]
                skipping = False
                continue
            if end < 0:
                if len(buffer) > MAX_MESSAGE_CHARS + 1:
                    yield Answer(code="AR", reason=f"message over {MAX_MESSAGE_CHARS} bytes")
                    buffer.clear()
                    skipping = True
                break
            frame = bytes(buffer[:end])
            del buffer[: end + len(END)]
            if not frame.startswith(START):
                yield Answer(code="AR", reason="frame does not start with <VT>")
            elif len(frame) > MAX_MESSAGE_CHARS + 1:
                yield Answer(code="AR", reason=f"message over {MAX_MESSAGE_CHARS} bytes")
            else:
                yield frame[1:]


async def _answer(writer: hl7.mllp.HL7StreamWriter, answer: Answer) -> None:
    writer.writeblock(hl7_ack(answer=answer, message=None).encode("utf-8"))
    await writer.drain()


async def _connection(reader: hl7.mllp.HL7StreamReader, writer: hl7.mllp.HL7StreamWriter) -> None:
    peer = str((writer.get_extra_info("peername") or ("",))[0])
    if not peer_allowed(peer):
        logger.warning("hl7 peer refused peer=%s (not in HL7_ALLOWED_PEERS)", peer)
        await sync_to_async(_refused_peer, thread_sensitive=False)(peer)
        writer.close()
        return
    try:
        async for block in _frames(reader):
            if isinstance(block, Answer):
                await _answer(writer, block)
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
