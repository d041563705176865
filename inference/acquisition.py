"""A series' acquisition, in the bands the subgroup metrics and the drift checks compare:
manufacturer and model, station, slice thickness band, kVp band, patient age band and sex,
read from one DICOM header. Sender-supplied text, so it is cut to what can be shown."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

ACQUISITION_ATTRIBUTES = {
    "manufacturer": "manufacturer and model",
    "station": "station",
    "slice_thickness": "slice thickness",
    "kvp": "kVp",
    "age": "patient age",
    "sex": "patient sex",
}


def _text(ds: Any, keyword: str) -> str:
    value = str(ds.get(keyword, "") or "").strip()
    return re.sub(r"[^\w .+\-/()]", "", value)[:64]  # a sender's text: shown, never trusted


def _number(ds: Any, keyword: str) -> float | None:
    try:
        value = float(ds.get(keyword))
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _band(value: float | None, edges: Sequence[tuple[float, str]], unit: str) -> str:
    if value is None:
        return "unknown"
    for upper, label in edges:
        if value <= upper:
            return f"{label} {unit}".strip()
    return f"> {edges[-1][0]:g} {unit}".strip()


def _age_years(ds: Any) -> float | None:
    """Patient's Age (nnnY / M / W / D)."""
    match = re.fullmatch(r"(\d{1,3})([YMWD])", str(ds.get("PatientAge", "") or "").strip())
    if not match:
        return None
    per_year = {"Y": 1, "M": 12, "W": 52.18, "D": 365.25}[match.group(2)]
    return int(match.group(1)) / per_year


def acquisition_of(ds: Any) -> dict[str, str]:
    """One case's subgroups from a DICOM header (pydicom Dataset); "unknown" where untold."""
    maker = " ".join(
        p for p in (_text(ds, "Manufacturer"), _text(ds, "ManufacturerModelName")) if p
    )
    sex = _text(ds, "PatientSex").upper()
    return {
        "manufacturer": maker or "unknown",
        "station": _text(ds, "StationName") or "unknown",
        "slice_thickness": _band(
            _number(ds, "SliceThickness"), [(1.5, "<= 1.5"), (3.0, "1.5-3"), (5.0, "3-5")], "mm"
        ),
        "kvp": _band(_number(ds, "KVP"), [(100, "<= 100"), (120, "101-120")], "kV"),
        "age": _band(_age_years(ds), [(17, "0-17"), (39, "18-39"), (64, "40-64")], "years"),
        "sex": sex if sex in ("F", "M", "O") else "unknown",
    }
