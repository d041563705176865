"""Last instance stored -> result stored, for one study of each kind, through the real pipeline.

For each shipped model's kind of study (head CT, CTPA, chest radiograph, C-spine CT), positive
phantoms are sent with DCMTK `storescu` to our listener (`manage.py dicom_scp`, which makes a
study ready when its association is released); a Celery worker (`-Q default,inference`, solo
pool, INFERENCE_THREADS=2) on Redis routes and infers; PostgreSQL holds the results. The clock
is the database's: from the last instance's `received_at` (stored and committed before the
sender is answered) to the inference run's `finished_at` (result committed), in stages. The
quiet period (STUDY_STABLE_SECONDS, 8 s as in production) is not waited out: each study is
sent in one association, ready on its release.

Two studies per kind, one after the other: the first (cold) includes the worker loading that
model's ONNX session; the second (warm) is the steady-state figure.

Run: .venv/bin/python bench/result_latency.py [--json] [--quiet 8]
Needs: DCMTK on PATH, PostgreSQL on 127.0.0.1:5432 (trust auth, user postgres), Redis on 6379
(DB 9 is flushed). The database triage_bench_latency is dropped and recreated on every run.
bench/inference.py runs this script at its end unless told --skip-end-to-end.
Benchmarks are not tests: nothing here asserts on timing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Run as a script, bench/ comes first on sys.path: the repository root goes before it.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness  # noqa: E402

DB_NAME = "triage_bench_latency"
REDIS_DB = 9
SEED_START = 9_400_000  # held-out phantom range
RESULT_TIMEOUT_S = 240.0
KINDS = (
    ("intracranial_hemorrhage", "head CT"),
    ("pulmonary_embolism", "CT pulmonary angiogram"),
    ("pneumothorax", "chest radiograph"),
    ("fracture", "C-spine CT"),
)


def phantom_files(finding: str, seed: int, root: Path) -> tuple[str, list[Path]]:
    import pydicom
    from pydicom.uid import ExplicitVRLittleEndian

    from inference.phantoms import phantom_generate, phantom_write

    study = phantom_generate(finding, positive=True, seed=seed)
    paths = phantom_write(
        study, out_dir=root / f"{finding}-{seed}", seed=seed, transfer_syntax=ExplicitVRLittleEndian
    )
    files = sorted(path for path in paths if path.suffix == ".dcm")
    uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    return uid, files


def result_of(uid: str, finding: str) -> dict[str, Any] | None:
    """The stages of a finished study, from the database's timestamps; None while pending."""
    from django.db.models import Max

    from inference.models import InferenceRun
    from worklist.models import Instance, Study

    study = Study.objects.filter(study_instance_uid=uid).first()
    if study is None:
        return None
    if study.ai_state == "failed":
        return {"outcome": "ai_failed"}
    run = InferenceRun.objects.filter(
        study=study, finding=finding, current=True, finished_at__isnull=False
    ).first()
    if run is None:
        return None
    last = Instance.objects.filter(series__study=study).aggregate(last=Max("received_at"))["last"]
    instances = Instance.objects.filter(series__study=study).count()

    def seconds(later: Any, earlier: Any) -> float | None:
        return None if later is None or earlier is None else (later - earlier).total_seconds()

    return {
        "outcome": "flagged" if run.flagged else "not flagged",
        "instances": instances,
        "provider": run.provider,
        "last_instance_to_result_s": seconds(run.finished_at, last),
        "last_instance_to_ready_s": seconds(study.ready_at, last),
        "ready_to_queued_s": seconds(run.queued_at, study.ready_at),
        "queued_to_started_s": seconds(run.started_at, run.queued_at),
        "started_to_finished_s": seconds(run.finished_at, run.started_at),
        "decode_ms": run.decode_ms,
        "inference_ms": run.inference_ms,
    }


def wait_for_result(uid: str, finding: str) -> dict[str, Any]:
    deadline = time.monotonic() + RESULT_TIMEOUT_S
    while time.monotonic() < deadline:
        found = result_of(uid, finding)
        if found is not None:
            return found
        time.sleep(0.1)
    raise harness.BenchError(f"no {finding} result for a study within {RESULT_TIMEOUT_S:.0f} s")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = harness.argument_parser(__doc__)
    parser.add_argument("--quiet", type=float, default=8.0, help="STUDY_STABLE_SECONDS for the run")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs) after")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if harness.tools_missing("result latency", ("storescu", "echoscu", "psql")):
        return 2
    work = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    env = harness.stack_environment(work, args.quiet, REDIS_DB, DB_NAME)
    env["INFERENCE_THREADS"] = "2"
    os.environ.update(env)  # this process reads the same database
    started = None
    rows: list[dict[str, Any]] = []
    try:
        harness.database_reset(DB_NAME, env)
        harness.redis_flush(env["REDIS_URL"])
        import django

        django.setup()
        harness.say(f"result latency bench: writing phantoms in {work}")
        studies = []
        for index, (finding, label) in enumerate(KINDS):
            for attempt, temperature in enumerate(("cold", "warm")):
                seed = SEED_START + 10 * index + attempt
                uid, files = phantom_files(finding, seed, work / "phantoms")
                studies.append((finding, label, temperature, seed, uid, files))
        dicom_port, web_port = harness.free_port(), harness.free_port()
        harness.say(
            f"result latency bench: starting listener :{dicom_port}, worker, uvicorn :{web_port}"
        )
        started = harness.start_processes(env, work, dicom_port, web_port)
        for finding, label, temperature, seed, uid, files in studies:
            harness.storescu_send(files, dicom_port, work / f"storescu-{finding}-{seed}.log")
            found = wait_for_result(uid, finding)
            row = {"finding": finding, "kind": label, "run": temperature, "seed": seed, **found}
            rows.append(row)
            total = found.get("last_instance_to_result_s")
            harness.say(
                f"  {label} ({temperature}, {found.get('instances')} instances): "
                f"{found['outcome']}" + (f", {total:.2f} s" if total is not None else "")
            )
    finally:
        if started is not None:
            harness.stop_all(started)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    report = {
        "machine": harness.machine_info(),
        "quiet_period_s": args.quiet,
        "studies": rows,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(
        f"last instance stored -> result stored, per kind of study (quiet period {args.quiet:g} s "
        f"inside; worker solo pool, 2 inference threads; load {os.getloadavg()[0]:.2f}); "
        "demonstration models trained on synthetic phantoms"
    )
    print(
        f"{'kind':<26}{'run':<6}{'inst':>5}{'total s':>9}{'to ready':>10}{'to queued':>10}"
        f"{'to start':>10}{'run s':>8}{'decode ms':>11}{'infer ms':>10}  outcome"
    )

    def number(value: Any, digits: int) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    for row in rows:
        print(
            f"{row['kind']:<26}{row['run']:<6}{row.get('instances', 0):>5}"
            f"{number(row.get('last_instance_to_result_s'), 2):>9}"
            f"{number(row.get('last_instance_to_ready_s'), 2):>10}"
            f"{number(row.get('ready_to_queued_s'), 2):>10}"
            f"{number(row.get('queued_to_started_s'), 2):>10}"
            f"{number(row.get('started_to_finished_s'), 2):>8}"
            f"{number(row.get('decode_ms'), 0):>11}{number(row.get('inference_ms'), 0):>10}"
            f"  {row['outcome']} ({row.get('provider', '')})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
