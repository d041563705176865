"""Load held: simulated ED traffic at twice its peak hour through the whole product.

The stack: our DICOM listener (`dicom_scp --processes 2`), the periodic duties, one Celery
worker (solo pool, queues default, inference and outbound, INFERENCE_THREADS=1), two uvicorn
processes, Redis (broker and channel layer) and PostgreSQL, with `--dashboards` radiologist
sockets on `/ws/alerts/` spread over the two servers (one asyncio client process, as in
bench/alerts.py). Traffic: `--eds` emergency departments of `--studies-per-ed` studies a day
(20 x 300 = 6,000), whose peak hour is taken as 1.5 times the day's mean hour, at
`--peak-factor` (2) times that peak: for 20 EDs, 750 studies an hour, 12.5 a minute. Studies come
in the product's ED mix (`inference.phantoms.traffic.ed_mix`: head CT, chest radiograph, CTPA,
C-spine CT; 30% positive), generated and written before anything is timed, each sent by DCMTK
`storescu` (one association per study) at Poisson arrival times, several at once when arrivals
overlap.

First, unloaded: `--baseline` positive head CTs sent one at a time (the time to alert of an idle
system, the reference). Then `--minutes` of load. Then a drain of up to 120 s for the last
studies. Reported: instances sent and stored, studies received and scored (AI complete, not
eligible, failed), alerts raised and, for each, on how many dashboards its "open" frame arrived
exactly once (missing and duplicated counted), time to alert (storescu exit of the study ->
frame on the first dashboard) p50 / p95 for the baseline and under load, and CPU seconds, CPU
share and peak memory (RSS of the process and its children) per process of the stack.

Goal (the speed issue): nothing lost, every alert exactly once on every dashboard, p95 time to
alert under load within 2 s of the unloaded p95.

Run: .venv/bin/python bench/load.py [--json] [--minutes 10] [--eds 20] [--dashboards 200]
Needs: DCMTK, PostgreSQL on 127.0.0.1:5432 (trust auth, user postgres), Redis on 6379 (DB 5 is
flushed). The database triage_bench_load is dropped and recreated. Benchmarks are not tests.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness  # noqa: E402
from bench.alerts import Dashboard, dashboards_connect, session_cookie  # noqa: E402

DB_NAME = "triage_bench_load"
REDIS_DB = 5
SEED = 20261201
PEAK_HOUR_OF_MEAN = 1.5  # an ED's busiest hour, as a multiple of its mean hour
DRAIN_S = 120.0


@dataclass
class Sent:
    uid: str
    finding: str
    positive: bool
    files: list[Path]
    exit_perf: float | None = None
    failed: str = ""


def phantoms_write(count: int, root: Path, *, head_ct_only: bool, seed: int) -> list[Sent]:
    """`count` phantom studies in the ED mix (or positive head CTs), written to `root`."""
    import pydicom
    from pydicom.uid import ExplicitVRLittleEndian

    from inference.phantoms import phantom_generate, phantom_write
    from inference.phantoms.traffic import ed_mix
    from triage.findings import Finding

    mix = ed_mix(seed, positive_fraction=0.3)
    studies = []
    for index in range(count):
        finding, positive, study_seed = next(mix)
        if head_ct_only:
            finding, positive = Finding.INTRACRANIAL_HEMORRHAGE, True
        study = phantom_generate(finding, positive=positive, seed=study_seed)
        paths = phantom_write(
            study,
            out_dir=root / f"study-{index}",
            seed=study_seed,
            transfer_syntax=ExplicitVRLittleEndian,
        )
        files = sorted(path for path in paths if path.suffix == ".dcm")
        uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
        studies.append(Sent(uid=uid, finding=str(finding), positive=positive, files=files))
    return studies


def send(study: Sent, port: int, log: Path) -> None:
    try:
        _, study.exit_perf, _ = harness.storescu_send(study.files, port, log)
    except harness.BenchError as error:
        study.failed = str(error)[:200]


def stack_start(env: dict[str, str], work: Path, dicom_port: int, web_ports: list[int]) -> Any:
    python = sys.executable
    commands = {
        "listener (2 processes)": harness.listener_command(dicom_port, processes=2),
        "periodic duties": [python, str(harness.MANAGE), "periodic_duties", "--interval", "1"],
        "celery worker": [
            python, "-m", "celery", "-A", harness.CELERY_APP, "worker",
            "-Q", "default,inference,outbound", "-P", "solo", "--without-gossip",
            "--without-mingle", "-l", "WARNING",
        ],
    }  # fmt: skip
    started = harness.Processes()
    full_env = {**os.environ, **env}
    try:
        for name, cmd in commands.items():
            log = work / f"{name.split()[0]}-{len(started.procs)}.log"
            with open(log, "wb") as handle:
                started.procs[name] = subprocess.Popen(
                    cmd, cwd=harness.REPO, env=full_env, stdout=handle,
                    stderr=subprocess.STDOUT, start_new_session=True,
                )  # fmt: skip
            started.logs[name] = log
        for number, port in enumerate(web_ports, start=1):
            name = f"uvicorn {number}"
            started.logs[name] = work / f"uvicorn-{number}.log"
            started.procs[name] = harness.uvicorn_start(full_env, started.logs[name], port)
        harness.wait_until(
            lambda: harness.echo_ok(dicom_port), started.procs["listener (2 processes)"], "listener"
        )
    except BaseException:
        harness.stop_all(started)
        raise
    return started


def rss_tree_kib(pid: int) -> int:
    """Resident memory of a process and its live descendants, KiB."""
    total, pending = 0, [pid]
    while pending:
        current = pending.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
        pending += [int(child) for child in children]
    return total


def outcome(studies: list[Sent], boards: list[Dashboard]) -> dict[str, Any]:
    """What the database and the dashboards hold for the studies sent."""
    from triage.models import Alert
    from worklist.models import Instance, Study

    uids = [study.uid for study in studies]
    received = Study.objects.filter(study_instance_uid__in=uids)
    states = Counter(received.values_list("ai_state", flat=True))
    alerts = list(
        Alert.objects.filter(study__study_instance_uid__in=uids).values_list(
            "seq", "study__study_instance_uid"
        )
    )
    once = missing = duplicated = 0
    for seq, _ in alerts:
        for board in boards:
            count = board.opens.get(seq, 0)
            once += count == 1
            missing += count == 0
            duplicated += count > 1
    return {
        "studies_sent": len(studies),
        "send_failures": [study.failed for study in studies if study.failed][:5],
        "instances_sent": sum(len(study.files) for study in studies if not study.failed),
        "instances_stored": Instance.objects.filter(
            series__study__study_instance_uid__in=uids
        ).count(),
        "studies_received": received.count(),
        "ai_states": dict(states),
        "positive_sent": sum(study.positive for study in studies),
        "alerts": len(alerts),
        "alert_deliveries_expected": len(alerts) * len(boards),
        "delivered_once": once,
        "missing": missing,
        "duplicated": duplicated,
    }


def latencies(studies: list[Sent], board: Dashboard) -> list[float]:
    return [
        board.by_uid[study.uid][0] - study.exit_perf
        for study in studies
        if study.exit_perf is not None and study.uid in board.by_uid
    ]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = harness.argument_parser(__doc__)
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the load")
    parser.add_argument("--eds", type=int, default=20, help="emergency departments")
    parser.add_argument("--studies-per-ed", type=int, default=300, help="studies per ED a day")
    parser.add_argument("--peak-factor", type=float, default=2.0, help="times the peak hour")
    parser.add_argument("--dashboards", type=int, default=200, help="radiologist sockets")
    parser.add_argument("--baseline", type=int, default=6, help="unloaded head CTs first")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs) after")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:  # noqa: PLR0915 - one linear run
    args = parse_args(argv)
    if harness.tools_missing("load", ("storescu", "echoscu", "psql")):
        return 2
    per_minute = args.eds * args.studies_per_ed / 24 / 60 * PEAK_HOUR_OF_MEAN * args.peak_factor
    load_count = math.ceil(per_minute * args.minutes * 1.25) + 5  # Poisson: spares
    work = harness.work_dir(None, "bench-load-")
    env = harness.stack_environment(work, 8.0, REDIS_DB, DB_NAME)
    os.environ.update(env)
    started = None
    report: dict[str, Any] = {}
    try:
        harness.database_reset(DB_NAME, env)
        harness.redis_flush(env["REDIS_URL"])
        import django

        django.setup()
        harness.say(f"load bench: writing {args.baseline} + {load_count} phantom studies")
        baseline = phantoms_write(
            args.baseline, work / "baseline", head_ct_only=True, seed=SEED + 1
        )
        studies = phantoms_write(load_count, work / "load", head_ct_only=False, seed=SEED)
        dicom_port = harness.free_port()
        web_ports = [harness.free_port(), harness.free_port()]
        harness.say(f"load bench: starting the stack (listener :{dicom_port}, {web_ports})")
        started = stack_start(env, work, dicom_port, web_ports)
        cookie = session_cookie()
        servers = [
            (f"ws://127.0.0.1:{port}/ws/alerts/",
             {"Cookie": cookie, "Origin": f"http://127.0.0.1:{port}"})
            for port in web_ports
        ]  # fmt: skip
        pids = {name: proc.pid for name, proc in started.procs.items()}
        peak_rss = dict.fromkeys(pids, 0)
        sampling = threading.Event()

        def sample_memory() -> None:
            while not sampling.wait(2.0):
                for name, pid in pids.items():
                    peak_rss[name] = max(peak_rss[name], rss_tree_kib(pid))

        async def run() -> tuple[list[Dashboard], dict[str, float], float]:
            loop = asyncio.get_running_loop()
            boards, errors, _ = await dashboards_connect(args.dashboards, servers, 50)
            if len(boards) != args.dashboards:
                raise harness.BenchError(f"dashboards connected {len(boards)}: {errors[:3]}")
            first = boards[0]
            harness.say(f"load bench: {len(boards)} dashboards; unloaded baseline")
            for index, study in enumerate(baseline):
                await loop.run_in_executor(None, send, study, dicom_port, work / f"b{index}.log")
                deadline = time.perf_counter() + (180 if index == 0 else 30)
                while study.uid not in first.by_uid and time.perf_counter() < deadline:
                    await asyncio.sleep(0.05)
            cpu_before = {name: harness.process_tree_cpu_seconds(pid) for name, pid in pids.items()}
            cpu_began = time.perf_counter()
            threading.Thread(target=sample_memory, daemon=True).start()
            harness.say(f"load bench: {per_minute:.1f} studies a minute for {args.minutes} min")
            arrivals = random.Random(SEED)
            pool = ThreadPoolExecutor(max_workers=16)
            began = time.perf_counter()
            end = began + args.minutes * 60
            at, sent = began, 0
            futures = []
            while sent < len(studies):
                at += arrivals.expovariate(per_minute / 60.0)
                if at >= end:
                    break
                await asyncio.sleep(max(0.0, at - time.perf_counter()))
                log = work / f"s{sent}.log"
                futures.append(loop.run_in_executor(pool, send, studies[sent], dicom_port, log))
                sent += 1
                if sent % 25 == 0:
                    harness.say(f"  {sent} studies sent, {time.perf_counter() - began:.0f} s")
            del studies[sent:]
            await asyncio.gather(*futures)
            load_s = time.perf_counter() - began
            harness.say("load bench: draining")
            drain_end = time.perf_counter() + DRAIN_S
            while time.perf_counter() < drain_end:
                done = await loop.run_in_executor(None, drained, [s.uid for s in studies])
                if done:
                    break
                await asyncio.sleep(1.0)
            await asyncio.sleep(3.0)  # the last frames
            cpu = {
                name: harness.process_tree_cpu_seconds(pid) - cpu_before[name]
                for name, pid in pids.items()
            }
            cpu["(seconds measured)"] = time.perf_counter() - cpu_began
            for board in boards:
                await board.close()
            return boards, cpu, load_s

        boards, cpu, load_s = asyncio.run(run())
        sampling.set()
        loaded = latencies(studies, boards[0])
        unloaded = latencies(baseline[1:], boards[0])  # the first loads the model: not counted
        figures = ("n", "p50", "p95", "max")
        report = {
            "benchmark": "load",
            "cpu_count": os.cpu_count(),
            "load_average_after": " ".join(f"{v:.2f}" for v in os.getloadavg()),
            "eds": args.eds,
            "studies_per_minute": round(per_minute, 2),
            "minutes": args.minutes,
            "load_s": round(load_s, 1),
            "dashboards": len(boards),
            "outcome": outcome(studies, boards),
            "time_to_alert_unloaded_s": harness.spread(unloaded, figures, digits=2)
            if unloaded
            else None,
            "time_to_alert_loaded_s": harness.spread(loaded, figures, digits=2) if loaded else None,
            "processes": {
                name: {
                    "cpu_s": round(cpu[name], 1),
                    "cpu_share_of_one_core": round(cpu[name] / cpu["(seconds measured)"], 3),
                    "peak_rss_mib": round(peak_rss[name] / 1024, 1),
                }
                for name in pids
            },
        }
    except harness.BenchError as error:
        print(f"load bench FAILED: {error}", file=sys.stderr)
        return 1
    finally:
        if started is not None:
            harness.stop_all(started)
        if args.keep or not report:
            print(f"(work dir kept: {work})", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return harness.report_output(report, as_json=args.json, table=table)


def drained(uids: list[str]) -> bool:
    """Every study sent is received and has its AI state settled."""
    from worklist.models import Study

    settled = Study.objects.filter(
        study_instance_uid__in=uids, ai_state__in=("complete", "not_eligible", "failed")
    ).count()
    return settled == len(uids)


def table(report: dict[str, Any]) -> None:
    out = report["outcome"]
    print(
        f"load: {report['eds']} EDs at {report['studies_per_minute']} studies/min for "
        f"{report['load_s']:.0f} s, {report['dashboards']} dashboards on 2 uvicorn processes, "
        f"{report['cpu_count']} cores (load average after: {report['load_average_after']})"
    )
    print(
        f"studies sent {out['studies_sent']} (failed sends {len(out['send_failures'])}), "
        f"received {out['studies_received']}; instances sent {out['instances_sent']}, stored "
        f"{out['instances_stored']}; AI states {out['ai_states']}"
    )
    print(
        f"alerts {out['alerts']} (positives sent {out['positive_sent']}): deliveries "
        f"{out['delivered_once']} exactly once of {out['alert_deliveries_expected']}, "
        f"missing {out['missing']}, duplicated {out['duplicated']}"
    )
    for key, label in (
        ("time_to_alert_unloaded_s", "time to alert, unloaded"),
        ("time_to_alert_loaded_s", "time to alert, under load"),
    ):
        row = report[key]
        if row:
            print(
                f"{label:<28} n {row['n']:>3}  p50 {row['p50']:.2f} s  p95 {row['p95']:.2f} s"
                f"  max {row['max']:.2f} s"
            )
    unloaded, loaded = report["time_to_alert_unloaded_s"], report["time_to_alert_loaded_s"]
    lost = out["instances_sent"] - out["instances_stored"] + out["missing"]
    if unloaded and loaded:
        held = loaded["p95"] <= unloaded["p95"] + 2.0
        print(
            f"goal: nothing lost ({'met' if lost == 0 and not out['duplicated'] else 'NOT met'}),"
            f" p95 under load within 2 s of unloaded ({'met' if held else 'NOT met'})"
        )
    print("per process, from the start of the load to the end of the drain:")
    print(f"{'process':<26}{'CPU s':>8}{'of 1 core':>11}{'peak RSS MiB':>14}")
    for name, row in report["processes"].items():
        print(
            f"{name:<26}{row['cpu_s']:>8.1f}{row['cpu_share_of_one_core']:>11.2f}"
            f"{row['peak_rss_mib']:>14.1f}"
        )


if __name__ == "__main__":
    sys.exit(main())
