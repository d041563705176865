"""Reads of the studies held here, as the plain values routing decides on."""

from __future__ import annotations

from django.db.models import Count

from inference.routing import SeriesDescriptor, StudyDescriptor
from worklist.models import Study


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
