"""Drill: Redis (the channel layer) restarted during an alert burst. A private redis-server is
started for the test (never the machine's shared one), with a real ASGI server (uvicorn) on it
and three dashboards connected over real WebSockets, each behaving as the dashboard's script
does when its socket drops: it reconnects and resumes after the last sequence number it saw
(never resyncing, which the browser does every 30 s). Alerts raised before, during and after the
restart all reach every dashboard within seconds, each shown once; none is raised twice."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from channels.layers import channel_layers
from django.db import transaction
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect

from bench.peers import PrivateRedis
from tests.conftest import asgi_server_start, process_stop
from tests.factories import ready_study
from tests.triage.test_live_e2e import _session_cookie
from triage.alerts import alert_raise
from triage.models import Alert

DASHBOARDS = 20


class Dashboard:
    """What live.js does with /ws/alerts/, in a test's hands."""

    def __init__(self, url: str, cookie: str, origin: str) -> None:
        self.url, self.headers = url, {"Cookie": cookie, "Origin": origin}
        self.seen: dict[int, dict] = {}  # type: ignore[type-arg]
        self.socket: ClientConnection | None = None
        self.twice: list[int] = []  # alert frames (same seq and state) received again
        self.connections = 0

    def open(self) -> None:
        try:
            self.socket = ws_connect(self.url, additional_headers=self.headers, open_timeout=5)
        except (OSError, InvalidHandshake):
            self.socket = None
            return
        self.connections += 1
        last = max(self.seen, default=0)
        have = [[seq, frame["state"]] for seq, frame in self.seen.items()]
        self.socket.send(json.dumps({"type": "resume", "after": last, "have": have} if last else
                                    {"type": "resync"}))  # fmt: skip

    def pump(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.socket is None:
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
                earlier = self.seen.get(frame["seq"])
                if earlier is not None and earlier["state"] == frame["state"]:
                    self.twice.append(frame["seq"])
                self.seen[frame["seq"]] = frame

    def close(self) -> None:
        if self.socket is not None:
            self.socket.close()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    redis = PrivateRedis(tmp_path)
    redis.start()
    yield redis
    redis.kill()


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

    def pump_until(count: int, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not all(len(b.seen) == count for b in boards):
            for board in boards:
                board.pump(0.01)

    try:
        for board in boards:
            board.open()
        pump_until(0, 0.5)
        _raise(settings, 3, first=1)
        # Pushed live: within a second here (the first alert frame of a server once waited
        # ~2 s for the URL configuration's imports, SciPy among them).
        pump_until(3, 5)
        assert all(len(board.seen) == 3 for board in boards), [len(b.seen) for b in boards]

        private_redis.kill()
        _raise(settings, 2, first=4)  # while Redis is down: pushes are lost, rows are not
        private_redis.start()
        _raise(settings, 2, first=6)  # just after it is back
        # No resync from the dashboards (the browser's comes every 30 s): a socket the restart
        # dropped reconnects and resumes; one it left open is told by the server's watcher
        # of the layer (triage.layer_watch), which rejoins its groups and catches it up.
        pump_until(7, 10)
        seqs = set(Alert.objects.values_list("seq", flat=True))
        assert len(seqs) == 7 and Alert.objects.count() == 7  # none raised twice
        for board in boards:
            assert set(board.seen) == seqs, (sorted(board.seen), sorted(seqs))
            assert board.twice == []
        # Live again without any resync: a new alert reaches every dashboard by its push.
        _raise(settings, 1, first=8)
        pump_until(8, 5)
        assert all(len(board.seen) == 8 for board in boards), [len(b.seen) for b in boards]

        # A quick restart (killed and started at once). channels_redis reads for all of a
        # process's sockets through one at a time, so this drops few of them; the others stay
        # open, out of their groups (lost with Redis): only the watcher rejoins and catches
        # them up.
        connections = [board.connections for board in boards]
        private_redis.kill()
        private_redis.start()
        pump_until(8, 0.3)
        _raise(settings, 2, first=9)
        pump_until(10, 10)
        assert all(len(board.seen) == 10 for board in boards), [len(b.seen) for b in boards]
        kept = [b for b, before in zip(boards, connections, strict=True) if b.connections == before]
        assert kept, "every socket was dropped: the drill did not test sockets left open"
        assert all(board.twice == [] for board in boards)
    finally:
        for board in boards:
            board.close()
        process_stop(web)
        channel_layers.backends.clear()
