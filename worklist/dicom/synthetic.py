"""Synthetic DICOM studies with invented identities, for tests, benchmarks and demo traffic.

These images carry no findings; the phantom generator in `inference.phantoms` draws lesions.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, ExplicitVRLittleEndian, generate_uid

CT_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.2")
CR_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.1")
UID_ROOT = "1.2.826.0.1.3680043.10.1453."

GIVEN = ["Alex", "Sam", "Robin", "Jordan", "Casey", "Morgan", "Riley", "Jamie"]
FAMILY = ["Testperson", "Phantom", "Synthetic", "Example", "Demo", "Sample"]


@dataclass(frozen=True, kw_only=True)
class StudySpec:
    modality: str = "CT"
    body_part: str = "HEAD"
    description: str = "CT HEAD WO CONTRAST"
    series_description: str = "AXIAL 5MM"
    slices: int = 40
    rows: int = 128
    columns: int = 128
    slice_thickness: float = 5.0
    priority: str = ""  # RequestedProcedurePriority, e.g. STAT
    location: str = ""  # CurrentPatientLocation, e.g. ED-RESUS-2
    contrast_agent: str = ""


def _patient(rng: random.Random) -> tuple[str, str]:
    name = f"{rng.choice(FAMILY)}^{rng.choice(GIVEN)}"
    return name, f"SYN{rng.randrange(10**7):07d}"


def synthetic_study(spec: StudySpec, *, seed: int) -> Iterator[Dataset]:
    """Yield the instances of one study, deterministic for a seed."""
    rng = random.Random(seed)
    pixels = np.random.default_rng(seed)
    patient_name, patient_id = _patient(rng)
    study_uid = generate_uid(prefix=UID_ROOT, entropy_srcs=[str(seed), "study"])
    series_uid = generate_uid(prefix=UID_ROOT, entropy_srcs=[str(seed), "series"])
    accession = f"ACC{rng.randrange(10**8):08d}"
    now = datetime.now(UTC)
    sop_class = CT_IMAGE_STORAGE if spec.modality == "CT" else CR_IMAGE_STORAGE
    count = spec.slices if spec.modality == "CT" else 1
    base = (pixels.normal(40, 12, size=(spec.rows, spec.columns))).astype(np.int16)
    for index in range(count):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = sop_class
        sop_uid = generate_uid(prefix=UID_ROOT, entropy_srcs=[str(seed), "sop", str(index)])
        ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds.SOPClassUID = sop_class
        ds.SOPInstanceUID = sop_uid
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = generate_uid(prefix=UID_ROOT, entropy_srcs=[str(seed), "for"])
        ds.PatientName = patient_name
        ds.PatientID = patient_id
        ds.PatientBirthDate = f"19{rng.randrange(30, 99)}0101"
        ds.PatientSex = rng.choice(["F", "M"])
        ds.AccessionNumber = accession
        ds.StudyDate = now.strftime("%Y%m%d")
        ds.StudyTime = now.strftime("%H%M%S")
        ds.Modality = spec.modality
        ds.BodyPartExamined = spec.body_part
        ds.StudyDescription = spec.description
        ds.SeriesDescription = spec.series_description
        ds.SeriesNumber = 1
        ds.InstanceNumber = index + 1
        if spec.priority:
            ds.RequestedProcedurePriority = spec.priority
        if spec.location:
            ds.CurrentPatientLocation = spec.location
        if spec.contrast_agent:
            ds.ContrastBolusAgent = spec.contrast_agent
        ds.SliceThickness = spec.slice_thickness
        ds.ImagePositionPatient = [0.0, 0.0, float(index) * spec.slice_thickness]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.PixelSpacing = [0.5, 0.5]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = spec.rows
        ds.Columns = spec.columns
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.RescaleIntercept = -1024
        ds.RescaleSlope = 1
        ds.WindowCenter = 40
        ds.WindowWidth = 80
        image = np.roll(base, index, axis=0) + 1024
        ds.PixelData = image.astype(np.int16).tobytes()
        yield ds


def series_copy(paths: list[Path], out_dir: Path, *, description: str, number: int) -> list[Path]:
    """The files as one new series of the same study (new Series and SOP Instance UIDs, the
    given description and number), written to `out_dir`: a scout, a reconstruction, a series
    sent over an association of its own."""
    out_dir.mkdir(parents=True)
    series_uid = generate_uid(prefix=UID_ROOT)
    written = []
    for source in paths:
        ds = pydicom.dcmread(source)
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(prefix=UID_ROOT)
        ds.SeriesDescription = description
        ds.SeriesNumber = number
        written.append(out_dir / f"{ds.SOPInstanceUID}.dcm")
        ds.save_as(written[-1], enforce_file_format=True)
    return written


def write_study(spec: StudySpec, *, seed: int, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for ds in synthetic_study(spec, seed=seed):
        path = out_dir / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
