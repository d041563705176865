"""Recovery after a worker is SIGKILLed mid-inference, with Redis and with RabbitMQ as broker.

For each broker: the product's stack (listener, periodic duties, one Celery worker with a solo
pool on both queues, uvicorn) on its own database; a positive CT pulmonary angiogram phantom
is sent with DCMTK `storescu`; the moment the worker takes the run (its lease is written), the
worker's process group is SIGKILLed and a fresh worker started at once. Measured: kill ->
result committed (the run's `finished_at`), and that each study ends with exactly one result
and at most one alert. The broker's own redelivery is left at the production default
(visibility timeout 3 x CELERY_LONGEST_TASK_SECONDS = 30 min on Redis); recovery comes from the
run's lease running out and the periodic duties sending it again. Benchmarks are not tests:
nothing here asserts on timing.

Run: .venv/bin/python bench/recovery.py [--kills 10] [--brokers redis,rabbitmq] [--json]
Needs: DCMTK, PostgreSQL (user postgres, trust), Redis on 6379 (DB 8 flushed), RabbitMQ on 5672
(guest; the default and inference queues are purged). Database triage_bench_recovery is
dropped and recreated per broker.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness  # noqa: E402

DB_NAME = "triage_bench_recovery"
REDIS_DB = 8
SEED_START = 9_100_100  # held-out CTPA phantoms
BROKERS = {
    "redis": f"redis://127.0.0.1:6379/{REDIS_DB}",
    "rabbitmq": "amqp://guest:guest@127.0.0.1:5672//",
}
RESULT_TIMEOUT_S = 180.0


def phantoms(count: int, root: Path) -> list[tuple[str, list[Path]]]:
    import pydicom
    from pydicom.uid import ExplicitVRLittleEndian

    from inference.phantoms import phantom_generate, phantom_write

    made = []
    for seed in range(SEED_START, SEED_START + count):
        study = phantom_generate("pulmonary_embolism", positive=True, seed=seed)
        paths = phantom_write(
            study, out_dir=root / str(seed), seed=seed, transfer_syntax=ExplicitVRLittleEndian
        )
        files = sorted(path for path in paths if path.suffix == ".dcm")
        made.append(
            (str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID), files)
        )
    return made


def worker_start(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as handle:
        return subprocess.Popen(
            [
                sys.executable, "-m", "celery", "-A", harness.CELERY_APP, "worker",
                "-Q", "default,inference", "-P", "solo", "--without-gossip", "--without-mingle",
                "-l", "WARNING",
            ],
            cwd=harness.REPO,
            env={**os.environ, **env},
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip


def broker_purge(env: dict[str, str]) -> None:
    harness.run_checked(
        [sys.executable, "-m", "celery", "-A", harness.CELERY_APP, "purge", "-f",
         "-Q", "default,inference"],
        env={**os.environ, **env},
    )  # fmt: skip


def one_kill(
    uid: str, files: list[Path], *, port: int, started: Any, env: dict[str, str], work: Path
) -> dict[str, Any]:
    from django.utils import timezone

    from inference.models import InferenceRun
    from triage.models import Alert

    harness.storescu_send(files, port, work / f"storescu-{uid[-6:]}.log")
    deadline = time.monotonic() + RESULT_TIMEOUT_S
    run = None
    while time.monotonic() < deadline:  # the worker has taken the run: kill it now
        run = InferenceRun.objects.filter(study__study_instance_uid=uid).first()
        if run is not None and (run.lease_until is not None or run.finished_at is not None):
            break
        time.sleep(0.005)
    if run is None or run.finished_at is not None:
        return {"outcome": "finished before the kill"}
    worker = started.procs["worker"]
    os.killpg(worker.pid, signal.SIGKILL)
    killed_at = timezone.now()
    worker.wait(timeout=10)
    started.procs["worker"] = worker_start(env, work / "worker.log")
    while time.monotonic() < deadline:
        run.refresh_from_db()
        if run.finished_at is not None:
            runs = InferenceRun.objects.filter(study_id=run.study_id)
            return {
                "outcome": run.state,
                "recovery_s": (run.finished_at - killed_at).total_seconds(),
                "results": runs.exclude(finished_at=None).count(),
                "runs": runs.count(),
                "alerts": Alert.objects.filter(study_id=run.study_id).count(),
                "flagged": bool(run.flagged),
                "redeliveries": run.redeliveries,
                "attempts": run.attempts,
            }
        time.sleep(0.05)
    return {"outcome": "lost", "recovery_s": None}


def bench_broker(
    name: str, url: str, studies: list[tuple[str, list[Path]]], work: Path
) -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    env = harness.stack_environment(work, 1.0, REDIS_DB, DB_NAME)
    env["CELERY_BROKER_URL"] = url
    os.environ.update(env)
    from django.db import connection

    connection.close()  # the reset drops the database under any open connection
    harness.database_reset(DB_NAME, env)
    harness.redis_flush(env["REDIS_URL"])
    broker_purge(env)
    dicom_port, web_port = harness.free_port(), harness.free_port()
    started = harness.start_processes(env, work, dicom_port, web_port)
    kills: list[dict[str, Any]] = []
    try:
        for uid, files in studies:
            row = one_kill(uid, files, port=dicom_port, started=started, env=env, work=work)
            kills.append(row)
            harness.say(f"  {name}: {row}")
    finally:
        harness.stop_all(started)
    times = [row["recovery_s"] for row in kills if row.get("recovery_s") is not None]
    return {
        "broker": name,
        "kills": len(times),
        "missed_kills": sum(row["outcome"] == "finished before the kill" for row in kills),
        "lost": sum(row["outcome"] == "lost" for row in kills),
        "duplicate_results": sum(row.get("results", 1) > 1 for row in kills),
        "duplicate_alerts": sum(row.get("alerts", 0) > 1 for row in kills),
        "recovery_s": harness.spread(times, ("min", "median", "max")) if times else None,
        "rows": kills,
    }


def main(argv: list[str] | None = None) -> int:
    parser = harness.argument_parser(__doc__)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--brokers", default="redis,rabbitmq")
    args = parser.parse_args(argv)
    if harness.tools_missing("recovery", ("storescu", "echoscu", "psql")):
        return 2
    work = Path(tempfile.mkdtemp(prefix="bench-recovery-"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", harness.SETTINGS_MODULE)
    os.environ.update(harness.stack_environment(work, 1.0, REDIS_DB, DB_NAME))
    import django

    django.setup()
    results = []
    try:
        harness.say(f"recovery bench: writing {args.kills} CTPA phantoms in {work}")
        studies = phantoms(args.kills, work / "phantoms")
        for name in args.brokers.split(","):
            harness.say(f"recovery bench: {name}")
            results.append(bench_broker(name, BROKERS[name], studies, work / name))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    from django.conf import settings

    report = {
        "machine": harness.machine_info(),
        "lease_s": settings.INFERENCE_LEASE_SECONDS,
        "brokers": results,
    }
    if args.json:
        print(json.dumps(report, indent=2, default=str))
        return 0
    print(
        "worker SIGKILLed mid-inference -> result committed (a run whose lease of "
        f"{settings.INFERENCE_LEASE_SECONDS:g} s ran out is sent again at once; "
        f"duties every 1 s; load {os.getloadavg()[0]:.2f})"
    )
    print(f"{'broker':<10}{'kills':>6}{'min s':>8}{'p50 s':>8}{'max s':>8}{'lost':>6}{'dup':>5}")
    for row in results:
        spread = row["recovery_s"] or {}
        print(
            f"{row['broker']:<10}{row['kills']:>6}{spread.get('min', 0):>8.1f}"
            f"{spread.get('median', 0):>8.1f}{spread.get('max', 0):>8.1f}{row['lost']:>6}"
            f"{row['duplicate_results'] + row['duplicate_alerts']:>5}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
