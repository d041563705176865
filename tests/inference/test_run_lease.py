"""A run is held by one live worker at a time (a lease it renews), and only a run nobody holds
and that was sent a while ago is sent again, with a wait that doubles each time."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from inference import services
from inference.models import InferenceRun
from tests.factories import ready_study


def _queued_run() -> InferenceRun:
    item = ready_study()
    return InferenceRun.objects.create(
        study=item.study,
        finding="intracranial_hemorrhage",
        model_name="m",
        model_version="1",
        model_sha256="x",
        series=item.study.series.create(series_instance_uid=f"9.{item.pk}"),
        series_set="s",
        queued_at=timezone.now() - timedelta(minutes=5),
    )


@pytest.fixture
def queued_run(db) -> InferenceRun:
    return _queued_run()


@pytest.fixture
def committed_run(transactional_db) -> InferenceRun:
    """Committed: the lease's heartbeat writes from a thread of its own, on its own connection."""
    return _queued_run()


def test_a_run_is_taken_by_one_worker_at_a_time(queued_run, settings):
    assert services._run_lease_take(queued_run.pk)
    assert not services._run_lease_take(queued_run.pk)  # a second delivery while it is held

    queued_run.refresh_from_db()
    assert queued_run.attempts == 1
    InferenceRun.objects.filter(pk=queued_run.pk).update(
        lease_until=timezone.now() - timedelta(seconds=1)
    )  # the holder died: its lease ran out
    assert services._run_lease_take(queued_run.pk)


def test_a_held_run_is_never_sent_again(queued_run):
    assert services._run_lease_take(queued_run.pk)

    assert services.inference_runs_redeliver_due(now=timezone.now()) == []


def test_a_run_nobody_holds_is_sent_again_with_a_doubling_wait(queued_run, settings):
    settings.INFERENCE_REDELIVER_AFTER_SECONDS = 15
    now = timezone.now()

    assert services.inference_runs_redeliver_due(now=now) == [queued_run.pk]
    assert services.inference_runs_redeliver_due(now=now + timedelta(seconds=14)) == []
    assert services.inference_runs_redeliver_due(now=now + timedelta(seconds=31)) == [queued_run.pk]
    later = now + timedelta(seconds=31)
    assert services.inference_runs_redeliver_due(now=later + timedelta(seconds=59)) == []
    assert services.inference_runs_redeliver_due(now=later + timedelta(seconds=61)) == [
        queued_run.pk
    ]
    queued_run.refresh_from_db()
    assert queued_run.redeliveries == 3


def test_a_run_with_a_result_is_never_sent_again(queued_run):
    InferenceRun.objects.filter(pk=queued_run.pk).update(state=InferenceRun.State.COMPLETE)

    assert services.inference_runs_redeliver_due(now=timezone.now()) == []
    assert not services._run_lease_take(queued_run.pk)


def test_the_lease_is_renewed_while_a_slow_run_computes(committed_run, settings):
    queued_run = committed_run
    settings.INFERENCE_LEASE_SECONDS = 0.3
    assert services._run_lease_take(queued_run.pk)
    first = InferenceRun.objects.get(pk=queued_run.pk).lease_until

    with services._run_lease_kept(queued_run.pk):
        import time

        time.sleep(0.5)  # longer than the lease: the heartbeat keeps it
        renewed = InferenceRun.objects.get(pk=queued_run.pk).lease_until
        assert renewed is not None and first is not None and renewed > first
        assert services.inference_runs_redeliver_due(now=timezone.now()) == []
    assert InferenceRun.objects.get(pk=queued_run.pk).lease_until is None  # given up on exit


def test_a_study_whose_triage_never_ran_is_sent_again(db, settings, monkeypatch):
    from triage import arrivals
    from triage.models import TriageDispatch
    from triage.tasks import study_triage
    from triage.workflow import study_triage_run

    settings.INFERENCE_REDELIVER_AFTER_SECONDS = 15
    sent: list[int] = []
    monkeypatch.setattr(study_triage, "delay", sent.append)
    study_id = ready_study().study_id
    arrivals.studies_ready_announce(study_ids=[study_id])  # the message is then lost
    now = timezone.now()

    assert arrivals.studies_triage_resend_due(now=now + timedelta(seconds=10)) == []
    assert arrivals.studies_triage_resend_due(now=now + timedelta(seconds=16)) == [study_id]
    assert TriageDispatch.objects.get(study_id=study_id).sends == 2

    study_triage_run(study_id=study_id)  # it runs at last
    assert arrivals.studies_triage_resend_due(now=now + timedelta(hours=1)) == []


def test_a_run_whose_worker_died_is_sent_again_at_once(queued_run):
    assert services._run_lease_take(queued_run.pk)
    InferenceRun.objects.filter(pk=queued_run.pk).update(
        queued_at=timezone.now(), lease_until=timezone.now() - timedelta(seconds=1)
    )  # sent a moment ago, taken, and its worker's lease has run out

    assert services.inference_runs_redeliver_due(now=timezone.now()) == [queued_run.pk]
