"""Cervical-spine CT volumes of the "other hospital", built apart from `inference.phantoms.
cspine_ct`.

Built otherwise on purpose: each vertebral body is a superellipse with a concave posterior wall
whose size grows down the neck; the posterior arch is an elliptical ring around the canal with
lateral masses, transverse processes pierced by their foramina and a tapering spinous process;
the column follows a lordotic curve with a slight list and axial rotation; the mandible shows in
the top slices and the shoulders' streaks in the bottom ones. Fractures take other shapes: a
wavering cleft through a body, a burst (cracks radiating from the centre, a retropulsed
posterior wall, height loss), an anteroinferior teardrop fragment, a break through the arch,
and an avulsed spinous process. The negatives carry their own mimics: degenerative change
(osteophytes, endplate sclerosis, Schmorl's nodes), a prominent basivertebral vein channel, the
shoulders' streaks, motion.

Values are Hounsfield units on a 256 x 256 matrix; `inference.other_site.writer` stores them
(16-bit unsigned, slope 0.5, intercept -2048).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from inference.other_site.volume import MATRIX, CtEncoding, OtherCt

FRACTURES = ("cleft", "burst", "teardrop", "arch", "spinous")
MIMICS = ("normal", "degenerative", "vascular_channel", "streak", "motion")
ENCODING = CtEncoding(
    study_description="CT CERVICAL SPINE",
    series_description="C-Spine bone {thickness:g} mm",
    body_part="CSPINE",
    station="OSCT2",
    model_name="OS Axial 64",
    series_number=4,
    bits_stored=16,
    rescale_slope=0.5,
    rescale_intercept=-2048.0,
    top_first=False,
    window=(500, 2000),
)


def _ramp(distance: np.ndarray, width: float) -> np.ndarray:
    """0 outside, 1 inside, a linear partial-volume ramp `width` mm wide around distance 0."""
    return np.clip(distance / np.float32(width) + np.float32(0.5), 0, 1).astype(np.float32)


def _noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    field = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma)
    return field / np.float32(field.std() + 1e-6)


@dataclass(frozen=True)
class _Vertebra:
    bottom: float  # mm, inferior endplate
    top: float  # superior endplate
    ap: float  # body semi-axes, mm
    lat: float


def _overlap(z: np.ndarray, thickness: float, low: float, high: float) -> np.ndarray:
    """(n,) fraction of each slice [z +- thickness/2] inside [low, high]."""
    lo = np.maximum(z - thickness / 2, low)
    hi = np.minimum(z + thickness / 2, high)
    return (np.clip(hi - lo, 0, None) / thickness).astype(np.float32)


def _segment(
    yy: np.ndarray, xx: np.ndarray, a: tuple[float, float], b: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Distance to the segment a-b in the (y, x) plane and the position along it (0 at a)."""
    dy, dx = b[0] - a[0], b[1] - a[1]
    t = np.clip(((yy - a[0]) * dy + (xx - a[1]) * dx) / max(dy * dy + dx * dx, 1e-6), 0, 1)
    return np.hypot(yy - a[0] - t * dy, xx - a[1] - t * dx), t


def cspine_ct_other(rng: np.random.Generator, *, positive: bool) -> OtherCt:
    spacing = float(rng.uniform(0.45, 0.68))
    thickness = float(rng.choice([0.8, 1.25, 2.0, 2.5], p=[0.2, 0.3, 0.3, 0.2]))
    coverage = float(rng.uniform(105.0, 150.0))
    count = max(32, int(round(coverage / thickness)))
    half = MATRIX * spacing / 2
    zs = ((np.arange(count) + 0.5) * thickness).astype(np.float32)
    z = zs[:, None, None]
    y = (np.linspace(-half, half, MATRIX, dtype=np.float32) + np.float32(rng.uniform(-6, 6)))[
        None, :, None
    ]
    x = (np.linspace(-half, half, MATRIX, dtype=np.float32) + np.float32(rng.uniform(-5, 5)))[
        None, None, :
    ]
    subtype = str(rng.choice(FRACTURES)) if positive else str(rng.choice(MIMICS))
    degenerative = subtype == "degenerative" or rng.random() < 0.2
    # The column: lordosis brings the middle of the neck forward; a slight list and rotation.
    u = z / np.float32(coverage)
    yc = np.float32(rng.uniform(6, 14)) - np.float32(rng.uniform(3, 9)) * np.sin(np.pi * u)
    xc = np.float32(rng.uniform(-2.5, 2.5)) * np.sin(np.float32(rng.uniform(0.5, 1.5)) * np.pi * u)
    spin = np.float32(rng.uniform(-0.12, 0.12)) + np.float32(rng.uniform(-0.08, 0.08)) * u
    dy, dx = y - yc, x - xc
    yy = (dy * np.cos(spin) - dx * np.sin(spin)).astype(np.float32)  # column coordinates
    xx = (dy * np.sin(spin) + dx * np.cos(spin)).astype(np.float32)
    shape = (count, MATRIX, MATRIX)
    # Vertebrae from the top down, bodies growing towards the thoracic inlet.
    vertebrae: list[_Vertebra] = []
    top = coverage + float(rng.uniform(0, 14))
    grow = float(rng.uniform(0.03, 0.06))
    while top > -20:
        height = float(rng.uniform(12.0, 15.5))
        scale = 1 + grow * len(vertebrae)
        vertebrae.append(
            _Vertebra(
                bottom=top - height,
                top=top,
                ap=float(rng.uniform(7.0, 8.2)) * scale,
                lat=float(rng.uniform(8.5, 10.0)) * scale,
            )
        )
        disc = float(rng.uniform(1.4, 2.6) if degenerative and rng.random() < 0.4 else
                     rng.uniform(3.8, 6.2))  # fmt: skip
        top = top - height - disc
    # Per slice: the vertebra it belongs to (body or the disc above it) and its body fraction.
    owner = np.zeros(count, dtype=np.int64)
    body_f = np.zeros(count, dtype=np.float32)
    for index, vertebra in enumerate(vertebrae):
        body_f += _overlap(zs, thickness, vertebra.bottom, vertebra.top)
        owner[zs < vertebra.top + 2.5] = index
    body_f = np.clip(body_f, 0, 1)
    ap = np.array([vertebrae[i].ap for i in owner], dtype=np.float32)[:, None, None]
    lat = np.array([vertebrae[i].lat for i in owner], dtype=np.float32)[:, None, None]
    # The neck.
    neck_lat = min(float(rng.uniform(50, 64)), half * 0.95)
    neck_ap = min(neck_lat * float(rng.uniform(0.8, 0.95)), half * 0.9)
    neck_y = float(rng.uniform(-4, 6))
    power = float(rng.uniform(2.2, 3.0))
    neck_rho = (np.abs(x / neck_lat) ** power + np.abs((y - neck_y) / neck_ap) ** power) ** (
        1 / power
    )
    neck_depth = (1 - neck_rho) * np.float32(np.sqrt(neck_lat * neck_ap))
    hu = np.full(shape, -1000.0, dtype=np.float32)
    hu += _ramp(neck_depth, spacing) * np.float32(rng.uniform(890, 920))
    muscle = _ramp(neck_depth - np.float32(rng.uniform(3, 8)), spacing)
    planes = np.clip(_noise(rng, (1, MATRIX, MATRIX), 5.0) - 1.0, 0, 1)
    tissue = np.float32(rng.uniform(42, 58)) - planes * np.float32(130)
    hu += muscle * (tissue - hu)
    airway_y = float(rng.uniform(-34, -26))
    airway = np.hypot(yy - airway_y, xx) - np.float32(rng.uniform(6.5, 9.0))
    hu += _ramp(np.float32(3.0) - airway, spacing) * (np.float32(45) - hu)
    hu = np.where(airway < 0, np.float32(-985), hu)
    for side in (-1.0, 1.0):  # carotid and jugular
        for cy, cx, radius in ((-18.0, 22.0, 3.8), (-13.0, 29.0, 5.5)):
            vessel = np.hypot(yy - cy, xx - side * cx) - np.float32(radius)
            hu += _ramp(-vessel, spacing) * (np.float32(rng.uniform(35, 48)) - hu)
    # Vertebral bodies: superellipse, concave posterior wall, cortex and trabecular bone.
    body_power = float(rng.uniform(2.6, 3.4))
    rho = (np.abs(yy / ap) ** body_power + np.abs(xx / lat) ** body_power) ** (1 / body_power)
    depth = (1 - rho) * np.minimum(ap, lat)
    posterior_wall = ap * np.float32(0.78) + np.float32(1.6) * (xx / lat) ** 2
    depth = np.minimum(depth, posterior_wall - yy)
    cortex_mm = float(rng.uniform(0.9, 1.6))
    cortical = np.float32(rng.uniform(950, 1350))
    trabecular = np.float32(rng.uniform(210, 360)) + np.float32(35) * _noise(rng, shape, 1.2)
    footprint = _ramp(depth, spacing)
    core = _ramp(depth - np.float32(cortex_mm), spacing)
    plate_mm = 1.0 + (float(rng.uniform(0.8, 2.0)) if degenerative else 0.0)
    plate_f = np.zeros(count, dtype=np.float32)
    for vertebra in vertebrae:
        plate_f += _overlap(zs, thickness, vertebra.bottom, vertebra.bottom + plate_mm)
        plate_f += _overlap(zs, thickness, vertebra.top - plate_mm, vertebra.top)
    plate_f = np.minimum(plate_f, body_f)[:, None, None]
    bf = body_f[:, None, None]
    body = (bf - plate_f) * (core * trabecular + (footprint - core) * cortical)
    body += plate_f * footprint * np.float32(rng.uniform(800, 1000))
    disc_value = np.float32(rng.uniform(70, 100))
    value = body + (1 - bf) * footprint * disc_value
    hu += footprint * (value / np.maximum(footprint, np.float32(1e-3)) - hu)
    # The posterior arch: a ring around the canal, lateral masses, transverse processes and a
    # spinous process, a little higher than the body, opened by the facet joints.
    # The canal's front is the body's posterior wall; the ring closes it behind, and pedicles
    # join the body to the lateral masses.
    canal_ap, canal_lat = np.float32(rng.uniform(6.0, 7.5)), lat + np.float32(rng.uniform(1, 3))
    canal_y = ap * np.float32(0.78) + canal_ap
    ring = np.float32(rng.uniform(3.2, 4.5))
    inner = np.sqrt(((yy - canal_y) / canal_ap) ** 2 + (xx / canal_lat) ** 2)
    outer = np.sqrt(((yy - canal_y) / (canal_ap + ring)) ** 2 + (xx / (canal_lat + ring)) ** 2)
    arch = _ramp((1 - outer) * ring, spacing) * _ramp((inner - 1) * canal_ap, spacing)
    arch *= _ramp(yy - canal_y + canal_ap * np.float32(0.15), spacing)
    for side in (-1.0, 1.0):
        distance, _ = _segment(
            yy,
            xx,
            (float(ap.mean()) * 0.45, side * float(lat.mean()) * 0.7),
            (float(canal_y.mean()), side * float((canal_lat + ring * 0.5).mean())),
        )
        arch = np.maximum(arch, _ramp(np.float32(2.4) - distance, spacing))
    masses = np.zeros(shape, dtype=np.float32)
    for side in (-1.0, 1.0):
        mass = np.hypot(yy - canal_y + 1, xx - side * (canal_lat + ring * 0.7)) - np.float32(5.5)
        masses = np.maximum(masses, _ramp(-mass, spacing))
        distance, _ = _segment(yy, xx, (0.0, side * float(lat.mean())), (-2.0, side * 26.0))
        foramen = np.hypot(yy + 1.0, xx - side * (float(lat.mean()) + 7.0)) - np.float32(2.6)
        arch = np.maximum(arch, _ramp(np.float32(2.8) - distance, spacing) * _ramp(foramen, 0.6))
    tip = canal_y + canal_ap + ring + np.float32(rng.uniform(10, 18))
    distance, along = _segment(yy, xx, (float(canal_y.mean() + canal_ap + ring), 0.0),
                               (float(tip.mean()), 0.0))  # fmt: skip
    spinous = _ramp(np.float32(3.2) - np.float32(1.8) * along - distance, spacing)
    arch = np.maximum(arch, spinous)
    arch_f = np.zeros(count, dtype=np.float32)
    joint_f = np.zeros(count, dtype=np.float32)
    for vertebra in vertebrae:
        arch_f += _overlap(zs, thickness, vertebra.bottom + 1.5, vertebra.top + 1.2)
        joint_f += _overlap(zs, thickness, vertebra.top + 1.2, vertebra.top + 2.4)
    arch_w = np.maximum(arch * np.clip(arch_f, 0, 1)[:, None, None],
                        masses * (1 - np.clip(joint_f, 0, 1))[:, None, None])  # fmt: skip
    arch_value = np.float32(rng.uniform(850, 1150)) - masses * np.float32(400) * (inner > 1.3)
    hu += arch_w * (arch_value - hu)
    canal = _ramp((1 - inner) * canal_ap, spacing) * _ramp(yy - posterior_wall, spacing)
    hu += canal * (np.float32(rng.uniform(4, 12)) - hu)
    cord = np.sqrt(((yy - canal_y + 0.5) / 3.8) ** 2 + (xx / 6.0) ** 2)
    hu += _ramp((1 - cord) * 3.8, spacing) * canal * (np.float32(rng.uniform(26, 36)) - hu)
    # The mandible's arc in the top slices.
    jaw_z = coverage - float(rng.uniform(0, 25))
    jaw = np.abs(np.hypot((y - neck_y + 12) / 1.0, x / 1.15) - np.float32(neck_ap * 0.9))
    jaw_w = _ramp(np.float32(3.5) - jaw, spacing) * (y < neck_y - 10) * _ramp(z - jaw_z, 2.0)
    hu += jaw_w * (np.float32(rng.uniform(1000, 1400)) - hu)
    bone = (footprint * bf > 0.5) | (arch_w > 0.5)
    if degenerative:
        _degeneration(hu, rng, zs=zs, thickness=thickness, vertebrae=vertebrae, yy=yy, xx=xx,
                      depth=depth, ap=ap, spacing=spacing)  # fmt: skip
    if subtype == "vascular_channel" or rng.random() < 0.35:
        strength = 1.0 if subtype == "vascular_channel" else float(rng.uniform(0.4, 0.8))
        distance, _ = _segment(yy, xx, (0.0, 0.0), (float(ap.mean()), 0.0))
        channel = _ramp(np.float32(rng.uniform(0.8, 1.3)) - distance, spacing) * (yy > 0)
        mid = np.zeros(count, dtype=np.float32)
        for vertebra in vertebrae:
            middle = (vertebra.bottom + vertebra.top) / 2
            mid += _overlap(zs, thickness, middle - 2.0, middle + 2.0)
        channel *= np.clip(mid, 0, 1)[:, None, None] * np.float32(strength) * footprint
        hu += channel * (np.float32(rng.uniform(30, 90)) - hu)
    lesion = np.zeros(shape, dtype=bool)
    if positive:
        inside = [
            i for i, v in enumerate(vertebrae) if v.bottom > zs[0] + 3 and v.top < zs[-1] - 3
        ] or list(range(len(vertebrae)))
        for _ in range(6):
            level = inside[int(rng.integers(0, len(inside)))]
            _fracture(hu, lesion, rng, subtype=subtype, vertebra=vertebrae[level], z=z, yy=yy,
                      xx=xx, bone=bone, canal_y=canal_y, spacing=spacing)  # fmt: skip
            if int((lesion.sum(axis=(1, 2)) >= 10).sum()) >= 2:
                break
    # Acquisition: the shoulders' streaks low in the neck, blur, noise, motion.
    if subtype == "streak" or rng.random() < 0.3:
        low = _ramp(np.float32(rng.uniform(15, 30)) - z, 6.0)
        band = _ramp(np.float32(rng.uniform(6, 12)) - np.abs(y - yc), 3.0)
        hu -= low * band * muscle * np.float32(rng.uniform(40, 110))
        theta = np.arctan2(y - yc, x)
        hu += low * muscle * (np.cos(np.float32(rng.uniform(3, 7)) * theta) > 0.985) * 90
    sharp = float(rng.uniform(0.25, 0.8))
    hu = ndimage.gaussian_filter(hu, sigma=(0, sharp, sharp)).astype(np.float32)
    sd = float(rng.uniform(9.0, 24.0))
    grain = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), (0, 0.6, 0.6))
    hu += grain * np.float32(sd * 1.9)
    if subtype == "motion":
        moved = rng.choice(count, size=max(2, count // 8), replace=False)
        for index in moved:
            moved_slice = ndimage.shift(hu[index], rng.uniform(-2, 2, 2), order=1)
            hu[index] = 0.5 * hu[index] + 0.5 * moved_slice
    lesion_slices = lesion.sum(axis=(1, 2)) >= 10
    lesion &= lesion_slices[:, None, None]
    return OtherCt(
        hounsfield=hu,
        lesion=lesion,
        positive=positive and bool(lesion_slices.sum() >= 2),
        subtype=subtype,
        pixel_spacing=spacing,
        slice_thickness=thickness,
        field_radius=float(rng.uniform(0.47, 0.5)) * MATRIX * spacing,
        kvp=int(rng.choice([100, 120, 140])),
        encoding=ENCODING,
    )


def _degeneration(
    hu: np.ndarray,
    rng: np.random.Generator,
    *,
    zs: np.ndarray,
    thickness: float,
    vertebrae: list[_Vertebra],
    yy: np.ndarray,
    xx: np.ndarray,
    depth: np.ndarray,
    ap: np.ndarray,
    spacing: float,
) -> None:
    """Anterior osteophytes at the endplates and Schmorl's nodes (lucent pits, sclerotic rims)."""
    for vertebra in vertebrae:
        if rng.random() < 0.5:
            continue
        reach = np.float32(rng.uniform(2.0, 5.0))
        near = np.maximum(
            _overlap(zs, thickness, vertebra.top - 2.5, vertebra.top + 0.8),
            _overlap(zs, thickness, vertebra.bottom - 0.8, vertebra.bottom + 2.5),
        )[:, None, None]
        spur = _ramp(reach + depth, spacing) * _ramp(-depth + np.float32(0.5), spacing)
        spur *= (yy < -ap * 0.3) * near
        hu += spur * (np.float32(rng.uniform(700, 1000)) - hu)
        if rng.random() < 0.5:
            cz = vertebra.top - 1.5 if rng.random() < 0.5 else vertebra.bottom + 1.5
            cy, cx = float(rng.uniform(-3, 3)), float(rng.uniform(-4, 4))
            r = float(rng.uniform(1.8, 3.2))
            zz = zs[:, None, None]
            distance = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2 + ((zz - cz) * 1.2) ** 2)
            hu += _ramp(np.float32(r + 1.0) - distance, spacing) * (np.float32(900) - hu)
            hu += _ramp(np.float32(r) - distance, spacing) * (np.float32(60) - hu)


def _fracture(
    hu: np.ndarray,
    lesion: np.ndarray,
    rng: np.random.Generator,
    *,
    subtype: str,
    vertebra: _Vertebra,
    z: np.ndarray,
    yy: np.ndarray,
    xx: np.ndarray,
    bone: np.ndarray,
    canal_y: np.ndarray,
    spacing: float,
) -> None:
    """Break bone of one vertebra: gap voxels take the fracture's fluid value and are marked."""
    ap, lat = vertebra.ap, vertebra.lat
    height = vertebra.top - vertebra.bottom
    gap_value = np.float32(rng.uniform(35, 120))
    width = float(rng.uniform(1.8, 3.4))
    wobble = _noise(rng, (1, MATRIX, MATRIX), 8.0) * np.float32(rng.uniform(0.4, 1.2))
    in_body = (yy < ap * 0.9) & (np.abs(xx) < lat + 1.5)
    rows = (z >= vertebra.bottom - 0.5) & (z <= vertebra.top + 2.0)

    def cut(gap: np.ndarray) -> None:
        broken = gap & bone & rows
        hu[broken] = gap_value
        lesion[broken] = True

    def shift(fragment: np.ndarray, pixels: int, axis: int) -> None:
        fragment = fragment & bone & rows
        moved = np.roll(np.where(fragment, hu, np.float32(0)), pixels, axis=axis)
        landed = np.roll(fragment, pixels, axis=axis)
        hu[fragment] = gap_value
        hu[landed] = moved[landed]
        lesion[fragment | landed] = True

    if subtype == "cleft":
        angle = float(rng.uniform(0, np.pi))
        offset = float(rng.uniform(-0.4, 0.4)) * min(ap, lat)
        signed = yy * np.float32(np.cos(angle)) + xx * np.float32(np.sin(angle)) - offset + wobble
        length = float(rng.uniform(0.5, 1.0)) * height
        start = vertebra.top - length if rng.random() < 0.5 else vertebra.bottom
        span = (z >= start) & (z <= start + length)
        cut((np.abs(signed) < width / 2) & in_body & span)
    elif subtype == "burst":
        for _ in range(int(rng.integers(3, 5))):
            angle = float(rng.uniform(0, 2 * np.pi))
            end = (float(np.sin(angle)) * ap * 1.4, float(np.cos(angle)) * lat * 1.4)
            distance, _ = _segment(yy, xx, (0.0, 0.0), end)
            cut((distance + wobble * 0.5 < width / 2) & in_body & (z >= vertebra.bottom) &
                (z <= vertebra.top))  # fmt: skip
        loss = float(rng.uniform(0.15, 0.3)) * height
        crushed = (z > vertebra.top - loss) & (z <= vertebra.top) & in_body & bone
        hu[crushed] = np.float32(85)
        lesion[crushed] = True
        back = (yy > ap * 0.45) & in_body & (z >= vertebra.bottom) & (z <= vertebra.top - loss)
        shift(back, int(round(float(rng.uniform(1.8, 3.5)) / spacing)), axis=1)
    elif subtype == "teardrop":
        slope = float(rng.uniform(0.6, 1.4))
        plane = -yy - np.float32(ap * rng.uniform(0.2, 0.5)) - (z - vertebra.bottom) * slope
        cut((np.abs(plane + wobble * 0.5) < width / 2) & in_body)
        fragment = (plane > width / 2) & in_body
        shift(fragment, -int(round(float(rng.uniform(1.5, 3.5)) / spacing)), axis=1)
    elif subtype == "arch":
        side = float(rng.choice([-1.0, 1.0]))
        where = float(rng.uniform(0.3, 1.2))  # radians from the midline: lamina to pedicle
        cy = float(canal_y.mean()) + np.cos(where) * 9.0
        cx = side * np.sin(where) * 13.0
        cos, sin = np.float32(np.cos(where)), np.float32(np.sin(where))
        signed = (xx - cx) * cos + (yy - cy) * sin * side
        near = np.hypot(yy - cy, xx - cx) < 9.0
        cut((np.abs(signed + wobble * 0.5) < width / 2) & near & (yy > ap * 0.5))
        if rng.random() < 0.3:  # both sides
            signed = (xx + cx) * np.float32(np.cos(where)) - (yy - cy) * np.float32(
                np.sin(where)
            ) * side
            near = np.hypot(yy - cy, xx + cx) < 9.0
            cut((np.abs(signed) < width / 2) & near & (yy > ap * 0.5))
    else:  # spinous: the tip avulsed
        start = float(canal_y.mean()) + 11.0
        at = start + float(rng.uniform(4, 9))
        tilt = float(rng.uniform(-0.4, 0.4))
        plane = (yy - at) + xx * np.float32(tilt)
        behind = (np.abs(xx) < 5.0) & (yy > start)
        cut((np.abs(plane + wobble * 0.5) < width / 2) & behind)
        shift((plane > width / 2) & behind, int(round(float(rng.uniform(2, 4.5)) / spacing)), 1)
