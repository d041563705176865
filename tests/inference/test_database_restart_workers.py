"""Drill: PostgreSQL restarted while the workers run. A private cluster (never the machine's
shared one) with the listener, a Celery worker and the periodic duties on it; a positive CTPA
is sent, and the database stopped while the worker runs the model and started again a few
seconds later. The run resumes by itself: the study gets exactly one result and one alert, and
every process is still running."""

from __future__ import annotations

import time

import pytest

from tests.conftest import (
    Listener,
    child_environment,
    dicom_scp_start,
    free_port,
    periodic_duties_start,
    wait_for_port,
)
from tests.inference.test_worker_e2e import REDIS_BROKER, _broker_empty, _start_worker, send_phantom
from tests.private_postgres import Cluster
from tests.worklist.test_dicom_listener import wait_until
from triage.findings import Finding

DOWN_SECONDS = 4


def _study_state(cluster: Cluster, uid: str) -> str | None:
    rows = cluster.query(
        "SELECT ai_state FROM worklist_study WHERE study_instance_uid = %s", (uid,)
    )
    return str(rows[0][0]) if rows else None


@pytest.mark.drill
def test_runs_resume_after_a_database_restart_under_the_workers(private_postgres, tmp_path):
    cluster = private_postgres
    env = {**child_environment(), "DATABASE_URL": cluster.url, "CELERY_BROKER_URL": REDIS_BROKER,
           "DICOM_STORAGE_DIR": str(tmp_path / "store"), "DATABASE_POOL": "0"}  # fmt: skip
    _broker_empty(env)
    port = free_port()
    worker_log = tmp_path / "worker.log"
    listener = dicom_scp_start(port, open(tmp_path / "scp.log", "wb"), env=env)  # noqa: SIM115
    duties = periodic_duties_start(open(tmp_path / "duties.log", "wb"), env=env)  # noqa: SIM115
    worker = _start_worker(env, worker_log)
    processes = (listener, duties, worker)
    try:
        wait_for_port(port, process=listener)
        Listener(port=port, ae_title="TRIAGE", process=listener, log_path=tmp_path / "scp.log")
        uid = send_phantom(
            port, Finding.PULMONARY_EMBOLISM, positive=True, seed=9_100_021, out=tmp_path / "ctpa"
        )
        wait_until(
            lambda: "triage.tasks.inference_run[" in worker_log.read_text(),
            timeout=60,
            interval=0.01,
        )
        cluster.ctl("-m", "fast", "stop")  # while the model runs: its result has nowhere to go
        time.sleep(DOWN_SECONDS)
        assert all(process.poll() is None for process in processes)
        cluster.start()

        wait_until(lambda: _study_state(cluster, uid) in ("complete", "failed"), timeout=120)
        assert _study_state(cluster, uid) == "complete", worker_log.read_text()[-3000:]
        runs = cluster.query(
            "SELECT r.state, r.flagged FROM inference_inferencerun r JOIN worklist_study s "
            "ON s.id = r.study_id WHERE s.study_instance_uid = %s",
            (uid,),
        )
        assert runs == [("complete", True)]
        alerts = cluster.query(
            "SELECT count(*) FROM triage_alert a JOIN worklist_study s ON s.id = a.study_id "
            "WHERE s.study_instance_uid = %s",
            (uid,),
        )
        assert alerts == [(1,)]
        assert all(process.poll() is None for process in processes)
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=15)
