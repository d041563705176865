"""Drill: Redis (the channel layer) restarted during an alert burst. A private redis-server is
started for the test (never the machine's shared one), with a real ASGI server (uvicorn) on it
and three dashboards connected over real WebSockets, each behaving as the dashboard's script
does: it reconnects when its socket drops and resumes after the last sequence number it saw,
and resyncs now and then. Alerts raised before, during and after the restart all reach every
dashboard, each shown once; none is raised twice."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from channels.layers import channel_layers
from django.db import transaction
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect

from tests.conftest import asgi_server_start, free_port, process_stop, wait_for_port
from tests.factories import ready_study
from tests.triage.test_live_e2e import _session_cookie
from triage.alerts import alert_raise
from triage.models import Alert

DASHBOARDS = 3


class Redis:
    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.folder = folder
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.folder)],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_for_port(self.port, process=self.process)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()  # as a crash: nothing kept
            self.process.wait(timeout=10)


class Dashboard:
    """What live.js does with /ws/alerts/, in a test's hands."""

    def __init__(self, url: str, cookie: str, origin: str) -> None:
        self.url, self.headers = url, {"Cookie": cookie, "Origin": origin}
        self.seen: dict[int, dict] = {}  # type: ignore[type-arg]
        self.socket: ClientConnection | None = None
        self.reconnects = 0

    def open(self) -> None:
        try:
            self.socket = ws_connect(self.url, additional_headers=self.headers, open_timeout=5)
        except (OSError, InvalidHandshake):
            self.socket = None
            return
        last = max(self.seen, default=0)
        self.socket.send(json.dumps({"type": "resume", "after": last} if last else
                                    {"type": "resync"}))  # fmt: skip

    def pump(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.socket is None:
                self.reconnects += 1
                time.sleep(0.2)
                self.open()
                continue
            try:
                frame = json.loads(self.socket.recv(timeout=0.05))
            except TimeoutError:
                continue
            except ConnectionClosed:
                self.socket = None
                continue
            if frame.get("type") == "alert":
                self.seen[frame["seq"]] = frame

    def resync(self) -> None:
        if self.socket is not None:
            try:
                self.socket.send(json.dumps({"type": "resync"}))
            except ConnectionClosed:
                self.socket = None

    def close(self) -> None:
        if self.socket is not None:
            self.socket.close()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[Redis]:
    redis = Redis(tmp_path)
    redis.start()
    yield redis
    redis.stop()


def _raise(settings, count: int, first: int) -> None:  # type: ignore[no-untyped-def]
    for n in range(first, first + count):
        item = ready_study(location=f"ED-RESUS-{n}", is_emergency=True)
        with transaction.atomic():
            assert alert_raise(study=item.study, finding="intracranial_hemorrhage") is not None


@pytest.mark.drill
def test_every_alert_reaches_every_dashboard_across_a_redis_restart(
    transactional_db, users, tmp_path, private_redis, settings
):
    settings.CHANNEL_LAYERS = {"default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [{"address": private_redis.url, "socket_timeout": None}]},
    }}  # fmt: skip
    channel_layers.backends.clear()  # this process broadcasts on the private Redis too
    web, port = asgi_server_start(tmp_path, extra_env={"REDIS_URL": private_redis.url})
    cookie = _session_cookie(users.radiologist).split("; ")[0]
    origin = f"http://localhost:{port}"
    boards = [Dashboard(f"ws://localhost:{port}/ws/alerts/", cookie, origin)
              for _ in range(DASHBOARDS)]  # fmt: skip
    try:
        for board in boards:
            board.open()
            board.pump(0.5)
        _raise(settings, 3, first=1)
        raised = time.monotonic()
        while time.monotonic() < raised + 5 and not all(len(b.seen) == 3 for b in boards):
            for board in boards:
                board.pump(0.1)
        # Pushed live: within a second here (the first alert frame of a server once waited
        # ~2 s for the URL configuration's imports, SciPy among them).
        assert all(len(board.seen) == 3 for board in boards), [len(b.seen) for b in boards]

        private_redis.stop()
        _raise(settings, 2, first=4)  # while Redis is down: pushes are lost, rows are not
        private_redis.start()
        _raise(settings, 2, first=6)  # just after it is back
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not all(len(b.seen) == 7 for b in boards):
            for board in boards:
                board.resync()  # (every 30 s in the browser)
                board.pump(0.5)
        seqs = set(Alert.objects.values_list("seq", flat=True))
        assert len(seqs) == 7 and Alert.objects.count() == 7  # none raised twice
        for board in boards:
            assert set(board.seen) == seqs, (sorted(board.seen), sorted(seqs))
        # The restart dropped the sockets: each came back by reconnecting and resuming.
        assert all(board.reconnects >= 1 for board in boards), [b.reconnects for b in boards]
        # Live again without any resync: a new alert reaches every dashboard by its push.
        _raise(settings, 1, first=8)
        for board in boards:
            board.pump(3)
        assert all(len(board.seen) == 8 for board in boards), [len(b.seen) for b in boards]
    finally:
        for board in boards:
            board.close()
        process_stop(web)
        channel_layers.backends.clear()
