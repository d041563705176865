"""Drill: one Redis as the Celery broker and the channel layer (the README's simplest
production layout), restarted with nothing kept on disk while studies arrive. A private
redis-server is started for the test; the listener, a worker, the periodic duties and uvicorn
run on it, with a dashboard connected.

While Redis is down, a study arrives over C-STORE and another over STOW-RS: both senders are
told "stored" (the rows are committed; the task messages cannot be sent, which is logged, not
an error). The restart also loses whatever was queued. Once Redis is back, the periodic duties
send the triage again from the dispatch rows: every study is scored once, alerted once, and the
dashboard shows each alert once."""

from __future__ import annotations

import http.client
import time
from pathlib import Path

import pytest
from rest_framework.authtoken.models import Token

from bench.peers import PrivateRedis
from inference.models import InferenceRun
from tests.conftest import (
    asgi_server_start,
    child_environment,
    dicom_scp_start,
    free_port,
    process_stop,
    wait_for_port,
)
from tests.conftest import periodic_duties_start as duties_process_start
from tests.dicom_peers import storescu
from tests.factories import flagged_head_ct_files
from tests.inference.test_worker_e2e import _start_worker, study_done
from tests.triage.test_live_e2e import _session_cookie
from tests.triage.test_redis_restart import Dashboard
from tests.triage.test_stow import CONTENT_TYPE, multipart
from tests.worklist.test_dicom_listener import wait_until
from triage.models import Alert


def _stow(port: int, token: Token, paths: list[Path]) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    connection.request(
        "POST",
        "/dicomweb/studies",
        body=multipart([path.read_bytes() for path in paths]),
        headers={"Content-Type": CONTENT_TYPE, "Authorization": f"Token {token.key}"},
    )
    status = connection.getresponse().status
    connection.close()
    return status


@pytest.mark.drill
@pytest.mark.slow_drill
def test_a_redis_broker_restart_loses_no_study_and_doubles_no_alert(
    transactional_db, users, tmp_path
):
    redis = PrivateRedis(tmp_path)
    redis.start()
    env = {**child_environment(), "REDIS_URL": redis.url, "CELERY_BROKER_URL": redis.url,
           "INFERENCE_REDELIVER_AFTER_SECONDS": "3"}  # fmt: skip
    port = free_port()
    listener = dicom_scp_start(port, open(tmp_path / "scp.log", "wb"), env=env)  # noqa: SIM115
    duties = duties_process_start(open(tmp_path / "duties.log", "wb"), env=env)  # noqa: SIM115
    worker = _start_worker(env, tmp_path / "worker.log")
    web, web_port = asgi_server_start(tmp_path, extra_env=env)
    token = Token.objects.create(user=users.integration)
    board = Dashboard(
        f"ws://localhost:{web_port}/ws/alerts/",
        _session_cookie(users.radiologist).split("; ")[0],
        f"http://localhost:{web_port}",
    )
    studies = [flagged_head_ct_files(tmp_path / f"study-{n}", copy=n) for n in range(1, 5)]
    uids = [uid for uid, _ in studies]
    try:
        wait_for_port(port, process=listener)
        board.open()
        # Before: a study through the whole path, its alert on the dashboard.
        assert storescu(port, studies[0][1]).returncode == 0
        wait_until(lambda: study_done(uids[0]), timeout=90)

        redis.kill()
        # During: both senders are told "stored", though no task message can be sent.
        assert storescu(port, studies[1][1]).returncode == 0
        assert _stow(web_port, token, studies[2][1]) == 200
        time.sleep(1)
        redis.start()  # empty: nothing queued before the crash survives it
        # After: a study arriving on the new Redis.
        assert storescu(port, studies[3][1]).returncode == 0

        done = [wait_until(lambda uid=uid: study_done(uid), timeout=120) for uid in uids]
        deadline = time.monotonic() + 30
        while len(board.seen) < 4 and time.monotonic() < deadline:
            board.pump(0.2)
        board.pump(2)  # room for a duplicate to show itself
    finally:
        board.close()
        process_stop(web)
        for process in (worker, duties, listener):
            process.terminate()
            process.wait(timeout=15)
        redis.kill()

    for study in done:
        run = InferenceRun.objects.get(study=study)  # scored once
        assert run.state == InferenceRun.State.COMPLETE and run.flagged
        assert Alert.objects.filter(study=study).count() == 1
    assert sorted(frame["study_id"] for frame in board.seen.values()) == sorted(
        study.pk for study in done
    )
    assert board.twice == []
    assert "not queued; the periodic duties send it again" in (
        (tmp_path / "scp.log").read_text() + (tmp_path / "web.log").read_text()
    )
