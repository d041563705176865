"""Where one association's time per instance goes: the listener's stages, timed in-process.

A listener (`worklist.dicom.scp.listener_start`, the code `manage.py dicom_scp` runs) is started
in this process with timers wrapped around its stages: staging the received bytes
(`_stage_as_received`), reading and checking the header (`header_read`), the database
transaction with the move into place (`_instance_register`, and within it `staged_file_commit`:
the wait for a background fsync, the rename and the directory fsync), and the whole C-STORE
handler. DCMTK `storescu` sends N synthetic CT slices (512x512) over one association. What is
not in the handler (pynetdicom decoding the PDUs and the command set, encoding the response, the
sender's own turn) is the wall time per instance less the handler's.

Run: .venv/bin/python bench/ingest_stages.py [--json] [--slices 400] [--work DIR]
Needs: DCMTK on PATH, PostgreSQL on 127.0.0.1:5432; the database triage_bench_stages is
dropped and recreated. Not a test: nothing asserts on timing. The timers add a few microseconds
per call; the bench that compares with storescp is bench/ingest.py.
"""

from __future__ import annotations

import os
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (  # noqa: E402
    argument_parser,
    database_reset,
    free_port,
    machine_info,
    product_environment,
    report_output,
    say,
    storescu_send,
    work_dir,
)
from bench.ingest import generate_set  # noqa: E402

DATABASE = "triage_bench_stages"
STAGES = (
    ("handler", "the whole C-STORE handler"),
    ("stage", "staging the bytes (fsync in the background)"),
    ("header", "reading and checking the header"),
    ("register", "database transaction, move into place"),
    ("commit_file", "  of which: fsync wait, rename, directory fsync"),
)


def main() -> int:
    parser = argument_parser(__doc__)
    parser.add_argument("--slices", type=int, default=400)
    parser.add_argument("--work", type=Path, default=None, help="kept afterwards when given")
    options = parser.parse_args()
    work = work_dir(options.work, "bench-stages-")
    env = product_environment(database=DATABASE, redis_db=13, storage=work / "storage", quiet=2)
    (work / "storage").mkdir(exist_ok=True)
    os.environ.update(env)
    database_reset(DATABASE, env)
    say(f"writing {options.slices} CT slices (not timed)")
    _, paths, _, _ = generate_set(int(time.time()) % 100_000, options.slices, str(work / "set"))

    import django

    django.setup()
    from worklist import storage
    from worklist.dicom import scp
    from worklist.services import ingest

    seconds: dict[str, float] = defaultdict(float)
    calls: dict[str, int] = defaultdict(int)

    def timed(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                seconds[name] += time.perf_counter() - began
                calls[name] += 1

        return wrapper

    scp._stage_as_received = timed("stage", scp._stage_as_received)  # type: ignore[assignment]
    scp.handle_store = timed("handler", scp.handle_store)  # type: ignore[assignment]
    ingest.header_read = timed("header", ingest.header_read)  # type: ignore[assignment]
    ingest._instance_register = timed("register", ingest._instance_register)  # type: ignore[assignment]
    storage.staged_file_commit = timed("commit_file", storage.staged_file_commit)  # type: ignore[assignment]
    port = free_port()
    server = scp.listener_start(host="127.0.0.1", port=port, ae_title="TRIAGE")
    try:
        wall, _, _ = storescu_send([Path(p) for p in paths], port, work / "storescu.log")
    finally:
        server.shutdown()
    count = len(paths)
    per = {name: seconds[name] / max(calls[name], 1) * 1000 for name, _ in STAGES}
    report = {
        "machine": machine_info(),
        "instances": count,
        "wall_ms_per_instance": wall / count * 1000,
        "ms_per_instance": per,
        "outside_handler_ms": wall / count * 1000 - per["handler"],
    }

    def table(r: dict[str, Any]) -> None:
        print(f"{r['instances']} CT slices over one association; ms per instance")
        print(f"  wall (storescu start to exit)                {r['wall_ms_per_instance']:6.2f}")
        for name, label in STAGES:
            print(f"  {label:<45}{r['ms_per_instance'][name]:6.2f}")
        print(f"  outside the handler (pynetdicom, the sender) {r['outside_handler_ms']:6.2f}")

    return report_output(report, as_json=options.json, table=table)


if __name__ == "__main__":
    sys.exit(main())
