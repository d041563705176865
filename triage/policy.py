"""The triage policy: what a model's result means for a study (nothing, for a model in shadow
mode: `triage.model_modes`).

A recorded run's score is compared with the finding's threshold (read through the one
selector, at every result); the study's AI state follows its current runs; a flag brings the
read-by deadline forward (through the ranking service) and raises the finding's alert; the
result's outbound messages are written. Runs in the caller's transaction, so the run, the
state, the deadline, the alert and the outbox commit together.
"""

from __future__ import annotations

from django.db import transaction

from inference.models import InferenceRun
from inference.registry import registry_current
from triage import broadcast
from triage.alerts import alert_raise
from triage.outbound.services import outbound_results_enqueue
from triage.thresholds import threshold_for
from worklist.models import Study, WorklistItem
from worklist.ranking import worklist_item_rank


def run_result_apply(*, run: InferenceRun) -> None:
    """A run was just recorded (complete or failed): flag it and apply it to its study."""
    study = Study.objects.select_for_update().get(pk=run.study_id)
    if run.state == InferenceRun.State.COMPLETE and run.score is not None:
        card = registry_current().models[run.model_name]
        run.threshold = threshold_for(card=card, study=study)
        run.flagged = run.score >= run.threshold  # for a shadow run: the flag it would raise
        run.save(update_fields=["threshold", "flagged"])
        if run.current and not run.shadow:  # not a superseded run's: it is no result now
            outbound_results_enqueue(run=run)  # the SC, SR and ORU it causes, in this txn
    if run.shadow:
        return  # administrators' eyes only: no flag, deadline, alert, AI state or result out
    study_findings_apply(study=study)


def study_routed_apply(*, study: Study, findings: list[str]) -> None:
    """The study was routed to the models that apply to `findings` (none: not eligible)."""
    study.applicable_findings = findings
    study.ai_state = Study.AIState.PENDING if findings else Study.AIState.NOT_ELIGIBLE
    study.ai_detail = ""
    study.save(update_fields=["applicable_findings", "ai_state", "ai_detail"])
    study_findings_apply(study=study)


def study_findings_apply(*, study: Study) -> None:
    """Derive the study's AI state from its current runs, and for every flagged finding raise
    its alert and bring the deadline forward. The study row is locked by the caller."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("study_findings_apply runs inside the caller's transaction")
    runs = list(InferenceRun.objects.filter(study=study, current=True))
    if not runs:
        return
    failed = [run for run in runs if run.state == InferenceRun.State.FAILED]
    if failed:
        study.ai_state = Study.AIState.FAILED
        study.ai_detail = "; ".join(f"{run.model_name}: {run.error}" for run in failed)[:256]
    elif all(run.state == InferenceRun.State.COMPLETE for run in runs):
        study.ai_state = Study.AIState.COMPLETE
        study.ai_detail = ""
    else:
        study.ai_state = Study.AIState.PENDING
    study.save(update_fields=["ai_state", "ai_detail"])
    if not WorklistItem.objects.filter(study=study).exists():
        return
    flagged = sorted({run.finding for run in runs if run.flagged})
    for run in runs:
        if run.flagged:
            alert_raise(study=study, finding=run.finding, run=run)
    item, _ = worklist_item_rank(study=study, flagged_findings=flagged)
    broadcast.worklist_item_changed(item_id=item.pk)  # AI state or deadline
