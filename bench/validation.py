"""validate_model throughput: studies per second over a labelled phantom data set, on this machine.

Run: .venv/bin/python bench/validation.py [--studies 500] [--finding F] [--json] [--work DIR]

Writes `--studies` held-out phantom studies of the finding (alternately positive and negative,
seeds from 9_600_000, never used in training) as DICOM folders with a labels.csv (not timed),
then runs `manage.py validate_model` on them as an administrator would, against the benchmark
database, and reports studies per second from the command's start to its end (process start,
model load, every study read, decoded, pre-processed, scored and stored) and the CPU it used.
No peer tool on this machine validates a model, so there is no ratio.
"""

from __future__ import annotations

import csv
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (  # noqa: E402
    MANAGE,
    argument_parser,
    database_reset,
    machine_info,
    product_environment,
    report_output,
    run_checked,
    say,
    work_dir,
)

DATABASE = "triage_bench_validation"
SEED_START = 9_600_000


def dataset_write(folder: Path, *, finding: str, studies: int) -> float:
    """The labelled data set; seconds it took."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "triage.config.settings")
    os.environ.setdefault("DEBUG", "1")
    from inference.phantoms import phantom_generate, phantom_write

    started = time.monotonic()
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "labels.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["study", "label"])
        for n in range(studies):
            seed, positive = SEED_START + n, n % 2 == 0
            name = f"study-{seed}"
            study = phantom_generate(finding, positive=positive, seed=seed)
            phantom_write(study, out_dir=folder / name, seed=seed)
            writer.writerow([name, 1 if positive else 0])
            if (n + 1) % 100 == 0 or n + 1 == studies:
                say(f"  data set: {n + 1}/{studies} studies, {time.monotonic() - started:.0f}s")
    return time.monotonic() - started


def main() -> int:
    parser = argument_parser(__doc__)
    parser.add_argument("--studies", type=int, default=500)
    parser.add_argument("--finding", default="intracranial_hemorrhage")
    parser.add_argument("--work", type=Path, default=None, help="kept afterwards when given")
    options = parser.parse_args()
    work = work_dir(options.work, "bench-validation-")
    dataset = work / "dataset"
    env = {
        **os.environ,
        **product_environment(
            database=DATABASE, redis_db=14, storage=work / "storage", quiet=2
        ),  # fmt: skip
    }
    (work / "storage").mkdir(exist_ok=True)
    if not (dataset / "labels.csv").exists():
        say(f"writing {options.studies} {options.finding} phantom studies to {dataset}")
        written = dataset_write(dataset, finding=options.finding, studies=options.studies)
    else:
        written = 0.0
    database_reset(DATABASE, env)
    say("validate_model ...")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    output = run_checked(
        [sys.executable, str(MANAGE), "validate_model", "--finding", options.finding,
         "--dataset", str(dataset), "--description", "bench"],
        env=env,
    )  # fmt: skip
    seconds = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    last = [line for line in output.replace("\r", "\n").splitlines() if line.strip()][-1]
    report: dict[str, Any] = {
        "finding": options.finding,
        "studies": options.studies,
        "dataset_write_s": round(written, 1),
        "validate_s": round(seconds, 1),
        "studies_per_s": round(options.studies / seconds, 2),
        "cpu_s_per_study": round(cpu / options.studies, 3),
        "command_said": last.strip(),
        "machine": machine_info(),
    }

    def table(r: dict[str, Any]) -> None:
        print(
            f"validate_model, {r['finding']}, {r['studies']} studies: {r['validate_s']} s, "
            f"{r['studies_per_s']} studies/s, {r['cpu_s_per_study']} CPU s per study"
        )
        print(f"  (data set written in {r['dataset_write_s']} s, not timed)")
        print(f"  the command said: {r['command_said']}")

    return report_output(report, as_json=options.json, table=table)


if __name__ == "__main__":
    raise SystemExit(main())
