"""DICOMweb read side (PS3.18): QIDO-RS search and WADO-RS retrieve of the instances held here.

QIDO-RS answers DICOM JSON from the database (no file is opened); WADO-RS streams the stored
files as multipart/related; type="application/dicom" in pieces of at most 1 MiB (never a whole
study in memory), with its exact Content-Length, and `metadata` as DICOM JSON read from each
file's header. Who may read: radiologists and administrators any study; clinicians the studies
of their locations; integration accounts when DICOMWEB_INTEGRATION_READ is on. Every query and
every retrieve is one audit record (a series retrieve is one record, not one per instance).
Every value a client sends is checked before it reaches a query: an unknown key, a bad date or a
bad UID is a 400 with the reason.
"""

from __future__ import annotations

import asyncio
import os
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection as db_connection
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView

from triage.audit import audit_record, audit_record_batched, client_address
from triage.roles import Role, user_has_role
from triage.visibility import studies_visible_to
from worklist import storage
from worklist.dicom.identifiers import uid_is_valid
from worklist.models import Instance, Series, Study

DICOM_JSON = "application/dicom+json"
CHUNK = 1024 * 1024
MAX_LIMIT = 1000
NO_INSTANCES = "No such series or instance in this study."
STRUCTURED_REPORTS = "1.2.840.10008.5.1.4.1.1.88."
_DATE = re.compile(r"[0-9]{8}")
# ASCII digits only: str.isdigit() also takes "²", which int() then refuses.
_DIGITS = re.compile(r"[0-9]{1,9}")


class BadQuery(ValueError):
    """A 400, with the reason."""


class CanReadStudies(BasePermission):
    message = "Reading studies requires the radiologist, clinician or administrator role."

    def has_permission(self, request: Any, view: Any) -> bool:
        if user_has_role(request.user, Role.RADIOLOGIST, Role.ADMINISTRATOR, Role.CLINICIAN):
            return True
        return bool(settings.DICOMWEB_INTEGRATION_READ) and user_has_role(
            request.user, Role.INTEGRATION
        )


def studies_readable_by(user: Any) -> QuerySet[Study]:
    """The studies `user` may read: integration accounts (when allowed at all) every study,
    everyone else as `studies_visible_to` says."""
    if user_has_role(user, Role.INTEGRATION):
        return Study.objects.filter(simulated=False)
    return studies_visible_to(user)


# ------------------------------------------------------------------------------ DICOM JSON


def _attribute(vr: str, *values: Any) -> dict[str, Any]:
    present = [value for value in values if value not in ("", None)]
    return {"vr": vr, "Value": present} if present else {"vr": vr}


def _person(name: str) -> dict[str, Any]:
    return {"vr": "PN", "Value": [{"Alphabetic": name}]} if name else {"vr": "PN"}


def _base(request: HttpRequest) -> str:
    return request.build_absolute_uri("/dicomweb")


def study_json(study: Study, base: str) -> dict[str, Any]:
    patient = study.patient
    modalities = sorted({m for m in getattr(study, "modalities", []) if m}) or [study.modality]
    return {
        "00080005": _attribute("CS", "ISO_IR 192"),
        "00080020": _attribute("DA", study.study_date),
        "00080030": _attribute("TM", study.study_time),
        "00080050": _attribute("SH", study.accession_number),
        "00080061": _attribute("CS", *modalities),
        "00080090": {"vr": "PN"},
        "00081030": _attribute("LO", study.description),
        "00081190": _attribute("UR", f"{base}/studies/{study.study_instance_uid}"),
        "00100010": _person(patient.name),
        "00100020": _attribute("LO", patient.patient_id),
        "00100030": _attribute("DA", patient.birth_date),
        "00100040": _attribute("CS", patient.sex),
        "0020000D": _attribute("UI", study.study_instance_uid),
        "00200010": {"vr": "SH"},
        "00201206": _attribute("IS", getattr(study, "series_count", None)),
        "00201208": _attribute("IS", getattr(study, "instance_count", None)),
    }


def series_json(series: Series, base: str) -> dict[str, Any]:
    study_uid = series.study.study_instance_uid
    return {
        "00080005": _attribute("CS", "ISO_IR 192"),
        "00080060": _attribute("CS", series.modality),
        "0008103E": _attribute("LO", series.description),
        "00081190": _attribute(
            "UR", f"{base}/studies/{study_uid}/series/{series.series_instance_uid}"
        ),
        "0020000D": _attribute("UI", study_uid),
        "0020000E": _attribute("UI", series.series_instance_uid),
        "00180015": _attribute("CS", series.body_part),
        "00180050": _attribute(
            "DS", f"{series.slice_thickness:g}" if series.slice_thickness else None
        ),
        "00200011": _attribute("IS", series.series_number),
        "00201209": _attribute("IS", getattr(series, "instance_count", None)),
    }


def instance_json(instance: Instance, base: str) -> dict[str, Any]:
    series = instance.series
    study_uid = series.study.study_instance_uid
    return {
        "00080016": _attribute("UI", instance.sop_class_uid),
        "00080018": _attribute("UI", instance.sop_instance_uid),
        "00081190": _attribute(
            "UR",
            f"{base}/studies/{study_uid}/series/{series.series_instance_uid}"
            f"/instances/{instance.sop_instance_uid}",
        ),
        "00083002": _attribute("UI", instance.transfer_syntax_uid),
        "0020000D": _attribute("UI", study_uid),
        "0020000E": _attribute("UI", series.series_instance_uid),
        "00200013": _attribute("IS", instance.instance_number),
    }


# --------------------------------------------------------------------------- QIDO matching

# Matching keys per level: keyword and tag -> how they filter (the part of the ORM path under
# the level's model). Values are checked by the filter function.
_KEYWORD_TAGS = {
    "PatientID": "00100020", "AccessionNumber": "00080050", "StudyDate": "00080020",
    "ModalitiesInStudy": "00080061", "StudyInstanceUID": "0020000D",
    "SeriesInstanceUID": "0020000E", "Modality": "00080060", "SOPInstanceUID": "00080018",
    "SOPClassUID": "00080016",
}  # fmt: skip
_TAG_KEYWORDS = {tag: keyword for keyword, tag in _KEYWORD_TAGS.items()}
_CONTROL = {"limit", "offset", "includefield", "fuzzymatching"}


def _uids(key: str, value: str) -> list[str]:
    uids = [part.strip() for part in value.split(",") if part.strip()]
    if not uids or not all(uid_is_valid(uid) for uid in uids):
        raise BadQuery(f"{key} must be one or more UIDs (digits and dots, at most 64)")
    return uids


def _date_range(key: str, value: str) -> tuple[str | None, str | None]:
    low, dash, high = value.partition("-")
    if not dash:
        high = low
    if (
        (low and not _DATE.fullmatch(low))
        or (high and not _DATE.fullmatch(high))
        or not (low or high)
    ):
        raise BadQuery(f"{key} must be a date YYYYMMDD or a range YYYYMMDD-YYYYMMDD")
    return low or None, high or None


def _text_value(key: str, value: str) -> str:
    if len(value) > 64 or any(not ch.isprintable() for ch in value) or "\\" in value:
        raise BadQuery(f"{key} must be at most 64 printable characters")
    return value


def _include_fields(value: str) -> list[str]:
    """`includefield`: "all", or attribute keywords or tags (comma-separated), checked against
    the data dictionary. Every attribute held in the database for the level is returned
    whatever is asked (the required ones and the rest we hold); the others are in the
    instances' headers, served by `.../metadata`."""
    from pydicom.datadict import dictionary_has_tag, tag_for_keyword

    fields = [part.strip() for part in value.split(",") if part.strip()]
    for field in fields:
        if field == "all":
            continue
        is_tag = re.fullmatch(r"[0-9A-Fa-f]{8}", field) is not None
        if not (
            tag_for_keyword(field) is not None or (is_tag and dictionary_has_tag(int(field, 16)))
        ):
            raise BadQuery(
                f"includefield {field[:64]!r} is not an attribute keyword or tag (or 'all')"
            )
    return fields


def _matching(
    params: Any, *, allowed: dict[str, str], level_uid_paths: dict[str, str]
) -> tuple[Q, int, int]:
    """The filter, limit and offset from the query string; BadQuery for anything unknown."""
    condition = Q()
    limit, offset = MAX_LIMIT, 0
    for raw_key in params:
        values = params.getlist(raw_key)
        key = _TAG_KEYWORDS.get(raw_key.upper(), raw_key)
        value = values[-1]
        if key in _CONTROL:
            if key in ("limit", "offset"):
                if not _DIGITS.fullmatch(value):
                    raise BadQuery(f"{key} must be a whole number")
                if key == "limit":
                    limit = min(int(value), MAX_LIMIT)
                else:
                    offset = int(value)
            elif key == "fuzzymatching" and value not in ("true", "false"):
                raise BadQuery("fuzzymatching must be true or false")
            elif key == "includefield":
                for entry in values:
                    _include_fields(entry)
            continue
        if key not in allowed and key not in level_uid_paths:
            raise BadQuery(
                f"{raw_key} is not a matching key here (supported: "
                f"{', '.join(sorted({*allowed, *level_uid_paths}))}, limit, offset, includefield)"
            )
        path = allowed.get(key) or level_uid_paths[key]
        if key.endswith("UID"):
            condition &= Q(**{f"{path}__in": _uids(key, value)})
        elif key == "StudyDate":
            low, high = _date_range(key, value)
            if low:
                condition &= Q(**{f"{path}__gte": low})
            if high:
                condition &= Q(**{f"{path}__lte": high})
            condition &= ~Q(**{path: ""})
        elif key == "ModalitiesInStudy":  # a subquery: no join, so no duplicate studies
            condition &= Q(
                pk__in=Series.objects.filter(modality=_text_value(key, value).upper()).values(
                    "study_id"
                )
            )
        else:
            text = _text_value(key, value)
            if "*" in text or "?" in text:  # wildcard matching (PS3.4 C.2.2.2.4)
                pattern = "^" + re.escape(text).replace(r"\*", ".*").replace(r"\?", ".") + "$"
                condition &= Q(**{f"{path}__regex": pattern})
            else:
                condition &= Q(**{path: text})
    return condition, limit, offset


def _problem(status_code: int, reason: str) -> JsonResponse:
    return JsonResponse({"detail": reason}, status=status_code)


def _audit(request: Request, action: str, *, study_id: int | None, detail: dict[str, Any]) -> None:
    audit_record(
        action=action,
        actor_id=request.user.pk,
        channel="dicomweb",
        study_id=study_id,
        remote_addr=client_address(request._request),
        detail=detail,
    )


def _audit_batched(request: Request, action: str, *, study: Study, series_uid: str) -> None:
    """Frames are asked for one at a time (hundreds as a series is scrolled): one record
    stands for a user's frames of one series for AUDIT_BATCH_SECONDS."""
    audit_record_batched(
        action=action,
        actor_id=request.user.pk,
        channel="dicomweb",
        study_id=study.pk,
        scope=series_uid,
        remote_addr=client_address(request._request),
    )


class DicomwebRead(APIView):
    authentication_classes = [TokenAuthentication, SessionAuthentication]
    permission_classes = [CanReadStudies]

    def _study(self, request: Request, study_uid: str) -> Study:
        if not uid_is_valid(study_uid):
            raise BadQuery("the StudyInstanceUID in the URL is not a UID")
        study = studies_readable_by(request.user).filter(study_instance_uid=study_uid).first()
        if study is None:
            raise LookupError("No such study here (or not one of your locations').")
        return study

    def perform_content_negotiation(self, request: Request, force: bool = False) -> Any:
        # The views answer DICOM JSON, multipart or images themselves, by the DICOMweb rules;
        # REST framework's renderers only shape its own errors.
        return super().perform_content_negotiation(request, force=True)

    def handle_exception(self, exc: Exception) -> Any:
        if isinstance(exc, BadQuery):
            return _problem(400, str(exc))
        if isinstance(exc, LookupError):
            return _problem(404, str(exc))
        return super().handle_exception(exc)


def _json(items: list[dict[str, Any]]) -> HttpResponse:
    if not items:
        return HttpResponse(status=204)  # PS3.18 10.6.3.2: no match
    return JsonResponse(items, safe=False, content_type=DICOM_JSON)


DICOM_JSON_LIST = {"type": "array", "items": {"type": "object"}}
BINARY = OpenApiTypes.BINARY
_SEARCH = {(200, DICOM_JSON): DICOM_JSON_LIST, 204: None}
_RETRIEVE = {(200, "multipart/related"): BINARY}


class QidoStudies(DicomwebRead):
    @extend_schema(responses=_SEARCH)
    def get(self, request: Request) -> HttpResponse:
        condition, limit, offset = _matching(
            request.query_params,
            allowed={
                "PatientID": "patient__patient_id",
                "AccessionNumber": "accession_number",
                "StudyDate": "study_date",
                "ModalitiesInStudy": "series__modality",  # matched by a subquery below
            },
            level_uid_paths={"StudyInstanceUID": "study_instance_uid"},
        )
        # The page first (ordered ids, an index scan), then its rows and counts: counting
        # every match before the limit is what made a date range slow.
        page = list(
            studies_readable_by(request.user)
            .filter(condition)
            .order_by("-first_received_at", "pk")
            .values_list("pk", flat=True)[offset : offset + limit]
        )
        # Patients by their keys (a second query): joined, PostgreSQL hashed the whole patient
        # table for a page of fifty.
        studies = list(
            Study.objects.filter(pk__in=page)
            .prefetch_related("patient")
            .order_by("-first_received_at", "pk")
        )
        # Modalities and counts from one grouped query over the page's series.
        modalities: dict[int, set[str]] = {}
        series_count: dict[int, int] = {}
        instance_count: dict[int, int] = {}
        for study_id, modality, instances in (
            Series.objects.filter(study__in=page)
            .annotate(instance_total=Count("instances"))
            .values_list("study_id", "modality", "instance_total")
        ):
            modalities.setdefault(study_id, set()).add(modality)
            series_count[study_id] = series_count.get(study_id, 0) + 1
            instance_count[study_id] = instance_count.get(study_id, 0) + instances
        for study in studies:
            study.modalities = modalities.get(study.pk, set())  # type: ignore[attr-defined]
            study.series_count = series_count.get(study.pk, 0)  # type: ignore[attr-defined]
            study.instance_count = instance_count.get(study.pk, 0)  # type: ignore[attr-defined]
        _audit(request, "dicomweb.query", study_id=None, detail={"level": "study",
               "matches": len(studies)})  # fmt: skip
        base = _base(request._request)
        return _json([study_json(study, base) for study in studies])


class QidoSeries(DicomwebRead):
    @extend_schema(responses=_SEARCH)
    def get(self, request: Request, study_uid: str) -> HttpResponse:
        study = self._study(request, study_uid)
        condition, limit, offset = _matching(
            request.query_params,
            allowed={"Modality": "modality"},
            level_uid_paths={"SeriesInstanceUID": "series_instance_uid"},
        )
        series = list(
            Series.objects.filter(study=study)
            .filter(condition)
            .select_related("study")
            .annotate(instance_count=Count("instances"))
            .order_by("series_number", "pk")[offset : offset + limit]
        )
        _audit(request, "dicomweb.query", study_id=study.pk, detail={"level": "series",
               "matches": len(series)})  # fmt: skip
        base = _base(request._request)
        return _json([series_json(item, base) for item in series])


class QidoInstances(DicomwebRead):
    @extend_schema(responses=_SEARCH)
    def get(self, request: Request, study_uid: str, series_uid: str | None = None) -> HttpResponse:
        study = self._study(request, study_uid)
        scope = Q(series__study=study)
        if series_uid is not None:
            scope &= Q(series__series_instance_uid__in=_uids("SeriesInstanceUID", series_uid))
        condition, limit, offset = _matching(
            request.query_params,
            allowed={"SOPClassUID": "sop_class_uid"},
            level_uid_paths={
                "SOPInstanceUID": "sop_instance_uid",
                "SeriesInstanceUID": "series__series_instance_uid",
            },
        )
        instances = list(
            Instance.objects.filter(scope & condition)
            .select_related("series__study")
            .order_by("series__series_number", "instance_number", "pk")[offset : offset + limit]
        )
        _audit(request, "dicomweb.query", study_id=study.pk, detail={"level": "instance",
               "matches": len(instances)})  # fmt: skip
        base = _base(request._request)
        return _json([instance_json(item, base) for item in instances])


# ---------------------------------------------------------------------------------- WADO-RS


class Multipart:
    """The parts of a retrieve, framed as multipart/related, and the body's exact length (the
    stored files do not change once stored), so the server sends a Content-Length rather than
    chunked framing and a client can show progress."""

    def __init__(self, parts: list[tuple[Path, str]], boundary: str) -> None:
        self.files = [
            (
                path,
                path.stat().st_size,
                f"--{boundary}\r\nContent-Type: application/dicom; "
                f"transfer-syntax={transfer_syntax}\r\n\r\n".encode("ascii"),
            )
            for path, transfer_syntax in parts
        ]
        self.tail = f"--{boundary}--\r\n".encode("ascii")
        self.length = len(self.tail) + sum(len(head) + size + 2 for _, size, head in self.files)

    async def stream(self) -> AsyncIterator[bytes]:
        """The body in pieces of at most CHUNK bytes, so memory stays bounded whatever the
        study's size. Never blocks the event loop on the disk: what the page cache holds (a
        study just received, or one read before) is read on the loop, what it does not in a
        worker thread. Reading everything in threads, the hand-offs and the GIL between the
        threads held the rate at half Orthanc's (bench/dicomweb.py). An async iterator: under
        ASGI, Django would gather a synchronous one whole into memory first."""
        loop = asyncio.get_running_loop()
        between = b""
        for path, size, head in self.files:
            yield between + head
            between = b"\r\n"
            offset = 0
            while offset < size:
                want = min(CHUNK, size - offset)
                # Each read opens and closes its file: no descriptor is held across a yield,
                # so a client that leaves mid-retrieve leaves nothing open (Django drops the
                # iterator without closing it, and a garbage collection may be long in coming).
                data = _read_cached(path, want, offset)
                if data is None:  # on disk: read in a thread
                    data = await loop.run_in_executor(None, _read, path, want, offset)
                else:
                    # Back to the loop between pieces read on it: uvicorn's send() does not
                    # suspend while its buffer has room, nor at all once the client has gone,
                    # so without this a cached study would be read whole on the loop, other
                    # requests waiting, and Django could not stop it for a departed client.
                    await asyncio.sleep(0)
                if not data:
                    raise OSError(f"stored file shorter than when retrieve began: {path}")
                offset += len(data)
                yield data
        yield between + self.tail


def _read(path: Path, want: int, offset: int) -> bytes:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        return os.pread(descriptor, want, offset)
    finally:
        os.close(descriptor)


def _read_cached(path: Path, want: int, offset: int) -> bytes | None:
    """The `want` bytes at `offset` if the page cache holds them all, else None."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        return os.pread(descriptor, want, offset) if _cached(descriptor, want, offset) else None
    finally:
        os.close(descriptor)


_PROBE = memoryview(bytearray(64 * 1024))  # written over by every probe, never read
_NOWAIT = hasattr(os, "RWF_NOWAIT")  # Linux 4.14 and later; turned off where refused


def _cached(descriptor: int, want: int, offset: int) -> bool:
    """Whether the page cache holds all `want` bytes at `offset` (else: read them in a thread).
    Asked with a read that cannot block (RWF_NOWAIT) into one small buffer given over and over,
    so the answer costs a copy that stays in the CPU's cache; the real read follows at once."""
    global _NOWAIT
    if not _NOWAIT:
        return False
    try:
        probes = [_PROBE] * -(-want // len(_PROBE))
        return bool(os.preadv(descriptor, probes, offset, os.RWF_NOWAIT) >= want)
    except BlockingIOError:
        return False
    except OSError:  # a filesystem without non-blocking reads (EOPNOTSUPP)
        _NOWAIT = False
        return False


def _accepts_dicom(request: Request) -> bool:
    accept = request._request.META.get("HTTP_ACCEPT", "*/*").lower()
    return any(
        kind in accept for kind in ("multipart/related", "application/dicom", "*/*", "multipart/*")
    )


class WadoRetrieve(DicomwebRead):
    """Study, series or instance as stored: multipart/related; type="application/dicom"."""

    @extend_schema(responses=_RETRIEVE)
    def get(
        self,
        request: Request,
        study_uid: str,
        series_uid: str | None = None,
        instance_uid: str | None = None,
    ) -> HttpResponse | StreamingHttpResponse:
        study = self._study(request, study_uid)
        # Two columns, not models: building 200 instances and their series was a third of the
        # time before a series retrieve's first byte (bench/dicomweb.py).
        stored = list(
            self._instance_query(study, series_uid, instance_uid).values_list(
                "relative_path", "transfer_syntax_uid"
            )
        )
        if not stored:
            raise LookupError(NO_INSTANCES)
        if not _accepts_dicom(request):
            return _problem(406, 'Retrieve answers multipart/related; type="application/dicom".')
        level = "instance" if instance_uid else "series" if series_uid else "study"
        _audit(request, "dicomweb.retrieve", study_id=study.pk, detail={"level": level,
               "instances": len(stored)})  # fmt: skip
        boundary = uuid.uuid4().hex
        paths = storage.storage_paths([relative for relative, _ in stored])
        parts = [(path, syntax) for path, (_, syntax) in zip(paths, stored, strict=True)]
        body = Multipart(parts, boundary)
        response = StreamingHttpResponse(
            body.stream(),
            content_type=f'multipart/related; type="application/dicom"; boundary={boundary}',
        )
        response["Content-Length"] = str(body.length)
        # Streaming a study takes a while and needs no database: hand the connection back (to
        # the ASGI server's pool) now, not when the last byte has gone.
        if not db_connection.in_atomic_block:
            db_connection.close()
        return response

    def _instance_query(
        self, study: Study, series_uid: str | None, instance_uid: str | None
    ) -> QuerySet[Instance]:
        query = Instance.objects.filter(series__study=study)
        if series_uid is not None:
            query = query.filter(series__series_instance_uid__in=_uids("series", series_uid))
        if instance_uid is not None:
            query = query.filter(sop_instance_uid__in=_uids("instance", instance_uid))
        return query.order_by("series__series_number", "instance_number", "pk")

    def _instances(
        self, study: Study, series_uid: str | None, instance_uid: str | None
    ) -> list[Instance]:
        instances = list(
            self._instance_query(study, series_uid, instance_uid).select_related("series")
        )
        if not instances:
            raise LookupError(NO_INSTANCES)
        return instances


class WadoMetadata(WadoRetrieve):
    """The instances' headers as DICOM JSON; pixel data as a bulk data URI (the instance)."""

    @extend_schema(responses={(200, DICOM_JSON): DICOM_JSON_LIST})
    def get(  # type: ignore[override]
        self,
        request: Request,
        study_uid: str,
        series_uid: str | None = None,
        instance_uid: str | None = None,
    ) -> HttpResponse:
        import pydicom

        study = self._study(request, study_uid)
        instances = self._instances(study, series_uid, instance_uid)
        base = _base(request._request)
        items = []
        for instance in instances:
            ds = pydicom.dcmread(
                storage.storage_path(instance.relative_path), stop_before_pixels=True
            )
            item = ds.to_json_dict(bulk_data_threshold=4096, bulk_data_element_handler=lambda _: "")
            uri = (
                f"{base}/studies/{study.study_instance_uid}/series/"
                f"{instance.series.series_instance_uid}/instances/{instance.sop_instance_uid}"
            )
            for element in item.values():
                if "BulkDataURI" in element:
                    element["BulkDataURI"] = uri
            if not instance.sop_class_uid.startswith(STRUCTURED_REPORTS):
                item["7FE00010"] = {"vr": "OW", "BulkDataURI": uri}  # read before the pixels
            items.append(item)
        _audit(request, "dicomweb.metadata", study_id=study.pk, detail={
            "level": "instance" if instance_uid else "series" if series_uid else "study",
            "instances": len(items)})  # fmt: skip
        return JsonResponse(items, safe=False, content_type=DICOM_JSON)


# ------------------------------------------------------------------------- rendered (PNG/JPEG)

MAX_VIEWPORT = 2048


def _window_param(raw: str | None) -> tuple[float, float] | None:
    """`window=center,width[,function]` (PS3.18 8.3.5.1.3); only a linear function."""
    if not raw:
        return None
    parts = raw.split(",")
    try:
        center, width = float(parts[0]), float(parts[1])
    except (IndexError, ValueError):
        raise BadQuery("window must be center,width[,linear]") from None
    if width <= 0 or not all(abs(v) < 1e6 for v in (center, width)):
        raise BadQuery("window width must be positive (and both values reasonable)")
    if len(parts) > 2 and parts[2].lower() not in ("linear", ""):
        raise BadQuery("only the linear window function is supported")
    return center, width


def _viewport_param(raw: str | None) -> tuple[int, int] | None:
    if not raw:
        return None
    parts = raw.split(",")
    if len(parts) < 2 or not _DIGITS.fullmatch(parts[0]) or not _DIGITS.fullmatch(parts[1]):
        raise BadQuery("viewport must be rows,columns")
    rows, columns = int(parts[0]), int(parts[1])
    if not (0 < rows <= MAX_VIEWPORT and 0 < columns <= MAX_VIEWPORT):
        raise BadQuery(f"viewport must be between 1 and {MAX_VIEWPORT} on each side")
    return rows, columns


def frame_render(
    path: Any, *, frame: int, window: tuple[float, float] | None, viewport: tuple[int, int] | None
) -> Any:
    """One frame as an 8-bit PIL image: rescaled, windowed (the file's first window, else its
    full range), fitted into the viewport keeping its aspect."""
    import numpy as np
    import pydicom
    from PIL import Image

    from inference.pipeline import rescale

    ds = pydicom.dcmread(path)
    pixels = ds.pixel_array
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if not 1 <= frame <= frames:
        raise LookupError(f"This instance has {frames} frame(s).")
    if frames > 1:
        pixels = pixels[frame - 1]
    if pixels.ndim == 3:  # colour: shown as stored
        picture = Image.fromarray(pixels.astype(np.uint8))
    else:
        values = rescale(ds, pixels)
        if window is None and "WindowCenter" in ds and "WindowWidth" in ds:
            center = ds.WindowCenter[0] if ds["WindowCenter"].VM > 1 else ds.WindowCenter
            width = ds.WindowWidth[0] if ds["WindowWidth"].VM > 1 else ds.WindowWidth
            window = (float(center), max(float(width), 1.0))
        if window is None:
            low, high = float(values.min()), float(values.max())
        else:
            low, high = window[0] - window[1] / 2, window[0] + window[1] / 2
        scaled = np.clip((values - low) / max(high - low, 1e-6), 0.0, 1.0)
        if str(ds.get("PhotometricInterpretation", "")) == "MONOCHROME1":
            scaled = 1.0 - scaled
        picture = Image.fromarray((scaled * 255).astype(np.uint8), mode="L")
    if viewport is not None:
        picture.thumbnail((viewport[1], viewport[0]), Image.Resampling.BILINEAR)
    return picture


class WadoRendered(DicomwebRead):
    """`.../instances/{i}/rendered` and `.../frames/{n}/rendered`: PNG (default) or JPEG."""

    @extend_schema(responses={(200, "image/png"): BINARY, (200, "image/jpeg"): BINARY})
    def get(
        self,
        request: Request,
        study_uid: str,
        series_uid: str,
        instance_uid: str,
        frame: str = "1",
    ) -> HttpResponse:
        import io

        import numpy as np

        from inference.png import png_encode

        study = self._study(request, study_uid)
        if not _DIGITS.fullmatch(frame):
            raise BadQuery("the frame number must be a whole number")
        instance = (
            Instance.objects.filter(
                series__study=study,
                series__series_instance_uid=series_uid,
                sop_instance_uid=instance_uid,
            )
            .select_related("series")
            .first()
            if uid_is_valid(series_uid) and uid_is_valid(instance_uid)
            else None
        )
        if instance is None:
            raise LookupError("No such instance in this study.")
        params = request.query_params
        window = _window_param(params.get("window"))
        viewport = _viewport_param(params.get("viewport"))
        # The media type from Accept, or from the `accept` query parameter (PS3.18 8.3.3.1),
        # which an <img> element can send: the preview asks for JPEG (half the bytes of PNG).
        accept = (
            params.get("accept") or request._request.META.get("HTTP_ACCEPT", "image/png")
        ).lower()
        if params.get("accept") and params["accept"] not in ("image/png", "image/jpeg"):
            return _problem(406, "rendered frames are image/png or image/jpeg")
        jpeg = "image/jpeg" in accept and "image/png" not in accept
        picture = frame_render(
            storage.storage_path(instance.relative_path),
            frame=int(frame),
            window=window,
            viewport=viewport,
        )
        if jpeg:
            out = io.BytesIO()
            picture.convert("RGB" if picture.mode not in ("L", "RGB") else picture.mode).save(
                out, format="JPEG", quality=90
            )
            body = out.getvalue()
        else:
            body = png_encode(np.asarray(picture))
        _audit_batched(request, "dicomweb.rendered", study=study, series_uid=series_uid)
        return HttpResponse(body, content_type="image/jpeg" if jpeg else "image/png")


# ------------------------------------------------------------------------- frames (pixel data)

UNCOMPRESSED = "1.2.840.10008.1.2.1"
# Stored compressed transfer syntaxes and the media type a frame of each is sent as (PS3.18
# table 8.7.3-2); anything else compressed is sent as application/octet-stream.
_FRAME_MEDIA = {
    "1.2.840.10008.1.2.4.50": "image/jpeg", "1.2.840.10008.1.2.4.51": "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jpeg", "1.2.840.10008.1.2.4.70": "image/jpeg",
    "1.2.840.10008.1.2.4.80": "image/jls", "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2", "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.5": "image/dicom-rle",
}  # fmt: skip
_NATIVE = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}  # little endian: the same pixel bytes


MAX_FRAMES_PER_REQUEST = 256


def _frame_numbers(raw: str) -> list[int]:
    numbers = [part.strip() for part in raw.split(",")]
    if not numbers or not all(_DIGITS.fullmatch(part) and 0 < int(part) < 100_000
                              for part in numbers):  # fmt: skip
        raise BadQuery("frames must be one or more frame numbers (1, 2, ...), comma-separated")
    unique = list(dict.fromkeys(int(part) for part in numbers))
    if len(unique) > MAX_FRAMES_PER_REQUEST:
        raise BadQuery(f"at most {MAX_FRAMES_PER_REQUEST} frames per request")
    return unique


def _wants_stored(accept: str, *, stored: str) -> bool:
    """The client takes the stored transfer syntax: `transfer-syntax=*`, that syntax's UID, or
    its media type (image/jpeg, image/jls, ...) in Accept."""
    accept = accept.lower().replace('"', "")
    media = _FRAME_MEDIA.get(stored)
    return (
        "transfer-syntax=*" in accept
        or f"transfer-syntax={stored}" in accept
        or (media is not None and media in accept)
    )


def instance_frames(
    path: Path, *, numbers: list[int], stored_as_is: bool
) -> tuple[str, str, list[bytes]]:
    """The frames asked for: (media type, transfer syntax, bytes of each). Native pixel data is
    sliced out of the file as stored; compressed data is sent as stored when the client takes
    it, else decoded here to uncompressed little endian."""
    import pydicom
    from pydicom.encaps import generate_frames

    ds = pydicom.dcmread(path)
    if "PixelData" not in ds:
        raise LookupError("This instance has no pixel data.")
    transfer_syntax = str(ds.file_meta.TransferSyntaxUID)
    count = int(ds.get("NumberOfFrames", 1) or 1)
    missing = [n for n in numbers if n > count]
    if missing:
        raise LookupError(f"This instance has {count} frame(s); asked for frame {missing[0]}.")
    if transfer_syntax in _NATIVE and int(ds.BitsAllocated) % 8 == 0:
        size = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1))
        size *= int(ds.BitsAllocated) // 8
        data = ds.PixelData
        return (
            "application/octet-stream",
            UNCOMPRESSED,
            [bytes(data[(n - 1) * size : n * size]) for n in numbers],
        )
    if stored_as_is and ds.file_meta.TransferSyntaxUID.is_encapsulated:
        frames = list(generate_frames(ds.PixelData, number_of_frames=count))
        media = _FRAME_MEDIA.get(transfer_syntax, "application/octet-stream")
        return media, transfer_syntax, [frames[n - 1] for n in numbers]
    try:
        pixels = ds.pixel_array
    except Exception as exc:  # no decoder for this syntax here
        raise NotAcceptable(
            f"This instance is stored as {transfer_syntax} and cannot be decoded here; ask "
            "for it as stored (transfer-syntax=*)."
        ) from exc
    if count == 1:
        pixels = pixels[None, ...]
    little = pixels.astype(pixels.dtype.newbyteorder("<"), copy=False)
    return "application/octet-stream", UNCOMPRESSED, [little[n - 1].tobytes() for n in numbers]


class NotAcceptable(ValueError):
    """A 406, with the reason."""


class WadoFrames(DicomwebRead):
    """`.../instances/{i}/frames/{n[,m...]}`: the frames' pixel data as multipart/related;
    type="application/octet-stream" (uncompressed), or as stored on request."""

    @extend_schema(responses=_RETRIEVE)
    def get(
        self, request: Request, study_uid: str, series_uid: str, instance_uid: str, frame: str
    ) -> HttpResponse:
        study = self._study(request, study_uid)
        numbers = _frame_numbers(frame)
        instance = (
            Instance.objects.filter(
                series__study=study,
                series__series_instance_uid=series_uid,
                sop_instance_uid=instance_uid,
            ).first()
            if uid_is_valid(series_uid) and uid_is_valid(instance_uid)
            else None
        )
        if instance is None:
            raise LookupError("No such instance in this study.")
        accept = request._request.META.get("HTTP_ACCEPT", "*/*")
        try:
            media, transfer_syntax, frames = instance_frames(
                storage.storage_path(instance.relative_path),
                numbers=numbers,
                stored_as_is=_wants_stored(accept, stored=instance.transfer_syntax_uid),
            )
        except NotAcceptable as refused:
            return _problem(406, str(refused))
        _audit_batched(request, "dicomweb.frames", study=study, series_uid=series_uid)
        boundary = uuid.uuid4().hex
        body = bytearray()
        for number, data in zip(numbers, frames, strict=True):
            body += (
                f"--{boundary}\r\nContent-Type: {media}; transfer-syntax={transfer_syntax}\r\n"
                f"Content-Location: {_base(request._request)}/studies/{study_uid}/series/"
                f"{series_uid}/instances/{instance_uid}/frames/{number}\r\n\r\n"
            ).encode("ascii")
            body += data + b"\r\n"
        body += f"--{boundary}--\r\n".encode("ascii")
        return HttpResponse(
            bytes(body),
            content_type=f'multipart/related; type="{media}"; boundary={boundary}',
        )
