"""Reads of the studies held here, as the plain values routing decides on."""

from __future__ import annotations

import numpy as np
from django.db.models import Count

from inference import pipeline
from inference.models import InferenceRun
from inference.routing import SeriesDescriptor, StudyDescriptor
from worklist import storage
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


def activation_maps_path(run: InferenceRun) -> str:
    """Where a run's per-slice activation maps are kept (beside its key-image heat map); the
    preview draws each slice's heat map from them."""
    return storage.result_relative_path(
        study_uid=run.study.study_instance_uid, run_id=run.pk, suffix=".maps.npy"
    )


def maps_for_run(run: InferenceRun) -> np.ndarray:
    """The run's activation maps (n, h, w), in its slice_scores order; FileNotFoundError for a
    run that kept none (heat maps off, or made before they were kept)."""
    stored = storage.storage_path(activation_maps_path(run))
    return pipeline.activation_maps_load(stored.read_bytes())
