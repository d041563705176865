"""Celery tasks: take an id, call a service, safe to run twice."""

from __future__ import annotations

from celery import shared_task

from inference.services import study_route
from worklist.services.studies import studies_stabilise


@shared_task(name="worklist.tasks.studies_stabilise", ignore_result=True)
def studies_stabilise_task() -> int:
    return len(studies_stabilise())


@shared_task(
    name="worklist.tasks.study_triage",
    ignore_result=True,
    autoretry_for=(ConnectionError, TimeoutError),
    retry_backoff=True,
    max_retries=5,
)
def study_triage(study_id: int) -> None:
    study_route(study_id=study_id)
