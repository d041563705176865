"""Celery tasks: take an id, call a service, safe to run twice (acknowledged late; a worker
that dies mid-task leaves the task to be delivered again)."""

from __future__ import annotations

from typing import Any

from celery import Task, shared_task
from django.db import InterfaceError, OperationalError

from triage.duties import periodic_duties_run
from triage.outbound.services import outbound_message_send
from triage.workflow import inference_run_give_up, inference_run_triage, study_triage_run

TRANSIENT = (OperationalError, InterfaceError, ConnectionError, TimeoutError)


@shared_task(name="triage.tasks.periodic_duties", ignore_result=True)
def periodic_duties() -> None:
    periodic_duties_run()


@shared_task(
    name="triage.tasks.study_triage",
    ignore_result=True,
    autoretry_for=TRANSIENT,
    retry_backoff=True,
    max_retries=5,
)
def study_triage(study_id: int) -> None:
    study_triage_run(study_id=study_id)


class InferenceRunTask(Task):  # type: ignore[type-arg]
    def on_failure(
        self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        # Retries are spent (or the error was not transient): never a silent normal.
        run_id = args[0] if args else kwargs.get("run_id")
        inference_run_give_up(run_id=int(run_id), reason=f"{type(exc).__name__}: {exc}")


@shared_task(
    base=InferenceRunTask,
    name="triage.tasks.inference_run",  # routed to the `inference` queue (settings)
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=TRANSIENT,
    retry_backoff=2,
    retry_backoff_max=60,
    max_retries=5,
    ignore_result=True,
)
def inference_run(run_id: int) -> None:
    inference_run_triage(run_id=run_id)


@shared_task(
    name="triage.tasks.outbound_send",  # routed to the `outbound` queue (settings)
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
)
def outbound_send(message_id: int) -> None:
    # Retries are the outbox's (next_attempt_at, sent again by the periodic duties), not Celery's:
    # they survive a lost task message and a broker restart.
    outbound_message_send(message_id=message_id)
