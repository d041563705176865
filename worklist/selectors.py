"""Reads that more than one caller needs."""

from __future__ import annotations

from django.db.models import Count, Prefetch, QuerySet

from inference.models import InferenceRun
from inference.routing import SeriesDescriptor, StudyDescriptor
from worklist.models import Study, WorklistItem


def study_descriptor(study: Study) -> StudyDescriptor:
    series = study.series.annotate(instance_total=Count("instances")).order_by("series_number")
    return StudyDescriptor(
        modality=study.modality,
        body_part=study.body_part,
        description=study.description,
        series=[
            SeriesDescriptor(
                uid=entry.series_instance_uid,
                modality=entry.modality,
                body_part=entry.body_part,
                description=entry.description,
                instance_count=entry.instance_total,
                slice_thickness=entry.slice_thickness,
                contrast_agent=entry.contrast_agent,
            )
            for entry in series
        ],
    )


def _current_runs(lookup: str) -> Prefetch:  # type: ignore[type-arg]
    """The study's latest routing, as `current_runs` on each study."""
    return Prefetch(
        lookup,
        queryset=InferenceRun.objects.filter(current=True).order_by("finding", "model_name"),
        to_attr="current_runs",
    )


def worklist_items(
    *, status: str | None = None, modality: str | None = None, emergency: bool | None = None
) -> QuerySet[WorklistItem]:
    """The worklist in deadline order (an index scan on read_by)."""
    items = (
        WorklistItem.objects.select_related("study", "claimed_by")
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
    return (
        Study.objects.select_related("patient", "worklist_item", "worklist_item__claimed_by")
        .prefetch_related("series", _current_runs("inference_runs"))
        .annotate(instance_total=Count("series__instances"))
        .get(pk=study_id)
    )
