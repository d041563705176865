"""DICOM files of the "other hospital", encoded the way another vendor might.

Stored 12-bit unsigned (Bits Allocated 16, Bits Stored 12, Pixel Representation 0) with Rescale
Intercept -1024; outside the reconstruction circle the pixels are 0 and named by Pixel Padding
Value; the series is acquired from the vertex down (instance 1 is the top slice, positions in
patient coordinates still rise towards the head) with a table offset, and the files are named by
a counter in a shuffled order, so neither file order nor instance numbers give slice order.
UIDs are 2.25 UUID-derived, drawn from the seed. Identities are invented and say so.
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

from inference.other_site.head_ct import MATRIX, OtherHeadCt

CT_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.2")
IMPLEMENTATION_UID = UID("2.25.205914387239468114723356416097286470771")
MANUFACTURER = "Other Site Imaging (fictional)"


def _uid(seed: int, *parts: object) -> UID:
    return generate_uid(prefix=None, entropy_srcs=["other-site", str(seed), *map(str, parts)])


def other_site_write(volume: OtherHeadCt, *, out_dir: Path, seed: int) -> list[Path]:
    """Write one study as DICOM Part-10 files plus `truth.json`; returns the DICOM paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, 77])
    count = volume.hounsfield.shape[0]
    stored = np.rint(volume.hounsfield + 1024.0)
    np.clip(stored, 1, 4095, out=stored)  # 0 is reserved for outside the field
    half = MATRIX * volume.pixel_spacing / 2
    axis = np.linspace(-half, half, MATRIX, dtype=np.float32)
    outside = (axis[:, None] ** 2 + axis[None, :] ** 2) > volume.field_radius**2
    stored[:, outside] = 0
    pixels = stored.astype(np.uint16)
    study_uid, series_uid = _uid(seed, "study"), _uid(seed, "series")
    frame_uid = _uid(seed, "frame")
    acquired = date(2026, 3, 1) + timedelta(days=int(rng.integers(0, 200)))
    sex = str(rng.choice(["F", "M"]))
    age = int(rng.integers(18, 92))
    order = rng.permutation(count)
    table = float(rng.uniform(-260.0, -120.0))
    paths = []
    for file_number, index in enumerate(order):
        index = int(index)
        ds = Dataset()
        ds.SOPClassUID = CT_IMAGE_STORAGE
        ds.SOPInstanceUID = _uid(seed, "instance", index)
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.Modality = "CT"
        ds.PatientName = f"Othersite^Phantom{seed % 10000:04d}"
        ds.PatientID = f"OS{seed}"
        ds.PatientBirthDate = f"{acquired.year - age}0101"
        ds.PatientSex = sex
        ds.PatientAge = f"{age:03d}Y"
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = acquired.strftime("%Y%m%d")
        ds.StudyTime = ds.SeriesTime = ds.ContentTime = "031500"
        ds.AccessionNumber = f"OSA{seed % 10_000_000:07d}"
        ds.ReferringPhysicianName = ""
        ds.StudyID = "1"
        ds.SeriesNumber = 3
        ds.InstanceNumber = count - index
        ds.AcquisitionNumber = 1
        ds.StudyDescription = "CT BRAIN NON-CONTRAST"
        ds.SeriesDescription = f"Brain {volume.slice_thickness:g} mm"
        ds.BodyPartExamined = "HEAD"
        ds.PatientPosition = "HFS"
        ds.Manufacturer = MANUFACTURER
        ds.ManufacturerModelName = "OS Axial 32"
        ds.StationName = "OSCT1"
        ds.InstitutionName = "Other Site Hospital (fictional)"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.KVP = str(volume.kvp)
        ds.SliceThickness = f"{volume.slice_thickness:g}"
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [
            f"{-half:.3f}",
            f"{-half:.3f}",
            f"{table + (index + 0.5) * volume.slice_thickness:.3f}",
        ]
        ds.SliceLocation = ds.ImagePositionPatient[2]
        ds.PositionReferenceIndicator = ""
        ds.PixelSpacing = [f"{volume.pixel_spacing:.4f}", f"{volume.pixel_spacing:.4f}"]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = ds.Columns = MATRIX
        ds.BitsAllocated = 16
        ds.BitsStored = 12
        ds.HighBit = 11
        ds.PixelRepresentation = 0
        ds.PixelPaddingValue = 0
        ds.RescaleIntercept = "-1024"
        ds.RescaleSlope = "1"
        ds.RescaleType = "HU"
        ds.WindowCenter = "40"
        ds.WindowWidth = "80"
        ds.PixelData = pixels[index].tobytes()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = IMPLEMENTATION_UID
        ds.file_meta = meta
        path = out_dir / f"IMG{file_number:04d}"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    truth = {
        "positive": volume.positive,
        "subtype": volume.subtype,
        "lesion_slices": [
            count - int(i) for i in np.flatnonzero(volume.lesion.any(axis=(1, 2)))
        ],  # instance numbers
        "generator": "inference.other_site (never used for training or operating points)",
    }
    (out_dir / "truth.json").write_text(json.dumps(truth, indent=1))
    return paths
