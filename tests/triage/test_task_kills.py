"""Drills: the triage, outbound and periodic tasks' worker SIGKILLed mid-task, on real processes
(listener, Celery workers, beat or the periodic duties, PostgreSQL, Redis and RabbitMQ as the
broker). What a user would notice is asserted: the study gets its runs and its alert once, the
RIS its message once (by control ID), the escalation happens once, nothing is lost.

A kill "mid-task" is made certain rather than hoped for: the test holds the row the task must
lock (the study, for triage) or the peer holds its answer (the RIS, for outbound), so the task
is provably inside its work when the signal lands. (The inference run's drills are in
tests/inference/test_worker_e2e.py.)"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection, transaction
from django.utils import timezone

from inference.models import InferenceRun
from tests.conftest import ROOT, child_environment, dicom_scp_start, free_port, wait_for_port
from tests.conftest import periodic_duties_start as duties_process_start
from tests.factories import FLAGGED_HEAD_CT_SEED, ready_study
from tests.inference.test_worker_e2e import (
    RABBITMQ_BROKER,
    REDIS_BROKER,
    _broker_empty,
    _start_worker,
    send_phantom,
    study_done,
)
from tests.interfaces import Hl7Peer
from tests.worklist.test_dicom_listener import wait_until
from triage.alerts import alert_raise
from triage.findings import Finding
from triage.models import Alert, AuditEvent, OutboundMessage, TriageDispatch
from worklist.models import Study

BROKERS = pytest.mark.parametrize(
    "broker", [REDIS_BROKER, RABBITMQ_BROKER], ids=["redis", "rabbitmq"]
)


def _stop(*processes: subprocess.Popen[bytes] | None) -> None:
    for process in processes:
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()


def _listener_and_duties(
    tmp_path: Path, env: dict[str, str]
) -> tuple[int, subprocess.Popen[bytes], subprocess.Popen[bytes]]:
    """An empty broker, the DICOM listener (its port) and the periodic duties, on `env`."""
    _broker_empty(env)
    port = free_port()
    listener = dicom_scp_start(port, open(tmp_path / "scp.log", "wb"), env=env)  # noqa: SIM115
    duties = duties_process_start(open(tmp_path / "duties.log", "wb"), env=env)  # noqa: SIM115
    return port, listener, duties


def _flagged_head_ct_sent(
    port: int, listener: subprocess.Popen[bytes], tmp_path: Path, **tags: str
) -> str:
    """The held-out head CT the demonstration ICH model flags, sent with storescu."""
    wait_for_port(port, process=listener)
    return send_phantom(port, Finding.INTRACRANIAL_HEMORRHAGE, positive=True,
                        seed=FLAGGED_HEAD_CT_SEED, out=tmp_path / "head", **tags)  # fmt: skip


def _task_received(log: Path, task: str) -> bool:
    text = log.read_text(errors="replace")
    return f"Task {task}[" in text and "received" in text


def _waiting_on_a_lock() -> bool:
    """Another backend of this database is blocked on a row lock (the worker, on ours)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
        )
        return bool(cursor.fetchone()[0])


@pytest.mark.drill
@pytest.mark.slow_drill
@BROKERS
def test_triage_worker_killed_mid_task_routes_the_study_once(
    transactional_db, tmp_path, users, broker
):
    """The study's triage task is inside its transaction (blocked on the study row, which the
    test holds) when its worker is SIGKILLed. With Redis the message would wait out the
    visibility timeout (30 min at the production default); the dispatch row makes the periodic
    duties send it again. The study is routed once: one run, one result, one alert."""
    env = {**child_environment(), "CELERY_BROKER_URL": broker,
           "INFERENCE_REDELIVER_AFTER_SECONDS": "5"}  # fmt: skip
    port, listener, duties = _listener_and_duties(tmp_path, env)
    first = second = None
    try:
        uid = _flagged_head_ct_sent(port, listener, tmp_path, location="ED-RESUS-1",
                                    priority="STAT")  # fmt: skip
        # Ready on the association's release, its triage task sent (no worker yet).
        dispatch = wait_until(
            lambda: TriageDispatch.objects.filter(study__study_instance_uid=uid).first(),
            timeout=30,
        )
        first_log = tmp_path / "worker-1.log"
        with transaction.atomic():
            Study.objects.select_for_update().get(pk=dispatch.study_id)
            first = _start_worker(env, first_log)
            wait_until(lambda: _task_received(first_log, "triage.tasks.study_triage"), timeout=60)
            wait_until(_waiting_on_a_lock, timeout=30, interval=0.05)
            first.send_signal(signal.SIGKILL)
            killed_at = time.monotonic()
            first.wait(timeout=10)
        # The lock is ours no more; the dead worker's transaction never committed.
        assert not InferenceRun.objects.filter(study_id=dispatch.study_id).exists()

        second = _start_worker(env, tmp_path / "worker-2.log")
        done = wait_until(lambda: study_done(uid), timeout=90)
        recovered = time.monotonic() - killed_at
    finally:
        _stop(first, second, listener, duties)

    assert done.ai_state == Study.AIState.COMPLETE
    run = InferenceRun.objects.get(study=done)  # routed once: one run
    assert run.state == InferenceRun.State.COMPLETE and run.flagged
    assert Alert.objects.filter(study=done).count() == 1
    dispatch.refresh_from_db()
    assert dispatch.routed_at is not None
    if broker == REDIS_BROKER:
        assert dispatch.sends >= 2  # sent again by the duties, not by the broker
    print(f"triage kill on {broker.split(':')[0]}: result {recovered:.1f} s after the kill")


@pytest.mark.drill
@pytest.mark.slow_drill
@BROKERS
def test_outbound_worker_killed_mid_send_delivers_the_message_once(
    transactional_db, tmp_path, users, broker
):
    """The ORU is on the wire, the RIS has it and holds its ACK, when the worker sending it is
    SIGKILLed: the message's lease runs out, the duties send it again, and the RIS ends with one
    message (every copy under the one control ID it deduplicates on) acknowledged once."""
    peer = Hl7Peer(folder=tmp_path / "ris", delay=4.0)
    peer.start()
    env = {**child_environment(), "CELERY_BROKER_URL": broker,
           "OUTBOUND_HL7": f"127.0.0.1:{peer.port}", "OUTBOUND_LEASE_SECONDS": "3",
           "OUTBOUND_ANSWER_SECONDS": "10"}  # fmt: skip
    port, listener, duties = _listener_and_duties(tmp_path, env)
    first = _start_worker(env, tmp_path / "worker-1.log")
    second = None
    try:
        uid = _flagged_head_ct_sent(port, listener, tmp_path)
        wait_until(lambda: peer.received(), timeout=90, interval=0.05)  # on the wire, no ACK
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        [message] = OutboundMessage.objects.filter(study__study_instance_uid=uid)
        assert message.state == OutboundMessage.State.WAITING  # not delivered by the dead one

        second = _start_worker(env, tmp_path / "worker-2.log")
        wait_until(
            lambda: OutboundMessage.objects.filter(
                pk=message.pk, state=OutboundMessage.State.DELIVERED
            ).exists(),
            timeout=60,
        )
        time.sleep(2)  # room for a duplicate to show itself
    finally:
        _stop(first, second, listener, duties)
        peer.stop()

    message.refresh_from_db()
    assert message.state == OutboundMessage.State.DELIVERED
    received = peer.received()
    assert {item["control_id"] for item in received} == {message.reference}
    assert 1 <= len(received) <= 2  # the dead worker's copy (never acknowledged) and the resend
    assert OutboundMessage.objects.filter(study__study_instance_uid=uid).count() == 1
    assert Alert.objects.filter(study__study_instance_uid=uid).count() == 1


@pytest.mark.drill
@pytest.mark.slow_drill
def test_beat_keeps_the_duties_going_when_their_worker_is_killed(transactional_db, tmp_path):
    """Celery beat (the production scheduler) sends the periodic duties every second to a
    worker; that worker is SIGKILLed, an alert falls due for escalation while no worker runs,
    and another worker takes over: the alert escalates once (one audit record), however many
    duty messages beat queued while no worker ran."""
    env = {**child_environment(), "CELERY_BROKER_URL": REDIS_BROKER}
    _broker_empty(env)
    item = ready_study(location="ED-RESUS-2", is_emergency=True)
    with transaction.atomic():
        alert = alert_raise(study=item.study, finding="intracranial_hemorrhage")
    assert alert is not None
    Alert.objects.filter(pk=alert.pk).update(escalate_at=timezone.now() + timedelta(hours=1))
    beat = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "triage.config", "beat", "-l", "INFO",
         "-s", str(tmp_path / "beat-schedule"), "--pidfile", ""],
        cwd=ROOT, env=env, stdout=open(tmp_path / "beat.log", "wb"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    first_log = tmp_path / "worker-1.log"
    first = _start_worker(env, first_log)
    second = None
    try:
        wait_until(
            lambda: (
                "triage.tasks.periodic_duties[" in first_log.read_text()
                and "succeeded" in first_log.read_text()
            ),
            timeout=60,
        )
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        alert.refresh_from_db()
        assert alert.state == Alert.State.OPEN  # not yet due when its worker died
        Alert.objects.filter(pk=alert.pk).update(escalate_at=timezone.now())
        time.sleep(4)  # due, with no worker: beat's messages wait on the broker
        alert.refresh_from_db()
        assert alert.state == Alert.State.OPEN
        second = _start_worker(env, tmp_path / "worker-2.log")
        wait_until(
            lambda: Alert.objects.filter(pk=alert.pk, state=Alert.State.ESCALATED).exists(),
            timeout=30,
        )
        time.sleep(3)  # more duty rounds: none escalates it again
    finally:
        _stop(first, second, beat)

    escalations = AuditEvent.objects.filter(action="alert.escalate", study=item.study)
    assert escalations.count() == 1
