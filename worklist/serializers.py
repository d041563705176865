"""API shapes. Patient identity appears only in the audited study detail."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework import serializers

from worklist.models import Series, Study, WorklistItem


def viewer_url(study: Study) -> str:
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
        return []  # AI results join here with the inference work

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
    instance_count = serializers.IntegerField(source="instance_total")
    series = SeriesSerializer(many=True)
    worklist_item = WorklistItemSerializer(allow_null=True)

    class Meta:
        model = Study
        fields = [
            "id",
            "study_instance_uid",
            "accession_number",
            "patient_name",
            "patient_id",
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
            "instance_count",
            "series",
            "worklist_item",
        ]
        read_only_fields = fields
