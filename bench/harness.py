"""What the benchmarks share: the product's entry points, processes and ports, the benchmark
database and Redis DB, DCMTK senders, spread statistics, and the machine's and tools' versions.

One place for each of these, so that every benchmark starts the product the same way and
reports its figures the same way. Importing this module needs the standard library only (no
Django, no numpy, no product code): the queue simulation imports it as well as the benchmarks
that start servers. What needs more (redis, Django) is imported inside the function that uses it.

The benchmarks run as scripts (`.venv/bin/python bench/<name>.py`): each one puts the repository
root first on sys.path before it imports this module, because the script's own folder comes first
otherwise, where bench/inference.py would stand in for the product's `inference` package.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
MANAGE = REPO / "manage.py"

# How the benchmarks start the product: its Django settings, ASGI app and Celery app.
SETTINGS_MODULE = "triage.config.settings"
ASGI_APP = "triage.config.asgi:application"
CELERY_APP = "triage.config"

PG = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-v", "ON_ERROR_STOP=1", "-qtA"]
OUR_AE = "TRIAGE"
CALLING_AE = "STORESCU"
# Without TCP_NODELAY, DCMTK's small PDVs meet Nagle + delayed ACK: ~22 instances/s (~40 ms per
# object).
DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}
STORE_SUCCESS = "Received Store Response (Success)"
START_TIMEOUT_S = 60.0
STORESCU_TIMEOUT_S = 300.0
# The spread a benchmark prints unless it asks for other figures.
MIN_MEDIAN_MAX = ("min", "median", "max")


class BenchError(RuntimeError):
    """The run cannot go on (a round that cannot be counted, a server that did not start): it
    stops and says why, and the work dir is kept."""


# --------------------------------------------------------------------------- commands


def run_checked(
    cmd: Sequence[str], *, env: Mapping[str, str] | None = None, stdin: str | None = None
) -> str:
    """Run a command to its end; its stdout, or BenchError with its stderr."""
    done = subprocess.run(
        list(cmd), env=env, input=stdin, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise BenchError(f"{' '.join(cmd[:4])} ... failed rc={done.returncode}: {done.stderr}")
    return done.stdout


def argument_parser(doc: str | None, *, paragraph: bool = False) -> argparse.ArgumentParser:
    """A benchmark's parser: its docstring's first line (or first paragraph) as the
    description, and --json."""
    description = None
    if doc:
        description = doc.split("\n\n")[0] if paragraph else doc.splitlines()[0]
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def tools_missing(bench: str, tools: Sequence[str]) -> bool:
    """Says (on stderr) which command the benchmark needs is not on PATH; True if one is not."""
    for tool in tools:
        if shutil.which(tool) is None:
            print(f"{bench} bench: {tool} not found on PATH", file=sys.stderr)
            return True
    return False


def say(line: str) -> None:
    """Progress, on stderr: stdout carries only the table or the JSON object."""
    print(line, file=sys.stderr, flush=True)


def work_dir(given: Path | None, prefix: str) -> Path:
    """The run's folder: the one given (kept afterwards), or a new temp dir."""
    work = given or Path(tempfile.mkdtemp(prefix=prefix))
    work.mkdir(parents=True, exist_ok=True)
    return work


def report_output(
    report: dict[str, Any],
    *,
    as_json: bool,
    table: Callable[[dict[str, Any]], None],
    default: Callable[[Any], Any] | None = None,
) -> int:
    """Print the report as one JSON object or as the benchmark's table; the exit status."""
    if as_json:
        print(json.dumps(report, indent=2, default=default))
    else:
        table(report)
    return 0


# --------------------------------------------------------------------------- ports


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def listening_sockets(port: int) -> int:
    """How many sockets listen on the port (processes sharing one socket count once)."""
    out = subprocess.run(
        ["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, check=False
    ).stdout
    return len([line for line in out.splitlines() if line.strip()])


def echo_ok(port: int, called_ae: str = OUR_AE) -> bool:
    """Whether a DICOM listener on the port answers C-ECHO."""
    done = subprocess.run(
        ["echoscu", "-aet", CALLING_AE, "-aec", called_ae, "-to", "5", "127.0.0.1", str(port)],
        env=DCMTK_ENV,
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


# --------------------------------------------------------------------------- processes


@dataclass
class Processes:
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)


def wait_until(
    check: Callable[[], bool],
    proc: subprocess.Popen[bytes],
    what: str,
    *,
    failure: str = "was not ready",
    timeout: float = START_TIMEOUT_S,
) -> None:
    """Until check() holds; BenchError if the process exits first or the time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"{what} exited early with rc={proc.returncode}")
        if check():
            return
        time.sleep(0.2)
    raise BenchError(f"{what} {failure} within {timeout:.0f}s")


def stop_process(proc: subprocess.Popen[bytes] | None) -> None:
    """Stop a process this script started (own session), then anything left in its group."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=15)


def stop_all(started: Processes) -> None:
    for proc in started.procs.values():
        stop_process(proc)


def process_tree_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a process, its reaped children and its live descendants."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += sum(int(value) for value in fields[11:15]) / ticks
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(child) for child in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue  # exited meanwhile
    return total


def listener_command(port: int, *, processes: int | None = None) -> list[str]:
    """Our DICOM listener (`manage.py dicom_scp`, which runs the readiness sweep)."""
    cmd = [sys.executable, str(MANAGE), "dicom_scp", "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--ae-title", OUR_AE]
    if processes is not None:
        cmd += ["--processes", str(processes)]
    return cmd


def start_processes(
    env: Mapping[str, str], work: Path, dicom_port: int, web_port: int
) -> Processes:
    """The product's stack, each with its log in `work`: our listener, the periodic duties, one
    Celery worker (solo pool, queues default, inference and outbound) and one uvicorn process;
    returns once the listener answers C-ECHO and uvicorn accepts connections."""
    full_env = {**os.environ, **env}
    python = sys.executable
    commands = {
        "listener": listener_command(dicom_port),
        # Celery beat's part: studies ready after the quiet period, redelivery, escalation.
        "duties": [python, str(MANAGE), "periodic_duties", "--interval", "1"],
        "worker": [
            python, "-m", "celery", "-A", CELERY_APP, "worker", "-Q", "default,inference,outbound",
            "-P", "solo", "--without-gossip", "--without-mingle", "-l", "WARNING",
        ],
        "uvicorn": [
            python, "-m", "uvicorn", ASGI_APP, "--host", "127.0.0.1",
            "--port", str(web_port), "--log-level", "warning",
        ],
    }  # fmt: skip
    started = Processes()
    try:
        for name, cmd in commands.items():
            log = work / f"{name}.log"
            with open(log, "wb") as handle:
                started.procs[name] = subprocess.Popen(
                    cmd,
                    cwd=REPO,
                    env=full_env,
                    stdout=handle,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            started.logs[name] = log
        wait_until(lambda: echo_ok(dicom_port), started.procs["listener"], "DICOM listener")
        wait_until(lambda: port_open(web_port), started.procs["uvicorn"], "uvicorn")
    except BaseException:
        stop_all(started)
        raise
    return started


def uvicorn_start(env: Mapping[str, str], log: Path, port: int) -> subprocess.Popen[bytes]:
    """One uvicorn process of the product's ASGI app on 127.0.0.1:`port`, its output in `log`;
    returns once it accepts connections."""
    with open(log, "wb") as handle:
        web = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", ASGI_APP, "--host", "127.0.0.1",
             "--port", str(port), "--log-level", "warning"],
            cwd=REPO, env=dict(env), stdout=handle, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    wait_until(lambda: port_open(port), web, "uvicorn")
    return web


# --------------------------------------------------------------------------- environment


def product_environment(
    *, database: str, redis_db: int, storage: Path, quiet: float
) -> dict[str, str]:
    """What the product's processes read in a benchmark: its own database, Redis DB, storage
    and quiet period (STUDY_STABLE_SECONDS), DEBUG off, warnings and errors logged."""
    return {
        "DJANGO_SETTINGS_MODULE": SETTINGS_MODULE,
        "DEBUG": "0",
        "SECRET_KEY": "bench",
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{database}",
        "REDIS_URL": f"redis://127.0.0.1:6379/{redis_db}",
        "DICOM_STORAGE_DIR": str(storage),
        "DICOM_ALLOWED_AE_TITLES": CALLING_AE,
        "STUDY_STABLE_SECONDS": f"{quiet:g}",
        "LOG_LEVEL": "WARNING",
    }


def stack_environment(work: Path, quiet: float, redis_db: int, database: str) -> dict[str, str]:
    """product_environment for the whole stack (start_processes), storage in `work/storage`."""
    env = {
        **product_environment(
            database=database, redis_db=redis_db, storage=work / "storage", quiet=quiet
        ),
        "ALLOWED_HOSTS": "localhost,127.0.0.1",
        "SECURE_COOKIES": "0",
        "INFERENCE_THREADS": "1",
        # No escalation (a second frame to every socket) while the run is measuring.
        "ALERT_ACK_TARGET_SECONDS": "INTRACRANIAL_HEMORRHAGE=86400",
    }
    (work / "storage").mkdir(parents=True, exist_ok=True)
    return env


def database_reset(database: str, env: Mapping[str, str]) -> None:
    """Drop and recreate the benchmark's database, then migrate it with the product's env."""
    run_checked([*PG, "-c", f"DROP DATABASE IF EXISTS {database} WITH (FORCE)"])
    run_checked([*PG, "-c", f"CREATE DATABASE {database}"])
    run_checked([sys.executable, str(MANAGE), "migrate", "-v0"], env={**os.environ, **env})


def redis_flush(url: str) -> str:
    """Empty the benchmark's Redis DB; the server's version."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
        return str(client.info("server").get("redis_version", "unknown"))
    finally:
        client.close()


# --------------------------------------------------------------------------- DCMTK storescu


def storescu_command(port: int, called_ae: str = OUR_AE) -> list[str]:
    return ["storescu", "-v", "-aet", CALLING_AE, "-aec", called_ae, "127.0.0.1", str(port)]


def storescu_check(returncode: int | None, expected: int, log: Path, *, to: str = "") -> None:
    """BenchError unless storescu exited 0 having logged `expected` successful C-STOREs."""
    text = log.read_text(errors="replace")
    successes = text.count(STORE_SUCCESS)
    if returncode != 0 or successes != expected:
        tail = "\n".join(text.splitlines()[-15:])
        raise BenchError(
            f"storescu{to} failed: rc={returncode}, {successes}/{expected} successful "
            f"C-STOREs; log {log}:\n{tail}"
        )


def storescu_send(files: Sequence[Path], port: int, log: Path) -> tuple[float, float, float]:
    """Send one study over one association; (wall seconds, perf time of exit, wall clock of
    exit)."""
    with open(log, "wb") as handle:
        began = time.perf_counter()
        proc = subprocess.run(
            [*storescu_command(port), *map(str, files)],
            env=DCMTK_ENV,
            stdout=handle,
            stderr=subprocess.STDOUT,
            timeout=STORESCU_TIMEOUT_S,
            check=False,
        )
        exit_perf = time.perf_counter()
        exit_wall = time.time()
    storescu_check(proc.returncode, len(files), log)
    return exit_perf - began, exit_perf, exit_wall


# --------------------------------------------------------------------------- statistics


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * q / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def spread(
    values: Sequence[float], keys: Sequence[str] = MIN_MEDIAN_MAX, *, digits: int | None = None
) -> dict[str, Any]:
    """The figures named in `keys`, in that order: "n", "min", "median", "max", and "pNN" (the
    NNth percentile). Rounded to `digits` if given. With no values each figure is None, "n" 0."""
    figures: dict[str, Any] = {}
    for key in keys:
        if key == "n":
            figures[key] = len(values)
            continue
        if not values:
            figures[key] = None
            continue
        if key == "min":
            value = min(values)
        elif key == "max":
            value = max(values)
        elif key == "median":
            value = statistics.median(values)
        elif key.startswith("p") and key[1:].isdigit():
            value = percentile(values, float(key[1:]))
        else:
            raise ValueError(f"unknown figure {key!r}")
        figures[key] = value if digits is None else round(float(value), digits)
    return figures


# --------------------------------------------------------------------------- machine


def tool_version(cmd: Sequence[str]) -> str:
    """The first line a tool prints for its version (e.g. `storescu --version`)."""
    done = subprocess.run(list(cmd), capture_output=True, text=True, check=False)
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0].strip().strip("$").strip() if lines else "unknown"


def filesystem_of(path: Path) -> str:
    done = subprocess.run(
        ["df", "--output=fstype", str(path)], capture_output=True, text=True, check=False
    )
    lines = done.stdout.split()
    return lines[-1] if len(lines) > 1 else "unknown"


def machine_info(*, load_digits: int | None = 2, **more: Any) -> dict[str, Any]:
    """Cores, Python, what the benchmark adds (threads, versions), then the load averages
    (1, 5, 15 min) now: other work on a small machine moves every figure."""
    load = os.getloadavg()
    return {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        **more,
        "load": list(load) if load_digits is None else [round(v, load_digits) for v in load],
    }
