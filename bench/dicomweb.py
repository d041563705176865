"""DICOMweb read side: QIDO-RS search with 10,000 studies in the database, WADO-RS retrieve of a
200-slice series against Orthanc's DICOMweb plugin on the same study in the same run, and
rendered frames.

Our server: uvicorn (one process) on the benchmark database; the client: `requests` with one
keep-alive session, as a viewer would. QIDO: 10,000 studies (rows only) plus the 200-slice CT;
three kinds of query (PatientID exact, AccessionNumber exact, StudyDate range with limit=50),
100 each after a warm-up. WADO: the CT (512x512, 16-bit, explicit VR LE) stored here by the
ingest service and in Orthanc by `storescu`; each retrieved whole as multipart/related once to
warm up (both servers' files in the page cache), then 7 times each, alternating, MB/s of body
received and the ratio of the medians. Rendered: 50 slices as PNG with a brain window, each
fetched twice
(first: cold; second: the file in the page cache, as a viewer's prefetch leaves it), then as
the preview asks for them (JPEG, viewport 512x512), and the same from Orthanc's DICOMweb.

Run: .venv/bin/python bench/dicomweb.py [--json]
Needs: Orthanc (Debian's orthanc + orthanc-dicomweb), DCMTK, PostgreSQL. The database
triage_bench_dicomweb is dropped and recreated. Benchmarks are not tests.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness  # noqa: E402
from bench.peers import Orthanc  # noqa: E402

DB_NAME = "triage_bench_dicomweb"
STUDIES = 10_000
QUERIES = 100
RETRIEVES = 7


def rows_seed(count: int) -> None:
    from datetime import UTC, datetime, timedelta

    from worklist.models import Patient, Series, Study

    now = datetime.now(UTC)
    patients = Patient.objects.bulk_create(
        [Patient(patient_id=f"BP{i:06d}", name=f"Bench^Patient{i}") for i in range(count)]
    )
    studies = Study.objects.bulk_create(
        [
            Study(
                study_instance_uid=f"1.2.826.0.1.3680043.10.1453.77.{i}",
                patient=patient,
                accession_number=f"BA{i:07d}",
                modality="CT",
                order_priority="ROUTINE",
                study_date=(now - timedelta(days=i % 365)).strftime("%Y%m%d"),
                first_received_at=now - timedelta(minutes=i),
                last_instance_at=now - timedelta(minutes=i),
            )
            for i, patient in enumerate(patients)
        ],
        batch_size=2000,
    )
    Series.objects.bulk_create(
        [
            Series(series_instance_uid=f"1.2.826.0.1.3680043.10.1453.78.{i}", study=study,
                   modality="CT")
            for i, study in enumerate(studies)
        ],
        batch_size=2000,
    )  # fmt: skip


def token_for_radiologist() -> str:
    from django.contrib.auth.models import Group, User
    from rest_framework.authtoken.models import Token

    from triage.roles import Role, roles_ensure

    roles_ensure()
    user = User.objects.create_user("bench-radiologist")
    user.groups.add(Group.objects.get(name=str(Role.RADIOLOGIST)))
    return str(Token.objects.create(user=user).key)


def timed(session: Any, url: str, **kwargs: Any) -> tuple[float, int]:
    began = time.perf_counter()
    response = session.get(url, timeout=120, **kwargs)
    body = len(response.content)
    elapsed = time.perf_counter() - began
    if response.status_code not in (200, 204):
        raise harness.BenchError(f"{url} answered {response.status_code}")
    return elapsed, body


def streamed(session: Any, url: str, headers: dict[str, str]) -> tuple[float, int]:
    began = time.perf_counter()
    received = 0
    with session.get(url, headers=headers, stream=True, timeout=300) as response:
        if response.status_code != 200:
            raise harness.BenchError(f"{url} answered {response.status_code}")
        for chunk in response.iter_content(1 << 20):
            received += len(chunk)
    return time.perf_counter() - began, received


def main(argv: list[str] | None = None) -> int:  # noqa: PLR0915 - one linear run
    parser = harness.argument_parser(__doc__)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)
    if harness.tools_missing("dicomweb", ("storescu", "psql", "Orthanc")):
        return 2
    import requests

    work = Path(tempfile.mkdtemp(prefix="bench-dicomweb-"))
    (work / "storage").mkdir()
    env = harness.product_environment(
        database=DB_NAME, redis_db=7, storage=work / "storage", quiet=1.0
    )
    env.update({"ALLOWED_HOSTS": "127.0.0.1,localhost", "SECURE_COOKIES": "0"})
    os.environ.update(env)
    pacs = Orthanc(folder=work / "pacs")
    web = None
    try:
        harness.database_reset(DB_NAME, env)
        import django

        django.setup()
        from worklist import storage
        from worklist.dicom.synthetic import StudySpec, write_study
        from worklist.services.ingest import instance_ingest

        harness.say(f"dicomweb bench: {STUDIES} studies in the database")
        rows_seed(STUDIES)
        token = token_for_radiologist()
        from django.db import connection

        with connection.cursor() as cursor:
            # A database in service has its statistics kept by autovacuum; a table bulk-loaded
            # a moment ago has none yet, and the planner would hash whole tables for a page.
            cursor.execute("ANALYZE")
        paths = write_study(
            StudySpec(slices=200, rows=512, columns=512), seed=41, out_dir=work / "ct"
        )
        for path in paths:
            result = instance_ingest(staged_path=storage.stage_bytes(path.read_bytes()),
                                     source="dicom")  # fmt: skip
            if result.status != 0:
                raise harness.BenchError(f"ingest answered 0x{result.status:04X}")
        import pydicom

        first = pydicom.dcmread(paths[0], stop_before_pixels=True)
        study_uid, series_uid = str(first.StudyInstanceUID), str(first.SeriesInstanceUID)
        pacs.start()
        harness.storescu_send(paths, pacs.dicom_port, work / "storescu.log")
        port = harness.free_port()
        web = harness.uvicorn_start({**os.environ, **env}, work / "uvicorn.log", port)
        ours = f"http://127.0.0.1:{port}/dicomweb"
        session = requests.Session()
        session.headers["Authorization"] = f"Token {token}"
        rng = random.Random(7)
        kinds = {
            "PatientID": lambda: {"PatientID": f"BP{rng.randrange(STUDIES):06d}"},
            "AccessionNumber": lambda: {"AccessionNumber": f"BA{rng.randrange(STUDIES):07d}"},
            "StudyDate range, limit 50": lambda: {"StudyDate": "20260101-20261231", "limit": 50},
        }
        qido: dict[str, dict[str, Any]] = {}
        for label, params in kinds.items():
            for _ in range(10):
                timed(session, f"{ours}/studies", params=params())
            times = [timed(session, f"{ours}/studies", params=params())[0] * 1000
                     for _ in range(QUERIES)]  # fmt: skip
            qido[label] = harness.spread(times, ("n", "p50", "p95", "max"), digits=1)
        harness.say("dicomweb bench: WADO-RS retrieve, ours and Orthanc's")
        accept = {"Accept": 'multipart/related; type="application/dicom"'}
        plain = requests.Session()
        wado: dict[str, list[float]] = {"ours": [], "orthanc": []}
        sizes: dict[str, int] = {}
        servers = (
            ("ours", session, f"{ours}/studies/{study_uid}/series/{series_uid}"),
            ("orthanc", plain, f"http://127.0.0.1:{pacs.http_port}/dicom-web/studies/"
             f"{study_uid}/series/{series_uid}"),
        )  # fmt: skip
        for _name, client, url in servers:  # warm-up: each server's files in the page cache
            streamed(client, url, accept)
        for _ in range(RETRIEVES):
            for name, client, url in servers:
                seconds, received = streamed(client, url, accept)
                wado[name].append(received / seconds / 1e6)
                sizes[name] = received
        harness.say("dicomweb bench: rendered frames")
        instances = [pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in paths[:50]]
        cold, warm, jpeg, theirs_jpeg = [], [], [], []
        orthanc_rendered = f"http://127.0.0.1:{pacs.http_port}/dicom-web/studies/{study_uid}"
        for uid in instances:
            url = f"{ours}/studies/{study_uid}/series/{series_uid}/instances/{uid}/rendered"
            subprocess.run(["sync"], check=False)
            cold.append(timed(session, url, params={"window": "40,80"})[0] * 1000)
            warm.append(timed(session, url, params={"window": "40,80"})[0] * 1000)
            # What the preview asks for: JPEG, fitted into 512x512 (a prefetched frame).
            jpeg.append(timed(session, url, params={"window": "40,80", "viewport": "512,512",
                              "accept": "image/jpeg"})[0] * 1000)  # fmt: skip
            # The same from Orthanc (the commas literal: Orthanc 1.10 does not decode %2C).
            theirs_jpeg.append(timed(
                plain, f"{orthanc_rendered}/series/{series_uid}/instances/{uid}/rendered"
                "?window=40,80,linear&viewport=512,512", headers={"Accept": "image/jpeg"},
            )[0] * 1000)  # fmt: skip
        orthanc_version = pacs.version()
    finally:
        harness.stop_process(web)
        pacs.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    ours_mbs = statistics.median(wado["ours"])
    theirs_mbs = statistics.median(wado["orthanc"])
    report = {
        "machine": harness.machine_info(orthanc=orthanc_version),
        "studies_in_database": STUDIES + 1,
        "qido_ms": qido,
        "wado_series_mb_per_s": {"ours": [round(v, 1) for v in wado["ours"]],
                                 "orthanc": [round(v, 1) for v in wado["orthanc"]]},
        "wado_bytes": sizes,
        "wado_ratio_median": round(ours_mbs / theirs_mbs, 2),
        "rendered_ms": {"first": harness.spread(cold, ("n", "p50", "p95"), digits=1),
                        "again": harness.spread(warm, ("n", "p50", "p95"), digits=1),
                        "jpeg_preview": harness.spread(jpeg, ("n", "p50", "p95"), digits=1),
                        "orthanc_jpeg": harness.spread(theirs_jpeg, ("n", "p50", "p95"),
                                                       digits=1)},
    }  # fmt: skip
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"DICOMweb read side, {STUDIES + 1} studies in PostgreSQL, one uvicorn process; "
          f"Orthanc {orthanc_version}")  # fmt: skip
    print(f"{'QIDO-RS /studies':<34}{'n':>5}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}")
    for label, row in qido.items():
        print(f"  {label:<32}{row['n']:>5}{row['p50']:>9.1f}{row['p95']:>9.1f}{row['max']:>9.1f}")
    print(f"WADO-RS 200-slice series ({sizes['ours'] / 1e6:.0f} MB): ours "
          f"{', '.join(f'{v:.0f}' for v in wado['ours'])} MB/s; Orthanc "
          f"{', '.join(f'{v:.0f}' for v in wado['orthanc'])} MB/s; median ratio "
          f"{report['wado_ratio_median']}")  # fmt: skip
    rendered = report["rendered_ms"]
    print(f"rendered PNG 512x512, brain window: first p50 {rendered['first']['p50']} ms, p95 "
          f"{rendered['first']['p95']} ms; again p50 {rendered['again']['p50']} ms, p95 "
          f"{rendered['again']['p95']} ms")  # fmt: skip
    print(f"rendered JPEG 512x512 as the preview asks: p50 {rendered['jpeg_preview']['p50']} ms, "
          f"p95 {rendered['jpeg_preview']['p95']} ms; Orthanc's p50 "
          f"{rendered['orthanc_jpeg']['p50']} ms, p95 {rendered['orthanc_jpeg']['p95']} ms; "
          f"ratio (theirs/ours, p50) "
          f"{rendered['orthanc_jpeg']['p50'] / rendered['jpeg_preview']['p50']:.2f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
