"""REST API: the worklist, study detail (audited), reading actions, quarantine."""

from __future__ import annotations

from typing import Any

from django.http import FileResponse, Http404, HttpResponse, HttpResponseBase
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from inference.models import InferenceRun
from inference.pipeline import heat_overlay_png
from inference.selectors import maps_for_run
from triage import selectors
from triage.audit import (
    audit_location_denied,
    audit_record,
    audit_record_batched,
    audit_study_view,
    client_address,
)
from triage.reading import (
    ClaimConflict,
    worklist_item_claim,
    worklist_item_mark_read,
    worklist_item_release,
)
from triage.roles import Role, acting_user_id, roles_permission, user_has_role
from triage.serializers import StudyDetailSerializer, WorklistItemSerializer
from triage.visibility import study_visible_to
from worklist import storage
from worklist.dicom.identifiers import uid_is_valid
from worklist.models import Order, QuarantinedObject, Study, WorklistItem

IsRadiologist = roles_permission(Role.RADIOLOGIST, message="This requires the radiologist role.")


CanSeeWorklist = roles_permission(
    Role.RADIOLOGIST,
    Role.ADMINISTRATOR,
    message="The worklist is for radiologists and administrators.",
)


IsAdministrator = roles_permission(
    Role.ADMINISTRATOR, message="This requires the administrator role."
)


def _optional_bool(raw: str | None) -> bool | None:
    if raw is None or raw == "":
        return None
    if raw.lower() in {"1", "true", "yes", "ed"}:
        return True
    if raw.lower() in {"0", "false", "no", "other"}:
        return False
    raise serializers.ValidationError({"emergency": "expected true or false"})


@extend_schema(
    parameters=[
        OpenApiParameter("status", str, enum=[choice for choice in WorklistItem.Status.values]),
        OpenApiParameter("modality", str),
        OpenApiParameter("location", str, enum=["ed", "other"], description="patient location"),
    ]
)
class WorklistView(generics.ListAPIView):
    """The reading worklist, earliest read-by deadline first."""

    serializer_class = WorklistItemSerializer
    permission_classes = [CanSeeWorklist]

    def get_queryset(self) -> Any:
        params = self.request.query_params
        status_filter = params.get("status")
        if status_filter and status_filter not in WorklistItem.Status.values:
            raise serializers.ValidationError({"status": f"one of {WorklistItem.Status.values}"})
        location = params.get("location")
        if location and location not in ("ed", "other"):
            raise serializers.ValidationError({"location": "ed or other"})
        return selectors.worklist_items(
            status=status_filter,
            modality=params.get("modality"),
            emergency=_optional_bool(location),
        )


class AwaitingOrderSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    class Meta:
        model = Order
        fields = ["accession_number", "procedure", "priority", "patient_location", "reason",
                  "ordered_at"]  # fmt: skip


class AwaitingImagesView(generics.ListAPIView):  # type: ignore[type-arg]
    """Orders from the RIS whose images have not arrived yet ("awaiting images")."""

    serializer_class = AwaitingOrderSerializer
    permission_classes = [CanSeeWorklist]

    def get_queryset(self) -> Any:
        return selectors.orders_awaiting_images()


class StudyDetailView(APIView):
    permission_classes = [CanSeeWorklist]

    @extend_schema(responses=StudyDetailSerializer)
    def get(self, request: Request, study_id: int) -> Response:
        try:
            study = selectors.study_detail(study_id=study_id)
        except Study.DoesNotExist:
            return Response({"detail": "No such study."}, status=status.HTTP_404_NOT_FOUND)
        audit_study_view(request=request._request, study_id=study.pk, channel="api")
        return Response(StudyDetailSerializer(study).data)


class _ReadingAction(APIView):
    permission_classes = [IsRadiologist]
    action_name = ""

    def perform(self, *, item_id: int, user_id: int) -> WorklistItem:
        raise NotImplementedError

    @extend_schema(request=None, responses=WorklistItemSerializer)
    def post(self, request: Request, item_id: int) -> Response:
        get_object_or_404(WorklistItem, pk=item_id)
        try:
            item = self.perform(item_id=item_id, user_id=acting_user_id(request.user))
        except ClaimConflict as conflict:
            return Response({"detail": str(conflict)}, status=status.HTTP_409_CONFLICT)
        item = selectors.worklist_items().get(pk=item.pk)
        return Response(WorklistItemSerializer(item).data)


class ClaimView(_ReadingAction):
    def perform(self, *, item_id: int, user_id: int) -> WorklistItem:
        return worklist_item_claim(item_id=item_id, user_id=user_id, channel="api")


class ReleaseView(_ReadingAction):
    def perform(self, *, item_id: int, user_id: int) -> WorklistItem:
        return worklist_item_release(item_id=item_id, user_id=user_id, channel="api")


class MarkReadView(_ReadingAction):
    def perform(self, *, item_id: int, user_id: int) -> WorklistItem:
        return worklist_item_mark_read(item_id=item_id, user_id=user_id, channel="api")


class QuarantineSerializer(serializers.ModelSerializer):
    class Meta:
        model = QuarantinedObject
        fields = [
            "id",
            "received_at",
            "source",
            "calling_ae_title",
            "peer_address",
            "reason",
            "status_code",
            "sop_instance_uid",
            "relative_path",
            "size_bytes",
        ]


class QuarantineView(generics.ListAPIView):
    """Objects refused at ingest, newest first, for administrators to inspect."""

    serializer_class = QuarantineSerializer
    permission_classes = [IsAdministrator]
    queryset = QuarantinedObject.objects.order_by("-received_at", "-id")


CanSeeImages = roles_permission(
    Role.RADIOLOGIST,
    Role.ADMINISTRATOR,
    Role.CLINICIAN,
    message="Images are for radiologists, administrators and (their locations') clinicians.",
)


def _visible_run(request: Request, *, study_id: int, run_id: int) -> InferenceRun:
    """The run, when its study is one the user may look at (404 otherwise: a clinician is not
    told that another location's study exists)."""
    run = get_object_or_404(
        InferenceRun.objects.select_related("study"), pk=run_id, study_id=study_id
    )
    if not study_visible_to(request.user, study=run.study):
        audit_location_denied(request=request._request, study_id=study_id, channel="api")
        raise Http404("No such study among your locations'.")
    if run.shadow and not user_has_role(request.user, Role.ADMINISTRATOR):
        raise Http404("No such result.")  # a shadow run is for administrators only
    return run


class HeatmapView(APIView):
    """The key image with the model's heat map (PNG). Audited as a view of the study."""

    permission_classes = [CanSeeImages]

    @extend_schema(responses={(200, "image/png"): bytes})
    def get(self, request: Request, study_id: int, run_id: int) -> HttpResponseBase:
        run = _visible_run(request, study_id=study_id, run_id=run_id)
        if not run.heatmap_path:
            return HttpResponse(status=404)
        audit_record(
            action="study.heatmap",
            actor_id=acting_user_id(request.user),
            channel="api",
            study_id=study_id,
            remote_addr=client_address(request._request),
            detail={"run": run.pk},
        )
        return FileResponse(
            open(storage.storage_path(run.heatmap_path), "rb"),  # noqa: SIM115 - closed by Django
            content_type="image/png",
        )


class SliceHeatmapView(APIView):
    """One slice's heat map as a transparent overlay (RGBA PNG) for the preview: the run's
    activation map for that slice, scaled to the series' range. One audit record stands for a
    user's heat maps of one run for AUDIT_BATCH_SECONDS."""

    permission_classes = [CanSeeImages]

    @extend_schema(responses={(200, "image/png"): bytes, 404: None})
    def get(
        self, request: Request, study_id: int, run_id: int, instance_uid: str
    ) -> HttpResponseBase:
        run = _visible_run(request, study_id=study_id, run_id=run_id)
        order = [uid for uid, _ in run.slice_scores]
        if not uid_is_valid(instance_uid) or instance_uid not in order:
            return Response({"detail": "That instance is not a slice of this run."}, status=404)
        try:
            maps = maps_for_run(run)
        except FileNotFoundError:
            return Response({"detail": "This run kept no per-slice maps."}, status=404)
        if maps.shape[0] != len(order):
            return Response({"detail": "This run's maps do not match its slices."}, status=404)
        audit_record_batched(
            action="study.heatmap",
            actor_id=acting_user_id(request.user),
            channel="api",
            study_id=study_id,
            scope=f"run-{run.pk}",
            remote_addr=client_address(request._request),
        )
        png = heat_overlay_png(
            maps[order.index(instance_uid)], low=float(maps.min()), high=float(maps.max())
        )
        response = HttpResponse(png, content_type="image/png")
        response["Cache-Control"] = "private, max-age=600"
        return response
