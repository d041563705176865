"""DICOM files of the "other hospital", encoded the way another vendor might.

Stored as the series' `CtEncoding` says (Bits Allocated 16; head: 12-bit unsigned, intercept
-1024; C-spine: 16-bit unsigned, slope 0.5, intercept -2048; CTPA: 16-bit signed, intercept 0);
outside the reconstruction circle the pixels are 0 (or -2000 when signed) and named by Pixel
Padding Value; a head series is acquired from the vertex down (instance 1
is the top slice, positions in patient coordinates still rise towards the head) with a table
offset, and the files are named by a counter in a shuffled order, so neither file order nor
instance numbers give slice order.
UIDs are 2.25 UUID-derived, drawn from the seed. Identities are invented and say so.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date, timedelta
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian

from inference.other_site.volume import MATRIX, OtherCt, OtherRadiograph

CT_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.2")
DX_FOR_PRESENTATION = UID("1.2.840.10008.5.1.4.1.1.1.1")
IMPLEMENTATION_UID = UID("2.25.205914387239468114723356416097286470771")
MANUFACTURER = "Other Site Imaging (fictional)"


def _uid(seed: int, *parts: object) -> UID:
    """A 2.25 UID derived from the seed (pydicom's generate_uid ignores its entropy sources when
    the prefix is None, which made every writing of a study new UIDs)."""
    digest = hashlib.sha256("\0".join(["other-site", str(seed), *map(str, parts)]).encode())
    return UID(f"2.25.{int.from_bytes(digest.digest()[:16], 'big')}")


def other_site_write(volume: OtherCt | OtherRadiograph, *, out_dir: Path, seed: int) -> list[Path]:
    """Write one study as DICOM Part-10 files plus `truth.json`; returns the DICOM paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if isinstance(volume, OtherRadiograph):
        return [_radiograph_write(volume, out_dir=out_dir, seed=seed)]
    rng = np.random.default_rng([seed, 77])
    encoding = volume.encoding
    count = volume.hounsfield.shape[0]
    slope, intercept = encoding.rescale_slope, encoding.rescale_intercept
    stored = np.rint((volume.hounsfield - np.float32(intercept)) / np.float32(slope))
    padding = -2000 if encoding.signed else 0
    if encoding.signed:
        top = 2 ** (encoding.bits_stored - 1) - 1
        np.clip(stored, -1999, top, out=stored)  # -2000: outside the field
    else:
        np.clip(stored, 1, 2**encoding.bits_stored - 1, out=stored)  # 0: outside the field
    half = MATRIX * volume.pixel_spacing / 2
    axis = np.linspace(-half, half, MATRIX, dtype=np.float32)
    outside = (axis[:, None] ** 2 + axis[None, :] ** 2) > volume.field_radius**2
    stored[:, outside] = padding
    pixels = stored.astype(np.int16 if encoding.signed else np.uint16)
    site = encoding.station  # one per finding's set: the same seed in two sets, other UIDs
    study_uid, series_uid = _uid(seed, site, "study"), _uid(seed, site, "series")
    frame_uid = _uid(seed, site, "frame")
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
        ds.SOPInstanceUID = _uid(seed, site, "instance", index)
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
        ds.SeriesNumber = encoding.series_number
        ds.InstanceNumber = count - index if encoding.top_first else index + 1
        ds.AcquisitionNumber = 1
        ds.StudyDescription = encoding.study_description
        ds.SeriesDescription = encoding.series_description.format(thickness=volume.slice_thickness)
        ds.BodyPartExamined = encoding.body_part
        ds.PatientPosition = "HFS"
        ds.Manufacturer = MANUFACTURER
        ds.ManufacturerModelName = encoding.model_name
        ds.StationName = encoding.station
        ds.InstitutionName = "Other Site Hospital (fictional)"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.KVP = str(volume.kvp)
        if encoding.contrast_agent:
            ds.ContrastBolusAgent = encoding.contrast_agent
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
        ds.BitsStored = encoding.bits_stored
        ds.HighBit = encoding.bits_stored - 1
        ds.PixelRepresentation = 1 if encoding.signed else 0
        ds.add_new(0x00280120, "SS" if encoding.signed else "US", padding)  # Pixel Padding Value
        ds.RescaleIntercept = f"{intercept:g}"
        ds.RescaleSlope = f"{slope:g}"
        ds.RescaleType = "HU"
        ds.WindowCenter, ds.WindowWidth = (str(value) for value in encoding.window)
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
            count - int(i) if encoding.top_first else int(i) + 1
            for i in np.flatnonzero(volume.lesion.any(axis=(1, 2)))
        ],  # instance numbers
        "generator": "inference.other_site (never used for training or operating points)",
    }
    (out_dir / "truth.json").write_text(json.dumps(truth, indent=1))
    return paths


def _radiograph_write(image: OtherRadiograph, *, out_dir: Path, seed: int) -> Path:
    """A DX image for presentation: 14 bits stored, MONOCHROME1 (dense is a low value), with the
    collimated border as it left the detector."""
    rng = np.random.default_rng([seed, 78])
    acquired = date(2026, 3, 1) + timedelta(days=int(rng.integers(0, 200)))
    age = int(rng.integers(18, 92))
    ds = Dataset()
    ds.SOPClassUID = DX_FOR_PRESENTATION
    ds.SOPInstanceUID = _uid(seed, "OSDX1", "instance", 0)
    ds.StudyInstanceUID = _uid(seed, "OSDX1", "study")
    ds.SeriesInstanceUID = _uid(seed, "OSDX1", "series")
    ds.Modality = "DX"
    ds.PatientName = f"Othersite^Phantom{seed % 10000:04d}"
    ds.PatientID = f"OS{seed}"
    ds.PatientBirthDate = f"{acquired.year - age}0101"
    ds.PatientSex = str(rng.choice(["F", "M"]))
    ds.PatientAge = f"{age:03d}Y"
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = acquired.strftime("%Y%m%d")
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "041000"
    ds.AccessionNumber = f"OSX{seed % 10_000_000:07d}"
    ds.ReferringPhysicianName = ""
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.StudyDescription = "DX THORAX"
    ds.SeriesDescription = f"Thorax {image.view}"
    ds.BodyPartExamined = "CHEST"
    ds.Manufacturer = MANUFACTURER
    ds.ManufacturerModelName = "OS Flat Panel 43"
    ds.StationName = "OSDX1"
    ds.InstitutionName = "Other Site Hospital (fictional)"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.ViewPosition = image.view
    ds.PatientOrientation = ["L", "F"]  # rows run to the patient's left, columns to the feet
    ds.ImageLaterality = "U"
    region = Dataset()
    region.CodeValue = "43799004"
    region.CodingSchemeDesignator = "SCT"
    region.CodeMeaning = "Thorax"
    ds.AnatomicRegionSequence = [region]
    ds.KVP = "120" if image.view == "PA" else "95"
    ds.DistanceSourceToDetector = "1800" if image.view == "PA" else "1100"
    ds.DetectorType = "DIRECT"
    ds.PositionerType = ""
    ds.AcquisitionContextSequence = []
    ds.ImagerPixelSpacing = [f"{image.pixel_spacing:.4f}"] * 2
    ds.PixelSpacing = ds.ImagerPixelSpacing
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    ds.PixelIntensityRelationship = "LOG"
    ds.PixelIntensityRelationshipSign = 1
    ds.PresentationLUTShape = "INVERSE"
    ds.RescaleIntercept = "0"
    ds.RescaleSlope = "1"
    ds.RescaleType = "US"
    ds.WindowCenter = "8192"
    ds.WindowWidth = "16384"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.Rows, ds.Columns = image.intensity.shape
    ds.BitsAllocated = 16
    ds.BitsStored = 14
    ds.HighBit = 13
    ds.PixelRepresentation = 0
    ds.PixelData = np.rint((1 - image.intensity) * 16383).astype(np.uint16).tobytes()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = IMPLEMENTATION_UID
    ds.file_meta = meta
    path = out_dir / "IMG0000"
    ds.save_as(path, enforce_file_format=True)
    rows = np.flatnonzero(image.lesion.any(axis=1))
    truth = {
        "positive": image.positive,
        "subtype": image.subtype,
        "lesion_rows": [int(rows[0]), int(rows[-1]) + 1] if rows.size else [],
        "lesion_slices": [1] if image.positive else [],
        "generator": "inference.other_site (never used for training or operating points)",
    }
    (out_dir / "truth.json").write_text(json.dumps(truth, indent=1))
    return path
