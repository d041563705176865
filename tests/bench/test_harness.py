"""The shared bench harness: its statistics, the product's entry points it starts, and that
every benchmark still runs as a script (`python bench/<name>.py`) with it.

No database, no servers: the benchmarks themselves are not run here (they take minutes).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench import harness

BENCH = Path(__file__).resolve().parents[2] / "bench"
# Without the train extra (onnx, torch) bench/inference.py cannot even parse its arguments.
SCRIPTS = ["alerts", "ingest", "result_latency", "queue_sim"] + (
    ["inference"] if importlib.util.find_spec("onnx") else []
)


def run_script(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`python bench/<name>.py ARGS` as a user runs it: without Django's settings module in the
    environment (pytest-django sets it here)."""
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}
    return subprocess.run(
        [sys.executable, str(BENCH / f"{name}.py"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_spread_gives_the_figures_asked_for_in_order() -> None:
    values = [4.0, 1.0, 3.0, 2.0]
    assert harness.spread(values) == {"min": 1.0, "median": 2.5, "max": 4.0}
    figures = harness.spread(values, ("n", "min", "p50", "p90", "max"))
    assert list(figures) == ["n", "min", "p50", "p90", "max"]
    assert figures["n"] == 4
    assert figures["p50"] == pytest.approx(2.5)
    assert figures["p90"] == pytest.approx(float(np.percentile(values, 90)))
    assert harness.spread([1 / 3, 2 / 3], ("median",), digits=4) == {"median": 0.5}


def test_spread_of_nothing_is_none_but_the_count() -> None:
    assert harness.spread([], ("n", "min", "p10", "median", "max")) == {
        "n": 0,
        "min": None,
        "p10": None,
        "median": None,
        "max": None,
    }
    with pytest.raises(ValueError, match="unknown figure"):
        harness.spread([1.0], ("mean",))


@pytest.mark.parametrize("q", [0, 10, 50, 90, 95, 99, 100])
def test_percentile_is_numpys_default(q: float) -> None:
    values = [float(v) for v in np.random.default_rng(3).lognormal(size=37)]
    assert harness.percentile(values, q) == pytest.approx(float(np.percentile(values, q)))
    assert harness.percentile([7.0], q) == 7.0


def test_the_product_is_started_from_its_configuration_package() -> None:
    assert harness.SETTINGS_MODULE == "triage.config.settings"
    assert harness.ASGI_APP == "triage.config.asgi:application"
    assert harness.CELERY_APP == "triage.config"
    for module in (harness.SETTINGS_MODULE, harness.ASGI_APP.split(":")[0], harness.CELERY_APP):
        assert importlib.util.find_spec(module) is not None, module
    env = harness.product_environment(
        database="triage_bench_x", redis_db=7, storage=Path("/tmp/s"), quiet=2
    )
    assert env["DJANGO_SETTINGS_MODULE"] == harness.SETTINGS_MODULE
    assert env["DATABASE_URL"].endswith("/triage_bench_x")
    assert env["REDIS_URL"].endswith("/7")
    assert env["STUDY_STABLE_SECONDS"] == "2"
    command = harness.listener_command(11112, processes=2)
    assert command[:3] == [sys.executable, str(harness.MANAGE), "dicom_scp"]
    assert command[-2:] == ["--processes", "2"]


def test_storescu_check_counts_successful_responses(tmp_path: Path) -> None:
    log = tmp_path / "storescu.log"
    log.write_text(f"{harness.STORE_SUCCESS}\n" * 3)
    harness.storescu_check(0, 3, log)
    with pytest.raises(harness.BenchError, match=r"storescu to port 1 failed: rc=0, 3/4"):
        harness.storescu_check(0, 4, log, to=" to port 1")
    with pytest.raises(harness.BenchError, match="rc=1"):
        harness.storescu_check(1, 3, log)


def test_wait_until_stops_when_the_process_exits_early() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    proc.wait()
    with pytest.raises(harness.BenchError, match="listener exited early with rc=3"):
        harness.wait_until(lambda: False, proc, "listener")


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_benchmark_parses_its_arguments_as_a_script(name: str) -> None:
    done = run_script(name, "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage:")


def test_queue_simulation_runs_as_a_script_without_django_settings() -> None:
    # The product's deadline rule is called with the bench's class targets: no settings read.
    done = run_script("queue_sim", "--json", "--seeds", "1")
    assert done.returncode == 0, done.stderr
    assert '"tp_mean_wait_ranked"' in done.stdout
