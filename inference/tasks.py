"""Inference tasks on the `inference` queue: take a run id, call the service, safe to run twice."""

from __future__ import annotations

from typing import Any

from celery import Task, shared_task
from django.db import InterfaceError, OperationalError

from inference.services import PermanentFailure, inference_run_execute, inference_run_fail

TRANSIENT = (OperationalError, InterfaceError, ConnectionError, TimeoutError)


class InferenceTask(Task):  # type: ignore[type-arg]
    def on_failure(
        self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        run_id = args[0] if args else kwargs.get("run_id")
        inference_run_fail(run_id=int(run_id), reason=f"{type(exc).__name__}: {exc}")


@shared_task(
    base=InferenceTask,
    name="inference.tasks.inference_run",
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=TRANSIENT,
    retry_backoff=2,
    retry_backoff_max=60,
    max_retries=5,
    ignore_result=True,
)
def inference_run_task(run_id: int) -> None:
    try:
        inference_run_execute(run_id=run_id)
    except PermanentFailure as failure:
        inference_run_fail(run_id=run_id, reason=str(failure))
