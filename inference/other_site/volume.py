"""What an other-site generator hands its writer: a CT volume in Hounsfield units, its truth and
the way that site's scanner stores and names it (`CtEncoding`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MATRIX = 256


@dataclass(frozen=True, kw_only=True)
class CtEncoding:
    """How this site's scanner writes a series: storage, rescale and the words on it."""

    study_description: str
    series_description: str  # formatted with the slice thickness ("{thickness:g}")
    body_part: str
    station: str
    model_name: str
    series_number: int
    bits_stored: int = 12
    signed: bool = False  # Pixel Representation 1; padding is then -2000 (else 0)
    rescale_slope: float = 1.0
    rescale_intercept: float = -1024.0
    top_first: bool = True  # instance 1 is the top slice (acquired from the vertex down)
    window: tuple[int, int] = (40, 80)  # centre, width
    contrast_agent: str = ""


@dataclass(frozen=True, kw_only=True)
class OtherCt:
    hounsfield: np.ndarray  # float32 (slices, MATRIX, MATRIX), first slice lowest
    lesion: np.ndarray  # bool, same shape
    positive: bool
    subtype: str
    pixel_spacing: float  # mm
    slice_thickness: float  # mm (= slice spacing here)
    field_radius: float  # mm: outside it the scanner reconstructed nothing
    kvp: int
    encoding: CtEncoding


@dataclass(frozen=True, kw_only=True)
class OtherRadiograph:
    intensity: np.ndarray  # float32 (rows, columns) in [0, 1], bright = dense
    lesion: np.ndarray  # bool, same shape
    positive: bool
    subtype: str
    pixel_spacing: float  # mm at the detector
    view: str  # "PA" | "AP"
