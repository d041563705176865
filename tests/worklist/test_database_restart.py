"""Drill: PostgreSQL restarted under the listener. A private cluster is started for the test
(never the machine's shared one): the listener stores into it; with the database down, an
instance is answered a failure status (never success) and leaves no row; once it is back, the
listener reconnects by itself and the sender's retry succeeds; restarted in the middle of a
series, every instance answered success is in the database, and the retry stores the rest."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pydicom
import pytest

from tests.conftest import child_environment, dicom_scp_start, free_port, wait_for_port
from tests.dicom_peers import storescu
from tests.private_postgres import Cluster
from worklist.dicom.synthetic import StudySpec, write_study

SUCCESS = "Received Store Response (Success)"


def _sop(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def _stored(cluster: Cluster) -> set[str]:
    return {str(row[0]) for row in cluster.query("SELECT sop_instance_uid FROM worklist_instance")}


def _answered_success(output: str, paths: list[Path]) -> list[Path]:
    """The files storescu reported stored (it sends in order and stops at the first failure)."""
    return paths[: output.count(SUCCESS)]


@pytest.mark.drill
def test_the_listener_rides_out_a_database_restart(private_postgres, tmp_path):
    cluster = private_postgres
    port = free_port()
    store = tmp_path / "store"
    env = {**child_environment(), "DATABASE_URL": cluster.url, "DICOM_STORAGE_DIR": str(store),
           "DATABASE_POOL": "0"}  # fmt: skip
    with open(tmp_path / "dicom_scp.log", "ab") as log:
        listener = dicom_scp_start(port, log, env=env)
    try:
        wait_for_port(port, process=listener)
        first = write_study(
            StudySpec(slices=3, rows=64, columns=64), seed=91, out_dir=tmp_path / "a"
        )
        assert storescu(port, first).output.count(SUCCESS) == 3

        # Database down: a failure status, no row.
        cluster.ctl("-m", "fast", "stop")
        late = write_study(
            StudySpec(slices=1, rows=64, columns=64), seed=92, out_dir=tmp_path / "b"
        )
        refused = storescu(port, late)
        assert SUCCESS not in refused.output and "Store Response" in refused.output
        cluster.start()
        assert _sop(late[0]) not in _stored(cluster)
        # Back: the listener reconnects by itself, the sender's retry is stored.
        assert storescu(port, late).output.count(SUCCESS) == 1
        assert _sop(late[0]) in _stored(cluster)

        # Restarted in the middle of a series.
        series = write_study(StudySpec(slices=150, rows=64, columns=64), seed=93,
                             out_dir=tmp_path / "c")  # fmt: skip
        sender = subprocess.Popen(
            ["storescu", "-v", "-aet", "STORESCU", "-aec", "TRIAGE", "127.0.0.1", str(port),
             *map(str, series)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "TCP_NODELAY": "1"},
        )  # fmt: skip
        time.sleep(0.4)
        cluster.ctl("-m", "fast", "stop")  # (pg_ctl restart would log to our pipe and hang it)
        cluster.start()
        output, _ = sender.communicate(timeout=120)
        answered = _answered_success(output, series)
        assert len(answered) < len(series), "the restart came after the series: no drill"
        stored = _stored(cluster)
        missing = [path.name for path in answered if _sop(path) not in stored]
        assert not missing, f"answered success but not in the database: {missing}"
        retry = storescu(port, series)
        assert retry.output.count(SUCCESS) == len(series), retry.output[-1500:]
        assert {_sop(path) for path in series} <= _stored(cluster)
        assert listener.poll() is None
    finally:
        listener.terminate()
        listener.wait(timeout=10)
