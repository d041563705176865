"""A ready study's walk through triage, each step calling the next capability: routed to the
models that apply (inference) -> each model run scored and recorded (inference) -> the triage
policy applied to it (flag, AI state, deadline, alert) in the same transaction.

Before this, `triage.arrivals` made the study ready and queued it. Fan-out happens after
commit and carries ids only.
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from inference.services import (
    PermanentFailure,
    inference_run_fail,
    inference_run_predict,
    inference_run_record,
    study_route,
)
from triage.model_modes import model_modes_for
from triage.models import ModelMode, TriageDispatch
from triage.policy import run_result_apply, study_routed_apply
from triage.queueing import task_queue_after_commit
from worklist.models import Study

logger = logging.getLogger(__name__)


def study_triage_run(*, study_id: int) -> list[int]:
    """Route a ready study to its models, record its AI state, and queue one run per model.

    The ids of the runs queued (a run that already exists for the same input is reused).
    """
    from triage.tasks import inference_run

    with transaction.atomic():
        study = Study.objects.select_for_update().get(pk=study_id)
        if study.state != Study.State.READY:
            # Re-opened since: it is announced and triaged again when ready.
            TriageDispatch.objects.filter(study=study).update(routed_at=timezone.now())
            return []
        modes = model_modes_for(location=study.patient_location or "")
        routing = study_route(
            study=study,
            shadow={name for name, mode in modes.items() if mode == ModelMode.Mode.SHADOW},
            off={name for name, mode in modes.items() if mode == ModelMode.Mode.OFF},
        )
        study_routed_apply(study=study, findings=routing.findings)
        TriageDispatch.objects.filter(study=study).update(routed_at=timezone.now())
        for run_id in routing.queued_run_ids:
            task_queue_after_commit(inference_run, run_id)
    logger.info(
        "study routed study=%s findings=%s runs=%s",
        study_id,
        ",".join(routing.findings) or "-",
        len(routing.queued_run_ids),
    )
    return routing.queued_run_ids


def inference_run_triage(*, run_id: int) -> None:
    """Run one model on one study, record the result and apply the policy to it, once.

    Safe to call twice: a run with a result already is left alone.
    """
    try:
        scored = inference_run_predict(run_id=run_id)
    except PermanentFailure as failure:
        inference_run_give_up(run_id=run_id, reason=str(failure))
        return
    if scored is None:
        return
    with transaction.atomic():
        run = inference_run_record(run_id=run_id, scored=scored)
        if run is not None:
            run_result_apply(run=run)


def inference_run_give_up(*, run_id: int, reason: str) -> None:
    """The run cannot complete: record why; the study shows "AI unavailable"."""
    with transaction.atomic():
        run = inference_run_fail(run_id=run_id, reason=reason)
        if run is not None:
            run_result_apply(run=run)
