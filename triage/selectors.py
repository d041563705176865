"""Reading-room reads that more than one caller needs: the worklist and a study, with the
current AI runs of each."""

from __future__ import annotations

import numpy as np
from django.db.models import Count, Prefetch, QuerySet

from inference.models import InferenceRun
from triage.models import ValidationRun
from worklist.models import Order, Study, WorklistItem


def _current_runs(lookup: str) -> Prefetch:  # type: ignore[type-arg]
    """The study's latest routing, as `current_runs` on each study."""
    return Prefetch(
        lookup,
        queryset=InferenceRun.objects.filter(current=True).order_by("finding", "model_name"),
        to_attr="current_runs",
    )


def orders_awaiting_images() -> QuerySet[Order]:
    """Orders the RIS sent whose images have not arrived: what the reading room has coming."""
    return Order.objects.filter(study__isnull=True, status=Order.Status.ORDERED).order_by(
        "ordered_at", "id"
    )


def worklist_items(
    *, status: str | None = None, modality: str | None = None, emergency: bool | None = None
) -> QuerySet[WorklistItem]:
    """The worklist in deadline order (an index scan on read_by); never the demo's simulated
    history."""
    items = (
        WorklistItem.objects.filter(study__simulated=False)
        .select_related("study", "claimed_by")
        .prefetch_related(_current_runs("study__inference_runs"))
        .order_by("read_by", "id")
    )
    if status:
        items = items.filter(status=status)
    if modality:
        items = items.filter(study__modality=modality.upper())
    if emergency is not None:
        items = items.filter(study__is_emergency=emergency)
    return items


def study_detail(*, study_id: int) -> Study:
    """One study for its page and the API (never the demo's simulated history)."""
    return (
        Study.objects.filter(simulated=False)
        .select_related("patient", "worklist_item", "worklist_item__claimed_by")
        .prefetch_related("series", _current_runs("inference_runs"))
        .annotate(instance_total=Count("series__instances"))
        .get(pk=study_id)
    )


def validation_arrays(run: ValidationRun) -> tuple[np.ndarray, np.ndarray]:
    """A validation run's scores and labels (read by the explorer and the drift check; reading
    them needs none of the scoring chain)."""
    rows = list(run.results.values_list("score", "label"))
    scores = np.asarray([score for score, _ in rows], dtype=np.float64)
    labels = np.asarray([label for _, label in rows], dtype=bool)
    return scores, labels
