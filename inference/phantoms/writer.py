"""Writes a phantom study as DICOM Part-10 files (one per slice) plus a labels.json of its truth.

Identities, UIDs, dates and the transfer syntax are drawn from the seed, so the same study and
seed give byte-identical files. Every identity is invented and says so (family names such as
"Phantom", patient IDs "PH" + digits).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

from inference.phantoms.study import PhantomStudy

UID_ROOT = "1.2.826.0.1.3680043.10.1453.7."
CT_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.2")
CR_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.1")
DX_IMAGE_STORAGE_PRESENTATION = UID("1.2.840.10008.5.1.4.1.1.1.1")
SOP_CLASSES = {"CT": CT_IMAGE_STORAGE, "CR": CR_IMAGE_STORAGE, "DX": DX_IMAGE_STORAGE_PRESENTATION}

TRANSFER_SYNTAXES: dict[str, UID] = {
    "explicit": ExplicitVRLittleEndian,
    "rle": RLELossless,
    "jpegls": JPEGLSLossless,
    "jpeg2000": JPEG2000Lossless,
}
COMPRESSED = (RLELossless, JPEGLSLossless, JPEG2000Lossless)

FAMILY = ("Phantom", "Synthetic", "Testperson", "Simulated", "Demo")
GIVEN = ("Alex", "Sam", "Robin", "Jordan", "Casey", "Morgan", "Riley", "Jamie", "Kim", "Noor")
LOCATIONS = (
    "ED-RESUS-1",
    "ED-RESUS-2",
    "ED-MAJORS-3",
    "ED-MAJORS-7",
    "ED-MINORS-2",
    "ED-TRIAGE",
    "ED-PEDS-1",
)
INSTITUTION = "Synthetic General Hospital"

# (centres, widths, explanations) per body part
WINDOWS: dict[str, tuple[list[int], list[int], list[str]]] = {
    "HEAD": ([40, 80], [80, 200], ["BRAIN", "SUBDURAL"]),
    "CHEST": ([100, -600], [700, 1500], ["CTPA", "LUNG"]),
    "CSPINE": ([500, 40], [2000, 400], ["BONE", "SOFT TISSUE"]),
}
KERNELS = {"HEAD": "H30s", "CHEST": "B31f", "CSPINE": "B70s"}
PROCEDURE_CODES = {"HEAD": "CTHEADWO", "CHEST": "CTPA", "CSPINE": "CTCSPWO"}


def transfer_syntax_resolve(transfer_syntax: str | None, chooser: random.Random) -> UID:
    """A UID from a UID string or a short name; None: explicit VR LE mostly, sometimes a
    lossless compressed syntax (chosen by the seed)."""
    if transfer_syntax is None:
        roll = chooser.random()
        if roll < 0.7:
            return ExplicitVRLittleEndian
        return COMPRESSED[min(int((roll - 0.7) / 0.1), 2)]
    key = transfer_syntax.strip()
    if key.lower() in TRANSFER_SYNTAXES:
        return TRANSFER_SYNTAXES[key.lower()]
    if key in {str(uid) for uid in TRANSFER_SYNTAXES.values()}:
        return UID(key)
    allowed = ", ".join(f"{name} ({uid})" for name, uid in TRANSFER_SYNTAXES.items())
    raise ValueError(f"unsupported transfer syntax {transfer_syntax!r}; use one of {allowed}")


@dataclass(frozen=True, kw_only=True)
class Scanner:
    """The invented device a study is acquired on: metadata only (the pixels do not depend on
    it), varied so that subgroup tables and the acquisition-mix drift check have more than one
    row to show. Names are fictional."""

    manufacturer: str
    model: str
    station: str
    kvp: str  # CT only; a radiograph's follows its view


SCANNERS = {
    "CT": [
        Scanner(manufacturer="ED Triage Phantoms", model="Phantom CT 64", station="EDCT01",
                kvp="120"),
        Scanner(manufacturer="ED Triage Phantoms", model="Phantom CT 128", station="EDCT02",
                kvp="100"),
        Scanner(manufacturer="Phantom Works", model="PW Helix 16", station="MAINCT3", kvp="140"),
    ],
    "radiograph": [
        Scanner(manufacturer="ED Triage Phantoms", model="Phantom DR", station="EDXR01", kvp=""),
        Scanner(manufacturer="Phantom Works", model="PW Mobile CR", station="EDXRMOB", kvp=""),
    ],
}  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class Visit:
    """The invented patient and order around one study."""

    patient_name: str
    patient_id: str
    birth_date: str
    sex: str
    age: str
    accession: str
    location: str
    priority: str
    acquired: datetime
    study_uid: str
    series_uid: str
    frame_uid: str
    uid_seed: list[str]
    scanner: Scanner


def visit_make(study: PhantomStudy, *, seed: int, acquired: datetime | None) -> Visit:
    uid_seed = ["phantom", str(study.finding), str(study.positive), str(seed)]
    chooser = random.Random("|".join([*uid_seed, "visit"]))
    if acquired is None:
        acquired = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(
            days=chooser.randrange(365), seconds=chooser.randrange(86400)
        )
    years = chooser.randrange(18, 96)
    birth = acquired.date().replace(year=acquired.year - years, month=1, day=1) + timedelta(
        days=chooser.randrange(365)
    )
    age = acquired.year - birth.year - ((acquired.month, acquired.day) < (birth.month, birth.day))
    return Visit(
        patient_name=f"{chooser.choice(FAMILY)}^{chooser.choice(GIVEN)}",
        patient_id=f"PH{chooser.randrange(10**7):07d}",
        birth_date=birth.strftime("%Y%m%d"),
        sex=chooser.choice(["F", "M"]),
        age=f"{age:03d}Y",
        accession=f"PHA{chooser.randrange(10**9):09d}",
        location=chooser.choice(LOCATIONS),
        priority="STAT" if chooser.random() < 0.35 else chooser.choice(["ROUTINE", "HIGH"]),
        acquired=acquired,
        study_uid=generate_uid(prefix=UID_ROOT, entropy_srcs=[*uid_seed, "study"]),
        series_uid=generate_uid(prefix=UID_ROOT, entropy_srcs=[*uid_seed, "series"]),
        frame_uid=generate_uid(prefix=UID_ROOT, entropy_srcs=[*uid_seed, "frame"]),
        uid_seed=uid_seed,
        # A stream of its own: the patient, order and encoding drawn from the seed stay as
        # they were before scanners varied.
        scanner=random.Random("|".join([*uid_seed, "scanner"])).choice(
            SCANNERS["CT" if study.modality == "CT" else "radiograph"]
        ),
    )


def _ds(value: float) -> str:
    """A Decimal String of at most 16 characters."""
    text = f"{value:.6g}"
    return text if len(text) <= 16 else f"{value:.4e}"


def common_dataset(study: PhantomStudy, visit: Visit, *, sop_uid: str, index: int) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = SOP_CLASSES[study.modality]
    ds.SOPInstanceUID = sop_uid
    local = visit.acquired
    ds.StudyDate = local.strftime("%Y%m%d")
    ds.StudyTime = local.strftime("%H%M%S")
    ds.SeriesDate = ds.StudyDate
    ds.SeriesTime = ds.StudyTime
    ds.ContentDate = ds.StudyDate
    ds.ContentTime = (local + timedelta(seconds=index // 10)).strftime("%H%M%S")
    ds.AcquisitionDate = ds.StudyDate
    ds.AcquisitionTime = ds.StudyTime
    offset = local.utcoffset() or timedelta(0)
    minutes = int(offset.total_seconds() // 60)
    ds.TimezoneOffsetFromUTC = (
        f"{'+' if minutes >= 0 else '-'}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"
    )
    ds.AccessionNumber = visit.accession
    ds.Modality = study.modality
    ds.Manufacturer = visit.scanner.manufacturer
    ds.ManufacturerModelName = visit.scanner.model
    ds.SoftwareVersions = "1"
    ds.InstitutionName = INSTITUTION
    ds.StationName = visit.scanner.station
    ds.ReferringPhysicianName = "Emergency^Department"
    ds.StudyDescription = study.study_description
    ds.SeriesDescription = study.series_description
    ds.PatientName = visit.patient_name
    ds.PatientID = visit.patient_id
    ds.IssuerOfPatientID = "SYNTHETIC"
    ds.PatientBirthDate = visit.birth_date
    ds.PatientSex = visit.sex
    ds.PatientAge = visit.age
    ds.PatientIdentityRemoved = "NO"
    ds.CurrentPatientLocation = visit.location
    ds.BodyPartExamined = study.body_part
    ds.StudyInstanceUID = visit.study_uid
    ds.SeriesInstanceUID = visit.series_uid
    ds.StudyID = visit.accession[-8:]
    ds.SeriesNumber = 2 if study.modality == "CT" else 1
    ds.InstanceNumber = index + 1
    ds.AcquisitionNumber = 1
    request = Dataset()
    request.RequestedProcedureID = visit.accession[-8:]
    request.ScheduledProcedureStepID = visit.accession[-8:]
    request.RequestedProcedurePriority = visit.priority
    request.RequestedProcedureDescription = study.study_description
    ds.RequestAttributesSequence = DicomSequence([request])
    if study.contrast_agent:
        ds.ContrastBolusAgent = study.contrast_agent
        ds.ContrastBolusRoute = "IV"
        ds.ContrastBolusVolume = "80"
    return ds


def ct_dataset(
    study: PhantomStudy,
    visit: Visit,
    *,
    sop_uid: str,
    index: int,
    z0: float,
    signed: bool,
) -> Dataset:
    ds = common_dataset(study, visit, sop_uid=sop_uid, index=index)
    rows, cols = study.pixels.shape[1:]
    row_spacing, col_spacing = study.pixel_spacing
    z = z0 + index * study.slice_thickness
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.FrameOfReferenceUID = visit.frame_uid
    ds.PositionReferenceIndicator = ""
    ds.PatientPosition = "HFS"
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [
        _ds(-(cols - 1) / 2 * col_spacing),
        _ds(-(rows - 1) / 2 * row_spacing),
        _ds(z),
    ]
    ds.SliceLocation = _ds(z)
    ds.SliceThickness = _ds(study.slice_thickness)
    ds.SpacingBetweenSlices = _ds(study.slice_thickness)
    ds.PixelSpacing = [_ds(row_spacing), _ds(col_spacing)]
    ds.KVP = visit.scanner.kvp
    ds.ConvolutionKernel = KERNELS[study.body_part]
    ds.RescaleIntercept = "-1024"
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    centres, widths, explanations = WINDOWS[study.body_part]
    ds.WindowCenter = [str(c) for c in centres]
    ds.WindowWidth = [str(w) for w in widths]
    ds.WindowCenterWidthExplanation = explanations
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = cols
    ds.BitsAllocated = 16
    ds.BitsStored = 16 if signed else 12
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if signed else 0
    stored = np.rint(np.clip(study.pixels[index], -1024, 3071) + 1024)
    ds.PixelData = stored.astype(np.int16 if signed else np.uint16).tobytes()
    return ds


def radiograph_dataset(study: PhantomStudy, visit: Visit, *, sop_uid: str) -> Dataset:
    ds = common_dataset(study, visit, sop_uid=sop_uid, index=0)
    rows, cols = study.pixels.shape[1:]
    view = study.series_description if study.series_description in ("PA", "AP") else "PA"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.ViewPosition = view
    ds.PatientOrientation = ["L", "F"]
    ds.ImagerPixelSpacing = [_ds(study.pixel_spacing[0]), _ds(study.pixel_spacing[1])]
    ds.PixelSpacing = ds.ImagerPixelSpacing
    ds.KVP = "110" if view == "PA" else "90"
    ds.DistanceSourceToDetector = "1800" if view == "PA" else "1000"
    region = Dataset()
    region.CodeValue = "51185008"
    region.CodingSchemeDesignator = "SCT"
    region.CodeMeaning = "Thoracic structure"
    ds.AnatomicRegionSequence = DicomSequence([region])
    monochrome1 = study.photometric == "MONOCHROME1"
    if study.modality == "DX":
        ds.PresentationIntentType = "FOR PRESENTATION"
        ds.DetectorType = "SCINTILLATOR"
        ds.BurnedInAnnotation = "NO"
        ds.LossyImageCompression = "00"
        ds.PixelIntensityRelationship = "LOG"
        ds.PixelIntensityRelationshipSign = 1 if monochrome1 else -1
        ds.PresentationLUTShape = "INVERSE" if monochrome1 else "IDENTITY"
        ds.ImageLaterality = "U"
    ds.RescaleIntercept = "0"
    ds.RescaleSlope = "1"
    ds.RescaleType = "US"
    ds.WindowCenter = "2048"
    ds.WindowWidth = "4096"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = study.photometric
    ds.Rows = rows
    ds.Columns = cols
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    stored = np.rint(np.clip(study.pixels[0], 0.0, 1.0) * 4095).astype(np.uint16)
    if monochrome1:
        stored = np.uint16(4095) - stored
    ds.PixelData = stored.tobytes()
    return ds


def lesion_box(mask: np.ndarray) -> list[int] | None:
    """[row0, col0, row1, col1] of a 2D mask: first row/column inclusive, last exclusive."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return [int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1]


def phantom_write(
    study: PhantomStudy,
    *,
    out_dir: Path,
    seed: int,
    transfer_syntax: str | None = None,
    acquired: datetime | None = None,
) -> list[Path]:
    """Write the study as DICOM Part-10 files (one per slice) plus out_dir/'labels.json'; return
    the file paths, most inferior slice first.

    acquired (optional) stamps the study date and time (the demo sends studies "now"); without
    it they are drawn from the seed, and the files are byte-identical for the same seed.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    visit = visit_make(study, seed=seed, acquired=acquired)
    chooser = random.Random("|".join([*visit.uid_seed, "encoding"]))
    syntax = transfer_syntax_resolve(transfer_syntax, chooser)
    signed = chooser.random() < 0.5
    z0 = {"HEAD": -40.0, "CHEST": -320.0, "CSPINE": -150.0}.get(study.body_part, 0.0)
    z0 += round(chooser.uniform(-30.0, 30.0), 1)
    paths: list[Path] = []
    slice_labels: dict[str, bool] = {}
    boxes: dict[str, list[int]] = {}
    for index in range(study.pixels.shape[0]):
        sop_uid = generate_uid(prefix=UID_ROOT, entropy_srcs=[*visit.uid_seed, "sop", str(index)])
        if study.modality == "CT":
            ds = ct_dataset(study, visit, sop_uid=sop_uid, index=index, z0=z0, signed=signed)
        else:
            ds = radiograph_dataset(study, visit, sop_uid=sop_uid)
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds.file_meta.ImplementationVersionName = "EDTRIAGE_PH1"
        if syntax != ExplicitVRLittleEndian:
            ds.compress(syntax, generate_instance_uid=False)
        path = out_dir / f"IM{index + 1:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
        slice_labels[sop_uid] = bool(study.slice_labels[index])
        box = lesion_box(study.lesion_mask[index])
        if box is not None:
            boxes[sop_uid] = box
    labels = {
        "finding": str(study.finding),
        "positive": bool(study.positive),
        "subtype": study.subtype,
        "size": study.size,
        "seed": int(seed),
        "modality": study.modality,
        "study_instance_uid": visit.study_uid,
        "series_instance_uid": visit.series_uid,
        "transfer_syntax": str(syntax),
        "slice_labels": slice_labels,
        "lesion_boxes": boxes,
        "box_convention": "[row0, col0, row1, col1]: row0/col0 inclusive, row1/col1 exclusive",
    }
    (out_dir / "labels.json").write_text(json.dumps(labels, indent=1) + "\n")
    return paths
