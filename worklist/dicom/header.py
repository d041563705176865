"""Read and check the header of a received DICOM Part 10 file, without decoding pixel data; and
write the Part 10 header (preamble and File Meta Information) for a dataset received over DICOM.
"""

from __future__ import annotations

import logging
import re
import struct
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

from worklist.dicom import status
from worklist.dicom.identifiers import InvalidIdentifier, uid_check
from worklist.dicom.sop_classes import IMAGE_SOP_CLASSES

# pydicom's warnings quote the offending value (a sender's, perhaps a patient's name): here they
# become refusal reasons in the database, never log lines. pydicom sets its logger's level when
# imported, so the LOGGING setting cannot.
logging.getLogger("pydicom").setLevel(logging.ERROR)


class RejectedObject(Exception):
    """The object cannot be stored; `status` is the DICOM failure status for the sender."""

    def __init__(
        self, status_code: int, reason: str, *, sop_class_uid: str = "", sop_instance_uid: str = ""
    ) -> None:
        super().__init__(reason)
        self.status_code = status_code
        self.reason = reason
        # Filled in once the object's UIDs have passed the UID check (a STOW-RS failure entry
        # then names the instance); empty before that.
        self.sop_class_uid = sop_class_uid
        self.sop_instance_uid = sop_instance_uid


@dataclass(frozen=True, kw_only=True)
class InstanceHeader:
    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    transfer_syntax_uid: str
    instance_number: int | None
    # patient (PHI: stays in the database)
    patient_id: str
    issuer_of_patient_id: str
    patient_name: str
    patient_birth_date: str
    patient_sex: str
    # study
    accession_number: str
    modality: str
    body_part: str
    study_description: str
    study_date: str  # DA, kept only when it is one (YYYYMMDD)
    study_time: str  # TM, kept only when it is one
    requested_priority: str
    patient_location: str
    # series
    series_description: str
    series_number: int | None
    slice_thickness: float | None
    contrast_agent: str


_DA = re.compile(r"\d{8}")
_TM = re.compile(r"\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?")


def _matching(pattern: re.Pattern[str], value: str) -> str:
    return value if pattern.fullmatch(value) else ""


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    if value is None:
        return ""
    return str(value).strip()


def _int(ds: Dataset, keyword: str) -> int | None:
    value = ds.get(keyword)
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _float(ds: Dataset, keyword: str) -> float | None:
    value = ds.get(keyword)
    try:
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _requested_priority(ds: Dataset) -> str:
    priority = _text(ds, "RequestedProcedurePriority")
    if not priority:
        for item in ds.get("RequestAttributesSequence") or []:
            priority = _text(item, "RequestedProcedurePriority")
            if priority:
                break
    return priority.upper()


def _check_complete(ds: Dataset) -> None:
    """A truncated element shows as a value shorter than its declared length."""
    for tag, element in ds._dict.items():
        length = getattr(element, "length", None)
        value = getattr(element, "value", None)
        if length is None or length == 0xFFFFFFFF or not isinstance(value, bytes | bytearray):
            continue
        if len(value) != length:
            raise RejectedObject(
                status.CANNOT_UNDERSTAND_TRUNCATED,
                f"truncated: element {tag} declares {length} bytes, {len(value)} present",
            )


def _pixel_data_check(ds: Dataset, *, transfer_syntax: str) -> None:
    """Pixel data that is all there, checked from lengths alone (nothing is decoded).

    Native: exactly Rows x Columns x Samples per Pixel x Bits Allocated / 8 x Number of Frames
    bytes (plus the one pad byte that makes an odd length even). Encapsulated: a Basic Offset
    Table item followed by whole fragment items, at least one per frame.
    """
    value = ds.get_item("PixelData").value
    if not isinstance(value, bytes | bytearray):
        raise RejectedObject(status.CANNOT_UNDERSTAND, "pixel data is not a byte string")
    frames = _int(ds, "NumberOfFrames") or 1
    if not UID(transfer_syntax).is_encapsulated:
        shape = [_int(ds, keyword) for keyword in ("Rows", "Columns", "BitsAllocated")]
        if any(dimension is None or dimension <= 0 for dimension in shape):
            raise RejectedObject(
                status.CANNOT_UNDERSTAND, "pixel data without Rows, Columns and Bits Allocated"
            )
        rows, columns, bits = (int(dimension or 0) for dimension in shape)
        samples = _int(ds, "SamplesPerPixel") or 1
        expected = -(-rows * columns * samples * frames * bits // 8)  # bits rounded up to bytes
        if len(value) not in (expected, expected + expected % 2):
            raise RejectedObject(
                status.CANNOT_UNDERSTAND,
                f"native pixel data is {len(value)} bytes; its image attributes need {expected}",
            )
        return
    try:
        if value[:4] != b"\xfe\xff\x00\xe0":
            raise ValueError("no Basic Offset Table item")
        (table_length,) = struct.unpack("<I", value[4:8])
        fragments, end = 0, 8 + table_length
        while end < len(value):  # every fragment item complete, to the last byte
            if value[end : end + 4] != b"\xfe\xff\x00\xe0":
                raise ValueError("a fragment is not an item")
            (length,) = struct.unpack("<I", value[end + 4 : end + 8])
            fragments, end = fragments + 1, end + 8 + length
        if end != len(value):
            raise ValueError("the last fragment is cut short")
    except (ValueError, struct.error) as exc:
        raise RejectedObject(
            status.CANNOT_UNDERSTAND, f"encapsulated pixel data is malformed: {exc}"
        ) from exc
    if fragments < frames:
        raise RejectedObject(
            status.CANNOT_UNDERSTAND,
            f"encapsulated pixel data has {fragments} fragments for {frames} frames",
        )


_UID_ATTRIBUTES = {
    "sop_class_uid": "SOPClassUID",
    "sop_instance_uid": "SOPInstanceUID",
    "study_instance_uid": "StudyInstanceUID",
    "series_instance_uid": "SeriesInstanceUID",
}


def _uid_as_sent(ds: Dataset, keyword: str) -> str:
    """A UID's value without pydicom's conversion: it validates only VR UI (and would warn
    quoting the value), while every UID is checked by `uid_check` whatever its VR."""
    element = ds.get_item(keyword)
    if element is None or element.value is None:
        return ""
    value = element.value
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("latin-1").strip("\0 ")
    return str(value).strip("\0 ")


def _uids_check(values: dict[str, str], *, transfer_syntax: str) -> None:
    """Missing UIDs (0xC002), then values that are not UIDs (0xC000), before any of them
    reaches a path, a query or a log line."""
    missing = [name for name, value in values.items() if not value]
    if missing:
        raise RejectedObject(
            status.MISSING_UIDS, "missing required attributes: " + ", ".join(missing)
        )
    if not transfer_syntax:
        raise RejectedObject(status.CANNOT_UNDERSTAND, "file meta has no transfer syntax")
    try:
        for name, value in values.items():
            uid_check(value, attribute=_UID_ATTRIBUTES[name])
        uid_check(transfer_syntax, attribute="TransferSyntaxUID")
    except InvalidIdentifier as invalid:
        raise RejectedObject(status.CANNOT_UNDERSTAND, invalid.reason) from invalid


# warnings.catch_warnings() swaps the process-wide filter list: two threads parsing at once would
# restore each other's filters (leaving "error" installed for good, or dropping it mid-parse).
_warnings_filter_lock = threading.Lock()


def _naming(refusal: RejectedObject, checked: dict[str, str]) -> RejectedObject:
    """The refusal, naming the instance when its UIDs have passed the UID check."""
    if checked and not refusal.sop_instance_uid:
        refusal.sop_class_uid = checked["sop_class_uid"]
        refusal.sop_instance_uid = checked["sop_instance_uid"]
    return refusal


def header_read(
    path: Path,
    *,
    expected_sop_class_uid: str | None = None,
    expected_sop_instance_uid: str | None = None,
) -> InstanceHeader:
    """Parse `path` (a Part 10 file) and check it can be stored; raise RejectedObject if not."""
    checked: dict[str, str] = {}
    try:
        with _warnings_filter_lock, warnings.catch_warnings():
            # pydicom warns, rather than fails, on a missing sequence delimiter at end of file.
            warnings.simplefilter("error", UserWarning)
            ds = pydicom.dcmread(path, defer_size=None)
            _check_complete(ds)
            transfer_syntax = str(ds.file_meta.get("TransferSyntaxUID", ""))
            header_values = {
                "sop_class_uid": _uid_as_sent(ds, "SOPClassUID"),
                "sop_instance_uid": _uid_as_sent(ds, "SOPInstanceUID"),
                "study_instance_uid": _uid_as_sent(ds, "StudyInstanceUID"),
                "series_instance_uid": _uid_as_sent(ds, "SeriesInstanceUID"),
            }
            _uids_check(header_values, transfer_syntax=transfer_syntax)
            checked = header_values
            has_pixels = any(
                keyword in ds for keyword in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
            )
            if "PixelData" in ds:
                _pixel_data_check(ds, transfer_syntax=transfer_syntax)
            header = InstanceHeader(
                **header_values,
                transfer_syntax_uid=transfer_syntax,
                instance_number=_int(ds, "InstanceNumber"),
                patient_id=_text(ds, "PatientID")[:64],
                issuer_of_patient_id=_text(ds, "IssuerOfPatientID")[:64],
                patient_name=_text(ds, "PatientName")[:324],
                patient_birth_date=_text(ds, "PatientBirthDate")[:8],
                patient_sex=_text(ds, "PatientSex")[:16],
                accession_number=_text(ds, "AccessionNumber")[:64],
                modality=_text(ds, "Modality")[:16].upper(),
                body_part=_text(ds, "BodyPartExamined")[:64].upper(),
                study_description=_text(ds, "StudyDescription")[:128],
                study_date=_matching(_DA, _text(ds, "StudyDate")),
                study_time=_matching(_TM, _text(ds, "StudyTime")),
                requested_priority=_requested_priority(ds)[:16],
                patient_location=_text(ds, "CurrentPatientLocation")[:64],
                series_description=_text(ds, "SeriesDescription")[:128],
                series_number=_int(ds, "SeriesNumber"),
                slice_thickness=_float(ds, "SliceThickness"),
                contrast_agent=_text(ds, "ContrastBolusAgent")[:64],
            )
    except RejectedObject as refusal:
        raise _naming(refusal, checked) from None
    except (
        InvalidDicomError,
        EOFError,
        UserWarning,
        ValueError,
        TypeError,
        KeyError,
        OSError,
        AttributeError,
        NotImplementedError,
    ) as exc:
        raise _naming(
            RejectedObject(
                status.CANNOT_UNDERSTAND, f"cannot parse DICOM: {type(exc).__name__}: {exc}"[:500]
            ),
            checked,
        ) from exc
    except Exception as exc:  # zlib.error for a broken deflated stream, struct.error, ...
        raise _naming(
            RejectedObject(
                status.CANNOT_UNDERSTAND, f"cannot parse DICOM: {type(exc).__name__}: {exc}"[:500]
            ),
            checked,
        ) from exc

    if expected_sop_class_uid and header.sop_class_uid != expected_sop_class_uid:
        raise _naming(
            RejectedObject(
                status.DATASET_DOES_NOT_MATCH_SOP_CLASS,
                f"dataset SOP class {header.sop_class_uid} does not match the negotiated "
                f"{expected_sop_class_uid}",
            ),
            checked,
        )
    if expected_sop_instance_uid and header.sop_instance_uid != expected_sop_instance_uid:
        raise _naming(
            RejectedObject(
                status.DATASET_DOES_NOT_MATCH_SOP_CLASS,
                "dataset SOP instance UID differs from the one in the C-STORE request",
            ),
            checked,
        )
    if header.sop_class_uid in IMAGE_SOP_CLASSES and not has_pixels:
        raise _naming(
            RejectedObject(
                status.DATASET_DOES_NOT_MATCH_SOP_CLASS,
                "image storage SOP class without pixel data",
            ),
            checked,
        )
    return header


def _element(group: int, element: int, vr: bytes, value: bytes) -> bytes:
    """One element in explicit VR little endian (PS3.5 7.1.2)."""
    if vr in (b"OB", b"OW", b"UN", b"SQ", b"UT", b"UC", b"UR"):
        return struct.pack("<HH2s2xI", group, element, vr, len(value)) + value
    return struct.pack("<HH2sH", group, element, vr, len(value)) + value


def _even(value: str, pad: bytes) -> bytes:
    raw = value.encode("latin-1", errors="replace")
    return raw + pad if len(raw) % 2 else raw


def part10_header(
    *,
    sop_class_uid: str,
    sop_instance_uid: str,
    transfer_syntax_uid: str,
    implementation_class_uid: str,
    implementation_version_name: str,
) -> bytes:
    """Preamble, "DICM" and File Meta Information (PS3.10 7.1) to put before a received dataset.

    The same bytes pydicom writes for these elements (a test compares them); encoded here because
    building them through a pydicom Dataset costs more than the rest of the header work.
    """
    group = b"".join(
        (
            _element(0x0002, 0x0001, b"OB", b"\x00\x01"),
            _element(0x0002, 0x0002, b"UI", _even(sop_class_uid, b"\0")),
            _element(0x0002, 0x0003, b"UI", _even(sop_instance_uid, b"\0")),
            _element(0x0002, 0x0010, b"UI", _even(transfer_syntax_uid, b"\0")),
            _element(0x0002, 0x0012, b"UI", _even(implementation_class_uid, b"\0")),
            _element(0x0002, 0x0013, b"SH", _even(implementation_version_name, b" ")),
        )
    )
    group_length = _element(0x0002, 0x0000, b"UL", struct.pack("<I", len(group)))
    return b"\0" * 128 + b"DICM" + group_length + group
