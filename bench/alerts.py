"""Alerts benchmark: time to alert (last instance stored -> frame on a dashboard socket), and
fan-out of one alert to many dashboard sockets on one uvicorn process (or several, `--servers`).

1. Time to alert. Positive phantom head CTs (which the installed hemorrhage model flags) are
   sent one study at a time with DCMTK `storescu` to our listener (`manage.py dicom_scp`, which
   runs the readiness sweep); a Celery worker on Redis routes and infers; one WebSocket client on
   `/ws/alerts/` of a uvicorn process receives the alert. Clock: from the moment storescu exits
   0 (after our final C-STORE response, sent once the instance is durable) to the alert frame.
   A study sent in one association is ready when it is released, so the quiet period
   (STUDY_STABLE_SECONDS, 8 s by default as in production) is not part of that time.
2. Fan-out. N sockets (default 500) on `/ws/alerts/` of ONE uvicorn process (`--servers K`:
   spread in turn over K uvicorn processes on the same Redis channel layer), one process of
   clients (asyncio + websockets). This process raises an alert with the service
   (`triage.alerts.alert_raise` inside `transaction.atomic()`), so the broadcast goes through the
   real Redis channel layer; the clock starts when the commit returns (an on_commit hook
   registered before the alert's own) and stops when each socket has the frame.

Run: .venv/bin/python bench/alerts.py [--json] [--studies 12] [--sockets 500] [--alerts 10]
Needs: DCMTK on PATH, PostgreSQL on 127.0.0.1:5432 (trust auth, user postgres), Redis on 6379
(DB 8 is flushed), and an intracranial-hemorrhage model in the registry (inference/models/).
The database triage_bench_alerts is dropped and recreated at the start of every run.
Benchmarks are not tests: nothing here asserts on timing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import resource
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

# Run as a script, bench/ comes first on sys.path: the repository root goes before it.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (  # noqa: E402
    BenchError,
    Processes,
    argument_parser,
    database_reset,
    free_port,
    redis_flush,
    report_output,
    say,
    spread,
    stack_environment,
    start_processes,
    stop_all,
    storescu_send,
    tool_version,
    tools_missing,
    uvicorn_start,
    work_dir,
)

DB_NAME = "triage_bench_alerts"
REDIS_DB = 8
FINDING = "intracranial_hemorrhage"  # the fan-out phase's alerts
# Each round of part 1: a label, the finding, and whether the study goes as three associations
# (scout, the axial series the model reads, a bone reconstruction), one per series.
ROUNDS = (
    ("head CT", "intracranial_hemorrhage", False),
    ("head CT in 3 associations", "intracranial_hemorrhage", True),
    ("CT pulmonary angiogram", "pulmonary_embolism", False),
    ("chest radiograph", "pneumothorax", False),
    ("C-spine CT", "fracture", False),
)
SEED_START = 9_300_000  # held-out phantom range (training and validation use lower seeds)
WARMUP_TIMEOUT_S = 180.0  # the first study also waits for the worker to start and load the model
FANOUT_TIMEOUT_S = 15.0
TIME_TO_ALERT_GOAL_S = 1.0  # p95, last instance stored -> alert frame, at production settings
LATENCY_FIGURES = ("n", "min", "p50", "p95", "p99", "max")

T = TypeVar("T")


@dataclass
class PhantomSet:
    seed: int
    study_uid: str
    finding: str
    label: str  # its round
    parts: list[list[Path]]  # one association each, sent in order


@dataclass
class StudyResult:
    seed: int
    study_uid: str
    warmup: bool
    finding: str
    label: str
    sent_s: float = 0.0  # storescu wall time (all associations)
    exit_perf: float = 0.0  # of the last association's storescu
    exit_wall: float = 0.0
    frame_perf: float | None = None
    frame_wall: float | None = None
    outcome: str = "pending"  # alerted | lost | model_miss | ai_failed
    flagged: bool | None = None
    dropped: bool = False  # the server dropped the dashboard socket between exit and frame
    breakdown: dict[str, float | None] = field(default_factory=dict)

    @property
    def latency(self) -> float | None:
        return None if self.frame_perf is None else self.frame_perf - self.exit_perf


# --------------------------------------------------------------------------- helpers


def latency_spread(values: Sequence[float]) -> dict[str, float] | None:
    return spread(values, LATENCY_FIGURES) if values else None


def raise_fd_limit(needed: int) -> dict[str, int]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    before = soft
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise BenchError(f"file descriptor hard limit {hard} < {needed} needed for the sockets")
    if soft != resource.RLIM_INFINITY and soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))  # children inherit it
        soft = needed
    return {"soft_before": before, "soft": soft, "hard": hard}


EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Warning|Full)\b:?")


def log_problems(
    logs: dict[str, Path],
    *,
    start: dict[str, int] | None = None,
    end: dict[str, int] | None = None,
    limit: int = 12,
) -> dict[str, Any]:
    """What in the servers' output (between byte offsets) looks like trouble: logged errors and
    warnings, and the final line of each traceback (the exception), counted by kind."""
    kinds: dict[str, int] = {}
    tracebacks = 0
    for name, path in logs.items():
        if not path.exists():
            continue
        data = path.read_bytes()
        data = data[(start or {}).get(name, 0) : (end or {}).get(name, len(data))]
        for raw in data.decode(errors="replace").splitlines():
            line = raw.strip()
            if line.startswith("Traceback"):
                tracebacks += 1
                continue
            logged = any(word in line for word in ("ERROR", "WARNING", "CRITICAL", " [E:", " [W:"))
            if logged or (raw == line and EXCEPTION_LINE.match(line)):
                line = re.sub(r"\x1b\[[0-9;]*m", "", line)  # onnxruntime colours its lines
                line = re.sub(r"[0-9]{4}-[0-9-]+ [0-9:.,]+ ", "", line)
                key = f"{name}: {line[:200]}"
                kinds[key] = kinds.get(key, 0) + 1
    ranked = sorted(kinds.items(), key=lambda item: -item[1])
    return {
        "tracebacks": tracebacks,
        "lines": sum(kinds.values()),
        "kinds": [f"{count:>4} x {key}" for key, count in ranked[:limit]],
        "more_kinds": max(0, len(ranked) - limit),
    }


# --------------------------------------------------------------------------- setup


def model_cards(finding: str = FINDING) -> list[Any]:
    from django.conf import settings

    from inference.registry import registry_load

    registry = registry_load(settings.INFERENCE_MODEL_DIRS)
    return list(registry.for_finding(finding))


# --------------------------------------------------------------------------- phantoms


def phantoms_prepare(  # noqa: PLR0913 - one round's settings
    count: int,
    root: Path,
    cards: list[Any],
    *,
    finding: str,
    label: str,
    split: bool,
    seed_start: int,
) -> tuple[list[PhantomSet], int]:
    """Write `count` positive phantoms of the finding that the installed model(s) flag (run
    here, offline, with the product's own pipeline and thresholds), explicit VR little endian;
    with `split`, as three series for three associations. Not timed."""
    import pydicom
    from pydicom.uid import ExplicitVRLittleEndian

    from inference.phantoms import phantom_generate, phantom_write
    from inference.scoring import series_score
    from triage.thresholds import threshold_for

    thresholds = {card.name: threshold_for(card=card) for card in cards}
    chosen: list[PhantomSet] = []
    tried = 0
    seed = seed_start
    while len(chosen) < count:
        if tried >= 4 * count + 10:
            raise BenchError(
                f"only {len(chosen)} of {tried} positive phantoms were flagged by the model; "
                "is the installed model the trained one?"
            )
        tried += 1
        seed += 1
        directory = root / f"seed-{seed}"
        study = phantom_generate(finding, positive=True, seed=seed)
        paths = phantom_write(
            study, out_dir=directory, seed=seed, transfer_syntax=ExplicitVRLittleEndian
        )
        files = sorted(path for path in paths if path.suffix == ".dcm")
        flagged = any(
            series_score(card=card, paths=files, threads=2, batch_size=32, heat_map=False).score
            >= thresholds[card.name]
            for card in cards
        )
        if not flagged:
            shutil.rmtree(directory, ignore_errors=True)
            continue
        uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
        parts = series_split(files, directory) if split else [files]
        chosen.append(
            PhantomSet(seed=seed, study_uid=uid, finding=finding, label=label, parts=parts)
        )
    return chosen, tried


def series_split(files: list[Path], directory: Path) -> list[list[Path]]:
    """The study as a scanner might send it over three associations: a two-image scout, the
    axial series, and a bone reconstruction of it (the same images under new UIDs)."""
    from worklist.dicom.synthetic import series_copy

    return [
        series_copy(files[:2], directory / "scout", description="SCOUT", number=1),
        files,
        series_copy(files, directory / "bone", description="AXIAL BONE", number=3),
    ]


# --------------------------------------------------------------------------- database side


def session_cookie() -> str:
    from django.conf import settings
    from django.contrib.auth.models import Group, User
    from django.test import Client

    user = User.objects.create_user("bench-radiologist", password=None)
    user.groups.add(Group.objects.get(name="radiologist"))
    client = Client()
    client.force_login(user)
    name = settings.SESSION_COOKIE_NAME
    return f"{name}={client.cookies[name].value}"


def study_status(uid: str, finding: str) -> tuple[str | None, bool | None, bool]:
    """(study ai_state, any current run flagged, alert row exists)."""
    from inference.models import InferenceRun
    from triage.models import Alert
    from worklist.models import Study

    study = Study.objects.filter(study_instance_uid=uid).first()
    if study is None:
        return None, None, False
    runs = list(InferenceRun.objects.filter(study=study, current=True, state="complete"))
    flagged = any(run.flagged for run in runs) if runs else None
    alert = Alert.objects.filter(study=study, finding=finding).exists()
    return str(study.ai_state), flagged, alert


def study_breakdown(
    uid: str, finding: str, exit_wall: float, frame_wall: float | None
) -> dict[str, float | None]:
    """Stages from the database's timestamps (wall clock, same machine)."""
    from inference.models import InferenceRun
    from triage.models import Alert
    from worklist.models import Study

    def seconds(later: datetime | float | None, earlier: datetime | float | None) -> float | None:
        if later is None or earlier is None:
            return None
        a = later.timestamp() if isinstance(later, datetime) else later
        b = earlier.timestamp() if isinstance(earlier, datetime) else earlier
        return a - b

    study = Study.objects.get(study_instance_uid=uid)
    run = (
        InferenceRun.objects.filter(study=study, current=True, finding=finding)
        .order_by("-flagged", "pk")
        .first()
    )
    alert = Alert.objects.filter(study=study, finding=finding).first()
    return {
        "exit_to_ready": seconds(study.ready_at, exit_wall),
        "ready_to_queued": seconds(run.queued_at if run else None, study.ready_at),
        "queued_to_started": seconds(
            run.started_at if run else None, run.queued_at if run else None
        ),
        "started_to_finished": seconds(
            run.finished_at if run else None, run.started_at if run else None
        ),
        "decode_ms": run.decode_ms if run else None,
        "inference_ms": run.inference_ms if run else None,
        "finished_to_raised": seconds(
            alert.raised_at if alert else None, run.finished_at if run else None
        ),
        "raised_to_frame": seconds(frame_wall, alert.raised_at if alert else None),
    }


def fanout_studies(count: int) -> list[int]:
    from tests.factories import ready_study

    return [ready_study(location="ED", is_emergency=True).study_id for _ in range(count)]


def fanout_raise(study_id: int) -> tuple[int, float, float]:
    """Raise one alert; return (seq, perf time the commit returned, perf time the broadcast
    returned). Our on_commit hook is registered before alert_raise's, so it runs first."""
    from django.db import transaction

    from triage.alerts import alert_raise
    from worklist.models import Study

    marks: dict[str, float] = {}
    with transaction.atomic():
        study = Study.objects.select_for_update().get(pk=study_id)
        transaction.on_commit(lambda: marks.__setitem__("commit", time.perf_counter()))
        alert = alert_raise(study=study, finding=FINDING)
    returned = time.perf_counter()
    if alert is None:
        raise BenchError(f"alert_raise raised nothing for study {study_id}")
    return alert.seq, marks["commit"], returned


# --------------------------------------------------------------------------- sockets


class Dashboard:
    """One /ws/alerts/ client that timestamps every alert frame as it arrives.

    Behaves like the product's dashboard (worklist/static/worklist/live.js) when the server drops
    it: reconnects after 0.5 s (doubling up to 10 s, reset once open) and sends
    {"type": "resume", "after": last seq seen}. Every drop is recorded and reported.
    """

    def __init__(self, index: int, url: str, headers: dict[str, str]) -> None:
        self.index = index
        self.url = url
        self.headers = headers
        self.ws: Any = None
        self.task: asyncio.Task[None] | None = None
        self.by_seq: dict[tuple[int, str], float] = {}  # first frame per (seq, state): perf
        self.by_uid: dict[str, tuple[float, float]] = {}  # first open frame: (perf, wall)
        self.opens: Counter[int] = Counter()  # "open" frames per alert seq (a repeat: a fault)
        self.last_seq = 0
        self.frames = 0
        self.connections = 0
        self.drops: list[tuple[float, str]] = []  # (perf, why) each time the server dropped us
        self.down_since: float | None = None
        self.stopping = False
        self.arrived = asyncio.Event()

    async def _open(self, timeout: float) -> Any:
        from websockets.asyncio.client import connect

        ws = await connect(
            self.url,
            additional_headers=self.headers,
            open_timeout=timeout,
            ping_interval=None,  # no keepalive traffic in the measurement
            close_timeout=2,
            proxy=None,
            max_queue=None,
        )
        self.connections += 1
        if self.last_seq > 0:
            await ws.send(json.dumps({"type": "resume", "after": self.last_seq}))
        return ws

    async def connect(self, timeout: float) -> None:
        self.ws = await self._open(timeout)
        self.task = asyncio.create_task(self._run())

    def dropped_between(self, began: float, ended: float) -> bool:
        return any(began <= at <= ended for at, _ in self.drops) or (
            self.down_since is not None and self.down_since <= ended
        )

    def _frame(self, message: str | bytes) -> None:
        arrived = time.perf_counter()
        wall = time.time()
        frame = json.loads(message)
        self.frames += 1
        if frame.get("type") != "alert":
            return
        seq = int(frame["seq"])
        self.last_seq = max(self.last_seq, seq)
        self.by_seq.setdefault((seq, str(frame["state"])), arrived)
        if frame.get("state") == "open":
            self.opens[seq] += 1
            self.by_uid.setdefault(str(frame["study_instance_uid"]), (arrived, wall))
        self.arrived.set()

    async def _run(self) -> None:
        delay = 0.5
        while not self.stopping:
            try:
                async for message in self.ws:
                    self._frame(message)
                why = f"closed by server: code {self.ws.close_code} {self.ws.close_reason!r}"
            except Exception as exc:  # noqa: BLE001 - recorded and reported as a drop
                why = f"{type(exc).__name__}: {exc}"
            if self.stopping:
                return
            self.drops.append((time.perf_counter(), why))
            self.down_since = time.perf_counter()
            while not self.stopping:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                try:
                    self.ws = await self._open(10)
                except Exception as exc:  # noqa: BLE001 - retried like the dashboard does
                    self.drops.append((time.perf_counter(), f"reconnect failed: {exc}"))
                    continue
                delay = 0.5
                self.down_since = None
                break

    async def close(self) -> None:
        self.stopping = True
        if self.ws is not None:
            try:
                await asyncio.wait_for(self.ws.close(), timeout=3)
            except Exception:  # noqa: BLE001, S110 - best effort at the end of a run
                pass
        if self.task is not None:
            self.task.cancel()


async def dashboards_connect(
    count: int,
    servers: Sequence[tuple[str, dict[str, str]]],
    concurrency: int,
) -> tuple[list[Dashboard], list[str], float]:
    """`count` dashboards, spread in turn over the servers ((url, headers) each)."""
    gate = asyncio.Semaphore(concurrency)
    boards = [Dashboard(index, *servers[index % len(servers)]) for index in range(count)]
    errors: list[str] = []

    async def one(board: Dashboard) -> None:
        async with gate:
            try:
                await board.connect(timeout=60)
            except Exception as exc:  # noqa: BLE001 - counted and reported
                errors.append(f"{type(exc).__name__}: {exc}")

    began = time.perf_counter()
    await asyncio.gather(*(one(board) for board in boards))
    elapsed = time.perf_counter() - began
    return [board for board in boards if board.ws is not None], errors, elapsed


# --------------------------------------------------------------------------- phase 1


async def phase_time_to_alert(
    *,
    sets: list[tuple[PhantomSet, bool]],
    dicom_port: int,
    url: str,
    headers: dict[str, str],
    timeout: float,
    work: Path,
    db: Callable[..., Any],
    say: Callable[[str], None],
) -> tuple[list[StudyResult], list[tuple[float, str]]]:
    loop = asyncio.get_running_loop()
    board = Dashboard(0, url, headers)
    await board.connect(timeout=30)
    results: list[StudyResult] = []
    try:
        for index, (phantom, warmup) in enumerate(sets):
            result = StudyResult(
                seed=phantom.seed, study_uid=phantom.study_uid, warmup=warmup,
                finding=phantom.finding, label=phantom.label,
            )  # fmt: skip
            results.append(result)
            for part, files in enumerate(phantom.parts):
                sent_s, result.exit_perf, result.exit_wall = await loop.run_in_executor(
                    None, storescu_send, files, dicom_port, work / f"storescu-{index}-{part}.log"
                )
                result.sent_s += sent_s
            limit = WARMUP_TIMEOUT_S if result.warmup else timeout
            deadline = result.exit_perf + limit
            next_poll = 0.0
            while True:
                if phantom.study_uid in board.by_uid:
                    result.frame_perf, result.frame_wall = board.by_uid[phantom.study_uid]
                    result.outcome = "alerted"
                    break
                now = time.perf_counter()
                if now >= deadline:
                    break
                if now >= next_poll:
                    next_poll = now + 0.5
                    ai_state, flagged, _ = await db(
                        study_status, phantom.study_uid, phantom.finding
                    )
                    if ai_state == "failed":
                        result.outcome = "ai_failed"
                        break
                    if ai_state == "not_eligible":  # no model applied: a setup problem
                        result.outcome = "no_result (ai_state=not_eligible)"
                        break
                    if ai_state == "complete" and flagged is False:
                        result.outcome = "model_miss"
                        break
                board.arrived.clear()
                try:
                    await asyncio.wait_for(board.arrived.wait(), timeout=0.1)
                except TimeoutError:
                    pass
            ai_state, flagged, alert_row = await db(
                study_status, phantom.study_uid, phantom.finding
            )
            result.flagged = flagged
            result.dropped = board.dropped_between(
                result.exit_perf, result.frame_perf or time.perf_counter()
            )
            if result.outcome == "pending":
                # No frame within the timeout: lost if the product flagged it (alert row or not).
                result.outcome = "lost" if flagged else f"no_result (ai_state={ai_state})"
            result.breakdown = await db(
                study_breakdown,
                phantom.study_uid,
                phantom.finding,
                result.exit_wall,
                result.frame_wall,
            )
            latency = result.latency
            say(
                f"  study {index} seed {phantom.seed}: {result.outcome}"
                + (f" in {latency:.2f}s" if latency is not None else "")
                + (" (warm-up)" if result.warmup else "")
                + ("" if alert_row or result.outcome != "lost" else " - no Alert row")
                + (" - socket dropped by the server meanwhile" if result.dropped else "")
            )
    finally:
        await board.close()
    return results, board.drops


# --------------------------------------------------------------------------- phase 2


async def phase_fanout(
    *,
    sockets: int,
    alerts: int,
    concurrency: int,
    servers: Sequence[tuple[str, dict[str, str]]],
    db: Callable[..., Any],
    say: Callable[[str], None],
    mark_logs: Callable[[], None],
) -> dict[str, Any]:
    study_ids = await db(fanout_studies, alerts + 1)
    await asyncio.sleep(1.0)  # the worker routes the new studies (no model applies) meanwhile
    boards, errors, connect_s = await dashboards_connect(sockets, servers, concurrency)
    say(f"  {len(boards)}/{sockets} sockets connected in {connect_s:.1f}s")
    if not boards:
        raise BenchError(f"no socket connected: {errors[:3]}")
    extensions = [
        type(ext).__name__ for ext in getattr(boards[0].ws.protocol, "extensions", []) or []
    ]
    rounds: list[dict[str, Any]] = []
    began = time.perf_counter()
    try:
        for index, study_id in enumerate(study_ids):
            seq, commit, returned = await db(fanout_raise, study_id)
            deadline = time.perf_counter() + FANOUT_TIMEOUT_S
            while time.perf_counter() < deadline:
                if all((seq, "open") in board.by_seq for board in boards):
                    break
                await asyncio.sleep(0.01)
            latencies = [
                board.by_seq[(seq, "open")] - commit
                for board in boards
                if (seq, "open") in board.by_seq
            ]
            missing = [board for board in boards if (seq, "open") not in board.by_seq]
            lost = len(missing)
            row = {
                "warmup": index == 0,
                "seq": seq,
                "received": len(latencies),
                "lost": lost,
                "lost_on_sockets_down_at_deadline": sum(
                    1 for board in missing if board.down_since is not None
                ),
                # Delivered only after the server dropped the socket and it resumed.
                "via_reconnect": sum(
                    1
                    for board in boards
                    if (seq, "open") in board.by_seq
                    and board.dropped_between(commit, board.by_seq[(seq, "open")])
                ),
                "broadcast_call_s": returned - commit,
                "latency_s": latency_spread(latencies),
                "raw_latency_s": [round(value, 5) for value in sorted(latencies)],
            }
            rounds.append(row)
            stats = row["latency_s"] or {}
            say(
                f"  alert {index}{' (warm-up)' if index == 0 else ''}: "
                f"{len(latencies)}/{len(boards)} sockets, "
                f"p50 {stats.get('p50', float('nan')) * 1000:.0f} ms, "
                f"p99 {stats.get('p99', float('nan')) * 1000:.0f} ms, lost {lost}"
            )
            await asyncio.sleep(0.5)
    finally:
        measured_s = time.perf_counter() - began
        mark_logs()  # server log lines after this point come from the mass disconnect
        await asyncio.gather(*(board.close() for board in boards))
    counted = [row for row in rounds if not row["warmup"]]
    pooled = [value for row in counted for value in row["raw_latency_s"]]
    return {
        "sockets_requested": sockets,
        "sockets_connected": len(boards),
        "connect_errors": len(errors),
        "connect_error_samples": sorted(set(errors))[:3],
        "connect_all_s": connect_s,
        "drops": sum(len(board.drops) for board in boards),
        "sockets_dropped": sum(1 for board in boards if board.drops),
        "drop_samples": sorted({why for board in boards for _, why in board.drops})[:3],
        "measured_s": measured_s,
        "websocket_extensions": extensions,
        "alerts_counted": len(counted),
        "lost": sum(row["lost"] for row in counted),
        "lost_on_sockets_down": sum(row["lost_on_sockets_down_at_deadline"] for row in counted),
        "via_reconnect": sum(row["via_reconnect"] for row in counted),
        "lost_warmup": rounds[0]["lost"] if rounds else None,
        "per_alert_p50_s": latency_spread(
            [row["latency_s"]["p50"] for row in counted if row["latency_s"]]
        ),
        "per_alert_p99_s": latency_spread(
            [row["latency_s"]["p99"] for row in counted if row["latency_s"]]
        ),
        "per_alert_max_s": latency_spread(
            [row["latency_s"]["max"] for row in counted if row["latency_s"]]
        ),
        "pooled_s": latency_spread(pooled),
        "broadcast_call_s": latency_spread([row["broadcast_call_s"] for row in counted]),
        "rounds": rounds,
    }


# --------------------------------------------------------------------------- report


def summarise_phase1(
    results: list[StudyResult], quiet: float, drops: list[tuple[float, str]]
) -> dict[str, Any]:
    counted = [result for result in results if not result.warmup]
    latencies = [r.latency for r in counted if r.latency is not None]
    stages: dict[str, Any] = {}
    for key in (
        "exit_to_ready",
        "ready_to_queued",
        "queued_to_started",
        "started_to_finished",
        "decode_ms",
        "inference_ms",
        "finished_to_raised",
        "raised_to_frame",
    ):
        values = [r.breakdown[key] for r in counted if r.breakdown.get(key) is not None]
        stages[key] = latency_spread([float(v) for v in values if v is not None])
    warm = results[0] if results else None
    return {
        "studies_sent": len(counted),
        "alerted": sum(r.outcome == "alerted" for r in counted),
        "flagged_by_product": sum(bool(r.flagged) for r in counted),
        "model_misses": sum(r.outcome == "model_miss" for r in counted),
        "ai_failed": sum(r.outcome == "ai_failed" for r in counted),
        "lost": sum(r.outcome == "lost" for r in counted),
        "other": [r.outcome for r in counted if r.outcome.startswith("no_result")],
        "socket_drops": len(drops),
        "socket_drop_samples": sorted({why for _, why in drops})[:3],
        "studies_with_a_drop_before_the_frame": sum(r.dropped for r in counted),
        "quiet_period_s": quiet,
        "latency_s": latency_spread(latencies),
        "storescu_s": latency_spread([r.sent_s for r in counted]),
        "stages": stages,
        "warmup": None
        if warm is None
        else {"outcome": warm.outcome, "latency_s": warm.latency, "seed": warm.seed},
        "studies": [
            {
                "seed": r.seed,
                "study_instance_uid": r.study_uid,
                "warmup": r.warmup,
                "outcome": r.outcome,
                "flagged": r.flagged,
                "dropped": r.dropped,
                "latency_s": r.latency,
                "storescu_s": r.sent_s,
                "breakdown": r.breakdown,
            }
            for r in results
        ],
    }


def fmt(values: dict[str, float] | None, keys: Sequence[str], scale: float = 1.0) -> str:
    if not values:
        return "-"
    digits = 0 if scale >= 1000 else 2
    return " / ".join(f"{values[key] * scale:.{digits}f}" for key in keys)


def rounds_print(by_round: dict[str, Any]) -> None:
    """Every round, one line: time to alert from the last association's storescu exit."""
    print()
    print(
        "time to alert by kind of study (s; from the storescu exit of its last association; "
        "the first of each kind, the worker's cold start, not counted; below 0: the alert came"
        " while a later association was still sending):"
    )
    header = (
        f"{'':<28}{'n':>4}{'alerted':>9}{'lost':>6}{'min / p50 / p95 / max':>30}"
        f"{'run p50':>9}{'warm-up':>9}"
    )
    print(header)
    print("-" * len(header))
    for label, summary in by_round.items():
        run = summary["stages"].get("started_to_finished")
        warm = summary["warmup"]["latency_s"] if summary["warmup"] else None
        print(
            f"{label:<28}{summary['studies_sent']:>4}{summary['alerted']:>9}{summary['lost']:>6}"
            f"{fmt(summary['latency_s'], ('min', 'p50', 'p95', 'max')):>30}"
            f"{run['p50'] if run else float('nan'):>9.2f}"
            f"{warm if warm is not None else float('nan'):>9.2f}"
        )
        if summary["model_misses"] or summary["ai_failed"] or summary["other"]:
            print(
                f"{'':<28}model misses {summary['model_misses']}, AI failed "
                f"{summary['ai_failed']}, other {summary['other']}"
            )


def print_table(report: dict[str, Any]) -> None:
    versions = report["versions"]
    print(
        f"alerts benchmark | cores {report['cpu_count']} | load avg before "
        f"{report['load_before']} after {report['load_after']}"
    )
    print(" | ".join(f"{name} {version}" for name, version in versions.items()))
    settings = "; ".join(f"{key} {value}" for key, value in report["settings"].items())
    print(f"run took {report['elapsed_s']:.0f} s | {settings}")
    model = report["models"]
    print("model: " + ", ".join(f"{m['name']} {m['version']} ({m['sha256'][:12]})" for m in model))
    one = report["time_to_alert"]
    if one:
        first = next(iter(report["prescreen"].values()))
        print()
        print(
            f"1. time to alert: storescu exit (last C-STORE response) -> alert frame on "
            f"/ws/alerts/, {one['studies_sent']} positive head CTs in one association each "
            f"(prescreened: {first['flagged']} flagged of {first['tried']} generated), "
            "1 warm-up not counted"
        )
        keys = ("min", "p50", "p95", "max")
        header = f"{'':<44}{'min / p50 / p95 / max':>28}"
        print(header)
        print("-" * len(header))
        print(f"{'time to alert (s)':<44}{fmt(one['latency_s'], keys):>28}")
        print(f"{'  quiet period STUDY_STABLE_SECONDS (s)':<44}{one['quiet_period_s']:>28.2f}")
        print("  (not waited: each study is ready on its association's release)")
        stage_names = {
            "exit_to_ready": "  stage: storescu exit -> study ready (s)",
            "ready_to_queued": "  stage: ready -> inference run queued (s)",
            "queued_to_started": "  stage: queued -> worker started run (s)",
            "started_to_finished": "  stage: run (decode+infer+heat map) (s)",
            "finished_to_raised": "  stage: run finished -> alert raised (s)",
            "raised_to_frame": "  stage: alert raised -> frame received (s)",
        }
        for key, label in stage_names.items():
            print(f"{label:<44}{fmt(one['stages'].get(key), keys):>28}")
        print(f"{'storescu send of one study (s)':<44}{fmt(one['storescu_s'], keys):>28}")
        goal = TIME_TO_ALERT_GOAL_S
        p95 = one["latency_s"]["p95"] if one["latency_s"] else float("nan")
        print(
            f"alerted {one['alerted']}/{one['studies_sent']}, flagged by product "
            f"{one['flagged_by_product']}, model misses {one['model_misses']}, AI failed "
            f"{one['ai_failed']}, LOST {one['lost']} | goal p95 <= {goal:.1f} s: "
            f"p95 {p95:.2f} s {'(met)' if p95 <= goal else '(NOT met)'}"
        )
        if one["other"]:
            print(f"other outcomes: {', '.join(one['other'])}")
        print(
            f"dashboard socket dropped by the server {one['socket_drops']} times during part 1 "
            f"(reconnected and resumed like live.js); studies whose frame came after a drop: "
            f"{one['studies_with_a_drop_before_the_frame']}"
        )
        for sample in one["socket_drop_samples"]:
            print(f"  {sample}")
        if one["warmup"]:
            warm = one["warmup"]
            latency = warm["latency_s"]
            print(
                f"warm-up study: {warm['outcome']}"
                + (f" in {latency:.2f} s" if latency is not None else "")
            )
        rounds_print(report["time_to_alert_by_round"])
    two = report["fanout"]
    if two:
        print()
        print(
            f"2. fan-out: {two['sockets_connected']}/{two['sockets_requested']} sockets on "
            f"{report['settings']['fanout_servers']} uvicorn process(es) "
            f"(connected in {two['connect_all_s']:.1f} s), commit -> frame on each "
            f"socket, {two['alerts_counted']} alerts after 1 warm-up"
        )
        spread_keys = ("min", "p50", "max")
        header = f"{'':<44}{'min / median / max over alerts (ms)':>36}"
        print(header)
        print("-" * len(header))
        print(f"{'p50 across sockets':<44}{fmt(two['per_alert_p50_s'], spread_keys, 1000):>36}")
        print(f"{'p99 across sockets':<44}{fmt(two['per_alert_p99_s'], spread_keys, 1000):>36}")
        print(f"{'slowest socket':<44}{fmt(two['per_alert_max_s'], spread_keys, 1000):>36}")
        label = "on_commit broadcast call in the raiser"
        print(f"{label:<44}{fmt(two['broadcast_call_s'], spread_keys, 1000):>36}")
        pooled = two["pooled_s"]
        if pooled:
            print(
                f"pooled over all {pooled['n']} deliveries: p50 {pooled['p50'] * 1000:.0f} ms, "
                f"p99 {pooled['p99'] * 1000:.0f} ms, max {pooled['max'] * 1000:.0f} ms"
            )
        p99 = two["per_alert_p99_s"]["p50"] if two["per_alert_p99_s"] else float("nan")
        print(
            f"LOST {two['lost']} of {two['alerts_counted'] * two['sockets_connected']} "
            f"(socket x alert pairs without the frame within {FANOUT_TIMEOUT_S:.0f} s, even after "
            f"reconnect + resume; {two['lost_on_sockets_down']} on sockets still reconnecting); "
            f"delivered only after a drop + resume: {two['via_reconnect']}"
        )
        print(
            f"server dropped {two['drops']} sockets ({two['sockets_dropped']} distinct) in "
            f"{two['measured_s']:.0f} s of fan-out; connect errors {two['connect_errors']} | "
            f"goal p99 < 500 ms: median p99 {p99 * 1000:.0f} ms "
            f"{'(met)' if p99 < 0.5 else '(NOT met)'}"
        )
        for sample in [*two["connect_error_samples"], *two["drop_samples"]]:
            print(f"  {sample}")
    for phase, title in (
        ("during_run", "until the fan-out sockets close"),
        ("socket_teardown", f"while the {two['sockets_connected'] if two else 0} sockets close"),
    ):
        problems = report["log_problems"].get(phase)
        if not problems or not problems["lines"]:
            continue
        print()
        print(
            f"server log, {title}: {problems['tracebacks']} tracebacks, "
            f"{problems['lines']} error/warning/exception lines, by kind:"
        )
        for line in problems["kinds"]:
            print(f"  {line}")
        if problems["more_kinds"]:
            print(f"  ... and {problems['more_kinds']} more kinds")


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argument_parser(__doc__)
    parser.add_argument("--studies", type=int, default=12, help="timed head CTs (after 1 warm-up)")
    parser.add_argument(
        "--others", type=int, default=4, help="timed studies of each other round (after 1 warm-up)"
    )
    parser.add_argument(
        "--rounds",
        type=lambda text: [item.strip() for item in text.split(",")],
        default=[label for label, _, _ in ROUNDS],
        help="comma-separated round labels, the first the detailed one (default: "
        + ", ".join(label for label, _, _ in ROUNDS)
        + ")",
    )
    parser.add_argument("--sockets", type=int, default=500, help="dashboard sockets for fan-out")
    parser.add_argument(
        "--servers", type=int, default=1, help="uvicorn processes the fan-out sockets spread over"
    )
    parser.add_argument("--alerts", type=int, default=10, help="timed fan-out alerts")
    parser.add_argument(
        "--connect-concurrency", type=int, default=50, help="socket handshakes in flight at once"
    )
    parser.add_argument(
        "--quiet",
        type=float,
        default=8.0,
        help="STUDY_STABLE_SECONDS for the run (8, the production default: a study sent in one"
        " association is ready on its release, so the quiet period is not waited out)",
    )
    parser.add_argument(
        "--alert-timeout", type=float, default=60.0, help="seconds before an alert counts as lost"
    )
    parser.add_argument("--skip-time-to-alert", action="store_true")
    parser.add_argument("--skip-fanout", action="store_true")
    parser.add_argument(
        "--workdir", type=Path, default=None, help="default: a new temp dir, removed after"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs) after")
    args = parser.parse_args(argv)
    if args.studies < 1 or args.sockets < 1 or args.alerts < 1 or args.quiet <= 0:
        parser.error("need --studies, --sockets, --alerts >= 1 and --quiet > 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:  # noqa: C901, PLR0915 - one linear run
    args = parse_args(argv)
    if tools_missing("alerts", ("storescu", "echoscu", "psql")):
        return 2
    work = work_dir(args.workdir, "bench-alerts-")
    env = stack_environment(work, args.quiet, REDIS_DB, DB_NAME)
    os.environ.update(env)  # this process is a Django client of the same database
    load_before = " ".join(f"{v:.2f}" for v in os.getloadavg())
    run_began = time.perf_counter()
    started: Processes | None = None
    django_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="django")
    report: dict[str, Any] = {}
    failed = True  # until the report is complete: anything else keeps the work dir
    try:
        fd = raise_fd_limit(args.sockets * 2 + 512)
        database_reset(DB_NAME, env)
        redis_version = redis_flush(env["REDIS_URL"])

        import django

        django.setup()
        import channels
        import channels_redis
        import pydicom
        import pynetdicom
        import uvicorn
        import websockets

        cards: list[Any] = []
        sets: list[tuple[PhantomSet, bool]] = []  # (phantom, warm-up)
        prescreen: dict[str, dict[str, int]] = {}
        rounds = [] if args.skip_time_to_alert else [r for r in ROUNDS if r[0] in args.rounds]
        for number, (label, finding, split) in enumerate(rounds):
            round_cards = model_cards(finding)
            cards += [card for card in round_cards if card not in cards]
            if not round_cards:
                raise BenchError(
                    f"no {finding} model in the registry (inference/models/); "
                    "time to alert needs one (or pass --skip-time-to-alert)"
                )
            count = args.studies if number == 0 else args.others
            say(f"alerts bench: preparing {count + 1} flagged phantoms ({label}) in {work}")
            chosen, tried = phantoms_prepare(
                count + 1,
                work / "phantoms" / f"round-{number}",
                round_cards,
                finding=finding,
                label=label,
                split=split,
                seed_start=SEED_START + 1000 * number,
            )
            prescreen[label] = {"tried": tried, "flagged": len(chosen)}
            sets += [(phantom, index == 0) for index, phantom in enumerate(chosen)]

        dicom_port, web_port = free_port(), free_port()
        say(f"alerts bench: starting listener :{dicom_port}, worker, uvicorn :{web_port}")
        started = start_processes(env, work, dicom_port, web_port)
        web_ports = [web_port]
        for number in range(2, args.servers + 1):  # more ASGI servers, for the fan-out
            extra_port = free_port()
            name = f"uvicorn-{number}"
            started.logs[name] = work / f"{name}.log"
            started.procs[name] = uvicorn_start(
                {**os.environ, **env}, started.logs[name], extra_port
            )
            web_ports.append(extra_port)

        log_marks: dict[str, int] = {}

        def mark_logs() -> None:
            for name, path in started.logs.items():
                log_marks[name] = path.stat().st_size if path.exists() else 0

        def in_django(fn: Callable[..., T], *fn_args: Any) -> Any:
            return asyncio.get_running_loop().run_in_executor(django_pool, fn, *fn_args)

        cookie = django_pool.submit(session_cookie).result()
        url = f"ws://127.0.0.1:{web_port}/ws/alerts/"
        headers = {"Cookie": cookie, "Origin": f"http://127.0.0.1:{web_port}"}
        servers = [
            (f"ws://127.0.0.1:{port}/ws/alerts/",
             {"Cookie": cookie, "Origin": f"http://127.0.0.1:{port}"})
            for port in web_ports
        ]  # fmt: skip

        async def run_all() -> tuple[
            list[StudyResult], list[tuple[float, str]], dict[str, Any] | None
        ]:
            results: list[StudyResult] = []
            drops: list[tuple[float, str]] = []
            fanout = None
            if not args.skip_time_to_alert:
                say("alerts bench: 1. time to alert")
                results, drops = await phase_time_to_alert(
                    sets=sets,
                    dicom_port=dicom_port,
                    url=url,
                    headers=headers,
                    timeout=args.alert_timeout,
                    work=work,
                    db=in_django,
                    say=say,
                )
            if not args.skip_fanout:
                say(f"alerts bench: 2. fan-out to {args.sockets} sockets")
                fanout = await phase_fanout(
                    sockets=args.sockets,
                    alerts=args.alerts,
                    concurrency=args.connect_concurrency,
                    servers=servers,
                    db=in_django,
                    say=say,
                    mark_logs=mark_logs,
                )
            return results, drops, fanout

        results, phase1_drops, fanout = asyncio.run(run_all())
        stop_all(started)
        during = log_problems(started.logs, end=log_marks or None)
        teardown = log_problems(started.logs, start=log_marks) if log_marks else None
        report = {
            "benchmark": "alerts",
            "cpu_count": os.cpu_count(),
            "load_before": load_before,
            "load_after": " ".join(f"{v:.2f}" for v in os.getloadavg()),
            "fd_limit": fd,
            "versions": {
                "Python": platform.python_version(),
                "Django": django.get_version(),
                "channels": channels.__version__,
                "channels_redis": channels_redis.__version__,
                "uvicorn": uvicorn.__version__,
                "websockets": websockets.__version__,
                "pydicom": pydicom.__version__,
                "pynetdicom": pynetdicom.__version__,
                "redis-server": redis_version,
                "storescu": tool_version(["storescu", "--version"]),
            },
            "models": [
                {"name": c.name, "version": c.version, "sha256": c.sha256, "threshold": c.threshold}
                for c in cards
            ],
            "settings": {
                "STUDY_STABLE_SECONDS": args.quiet,
                "INFERENCE_THREADS": 1,
                "worker": "celery -P solo, queues default,inference",
                "listener": "dicom_scp, 1 process, ready on release (quiet-period sweep: fallback)",
                "transfer_syntax": "explicit VR little endian",
                "fanout_servers": args.servers,
            },
            "prescreen": prescreen,
            "time_to_alert_by_round": {
                label: summarise_phase1(
                    [result for result in results if result.label == label],
                    args.quiet,
                    phase1_drops,
                )
                for label, _, _ in rounds
            },
            "time_to_alert": (
                summarise_phase1(
                    [result for result in results if result.label == rounds[0][0]],
                    args.quiet,
                    phase1_drops,
                )
                if results
                else None
            ),
            "fanout": fanout,
            "log_problems": {"during_run": during, "socket_teardown": teardown},
            "logs": (
                {name: str(path) for name, path in started.logs.items()}
                if (args.keep or args.workdir)
                else None
            ),
            "work_dir": str(work) if (args.keep or args.workdir) else None,
            "elapsed_s": round(time.perf_counter() - run_began, 1),
        }
        failed = False
    except BenchError as error:
        print(f"alerts bench FAILED: {error}", file=sys.stderr)
    finally:
        if started is not None:
            stop_all(started)
        django_pool.shutdown(wait=False)
        if failed or args.keep or args.workdir is not None:
            if started is not None:
                for line in log_problems(started.logs)["kinds"]:
                    print(f"  {line}", file=sys.stderr)
            print(f"(work dir kept: {work})", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    if failed:
        return 1
    return report_output(report, as_json=args.json, table=print_table, default=str)


if __name__ == "__main__":
    sys.exit(main())
