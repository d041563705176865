"""The alert socket at the WebSocket protocol level, on the production ASGI server (uvicorn): a
client that breaks the protocol (an unmasked frame, a reserved opcode) gets a close frame with
1002 (protocol error) and its connection closed, a frame over the server's size limit
(`--ws-max-size`, 128 KiB as deployed) gets 1009 before it is read whole; the server keeps
serving everyone else. (Frames that are valid WebSocket but not the product's JSON
are answered by the consumer itself: tests/triage/test_alerts.py.)"""

from __future__ import annotations

import base64
import json
import os
import socket
import struct

import pytest
from websockets.sync.client import connect as ws_connect

from tests.conftest import asgi_server_start, process_stop
from tests.triage.test_live_e2e import _session_cookie


def _handshake(port: int, cookie: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /ws/alerts/ HTTP/1.1\r\nHost: localhost:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Origin: http://localhost:{port}\r\nCookie: {cookie}\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        assert chunk, head
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def _frame(opcode: int, payload: bytes, *, masked: bool = True) -> bytes:
    head = bytes([0x80 | opcode])
    length = len(payload)
    size = (
        bytes([length])
        if length < 126
        else (bytes([126]) + struct.pack("!H", length))
        if length < 65536
        else (bytes([127]) + struct.pack("!Q", length))
    )
    if not masked:
        return head + size + payload
    mask = os.urandom(4)
    size = bytes([size[0] | 0x80]) + size[1:]
    return head + size + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def _close_code(sock: socket.socket) -> int | None:
    """Read server frames until its close frame; its status code (None if the connection ends
    without one)."""
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            chunk = b""
        if not chunk:
            return None
        data += chunk
        while len(data) >= 2:
            opcode, length = data[0] & 0x0F, data[1] & 0x7F
            offset = 2
            if length == 126:
                length, offset = struct.unpack("!H", data[2:4])[0], 4
            elif length == 127:
                length, offset = struct.unpack("!Q", data[2:10])[0], 10
            if len(data) < offset + length:
                break
            payload, data = data[offset : offset + length], data[offset + length :]
            if opcode == 0x8:
                return int(struct.unpack("!H", payload[:2])[0]) if len(payload) >= 2 else None


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (_frame(0x1, b'{"type": "resync"}', masked=False), 1002),  # clients must mask
        (_frame(0x3, b"x"), 1002),  # a reserved opcode
        (_frame(0x1, json.dumps({"pad": "x" * 2_000_000}).encode()), 1009),  # too big
    ],
    ids=["unmasked", "reserved-opcode", "oversized"],
)
def test_a_frame_that_breaks_the_protocol_is_closed_with_its_code(
    transactional_db, users, tmp_path, frame, code
):
    process, port = asgi_server_start(tmp_path)
    try:
        cookie = _session_cookie(users.radiologist)
        sock = _handshake(port, cookie)
        sock.sendall(frame)
        got = _close_code(sock)
        sock.close()

        # The server is unharmed: the next dashboard connects and is answered.
        with ws_connect(
            f"ws://localhost:{port}/ws/alerts/",
            additional_headers={"Cookie": cookie, "Origin": f"http://localhost:{port}"},
            open_timeout=10,
        ) as dashboard:
            dashboard.send(json.dumps({"type": "hello"}))
            answer = json.loads(dashboard.recv(timeout=10))
    finally:
        log = (tmp_path / "web.log").read_text(errors="replace")
        process_stop(process)

    assert got == code
    assert answer == {"type": "error", "detail": "unknown message type"}
    assert "Traceback" not in log
