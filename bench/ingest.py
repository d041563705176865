"""Ingest benchmark: DCMTK storescu -> our DICOM listener vs DCMTK storescp writing to disk.

The same N synthetic CT slices (512x512, 16-bit, ~0.5 MB each) are sent over 1 and over 4
concurrent associations (4 storescu processes, a quarter of the files each), to this product's
listener (`manage.py dicom_scp`, with --processes 1, and --processes 2 for 4 associations) and to
`storescp` writing to a fresh directory, in the same run. Rounds are interleaved (every receiver
once per repeat) after one warm-up round each, so drift on a noisy machine hits all rows alike.

Every round sent to our listener uses a freshly generated study (its own seed, so its own SOP
Instance UIDs): the listener stores a re-sent UID once and never moves its file into place again,
which is not what this measures. A round counts only if every storescu exits 0, reports N
successful C-STORE responses, and the receiver holds N objects afterwards (files for storescp,
database rows for ours).

Then a pan-scan round (`--pan-scan 3000`, 0 to skip): one study of that many slices over one
association, once to storescp and once to ours, and for ours the time from its last slice stored
to the study ready (the association's release), from the database's timestamps.

Run: .venv/bin/python bench/ingest.py [--json] [--slices 500] [--repeats 3] [--pan-scan 3000]
Needs: DCMTK on PATH, PostgreSQL on 127.0.0.1:5432 (trust auth, user postgres), Redis on 6379.
The database triage_bench is dropped and recreated at the start of every run.
Benchmarks are not tests: nothing here asserts on timing. The load average before and after and
each receiver's CPU per instance are printed, since other work on the machine moves every figure.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Run as a script, bench/ comes first on sys.path: the repository root goes before it.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (  # noqa: E402
    DCMTK_ENV,
    OUR_AE,
    PG,
    REPO,
    BenchError,
    argument_parser,
    database_reset,
    echo_ok,
    filesystem_of,
    free_port,
    listener_command,
    listening_sockets,
    process_tree_cpu_seconds,
    product_environment,
    report_output,
    run_checked,
    spread,
    stop_process,
    storescu_check,
    storescu_command,
    tool_version,
    tools_missing,
    wait_until,
    work_dir,
)

DB_NAME = "triage_bench"
PEER_AE = "PEER"
SEND_TIMEOUT_S = 900.0


@dataclass(frozen=True)
class FileSet:
    seed: int
    paths: list[Path]
    study_uid: str
    total_bytes: int


@dataclass(frozen=True)
class Case:
    key: str
    label: str
    associations: int
    receiver: str  # "storescp" or "ours"
    processes: int = 0  # our listener's --processes
    reference: str = ""  # the storescp case this one is compared with
    fork: bool = False  # storescp --fork: one child process per association


@dataclass
class Listener:
    processes: int
    port: int
    storage: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None


@dataclass
class Samples:
    seconds: list[float] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)  # the receiver's, during the round
    warmup_seconds: float | None = None


@dataclass(frozen=True)
class Round:
    seconds: float
    cpu_seconds: float


# --------------------------------------------------------------------------- helpers


def started_processes(log: Path) -> int:
    """Our listener's processes that are serving: each prints one line once it accepts."""
    if not log.exists():
        return 0
    return log.read_text(errors="replace").count(f"DICOM listener {OUR_AE} on ")


def wait_ready(
    port: int,
    called_ae: str,
    *,
    proc: subprocess.Popen[bytes],
    what: str,
    log: Path | None = None,
    processes: int = 1,
) -> None:
    """Until the port answers C-ECHO and, for ours, every listener process is accepting."""

    def ready() -> bool:
        started = log is None or started_processes(log) >= processes
        return started and listening_sockets(port) >= 1 and echo_ok(port, called_ae)

    wait_until(ready, proc, what, failure=f"did not answer C-ECHO on port {port}")


# --------------------------------------------------------------------------- data


def generate_set(seed: int, slices: int, out_dir: str) -> tuple[int, list[str], str, int]:
    """Worker: write one study with the project's own generator (not timed)."""
    from worklist.dicom.synthetic import StudySpec, synthetic_study

    spec = StudySpec(rows=512, columns=512, slices=slices, slice_thickness=1.0)
    directory = Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    paths: list[str] = []
    study_uid = ""
    total = 0
    for ds in synthetic_study(spec, seed=seed):
        path = directory / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        study_uid = str(ds.StudyInstanceUID)
        total += path.stat().st_size
        paths.append(str(path))
    return seed, paths, study_uid, total


def generate_sets(seeds: Sequence[int], slices: int, root: Path) -> dict[int, FileSet]:
    sets: dict[int, FileSet] = {}
    with concurrent.futures.ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        futures = [
            pool.submit(generate_set, seed, slices, str(root / f"seed-{seed}")) for seed in seeds
        ]
        for future in futures:
            seed, paths, study_uid, total = future.result()
            sets[seed] = FileSet(seed, [Path(p) for p in paths], study_uid, total)
    return sets


def chunks(paths: Sequence[Path], parts: int) -> list[list[Path]]:
    size, extra = divmod(len(paths), parts)
    out: list[list[Path]] = []
    start = 0
    for index in range(parts):
        end = start + size + (1 if index < extra else 0)
        out.append(list(paths[start:end]))
        start = end
    return [chunk for chunk in out if chunk]


# --------------------------------------------------------------------------- database


def sql_int(query: str, **variables: str) -> int:
    """One integer from a query; values go in as psql variables (:'name'), never spliced."""
    options = [f"--set={name}={value}" for name, value in variables.items()]
    return int(run_checked([*PG, "-d", DB_NAME, *options, "-f", "-"], stdin=query).strip())


def instances_of_study(study_uid: str) -> int:
    return sql_int(
        "SELECT count(*) FROM worklist_instance i "
        "JOIN worklist_series s ON s.id = i.series_id "
        "JOIN worklist_study st ON st.id = s.study_id "
        "WHERE st.study_instance_uid = :'uid';",
        uid=study_uid,
    )


# --------------------------------------------------------------------------- sending


def send(
    files: Sequence[Path], *, associations: int, port: int, called_ae: str, logs: Path
) -> float:
    """Launch the storescu processes, wait for all; return wall seconds. Fail loudly."""
    groups = chunks(files, associations)
    logs.mkdir(parents=True, exist_ok=True)
    handles = []
    procs: list[tuple[subprocess.Popen[bytes], int, Path]] = []
    os.sync()  # nobody's dirty pages get flushed on the clock
    start = time.perf_counter()
    try:
        for index, group in enumerate(groups):
            log = logs / f"storescu-{index}.log"
            handle = open(log, "wb")  # closed in finally
            handles.append(handle)
            proc = subprocess.Popen(
                [*storescu_command(port, called_ae), *map(str, group)],
                env=DCMTK_ENV,
                stdout=handle,
                stderr=subprocess.STDOUT,
            )
            procs.append((proc, len(group), log))
        deadline = start + SEND_TIMEOUT_S
        for proc, _, _ in procs:
            proc.wait(timeout=max(1.0, deadline - time.perf_counter()))
        elapsed = time.perf_counter() - start
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"storescu did not finish within {SEND_TIMEOUT_S:.0f}s") from exc
    finally:
        for proc, _, _ in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for handle in handles:
            handle.close()
    for proc, expected, log in procs:
        storescu_check(proc.returncode, expected, log, to=f" to port {port}")
    return elapsed


def round_storescp(fileset: FileSet, *, associations: int, fork: bool, work: Path) -> Round:
    out_dir = Path(tempfile.mkdtemp(prefix="storescp-", dir=work))
    port = free_port()
    cmd = ["storescp", *(["--fork"] if fork else [])]
    cmd += ["--output-directory", str(out_dir), "-aet", PEER_AE]
    cmd += ["--max-pdu", "131072", str(port)]
    log = work / "storescp.log"
    with open(log, "ab") as handle:
        proc = subprocess.Popen(
            cmd, env=DCMTK_ENV, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_ready(port, PEER_AE, proc=proc, what="storescp")
        cpu_before = process_tree_cpu_seconds(proc.pid)
        elapsed = send(
            fileset.paths,
            associations=associations,
            port=port,
            called_ae=PEER_AE,
            logs=work / "logs" / f"storescp-{associations}",
        )
        cpu = process_tree_cpu_seconds(proc.pid) - cpu_before
        written = sum(1 for entry in out_dir.iterdir() if entry.is_file())
        if written != len(fileset.paths):
            raise BenchError(f"storescp wrote {written} files, expected {len(fileset.paths)}")
    finally:
        stop_process(proc)
        shutil.rmtree(out_dir, ignore_errors=True)
    return Round(elapsed, cpu)


def round_ours(fileset: FileSet, *, associations: int, listener: Listener, work: Path) -> Round:
    if listener.proc is None or listener.proc.poll() is not None:
        raise BenchError(f"our listener (--processes {listener.processes}) is not running")
    before = sql_int("SELECT count(*) FROM worklist_instance;")
    cpu_before = process_tree_cpu_seconds(listener.proc.pid)
    elapsed = send(
        fileset.paths,
        associations=associations,
        port=listener.port,
        called_ae=OUR_AE,
        logs=work / "logs" / f"ours-p{listener.processes}-{associations}",
    )
    cpu = process_tree_cpu_seconds(listener.proc.pid) - cpu_before
    after = sql_int("SELECT count(*) FROM worklist_instance;")
    in_study = instances_of_study(fileset.study_uid)
    quarantined = sql_int("SELECT count(*) FROM worklist_quarantinedobject;")
    expected = len(fileset.paths)
    if after - before != expected or in_study != expected or quarantined:
        raise BenchError(
            f"our listener registered {after - before} new instances ({in_study} in the study, "
            f"{quarantined} quarantined in total), expected exactly {expected}"
        )
    # The stored copies are not needed any more; keep the disk from filling over the run.
    shutil.rmtree(listener.storage / "studies" / fileset.study_uid, ignore_errors=True)
    return Round(elapsed, cpu)


@contextmanager
def listeners_running(
    process_counts: Sequence[int], env: dict[str, str], work: Path
) -> Iterator[dict[int, Listener]]:
    started: dict[int, Listener] = {}
    try:
        for count in process_counts:
            listener = Listener(
                processes=count,
                port=free_port(),
                storage=work / f"storage-p{count}",
                log=work / f"listener-p{count}.log",
            )
            listener.storage.mkdir(parents=True)
            with open(listener.log, "wb") as handle:
                listener.proc = subprocess.Popen(
                    listener_command(listener.port, processes=count),
                    cwd=REPO,
                    env={**env, "DICOM_STORAGE_DIR": str(listener.storage)},
                    stdout=handle,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            started[count] = listener
        for listener in started.values():
            assert listener.proc is not None  # set just above
            wait_ready(
                listener.port,
                OUR_AE,
                proc=listener.proc,
                what=f"our listener --processes {listener.processes}",
                log=listener.log,
                processes=listener.processes,
            )
        yield started
    finally:
        for listener in started.values():
            stop_process(listener.proc)


def log_problems(paths: Sequence[Path], limit: int = 10) -> list[str]:
    """Lines of the listeners' output that look like trouble (reported, not hidden)."""
    found: list[str] = []
    for path in paths:
        if not path.exists():
            continue
        for line in path.read_text(errors="replace").splitlines():
            if any(word in line for word in ("ERROR", "Traceback", "WARNING", "CRITICAL")):
                found.append(f"{path.name}: {line.strip()[:200]}")
    if len(found) > limit:
        return [*found[:limit], f"... and {len(found) - limit} more lines"]
    return found


# --------------------------------------------------------------------------- report


def summarise(
    cases: Sequence[Case], samples: dict[str, Samples], slices: int, total_bytes: int
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for case in cases:
        seconds = samples[case.key].seconds
        row: dict[str, Any] = {
            "key": case.key,
            "receiver": case.label,
            "associations": case.associations,
            "listener_processes": case.processes or None,
            "seconds": [round(value, 4) for value in seconds],
            "warmup_seconds": samples[case.key].warmup_seconds,
            "instances_per_s": spread([slices / value for value in seconds]),
            "mb_per_s": spread([total_bytes / 1e6 / value for value in seconds]),
            # CPU the receiver's processes used per instance: what the machine's load leaves
            # least distorted, and where a one-core process meets its ceiling.
            "cpu_ms_per_instance": spread(
                [1e3 * value / slices for value in samples[case.key].cpu_seconds]
            ),
            "ratio_vs_storescp": None,
        }
        if case.reference:
            # Paired per repeat: the storescp round of the same repeat, same associations.
            reference = samples[case.reference].seconds
            row["ratio_vs_storescp"] = spread(
                [ref / ours for ours, ref in zip(seconds, reference, strict=True)]
            )
        rows.append(row)
    return rows


def pan_scan_round(slices: int, *, listener: Listener, work: Path) -> dict[str, float | int]:
    """A trauma pan-scan's worth of slices over one association, to storescp and to ours (one
    timed send each, after the other rounds), and for ours how long after its last slice was
    stored the study was ready (from the database's timestamps: the release makes it ready)."""
    [fileset] = generate_sets([99_999], slices, work / "sets").values()
    os.sync()
    theirs = round_storescp(fileset, associations=1, fork=False, work=work)
    ours = round_ours(fileset, associations=1, listener=listener, work=work)
    ready_ms = sql_int(
        "SELECT COALESCE((EXTRACT(EPOCH FROM st.ready_at - max(i.received_at)) * 1000)::int, -1)"
        " FROM worklist_instance i JOIN worklist_series s ON s.id = i.series_id"
        " JOIN worklist_study st ON st.id = s.study_id"
        " WHERE st.study_instance_uid = :'uid' GROUP BY st.ready_at;",
        uid=fileset.study_uid,
    )
    shutil.rmtree(work / "sets" / "seed-99999", ignore_errors=True)
    return {
        "slices": slices,
        "ours_s": round(ours.seconds, 2),
        "storescp_s": round(theirs.seconds, 2),
        "ours_instances_per_s": round(slices / ours.seconds, 1),
        "storescp_instances_per_s": round(slices / theirs.seconds, 1),
        "ratio_vs_storescp": round(theirs.seconds / ours.seconds, 3),
        "ours_cpu_ms_per_instance": round(1000 * ours.cpu_seconds / slices, 2),
        "last_slice_to_ready_ms": ready_ms,
    }


def cell(values: dict[str, float] | None, fmt: str) -> str:
    if values is None:
        return "-"
    return " / ".join(format(values[key], fmt) for key in ("min", "median", "max"))


def print_table(report: dict[str, Any]) -> None:
    print(
        f"ingest: {report['slices']} CT slices 512x512 16-bit, "
        f"{report['mb_per_round']:.1f} MB per round; min / median / max of "
        f"{report['repeats']} repeats after 1 warm-up (MB = 10^6 bytes)"
    )
    versions = report["versions"]
    print(
        f"cores {report['cpu_count']} | {versions['storescu']} | pydicom {versions['pydicom']} | "
        f"pynetdicom {versions['pynetdicom']} | storage on {report['filesystem']}"
    )
    before, after = report["load_average_before_after"]
    print(f"load average (1 min) {before:.2f} before, {after:.2f} after")
    header = (
        f"{'assoc':>5}  {'receiver':<26} {'instances/s':>22}  {'MB/s':>22}  {'ours/storescp':>18}"
        f"  {'CPU ms/instance':>18}"
    )
    print()
    print(header)
    print("-" * len(header))
    for row in report["results"]:
        print(
            f"{row['associations']:>5}  {row['receiver']:<26} "
            f"{cell(row['instances_per_s'], '.1f'):>22}  {cell(row['mb_per_s'], '.1f'):>22}  "
            f"{cell(row['ratio_vs_storescp'], '.2f'):>18}  "
            f"{cell(row['cpu_ms_per_instance'], '.2f'):>18}"
        )
    pan = report.get("pan_scan")
    if pan:
        print()
        print(
            f"pan-scan: {pan['slices']} slices over 1 association: ours {pan['ours_s']:.1f} s "
            f"({pan['ours_instances_per_s']:.0f}/s, {pan['ours_cpu_ms_per_instance']:.2f} ms CPU "
            f"per instance), storescp {pan['storescp_s']:.1f} s "
            f"({pan['storescp_instances_per_s']:.0f}/s), ours/storescp "
            f"{pan['ratio_vs_storescp']:.2f}; last slice stored -> study ready "
            f"{pan['last_slice_to_ready_ms']} ms"
        )
    if report["listener_log_problems"]:
        print()
        print("listener log lines worth a look:")
        for line in report["listener_log_problems"]:
            print(f"  {line}")


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argument_parser(__doc__)
    parser.add_argument("--slices", type=int, default=500, help="instances per round")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds per row")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="where file sets, storage and logs go (default: a new temp dir, removed after)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs) after")
    parser.add_argument(
        "--pan-scan",
        type=int,
        default=3000,
        help="slices of the pan-scan round (one study, one association; 0: no such round)",
    )
    args = parser.parse_args(argv)
    if args.slices < 4 or args.repeats < 1:
        parser.error("need --slices >= 4 and --repeats >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if tools_missing("ingest", ("storescu", "storescp", "echoscu", "psql", "ss")):
        return 2

    import pydicom
    import pynetdicom

    versions = {
        "storescu": tool_version(["storescu", "--version"]),
        "pydicom": pydicom.__version__,
        "pynetdicom": pynetdicom.__version__,
    }
    cases = [
        Case("scp-1", "storescp (disk)", 1, "storescp"),
        Case("ours-p1-1", "ours --processes 1", 1, "ours", 1, "scp-1"),
        Case("scp-4", "storescp (disk)", 4, "storescp"),
        Case("ours-p1-4", "ours --processes 1", 4, "ours", 1, "scp-4"),
        Case("ours-p2-4", "ours --processes 2", 4, "ours", 2, "scp-4"),
        # Context only: without --fork, storescp serves one association at a time.
        Case("scp-fork-4", "storescp --fork (disk)", 4, "storescp", fork=True),
    ]
    rounds = 1 + args.repeats
    ours_cases = [case for case in cases if case.receiver == "ours"]
    # One fresh study per (round, our case); storescp re-sends its partner's study.
    seeds = {
        (index, case.key): 1000 + index * len(ours_cases) + position
        for index in range(rounds)
        for position, case in enumerate(ours_cases)
    }

    work = work_dir(args.workdir, "bench-ingest-")
    listener_env = {
        **os.environ,
        **product_environment(
            database=DB_NAME,
            redis_db=9,
            storage=work / "storage-unused",
            # No quiet-period readiness mid-measurement; a release makes its study ready (and
            # queues its triage on a broker no worker reads: no inference).
            quiet=3600,
        ),
    }
    samples = {case.key: Samples() for case in cases}
    listener_logs: list[Path] = []
    load_before = os.getloadavg()
    try:
        database_reset(DB_NAME, listener_env)
        sets = generate_sets(sorted(seeds.values()), args.slices, work / "sets")
        total_bytes = next(iter(sets.values())).total_bytes
        os.sync()
        processes = sorted({case.processes for case in ours_cases})
        with listeners_running(processes, listener_env, work) as listeners:
            listener_logs = [listener.log for listener in listeners.values()]
            for index in range(rounds):
                for case in cases:
                    partner = (
                        case.key if case.receiver == "ours" else f"ours-p1-{case.associations}"
                    )
                    fileset = sets[seeds[(index, partner)]]
                    if case.receiver == "storescp":
                        measured = round_storescp(
                            fileset, associations=case.associations, fork=case.fork, work=work
                        )
                    else:
                        measured = round_ours(
                            fileset,
                            associations=case.associations,
                            listener=listeners[case.processes],
                            work=work,
                        )
                    if index == 0:
                        samples[case.key].warmup_seconds = round(measured.seconds, 4)
                    else:
                        samples[case.key].seconds.append(measured.seconds)
                        samples[case.key].cpu_seconds.append(measured.cpu_seconds)
                # Each study has been sent to everyone who needs it in this round.
                for key in {seeds[(index, case.key)] for case in ours_cases}:
                    shutil.rmtree(work / "sets" / f"seed-{key}", ignore_errors=True)
            pan = (
                pan_scan_round(args.pan_scan, listener=listeners[1], work=work)
                if args.pan_scan
                else None
            )
        report = {
            "benchmark": "ingest",
            "slices": args.slices,
            "repeats": args.repeats,
            "bytes_per_round": total_bytes,
            "mb_per_round": total_bytes / 1e6,
            "cpu_count": os.cpu_count(),
            # Other work on the machine competes with both receivers (1-minute load averages).
            "load_average_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
            "versions": versions,
            "filesystem": f"{filesystem_of(work)} ({work.parent})",
            "results": summarise(cases, samples, args.slices, total_bytes),
            "pan_scan": pan,
            "listener_log_problems": log_problems(listener_logs),
        }
    except BenchError as error:
        print(f"ingest bench FAILED: {error}", file=sys.stderr)
        problems = log_problems(listener_logs)
        if problems:
            print("listener log:\n  " + "\n  ".join(problems), file=sys.stderr)
        print(f"(work dir kept: {work})", file=sys.stderr)
        return 1
    if args.keep or args.workdir is not None:
        print(f"(work dir kept: {work})", file=sys.stderr)
    else:
        shutil.rmtree(work, ignore_errors=True)
    return report_output(report, as_json=args.json, table=print_table)


if __name__ == "__main__":
    sys.exit(main())
