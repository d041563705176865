"""Worklist API under a full queue: the first page of `/api/worklist/` with 10,000 open items.

10,000 studies are bulk-loaded, each with its worklist item open (unread, a few in progress),
deadlines spread over the next eight hours, a fifth of them in the ED and one in ten with a
current AI result (a third of those flagged); then `ANALYZE`, as autovacuum would have done in
service. One uvicorn process serves the product's ASGI app on the benchmark database; the
client is `requests` with one keep-alive session and a radiologist's token, as a dashboard
polling the API would be. Each query is asked 10 times to warm up, then 100 times: the first
page (50 items, most urgent first), the first page of ED studies, and the first page of unread
studies, p50 / p95 / max in milliseconds.

Run: .venv/bin/python bench/worklist_api.py [--json] [--items 10000]
Needs: PostgreSQL on 127.0.0.1:5432 (trust auth, user postgres). The database
triage_bench_worklist is dropped and recreated. Benchmarks are not tests.
"""

from __future__ import annotations

import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness  # noqa: E402
from bench.dicomweb import timed, token_for_radiologist  # noqa: E402

DB_NAME = "triage_bench_worklist"
QUERIES = 100
GOAL_P95_MS = 50.0


def items_seed(count: int) -> None:
    """`count` open worklist items (and their patients, studies, series and some AI runs)."""
    import random
    from datetime import UTC, datetime, timedelta

    from inference.models import InferenceRun
    from worklist.models import Patient, Series, Study, WorklistItem

    rng = random.Random(11)
    now = datetime.now(UTC)
    patients = Patient.objects.bulk_create(
        [Patient(patient_id=f"WP{i:06d}", name=f"Bench^Patient{i}") for i in range(count)],
        batch_size=2000,
    )
    studies = Study.objects.bulk_create(
        [
            Study(
                study_instance_uid=f"1.2.826.0.1.3680043.10.1453.88.{i}",
                patient=patient,
                accession_number=f"WA{i:07d}",
                modality=rng.choice(("CT", "CT", "CR", "MR")),
                description="CT HEAD WO CONTRAST",
                order_priority=rng.choice(("STAT", "HIGH", "ROUTINE", "ROUTINE", "ROUTINE")),
                patient_location="ED-MAJORS-3" if i % 5 == 0 else "WARD 7",
                is_emergency=i % 5 == 0,
                first_received_at=now - timedelta(minutes=rng.randrange(0, 240)),
                last_instance_at=now - timedelta(minutes=1),
                state=Study.State.READY,
                ready_at=now,
                ai_state=Study.AIState.COMPLETE if i % 10 == 0 else Study.AIState.NOT_ELIGIBLE,
            )
            for i, patient in enumerate(patients)
        ],
        batch_size=2000,
    )
    series = Series.objects.bulk_create(
        [
            Series(series_instance_uid=f"1.2.826.0.1.3680043.10.1453.89.{i}", study=study,
                   modality=study.modality)
            for i, study in enumerate(studies)
        ],
        batch_size=2000,
    )  # fmt: skip
    WorklistItem.objects.bulk_create(
        [
            WorklistItem(
                study=study,
                status=WorklistItem.Status.UNREAD,
                received_at=study.first_received_at,
                read_by=now + timedelta(minutes=rng.randrange(-30, 480)),
            )
            for study in studies
        ],
        batch_size=2000,
    )
    InferenceRun.objects.bulk_create(
        [
            InferenceRun(
                study=study, finding="intracranial_hemorrhage", model_name="ich-demo",
                model_version="1.0.0", model_sha256="0" * 64, series=one, series_set=f"s{i}",
                state=InferenceRun.State.COMPLETE, score=0.99 if i % 30 == 0 else 0.1,
                threshold=0.9, flagged=i % 30 == 0, queued_at=now, finished_at=now,
                current=True,
            )
            for i, (study, one) in enumerate(zip(studies, series, strict=True))
            if i % 10 == 0
        ],
        batch_size=2000,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = harness.argument_parser(__doc__)
    parser.add_argument("--items", type=int, default=10_000, help="open worklist items")
    args = parser.parse_args(argv)
    if harness.tools_missing("worklist_api", ("psql",)):
        return 2
    import requests

    work = Path(tempfile.mkdtemp(prefix="bench-worklist-"))
    (work / "storage").mkdir()
    env = harness.product_environment(
        database=DB_NAME, redis_db=6, storage=work / "storage", quiet=8.0
    )
    env.update({"ALLOWED_HOSTS": "127.0.0.1,localhost", "SECURE_COOKIES": "0"})
    os.environ.update(env)
    web = None
    try:
        harness.database_reset(DB_NAME, env)
        import django

        django.setup()
        from django.db import connection

        harness.say(f"worklist API bench: {args.items} open items in the database")
        items_seed(args.items)
        token = token_for_radiologist()
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
        port = harness.free_port()
        web = harness.uvicorn_start({**os.environ, **env}, work / "uvicorn.log", port)
        session = requests.Session()
        session.headers["Authorization"] = f"Token {token}"
        url = f"http://127.0.0.1:{port}/api/worklist/"
        queries = {
            "first page (50, most urgent first)": {},
            "first page of ED studies": {"location": "ed"},
            "first page of unread studies": {"status": "unread"},
        }
        figures: dict[str, Any] = {}
        for label, params in queries.items():
            for _ in range(10):
                timed(session, url, params=params)
            times = [timed(session, url, params=params)[0] * 1000 for _ in range(QUERIES)]
            figures[label] = harness.spread(times, ("n", "p50", "p95", "max"), digits=1)
        count = session.get(url, timeout=60).json()["count"]
        report = {
            "benchmark": "worklist_api",
            "items": args.items,
            "count_reported": count,
            "cpu_count": os.cpu_count(),
            "load": " ".join(f"{v:.2f}" for v in os.getloadavg()),
            "python": platform.python_version(),
            "queries_ms": figures,
            "goal_p95_ms": GOAL_P95_MS,
        }
    finally:
        if web is not None:
            harness.stop_process(web)
        shutil.rmtree(work, ignore_errors=True)

    def table(result: dict[str, Any]) -> None:
        print(
            f"worklist API, {result['items']} open items (API count {result['count_reported']}),"
            f" one uvicorn process, load {result['load']}"
        )
        print(f"{'query':<40}{'n':>5}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}")
        for label, row in result["queries_ms"].items():
            met = "met" if row["p95"] < result["goal_p95_ms"] else "NOT met"
            print(
                f"{label:<40}{row['n']:>5}{row['p50']:>9.1f}{row['p95']:>9.1f}{row['max']:>9.1f}"
                f"  (goal p95 < {result['goal_p95_ms']:.0f} ms: {met})"
            )

    return harness.report_output(report, as_json=args.json, table=table)


if __name__ == "__main__":
    sys.exit(main())
