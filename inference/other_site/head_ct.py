"""Head CT volumes of the "other hospital", built apart from `inference.phantoms.head_ct`.

The anatomy is constructed differently on purpose: a superellipse head whose skull is thicker
front and back, cortex and sulci from band-pass noise rather than radial clefts, butterfly
lateral ventricles, a falx that is sometimes dense or calcified, basal ganglia; the skull base is
wedges of bone and air boxes. Bleeds have other shapes: a subdural is the gap between two offset
outlines (a crescent), an epidural the overlap of two discs (a lens), a parenchymal clot a
lobulated star-shaped blob with an oedema rim, a contusion a cluster of small patches, an
intraventricular bleed a fluid level in the occipital horns, a subarachnoid bleed the sulci of a
region filled. The negatives carry their own mimics: a dense or calcified falx, basal ganglia and
choroid calcification, beam hardening between the petrous bones, motion.

Values are Hounsfield units on a 256 x 256 matrix; `inference.other_site.writer` stores them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from inference.other_site.volume import MATRIX, CtEncoding, OtherCt

BLEEDS = (
    "subdural",
    "epidural",
    "parenchymal",
    "contusion",
    "intraventricular",
    "subarachnoid",
)
MIMICS = ("normal", "dense_falx", "calcified", "beam_hardening", "motion")
ENCODING = CtEncoding(
    study_description="CT BRAIN NON-CONTRAST",
    series_description="Brain {thickness:g} mm",
    body_part="HEAD",
    station="OSCT1",
    model_name="OS Axial 32",
    series_number=3,
)


@dataclass(frozen=True)
class _Frame:
    z: np.ndarray  # (n, 1, 1) mm above the lowest slice
    y: np.ndarray  # (1, MATRIX, 1) mm, anterior negative
    x: np.ndarray  # (1, 1, MATRIX) mm
    spacing: float
    thickness: float


def _frame(rng: np.random.Generator) -> _Frame:
    spacing = float(rng.uniform(0.72, 0.95))
    thickness = float(rng.choice([2.5, 5.0], p=[0.35, 0.65]))
    coverage = float(rng.uniform(118.0, 160.0))
    count = max(24, int(round(coverage / thickness)))
    half = MATRIX * spacing / 2
    y = np.linspace(-half, half, MATRIX, dtype=np.float32) + np.float32(rng.uniform(-8, 8))
    x = np.linspace(-half, half, MATRIX, dtype=np.float32) + np.float32(rng.uniform(-6, 6))
    z = (np.arange(count, dtype=np.float32) + 0.5) * np.float32(thickness)
    return _Frame(
        z=z[:, None, None],
        y=y[None, :, None],
        x=x[None, None, :],
        spacing=spacing,
        thickness=thickness,
    )


def _ramp(distance: np.ndarray, width: float) -> np.ndarray:
    """0 outside, 1 inside, a linear partial-volume ramp `width` mm wide around distance 0."""
    return np.clip(distance / np.float32(width) + np.float32(0.5), 0, 1).astype(np.float32)


def _band_noise(
    rng: np.random.Generator, shape: tuple[int, ...], low: float, high: float
) -> np.ndarray:
    """Zero-mean band-pass noise (difference of two Gaussian blurs, sigmas in voxels)."""
    white = rng.standard_normal(shape).astype(np.float32)
    fine = ndimage.gaussian_filter(white, sigma=(0.6, low, low))
    coarse = ndimage.gaussian_filter(white, sigma=(1.0, high, high))
    band = fine - coarse
    band /= np.float32(band.std() + 1e-6)
    return band


def head_ct_other(rng: np.random.Generator, *, positive: bool) -> OtherCt:
    frame = _frame(rng)
    z, y, x = frame.z, frame.y, frame.x
    spacing = frame.spacing
    # The vault: the lowest slice sits 0-25 mm above the skull base; the top may stop short of
    # the vertex (partial coverage).
    start = float(rng.uniform(0.0, 25.0))
    vertex = float(rng.uniform(150.0, 175.0))
    u = (z + np.float32(start)) / np.float32(vertex)
    widest = float(rng.uniform(0.38, 0.46))
    profile = np.where(
        u > widest,
        np.clip(1 - ((u - widest) / (1 - widest)) ** 2, 0.0, 1.0) ** 0.6,
        0.80 + 0.20 * np.clip(u / widest, 0, 1),
    ).astype(np.float32)
    semi_ap = float(rng.uniform(84.0, 98.0)) * profile
    semi_lat = semi_ap * np.float32(rng.uniform(0.74, 0.86))
    power = float(rng.uniform(2.0, 2.5))
    roll = float(rng.uniform(-0.12, 0.12))  # head rotated in the gantry (radians)
    yr = y * np.float32(np.cos(roll)) - x * np.float32(np.sin(roll))
    xr = y * np.float32(np.sin(roll)) + x * np.float32(np.cos(roll))
    rho = (
        np.abs(xr / np.maximum(semi_lat, 1.0)) ** power
        + np.abs(yr / np.maximum(semi_ap, 1.0)) ** power
    ) ** (1 / power)
    radius = np.sqrt(np.maximum(semi_ap * semi_lat, 1.0))
    outer = (1 - rho) * radius  # mm inside the outer table (approximately)
    theta = np.arctan2(yr, xr)
    skull = np.float32(rng.uniform(4.5, 6.5)) * (1 + np.float32(0.35) * np.abs(np.sin(theta)))
    inner = outer - skull  # mm inside the inner table
    hu = np.full(outer.shape, -1000.0, dtype=np.float32)
    scalp = float(rng.uniform(3.0, 6.0))
    hu += _ramp(outer + np.float32(scalp), spacing) * np.float32(1000.0 + rng.uniform(25, 55))
    diploe = np.abs(outer - skull / 2) / (skull / 2)  # 0 mid-bone, 1 at the tables
    bone = np.float32(rng.uniform(650, 850)) + np.float32(rng.uniform(500, 750)) * diploe
    bone_weight = _ramp(outer, spacing) * (1 - _ramp(inner, spacing))
    hu += bone_weight * (bone - hu)
    brain = _ramp(inner, spacing)
    # Tissue by depth below the inner table: a CSF rim, grey cortex, white matter beneath.
    rim = float(rng.uniform(0.6, 2.2))
    grey_depth = rim + float(rng.uniform(2.2, 3.6))
    grey, white = float(rng.uniform(35, 42)), float(rng.uniform(23, 30))
    tissue = np.where(inner < grey_depth, grey, white).astype(np.float32)
    tissue = np.where(inner < rim, np.float32(rng.uniform(3, 10)), tissue)
    shape = tuple(int(s) for s in np.broadcast_shapes(z.shape, y.shape, x.shape))
    texture = _band_noise(rng, shape, 1.5, 6.0) * np.float32(rng.uniform(0.8, 2.0))
    tissue += texture
    # Sulci: where band-pass noise is high inside the cortical band, reaching 4-12 mm down.
    reach = float(rng.uniform(4.0, 12.0))
    folds = _band_noise(rng, shape, 1.6, 4.5)
    sulcus = np.clip((folds - np.float32(0.8)) * np.float32(2.5), 0, 1)
    sulcus *= _ramp(np.float32(reach) - inner, 2.0) * _ramp(inner - np.float32(rim), 1.0)
    csf = np.float32(rng.uniform(4, 12))
    tissue += sulcus * (csf - tissue)
    hu += brain * (tissue - hu)
    lesion = np.zeros(shape, dtype=bool)
    centre_z = float(vertex * 0.55 - start)  # the ventricles' level, in this volume's z

    def paint(weight: np.ndarray, value: float, *, mark: bool = False) -> None:
        nonlocal hu, lesion
        weight = weight * brain
        hu += weight * (np.float32(value) - hu)
        if mark:
            lesion |= weight > 0.5

    # Interhemispheric falx (sometimes dense, the classic false alarm) and basal ganglia.
    falx_value = float(rng.uniform(30, 45))
    subtype = str(rng.choice(BLEEDS)) if positive else str(rng.choice(MIMICS))
    if subtype == "dense_falx":
        falx_value = float(rng.uniform(55, 75))
    falx = _ramp(np.float32(0.6) - np.abs(xr), spacing) * (np.abs(yr) > 22).astype(np.float32)
    falx = falx * (inner > 2.0)
    paint(falx, falx_value)
    atrophy = float(rng.uniform(0.8, 1.4))
    for side in (-1.0, 1.0):
        ganglia = (
            ((z - centre_z + 12) / 11) ** 2 + ((yr + 2) / 12) ** 2 + ((xr - side * 19) / 7) ** 2
        )
        paint(_ramp(1 - ganglia, 0.3), float(rng.uniform(33, 39)))
    # Butterfly lateral ventricles: each body a bent ellipse; frontal and occipital horns.
    for side in (-1.0, 1.0):
        bend = np.float32(0.004) * (yr**2)
        body = (
            ((z - centre_z) / (13 * atrophy)) ** 2
            + ((yr - 4) / (24 * atrophy)) ** 2
            + ((xr - side * (6 + 3 * atrophy) - side * bend) / (4.5 * atrophy)) ** 2
        )
        paint(_ramp(1 - body, 0.25), float(rng.uniform(2, 9)))
        horn = (
            ((z - centre_z + 8) / 9) ** 2
            + ((yr - 30 * atrophy) / (9 * atrophy)) ** 2
            + ((xr - side * 15 * atrophy) / (6 * atrophy)) ** 2
        )
        paint(_ramp(1 - horn, 0.25), float(rng.uniform(2, 9)))
    # Skull base in the lowest slices: petrous wedges and the sphenoid air.
    base = max(0.0, 30.0 - start)
    if base > 0:
        for side in (-1.0, 1.0):
            along = (yr - 10) * np.float32(0.6) + (xr * side - 30) * np.float32(0.8)
            across = (yr - 10) * np.float32(0.8) - (xr * side - 30) * np.float32(0.6)
            wedge = _ramp(np.float32(22) - np.abs(along), 1.0) * _ramp(
                np.float32(6) - np.abs(across) + along * np.float32(0.15), 1.0
            )
            wedge = wedge * _ramp(np.float32(base) - z, 2.0)
            hu += wedge * (np.float32(rng.uniform(1100, 1600)) - hu)
        sinus = (np.abs(yr + 28) < 12) & (np.abs(xr) < 14)
        hu = np.where(sinus & (z < base * 0.8), np.float32(-900), hu)
    if subtype == "beam_hardening" and base > 0:
        dark = _ramp(np.float32(9) - np.abs(yr - 12), 3.0) * _ramp(np.float32(base + 8) - z, 4.0)
        hu -= dark * brain * np.float32(rng.uniform(10, 25))
        streak = np.cos(np.float32(rng.uniform(4, 9)) * theta) > 0.97
        hu += streak * brain * _ramp(np.float32(base + 8) - z, 4.0) * np.float32(40)
    if subtype == "calcified" or rng.random() < 0.25:
        for side in (-1.0, 1.0):
            spot = (
                ((z - centre_z + 2) / 3) ** 2
                + ((yr - 24) / 2.5) ** 2
                + ((xr - side * 13) / 2.5) ** 2
            )
            paint(_ramp(1 - spot, 0.3), float(rng.uniform(150, 450)))
        if subtype == "calcified" and rng.random() < 0.6:
            for side in (-1.0, 1.0):
                spot = (
                    ((z - centre_z + 12) / 4) ** 2
                    + ((yr + 4) / 3) ** 2
                    + ((xr - side * 20) / 3) ** 2
                )
                paint(_ramp(1 - spot, 0.3), float(rng.uniform(120, 300)))
    if subtype == "calcified" and rng.random() < 0.5:
        plaque = (np.abs(xr) < 1.2) & (np.abs(yr + 40) < 6) & (np.abs(z - centre_z - 20) < 4)
        paint(plaque.astype(np.float32), float(rng.uniform(300, 700)))

    blood = float(rng.uniform(52, 88))
    if positive:
        # A bleed must show on at least two slices at this thickness; redraw elsewhere if not.
        for _ in range(5):
            _bleed_draw(
                subtype,
                rng,
                paint=paint,
                frame=frame,
                yr=yr,
                xr=xr,
                inner=inner,
                theta=theta,
                sulcus=sulcus,
                centre_z=centre_z,
                atrophy=atrophy,
                blood=blood,
            )
            if int((lesion.sum(axis=(1, 2)) >= 12).sum()) >= 2:
                break
    # Acquisition: reconstruction blur per slice, correlated and white noise.
    sharp = float(rng.uniform(0.3, 1.1))
    hu = ndimage.gaussian_filter(hu, sigma=(0, sharp, sharp)).astype(np.float32)
    sd = float(rng.uniform(3.0, 7.5))
    noise = rng.standard_normal(hu.shape).astype(np.float32)
    noise = ndimage.gaussian_filter(noise, sigma=(0, 0.7, 0.7)) * np.float32(sd * 1.8)
    hu += noise
    if subtype == "motion":
        moved = rng.choice(hu.shape[0], size=max(2, hu.shape[0] // 6), replace=False)
        for index in moved:
            shift = rng.uniform(-3, 3, size=2)
            hu[index] = 0.5 * hu[index] + 0.5 * ndimage.shift(hu[index], shift, order=1)
    lesion_slices = lesion.sum(axis=(1, 2)) >= 12
    lesion &= lesion_slices[:, None, None]
    field_radius = float(rng.uniform(0.46, 0.5)) * MATRIX * spacing
    return OtherCt(
        hounsfield=hu,
        lesion=lesion,
        positive=positive and bool(lesion_slices.any()),
        subtype=subtype,
        pixel_spacing=spacing,
        slice_thickness=frame.thickness,
        field_radius=field_radius,
        kvp=int(rng.choice([100, 110, 120, 130])),
        encoding=ENCODING,
    )


def _bleed_draw(
    subtype: str,
    rng: np.random.Generator,
    *,
    paint: Callable[..., None],
    frame: _Frame,
    yr: np.ndarray,
    xr: np.ndarray,
    inner: np.ndarray,
    theta: np.ndarray,
    sulcus: np.ndarray,
    centre_z: float,
    atrophy: float,
    blood: float,
) -> None:
    z = frame.z
    top = float(frame.z[-1, 0, 0])
    scale = float(rng.uniform(0.6, 1.4))
    level = float(rng.uniform(0.35, 0.8)) * top
    height = float(rng.uniform(12, 40)) * scale
    span = np.float32(np.clip(1 - ((z - level) / (height / 2)) ** 2, 0, 1))
    angle = float(rng.uniform(0, 2 * np.pi))
    toward = np.cos(theta - np.float32(angle))  # 1 on the bleed's side
    if subtype == "subdural":
        # The crescent between the inner table and an outline pushed in on one side.
        width = np.float32(rng.uniform(3, 12) * scale) * np.clip(toward, 0, 1) ** 1.5 * span
        paint(_ramp(width - inner, 1.0) * _ramp(inner, 0.8), blood, mark=True)
    elif subtype == "epidural":
        # The overlap of two discs: a lens against the inner table.
        depth = np.float32(rng.uniform(5, 16) * scale) * span
        lens = _ramp(depth * np.clip(toward - np.float32(0.75), 0, 1) * 4 - inner, 1.0)
        paint(lens * _ramp(inner, 0.8), blood, mark=True)
    elif subtype == "parenchymal":
        reach = float(rng.uniform(0.2, 0.55))
        cy = float(np.sin(angle)) * reach * 55
        cx = float(np.cos(angle)) * reach * 45
        r = np.sqrt(((yr - cy) ** 2 + (xr - cx) ** 2) + ((z - level) * 1.1) ** 2)
        phi = np.arctan2(yr - cy, xr - cx)
        size = float(rng.uniform(5, 18)) * scale
        lobes = 1 + 0.25 * np.sin(3 * phi + rng.uniform(0, 6)) + 0.15 * np.sin(5 * phi)
        paint(_ramp(size * lobes + 4 - r, 1.5) * (inner > 3), float(rng.uniform(16, 22)))
        paint(_ramp(size * lobes - r, 1.0) * (inner > 3), blood, mark=True)
    elif subtype == "contusion":
        for _ in range(int(rng.integers(2, 6))):
            a = angle + float(rng.normal(0, 0.3))
            inset = float(rng.uniform(4, 14))
            cy = float(np.sin(a)) * (60 - inset)
            cx = float(np.cos(a)) * (48 - inset)
            cz = level + float(rng.normal(0, 6))
            size = float(rng.uniform(3, 7)) * scale
            r = np.sqrt((yr - cy) ** 2 + (xr - cx) ** 2 + ((z - cz) * 0.8) ** 2)
            paint(_ramp(size - r, 1.0) * (inner > 1.5), blood, mark=True)
    elif subtype == "intraventricular":
        for side in (-1.0, 1.0):
            horn = (
                ((z - centre_z + 8) / 9) ** 2
                + ((yr - 30 * atrophy) / (9 * atrophy)) ** 2
                + ((xr - side * 15 * atrophy) / (6 * atrophy)) ** 2
            )
            surface = 30 * atrophy + float(rng.uniform(-2, 6))
            paint(_ramp(1 - horn, 0.25) * _ramp(yr - surface, 1.0), blood, mark=True)
    else:  # subarachnoid: the sulci of a region filled with blood
        region = np.clip(toward - np.float32(rng.uniform(0.2, 0.6)), 0, 1) * span
        filled = np.clip(sulcus * 2, 0, 1) * (region > 0.05)
        paint(filled * _ramp(inner - 0.5, 0.5), blood, mark=True)
