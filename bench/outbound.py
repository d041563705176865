"""Results out: result stored -> SC and SR acknowledged by Orthanc, and -> ORU acknowledged by
an HL7 peer; then outbound throughput to Orthanc against Orthanc's own ingest of the same
objects from DCMTK `storescu`, in the same run.

Phase 1 (latency): N ICH-positive phantom studies are sent with `storescu` to our listener; the
stack is the production one (listener, periodic duties, one Celery worker started with
`-Q default,inference,outbound` and, as in deploy/Procfile, one with `-Q outbound`, both solo
pools) with OUTBOUND_DICOM and OUTBOUND_HL7 pointing at an Orthanc and at tests/hl7_peer.py.
The clock is the database's: from the run's `finished_at`
(result and outbox committed together) to each message's `delivered_at` (the peer's answer
read). Phase 2 (throughput): every flagged result's SC and SR is queued at once for a second,
empty Orthanc; messages delivered per second from the first queued to the last delivered (one
association per message, as the outbox sends). The peer: the same objects, fetched back as
files, sent by `storescu` over one association to a third, empty Orthanc.

Run: .venv/bin/python bench/outbound.py [--studies 20] [--json]
Needs: DCMTK, Orthanc (Debian's orthanc + orthanc-dicomweb), PostgreSQL, Redis (DB 7 flushed).
The database triage_bench_outbound is dropped and recreated on every run. The models are
demonstration models trained on synthetic phantoms. Benchmarks are not tests.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness  # noqa: E402
from bench.peers import Hl7Peer, Orthanc  # noqa: E402

DB_NAME = "triage_bench_outbound"
REDIS_DB = 7
SEED_START = 9_600_000  # held-out phantom range
TIMEOUT_S = 600.0


def phantom(seed: int, root: Path) -> list[Path]:
    from pydicom.uid import ExplicitVRLittleEndian

    from inference.phantoms import phantom_generate, phantom_write

    study = phantom_generate("intracranial_hemorrhage", positive=True, seed=seed)
    paths = phantom_write(
        study, out_dir=root / str(seed), seed=seed, transfer_syntax=ExplicitVRLittleEndian
    )
    return sorted(path for path in paths if path.suffix == ".dcm")


def settled(count: int) -> bool:
    """Every study has its ICH result, and every message of it left the outbox."""
    from inference.models import InferenceRun
    from triage.models import OutboundMessage

    done = InferenceRun.objects.filter(finished_at__isnull=False).count()
    waiting = OutboundMessage.objects.filter(state=OutboundMessage.State.WAITING).count()
    return done >= count and waiting == 0


def wait(predicate: Any, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise harness.BenchError(f"timed out waiting for {what}")


def latencies() -> dict[str, list[float]]:
    from inference.models import InferenceRun
    from triage.models import OutboundMessage

    figures: dict[str, list[float]] = {"pacs": [], "ris": [], "failed": []}
    for run in InferenceRun.objects.filter(flagged=True):
        messages = list(OutboundMessage.objects.filter(run=run, result_status="P"))
        if any(m.state != OutboundMessage.State.DELIVERED for m in messages):
            figures["failed"].append(run.pk)
            continue
        dicom = [m.delivered_at for m in messages if m.kind in ("sc", "sr")]
        oru = [m.delivered_at for m in messages if m.kind == "oru"]
        if len(dicom) == 2 and run.finished_at is not None:
            figures["pacs"].append((max(dicom) - run.finished_at).total_seconds())  # type: ignore[type-var]
        if len(oru) == 1 and run.finished_at is not None and oru[0] is not None:
            figures["ris"].append((oru[0] - run.finished_at).total_seconds())
    return figures


def throughput_phase(pacs: Orthanc) -> tuple[int, float]:
    """Queue SC + SR of every flagged result for `pacs` at once; messages, seconds."""
    from django.db import transaction
    from django.db.models import Max, Min

    from inference.models import InferenceRun
    from triage.models import OutboundDestination, OutboundMessage
    from triage.outbound.services import outbound_results_enqueue

    OutboundDestination.objects.update(active=False)
    destination = OutboundDestination.objects.create(
        name="throughput", kind="dicom", ae_title=pacs.ae_title, host="127.0.0.1",
        port=pacs.dicom_port,
    )  # fmt: skip
    with transaction.atomic():
        for run in InferenceRun.objects.filter(flagged=True):
            outbound_results_enqueue(run=run)
    pending = OutboundMessage.objects.filter(
        destination=destination, state=OutboundMessage.State.WAITING
    )
    wait(lambda: not pending.exists(), "the throughput phase")
    span = OutboundMessage.objects.filter(destination=destination).aggregate(
        first=Min("created_at"), last=Max("delivered_at")
    )
    count = OutboundMessage.objects.filter(
        destination=destination, state=OutboundMessage.State.DELIVERED
    ).count()
    return count, (span["last"] - span["first"]).total_seconds()


def peer_phase(source: Orthanc, target: Orthanc, work: Path) -> tuple[int, float]:
    """Our objects, as Orthanc holds them, sent by storescu to an empty Orthanc."""
    files = []
    folder = work / "ours"
    folder.mkdir()
    for instance in source.get("/instances?expand"):
        if instance["MainDicomTags"].get("SOPInstanceUID", "").startswith("2.25."):
            files.append(source.instance_file(instance["ID"], folder / f"{instance['ID']}.dcm"))
    began = time.perf_counter()
    harness.storescu_send(files, target.dicom_port, work / "storescu-peer.log")
    return len(files), time.perf_counter() - began


def main(argv: list[str] | None = None) -> int:  # noqa: PLR0915 - one linear run
    parser = harness.argument_parser(__doc__)
    parser.add_argument("--studies", type=int, default=20)
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs) after")
    args = parser.parse_args(argv)
    if harness.tools_missing("outbound", ("storescu", "echoscu", "psql", "Orthanc")):
        return 2
    work = Path(tempfile.mkdtemp(prefix="bench-outbound-"))
    pacs, ris = Orthanc(folder=work / "pacs"), Hl7Peer(folder=work / "ris")
    second, third = Orthanc(folder=work / "pacs2"), Orthanc(folder=work / "pacs3")
    env = harness.stack_environment(work, 1.0, REDIS_DB, DB_NAME)
    env.update(
        {"INFERENCE_THREADS": "2", "OUTBOUND_DICOM": f"ORTHANC@127.0.0.1:{pacs.dicom_port}",
         "OUTBOUND_HL7": f"127.0.0.1:{ris.port}"}
    )  # fmt: skip
    os.environ.update(env)
    started = None
    try:
        harness.database_reset(DB_NAME, env)
        harness.redis_flush(env["REDIS_URL"])
        import django

        django.setup()
        for peer in (pacs, ris, second, third):
            peer.start()
        harness.say(f"outbound bench: writing {args.studies} ICH phantoms in {work}")
        studies = [phantom(SEED_START + i, work / "phantoms") for i in range(args.studies)]
        dicom_port, web_port = harness.free_port(), harness.free_port()
        started = harness.start_processes(env, work, dicom_port, web_port)
        # As deploy/Procfile: a worker of its own for the outbound queue, so results wait for
        # no inference run (the stack's worker consumes all three queues too).
        with open(work / "worker-outbound.log", "wb") as log:
            started.procs["worker-outbound"] = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", harness.CELERY_APP, "worker", "-Q",
                 "outbound", "-P", "solo", "--without-gossip", "--without-mingle", "-l",
                 "WARNING", "-n", "outbound@%h"],
                cwd=harness.REPO, env={**os.environ, **env}, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        for index, files in enumerate(studies):
            harness.storescu_send(files, dicom_port, work / f"storescu-{index}.log")
            harness.say(f"  sent study {index + 1}/{args.studies}")
        wait(lambda: settled(args.studies), "results and their messages")
        figures = latencies()
        harness.say("outbound bench: throughput phase")
        sent, seconds = throughput_phase(second)
        peer_sent, peer_seconds = peer_phase(pacs, third, work)
    finally:
        if started is not None:
            harness.stop_all(started)
        for peer in (pacs, ris, second, third):
            peer.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    ours_rate = sent / seconds if seconds > 0 else 0.0
    peer_rate = peer_sent / peer_seconds if peer_seconds > 0 else 0.0
    report = {
        "machine": harness.machine_info(),
        "studies": args.studies,
        "flagged": len(figures["pacs"]) + len(figures["failed"]),
        "not_delivered": len(figures["failed"]),
        "result_to_pacs_ack_s": harness.spread(
            figures["pacs"], ("n", "p50", "p95", "max"), digits=3
        ),
        "result_to_ris_ack_s": harness.spread(figures["ris"], ("n", "p50", "p95", "max"), digits=3),
        "outbound_messages_per_s": round(ours_rate, 1),
        "storescu_to_orthanc_instances_per_s": round(peer_rate, 1),
        "ratio_ours_to_storescu": round(ours_rate / peer_rate, 3) if peer_rate else None,
        "messages": sent,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    pacs_s, ris_s = report["result_to_pacs_ack_s"], report["result_to_ris_ack_s"]
    print(f"results out, {args.studies} ICH phantom studies ({report['flagged']} flagged by the "
          "demonstration model); workers: default+inference+outbound, and outbound")  # fmt: skip
    print(f"{'':<34}{'n':>4}{'p50 s':>9}{'p95 s':>9}{'max s':>9}")
    for label, row in (("result -> SC+SR acked by Orthanc", pacs_s),
                       ("result -> ORU acked by HL7 peer", ris_s)):  # fmt: skip
        print(f"{label:<34}{row['n']:>4}{row['p50'] or 0:>9.3f}{row['p95'] or 0:>9.3f}"
              f"{row['max'] or 0:>9.3f}")  # fmt: skip
    print(f"outbound to Orthanc: {sent} messages at {ours_rate:.1f}/s (one association each); "
          f"storescu, same objects, one association: {peer_rate:.1f}/s; ratio "
          f"{report['ratio_ours_to_storescu']}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
