"""DICOMweb STOW-RS: POST /dicomweb/studies[/{StudyInstanceUID}] (PS3.18 section 10.5)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.utils.http import parse_header_parameters
from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.request import Request
from rest_framework.views import APIView

from triage.arrivals import study_ready_now
from triage.roles import Role, roles_permission
from worklist.dicom import status
from worklist.dicom.identifiers import uid_is_valid
from worklist.dicom.multipart import MalformedMultipart, RequestTooLarge, multipart_parts
from worklist.models import Instance
from worklist.services.ingest import IngestResult, instance_ingest

DICOM_JSON = "application/dicom+json"


CanStore = roles_permission(
    Role.INTEGRATION,
    Role.ADMINISTRATOR,
    message="Storing studies requires the integration or administrator role.",
)


def _problem(status_code: int, reason: str) -> JsonResponse:
    return JsonResponse({"detail": reason}, status=status_code)


def _sop_item(result: IngestResult) -> dict[str, Any]:
    item: dict[str, Any] = {}
    if result.sop_class_uid:
        item["00081150"] = {"vr": "UI", "Value": [result.sop_class_uid]}
    if result.sop_instance_uid:
        item["00081155"] = {"vr": "UI", "Value": [result.sop_instance_uid]}
    return item


def stow_response_body(results: list[IngestResult]) -> dict[str, Any]:
    body: dict[str, Any] = {}
    stored = [result for result in results if result.stored]
    failed = [result for result in results if not result.stored]
    if stored:
        body["00081199"] = {"vr": "SQ", "Value": [_sop_item(result) for result in stored]}
    if failed:
        body["00081198"] = {
            "vr": "SQ",
            "Value": [
                {**_sop_item(result), "00081197": {"vr": "US", "Value": [result.status]}}
                for result in failed
            ],
        }
    return body


class StreamedSessionAuthentication(SessionAuthentication):
    """Session sign-in with its CSRF check made on Django's request: this view has no parsers
    (the body streams), and the check reading the DRF request's POST would answer 415."""

    def enforce_csrf(self, request: Request) -> None:
        super().enforce_csrf(request._request)  # type: ignore[arg-type]  # what CSRFCheck reads


class StowView(APIView):
    authentication_classes = [TokenAuthentication, StreamedSessionAuthentication]
    permission_classes = [CanStore]
    parser_classes: list[Any] = []  # the body is read as a stream below, never parsed whole

    def post(self, request: Request, study_instance_uid: str | None = None) -> JsonResponse:
        django_request: HttpRequest = request._request
        if study_instance_uid is not None and not uid_is_valid(study_instance_uid):
            return _problem(
                400, "The StudyInstanceUID in the URL is not a UID (digits and dots, at most 64)."
            )
        content_type = django_request.META.get("CONTENT_TYPE", "")
        media_type, params = parse_header_parameters(content_type)
        media_type = media_type.lower()
        if media_type != "multipart/related":
            return _problem(415, 'STOW-RS expects multipart/related; type="application/dicom".')
        if params.get("type", "application/dicom").lower() != "application/dicom":
            return _problem(415, "Only application/dicom parts are accepted.")
        boundary = params.get("boundary")
        if not boundary:
            return _problem(400, "The multipart/related Content-Type has no boundary.")
        declared = django_request.META.get("CONTENT_LENGTH")
        if declared and declared.isdigit() and int(declared) > settings.STOW_MAX_REQUEST_BYTES:
            return _problem(413, f"Request exceeds {settings.STOW_MAX_REQUEST_BYTES} bytes.")

        results: list[IngestResult] = []
        touched_studies: set[int] = set()
        try:
            for part in multipart_parts(
                django_request,  # type: ignore[arg-type]
                boundary=boundary,
                max_request_bytes=settings.STOW_MAX_REQUEST_BYTES,
                max_part_bytes=settings.STOW_MAX_PART_BYTES,
            ):
                if part.path is None:
                    results.append(
                        IngestResult(status=status.OUT_OF_RESOURCES, reason="part too large")
                    )
                    continue
                if part.content_type not in ("application/dicom", ""):
                    part.path.unlink(missing_ok=True)
                    results.append(
                        IngestResult(
                            status=status.CANNOT_UNDERSTAND,
                            reason=f"unsupported part type {part.content_type}",
                        )
                    )
                    continue
                result = instance_ingest(
                    staged_path=part.path,
                    source=Instance.Source.STOW,
                    calling_ae_title="",
                    peer_address=django_request.META.get("REMOTE_ADDR", ""),
                    expected_study_instance_uid=study_instance_uid,
                )
                results.append(result)
                if result.stored and result.study_id is not None:
                    touched_studies.add(result.study_id)
        except RequestTooLarge:
            return _problem(413, f"Request exceeds {settings.STOW_MAX_REQUEST_BYTES} bytes.")
        except MalformedMultipart as exc:
            if not results:
                return _problem(400, f"Malformed multipart body: {exc}")
            results.append(IngestResult(status=status.CANNOT_UNDERSTAND, reason=str(exc)))

        if not results:
            return _problem(400, "The request carried no DICOM instances.")
        # One STOW-RS request is taken as the whole study: no quiet period to wait for.
        for study_id in sorted(touched_studies):
            study_ready_now(study_id=study_id)

        stored = sum(result.stored for result in results)
        http_status = 200 if stored == len(results) else (202 if stored else 409)
        return JsonResponse(
            stow_response_body(results), status=http_status, content_type=DICOM_JSON
        )
