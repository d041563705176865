"""API shapes. Patient identity appears only in the audited study detail."""

from __future__ import annotations

from datetime import date
from typing import Any

from django.conf import settings
from django.urls import reverse
from django.utils import timezone
from rest_framework import serializers

from inference.models import InferenceRun
from inference.registry import DEMONSTRATION_NOTICE
from triage.findings import finding_spec
from worklist.models import Series, Study, WorklistItem


def patient_summary(patient: Any, *, today: date | None = None) -> str:
    """ "Family, Given · MRN · 54 y · F" for an authorised page (never for a log line)."""
    family, _, rest = (patient.name or "").partition("^")
    given = rest.split("^")[0] if rest else ""
    name = ", ".join(part for part in (family, given) if part) or "(no name)"
    parts = [name, patient.patient_id or "(no MRN)"]
    born = patient.birth_date or ""
    if len(born) == 8 and born.isdigit():
        today = today or timezone.now().date()
        year, month, day = int(born[:4]), int(born[4:6]), int(born[6:])
        parts.append(f"{today.year - year - ((today.month, today.day) < (month, day))} y")
    if patient.sex:
        parts.append(patient.sex)
    return " · ".join(parts)


def findings_of(study: Study) -> list[dict[str, Any]]:
    """AI results of the study's latest routing (prefetched as `current_runs`)."""
    runs = getattr(study, "current_runs", None)
    if runs is None:
        runs = list(
            InferenceRun.objects.filter(study=study, current=True).order_by("finding", "model_name")
        )
    return [
        {
            "finding": run.finding,
            "label": finding_spec(run.finding).label,
            "state": run.state,
            "score": run.score,
            "threshold": run.threshold,
            "flagged": run.flagged,
            "model": run.model_name,
            "version": run.model_version,
            "demonstration": run.demonstration,
            "notice": DEMONSTRATION_NOTICE if run.demonstration else "",
            "key_instance_uid": run.key_instance.sop_instance_uid if run.key_instance else None,
            "heatmap_url": reverse("worklist-api:api-heatmap", args=[study.pk, run.pk])
            if run.heatmap_path
            else None,
            "error": run.error,
        }
        for run in runs
    ]


def viewer_url(study: Study) -> str:
    """The site's viewer when PACS_VIEWER_URL_TEMPLATE is set, else the built-in preview."""
    if not settings.PACS_VIEWER_URL_TEMPLATE:
        return reverse("worklist:preview", args=[study.pk])
    return str(settings.PACS_VIEWER_URL_TEMPLATE).format(
        study_instance_uid=study.study_instance_uid, accession_number=study.accession_number
    )


class WorklistItemSerializer(serializers.ModelSerializer):
    study_id = serializers.IntegerField(source="study.pk", read_only=True)
    study_instance_uid = serializers.CharField(source="study.study_instance_uid")
    accession_number = serializers.CharField(source="study.accession_number")
    modality = serializers.CharField(source="study.modality")
    body_part = serializers.CharField(source="study.body_part")
    description = serializers.CharField(source="study.description")
    order_priority = serializers.CharField(source="study.order_priority")
    patient_location = serializers.CharField(source="study.patient_location")
    is_emergency = serializers.BooleanField(source="study.is_emergency")
    ai_state = serializers.CharField(source="study.ai_state")
    ai_detail = serializers.CharField(source="study.ai_detail")
    claimed_by = serializers.SerializerMethodField()
    findings = serializers.SerializerMethodField()
    viewer_url = serializers.SerializerMethodField()

    class Meta:
        model = WorklistItem
        fields = [
            "id",
            "study_id",
            "study_instance_uid",
            "accession_number",
            "modality",
            "body_part",
            "description",
            "order_priority",
            "patient_location",
            "is_emergency",
            "status",
            "claimed_by",
            "claimed_at",
            "read_at",
            "ai_state",
            "ai_detail",
            "received_at",
            "read_by",
            "findings",
            "viewer_url",
        ]
        read_only_fields = fields

    def get_claimed_by(self, item: WorklistItem) -> str | None:
        return item.claimed_by.get_username() if item.claimed_by else None

    def get_findings(self, item: WorklistItem) -> list[dict[str, Any]]:
        return findings_of(item.study)

    def get_viewer_url(self, item: WorklistItem) -> str:
        return viewer_url(item.study)


class SeriesSerializer(serializers.ModelSerializer):
    instance_count = serializers.SerializerMethodField()

    class Meta:
        model = Series
        fields = [
            "series_instance_uid",
            "modality",
            "body_part",
            "description",
            "series_number",
            "slice_thickness",
            "instance_count",
        ]

    def get_instance_count(self, series: Series) -> int:
        return series.instances.count()


class StudyDetailSerializer(serializers.ModelSerializer):
    patient_name = serializers.CharField(source="patient.name")
    patient_id = serializers.CharField(source="patient.patient_id")
    patient_summary = serializers.SerializerMethodField()
    instance_count = serializers.IntegerField(source="instance_total")
    series = SeriesSerializer(many=True)
    findings = serializers.SerializerMethodField()
    worklist_item = WorklistItemSerializer(allow_null=True)

    class Meta:
        model = Study
        fields = [
            "id",
            "study_instance_uid",
            "accession_number",
            "patient_name",
            "patient_id",
            "patient_summary",
            "modality",
            "body_part",
            "description",
            "order_priority",
            "patient_location",
            "is_emergency",
            "calling_ae_title",
            "state",
            "first_received_at",
            "last_instance_at",
            "ready_at",
            "ai_state",
            "ai_detail",
            "applicable_findings",
            "findings",
            "instance_count",
            "series",
            "worklist_item",
        ]
        read_only_fields = fields

    def get_findings(self, study: Study) -> list[dict[str, Any]]:
        return findings_of(study)

    def get_patient_summary(self, study: Study) -> str:
        return patient_summary(study.patient)
