"""CT pulmonary angiograms of the "other hospital", built apart from `inference.phantoms.ctpa`.

Built otherwise on purpose: a superellipse chest with fat, muscle, ribs as interrupted rings and
a vertebral column; lungs bounded by domed hemidiaphragms and a mediastinum; a heart whose right
ventricle holds the bolus; an ascending aorta, arch and descending aorta less enhanced than the
pulmonary arteries (a pulmonary-arterial phase), a superior vena cava dense with undiluted
contrast (streaks); the pulmonary arteries are a random three-generation tree grown from each
hilum, the veins a second, less enhanced tree from the left atrium, with the trachea and main
bronchi beside them. Emboli take other shapes: a saddle across the bifurcation, a partial central
defect, an occlusive segmental plug, a mural crescent and a "tram-track" central defect. The
negatives carry their own mimics: mixing of unopacified blood, a hilar lymph node, a poor bolus
(every artery under 220 HU), respiratory motion, the vena cava's streaks.

Values are Hounsfield units on a 256 x 256 matrix; `inference.other_site.writer` stores them
(16-bit signed, padding -2000, instance 1 at the bottom).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from inference.other_site.volume import MATRIX, CtEncoding, OtherCt

EMBOLI = ("saddle", "central", "segmental", "mural", "tram_track")
MIMICS = ("normal", "mixing", "node", "poor_bolus", "motion", "streak")
ENCODING = CtEncoding(
    study_description="CT ANGIO CHEST PE PROTOCOL",
    series_description="CTPA {thickness:g} mm",
    body_part="CHEST",
    station="OSCT3",
    model_name="OS Axial 128",
    series_number=5,
    bits_stored=16,
    signed=True,
    rescale_intercept=0.0,
    top_first=False,
    window=(100, 700),
    contrast_agent="Iodinated contrast (fictional)",
)


def _ramp(distance: np.ndarray, width: float) -> np.ndarray:
    return np.clip(distance / np.float32(width) + np.float32(0.5), 0, 1).astype(np.float32)


@dataclass(frozen=True)
class _Segment:
    a: np.ndarray  # (z, y, x) mm
    b: np.ndarray
    radius: float
    generation: int  # 0 main / right / left, 1 lobar, 2 segmental, 3 subsegmental


class _Canvas:
    """The volume, its millimetre axes, and tubes painted into their bounding boxes."""

    def __init__(
        self, hu: np.ndarray, zs: np.ndarray, ys: np.ndarray, xs: np.ndarray, spacing: float
    ) -> None:
        self.hu, self.zs, self.ys, self.xs, self.spacing = hu, zs, ys, xs, float(spacing)

    def box(self, low: np.ndarray, high: np.ndarray) -> tuple[slice, slice, slice] | None:
        parts = []
        for axis, lo, hi in zip((self.zs, self.ys, self.xs), low, high, strict=True):
            start = int(np.searchsorted(axis, lo))
            stop = int(np.searchsorted(axis, hi))
            if stop <= start:
                return None
            parts.append(slice(start, stop))
        return parts[0], parts[1], parts[2]

    def tube_distance(self, segment: _Segment, pad: float) -> tuple[tuple, np.ndarray] | None:
        """(box, mm from the segment's axis inside it) or None when it falls outside."""
        reach = segment.radius + pad
        box = self.box(np.minimum(segment.a, segment.b) - reach, np.maximum(segment.a, segment.b)
                       + reach)  # fmt: skip
        if box is None:
            return None
        z = self.zs[box[0]][:, None, None]
        y = self.ys[box[1]][None, :, None]
        x = self.xs[box[2]][None, None, :]
        d = segment.b - segment.a
        length2 = max(float(d @ d), 1e-6)
        t = np.clip(((z - segment.a[0]) * d[0] + (y - segment.a[1]) * d[1] + (x - segment.a[2])
                     * d[2]) / length2, 0, 1)  # fmt: skip
        distance = np.sqrt(
            (z - segment.a[0] - t * d[0]) ** 2
            + (y - segment.a[1] - t * d[1]) ** 2
            + (x - segment.a[2] - t * d[2]) ** 2
        )
        return box, distance.astype(np.float32)

    def tube(self, segment: _Segment, value: float, *, wall: float = 0.0) -> None:
        found = self.tube_distance(segment, 2.0 + wall)
        if found is None:
            return
        box, distance = found
        region = self.hu[box]
        if wall:
            weight = _ramp(np.float32(segment.radius + wall) - distance, self.spacing)
            region += weight * (np.float32(40) - region)
        weight = _ramp(np.float32(segment.radius) - distance, self.spacing)
        region += weight * (np.float32(value) - region)


def _tree(
    rng: np.random.Generator,
    start: np.ndarray,
    directions: list[np.ndarray],
    radius: float,
    length: float,
    inside: Callable[[np.ndarray], bool],
) -> list[_Segment]:
    """Three generations grown from `start` along each direction, each branch splitting in two
    (or three) with its radius times 0.68-0.78; branches that would leave the lung stop."""
    segments: list[_Segment] = []
    stack = [(start, direction / np.linalg.norm(direction), radius, length, 1) for direction in
             directions]  # fmt: skip
    while stack:
        a, heading, r, span, generation = stack.pop()
        b = a + heading * span
        if not inside(b):
            b = a + heading * span * 0.5
            if not inside(b):
                continue
        segments.append(_Segment(a=a, b=b, radius=r, generation=generation))
        if generation == 3:
            continue
        for _ in range(int(rng.choice([2, 2, 3]))):
            turn = rng.normal(0, 0.45, 3)
            child = heading + turn - (turn @ heading) * heading
            stack.append(
                (
                    b,
                    child / np.linalg.norm(child),
                    r * float(rng.uniform(0.68, 0.78)),
                    span * float(rng.uniform(0.65, 0.85)),
                    generation + 1,
                )
            )
    return segments


def ctpa_other(rng: np.random.Generator, *, positive: bool) -> OtherCt:
    spacing = float(rng.uniform(1.3, 1.5))
    thickness = float(rng.choice([1.5, 2.0, 2.5, 3.0], p=[0.3, 0.3, 0.2, 0.2]))
    coverage = float(rng.uniform(220.0, 270.0))
    count = int(round(coverage / thickness))
    half = MATRIX * spacing / 2
    zs = ((np.arange(count) + 0.5) * thickness).astype(np.float32)
    ys = (np.linspace(-half, half, MATRIX) + rng.uniform(-10, 10)).astype(np.float32)
    xs = (np.linspace(-half, half, MATRIX) + rng.uniform(-8, 8)).astype(np.float32)
    z, y, x = zs[:, None, None], ys[None, :, None], xs[None, None, :]
    subtype = str(rng.choice(EMBOLI)) if positive else str(rng.choice(MIMICS))
    # The chest wall: fat, muscle, then the cavity; narrower towards the apices.
    u = z / np.float32(coverage)
    taper = np.float32(1.0) - np.float32(0.18) * np.clip((u - 0.7) / 0.3, 0, 1) ** 2
    lat = np.float32(rng.uniform(135, 165)) * taper
    ap = np.minimum(np.float32(rng.uniform(95, 120)) * taper, np.float32(half * 0.95))
    lat = np.minimum(lat, np.float32(half * 0.97))
    p = float(rng.uniform(2.2, 2.8))
    rho = (np.abs(x / lat) ** p + np.abs(y / ap) ** p) ** (1 / p)
    depth = (1 - rho) * np.sqrt(lat * ap)  # mm inside the skin
    hu = np.full((count, MATRIX, MATRIX), -1000.0, dtype=np.float32)
    hu += _ramp(depth, spacing) * np.float32(rng.uniform(895, 915))
    fat = float(rng.uniform(8, 25))
    hu += _ramp(depth - np.float32(fat), spacing) * (np.float32(rng.uniform(40, 55)) - hu)
    cavity = depth - np.float32(fat + rng.uniform(9, 14))
    # Ribs: an interrupted ring at the cavity's edge every 22-28 mm, sloping down anteriorly.
    theta = np.arctan2(y, x)
    pitch = float(rng.uniform(22, 28))
    slope = np.float32(rng.uniform(10, 20)) * np.sin(theta)  # lower in front
    phase = np.mod(z - slope - np.float32(rng.uniform(0, pitch)), np.float32(pitch))
    rib = _ramp(np.float32(4.0) - np.abs(phase - np.float32(pitch / 2)), thickness)
    rib *= _ramp(np.float32(3.5) - np.abs(cavity + np.float32(4)), spacing) * (np.abs(x) > 25)
    hu += rib * (np.float32(rng.uniform(700, 1000)) - hu)
    # The column behind, the sternum in front.
    spine_y = float(ap.mean()) * 0.55
    vertebra = np.hypot(y - spine_y, x) - np.float32(rng.uniform(15, 19))
    hu += _ramp(-vertebra, spacing) * (np.float32(rng.uniform(250, 380)) - hu)
    hu += _ramp(np.float32(2) - np.abs(vertebra), spacing) * (np.float32(900) - hu)
    canal = np.hypot(y - spine_y - 26, x) - np.float32(8)
    hu += _ramp(-canal, spacing) * (np.float32(20) - hu)
    sternum = _ramp(np.float32(9) - np.abs(x), spacing) * _ramp(
        np.float32(5) - np.abs(y + ap - np.float32(fat + 14)), spacing
    )
    hu += sternum * (np.float32(500) - hu)
    # Lungs: inside the cavity, above the domes, beside the mediastinum.
    domes = (float(rng.uniform(35, 60)), float(rng.uniform(25, 50)))  # right, left
    dome = (
        np.where(x < 0, np.float32(domes[0]), np.float32(domes[1]))
        - np.float32(rng.uniform(0.002, 0.004)) * (np.abs(x) - np.float32(60)) ** 2
    )
    heart_z = max(domes) + float(rng.uniform(25, 40))
    mediastinum_lat = np.where(
        z < heart_z + 45, np.float32(rng.uniform(55, 70)), np.float32(rng.uniform(24, 32))
    )
    medi = np.hypot((x - 12) / mediastinum_lat, (y + 5) / np.float32(ap.mean() * 0.8)) - 1
    lung = (
        _ramp(cavity - np.float32(2), spacing)
        * _ramp(z - dome, thickness)
        * _ramp(medi * np.float32(30), spacing)
        * _ramp(np.abs(y - spine_y) + np.abs(x) - np.float32(30), spacing)
    )
    parenchyma = np.float32(rng.uniform(-880, -830)) + np.float32(25) * ndimage.gaussian_filter(
        rng.standard_normal(hu.shape).astype(np.float32), 2.0
    ) * np.float32(3)
    hu += lung * (parenchyma - hu)
    inside_mediastinum = _ramp(-medi * np.float32(30), spacing) * _ramp(cavity, spacing)
    hu += inside_mediastinum * (np.float32(-70) - hu) * (z > dome)
    below = _ramp(dome - z, thickness) * _ramp(cavity, spacing)
    hu += below * (np.float32(rng.uniform(90, 130)) - hu)  # the liver and spleen, enhancing

    def lung_at(point: np.ndarray) -> bool:
        k = min(max(int(point[0] / thickness), 0), count - 1)
        i = int(np.clip(np.searchsorted(ys, point[1]), 0, MATRIX - 1))
        j = int(np.clip(np.searchsorted(xs, point[2]), 0, MATRIX - 1))
        return bool(lung[k, i, j] > 0.5) and 0 < point[0] < coverage

    canvas = _Canvas(hu, zs, ys, xs, spacing)
    poor = subtype == "poor_bolus"
    pa_value = float(rng.uniform(160, 215) if poor else rng.uniform(280, 460))
    aorta_value = float(rng.uniform(120, 170) if poor else rng.uniform(160, 260))
    # The heart: myocardium, right ventricle with the bolus, left heart less enhanced.
    heart_c = np.array([heart_z, -25.0, 22.0])
    semi = np.array([rng.uniform(45, 55), rng.uniform(50, 62), rng.uniform(62, 75)])
    heart = np.sqrt(((z - heart_c[0]) / semi[0]) ** 2 + ((y - heart_c[1]) / semi[1]) ** 2
                    + ((x - heart_c[2]) / semi[2]) ** 2)  # fmt: skip
    hu += _ramp((1 - heart) * np.float32(semi.min()), spacing) * (np.float32(50) - hu)
    rv = np.sqrt(((z - heart_c[0]) / (semi[0] * 0.6)) ** 2 + ((y - heart_c[1] + 18) / (semi[1]
                 * 0.45)) ** 2 + ((x - heart_c[2] + 20) / (semi[2] * 0.5)) ** 2)  # fmt: skip
    hu += _ramp((1 - rv) * np.float32(20), spacing) * (np.float32(pa_value * 1.05) - hu)
    lv = np.sqrt(((z - heart_c[0]) / (semi[0] * 0.55)) ** 2 + ((y - heart_c[1] - 15) / (semi[1]
                 * 0.4)) ** 2 + ((x - heart_c[2] - 18) / (semi[2] * 0.45)) ** 2)  # fmt: skip
    hu += _ramp((1 - lv) * np.float32(20), spacing) * (np.float32(aorta_value) - hu)
    arch_z = coverage * float(rng.uniform(0.74, 0.82))
    aorta_r = float(rng.uniform(12, 16))
    bifurcation = np.array([heart_z + float(rng.uniform(45, 60)), -8.0, 10.0])
    points = {
        "root": np.array([heart_z + 25, -12.0, 2.0]),
        "arch_a": np.array([arch_z, -20.0, -4.0]),
        "arch_b": np.array([arch_z + 6, 5.0, 12.0]),
        "descending": np.array([arch_z - 10, 32.0, 24.0]),
        "hiatus": np.array([0.0, 36.0, 18.0]),
    }
    for start, end in (("root", "arch_a"), ("arch_a", "arch_b"), ("arch_b", "descending"),
                       ("descending", "hiatus")):  # fmt: skip
        radius = aorta_r if start in ("root", "arch_a") else aorta_r * 0.8
        canvas.tube(_Segment(points[start], points[end], radius, 0), aorta_value)
    svc = _Segment(np.array([coverage, -18.0, -30.0]), np.array([heart_z + 20, -22.0, -26.0]),
                   float(rng.uniform(8, 11)), 0)  # fmt: skip
    svc_value = float(rng.uniform(700, 1400))
    canvas.tube(svc, svc_value)
    # Airways: the trachea to the carina, the main bronchi.
    carina = bifurcation + np.array([8.0, 18.0, -10.0])
    for a, b, r in (
        (np.array([coverage, -2.0, -6.0]), carina, 8.5),
        (carina, carina + np.array([-14.0, 6.0, -28.0]), 6.0),
        (carina, carina + np.array([-18.0, 8.0, 34.0]), 5.5),
    ):
        canvas.tube(_Segment(a, b, r, 0), -960.0, wall=1.5)
    # Veins (less enhanced) from the left atrium, then the arteries from the right ventricle.
    atrium = np.array([heart_z + 15, 8.0, 18.0])
    vein_value = float(rng.uniform(110, 190))
    for side in (-1.0, 1.0):
        start = atrium + np.array([0.0, 5.0, side * 40.0 - 10])
        directions = [
            np.array([dz, dy, side]) + rng.normal(0, 0.15, 3)
            for dz, dy in ((0.8, 0.3), (-0.1, -0.4), (-0.7, 0.5))
        ]
        for segment in _tree(rng, start, directions, 5.5, 42.0, lung_at):
            canvas.tube(segment, vein_value)
    main = _Segment(
        np.array([heart_z + 5, -40.0, 10.0]), bifurcation, float(rng.uniform(12, 15)), 0
    )
    hila = {
        -1.0: bifurcation + np.array([-6.0, 8.0, -52.0]),
        1.0: bifurcation + np.array([4.0, 16.0, 44.0]),
    }
    arteries = [main]
    arteries += [_Segment(bifurcation, hila[s], float(rng.uniform(8.5, 11)), 0) for s in hila]
    for side, hilum in hila.items():
        directions = [
            np.array([dz, dy, side]) + rng.normal(0, 0.15, 3)
            for dz, dy in ((0.9, -0.2), (0.1, -0.7), (-0.6, -0.4), (-0.8, 0.6))
        ]
        arteries += _tree(rng, hilum, directions, float(rng.uniform(6.0, 7.0)), 46.0, lung_at)
    for segment in arteries:
        canvas.tube(segment, pa_value)
    lesion = np.zeros(hu.shape, dtype=bool)
    if positive:
        _embolus(canvas, lesion, rng, subtype=subtype, arteries=arteries)
    if subtype == "mixing":
        for segment in arteries[:3]:
            found = canvas.tube_distance(segment, 0.0)
            if found is None:
                continue
            box, distance = found
            blotch = ndimage.gaussian_filter(rng.standard_normal(distance.shape), 3.0)
            blotch = np.clip(blotch / (blotch.std() + 1e-6), 0, 2).astype(np.float32)
            inside = _ramp(np.float32(segment.radius) - distance, spacing)
            canvas.hu[box] -= inside * blotch * np.float32(rng.uniform(50, 90))
    if subtype == "node" or rng.random() < 0.3:
        side = float(rng.choice([-1.0, 1.0]))
        c = hila[side] + np.array([rng.uniform(-8, 8), -12.0, side * 4.0])
        size = float(rng.uniform(5, 9))
        node = np.sqrt(((z - c[0]) / 1.3) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2) - size
        hu += _ramp(-node, spacing) * (np.float32(rng.uniform(35, 60)) - hu)
    # Acquisition: the vena cava's streaks, blur, noise, motion in the lower lungs.
    if subtype == "streak" or svc_value > 1100:
        level = _ramp(np.float32(8) - np.abs(z - np.float32(svc.b[0] + 15)), 10.0)
        angle = np.arctan2(y - svc.b[1], x - svc.b[2])
        rays = np.cos(np.float32(rng.uniform(5, 11)) * angle + np.float32(rng.uniform(0, 6)))
        near = np.exp(-np.hypot(y - svc.b[1], x - svc.b[2]) / np.float32(60))
        hu += level * near * (rays**15) * np.float32(rng.uniform(-250, 250)) * _ramp(depth, 1.0)
    sharp = float(rng.uniform(0.3, 0.8))
    hu = ndimage.gaussian_filter(hu, sigma=(0, sharp, sharp)).astype(np.float32)
    grain = ndimage.gaussian_filter(rng.standard_normal(hu.shape).astype(np.float32), (0, 0.7, 0.7))
    hu += grain * np.float32(rng.uniform(12, 30) * 1.8)
    if subtype == "motion":
        low = np.flatnonzero(zs < max(domes) + 60)
        for index in low:
            moved = ndimage.shift(hu[index], rng.uniform(-2.5, 2.5, 2), order=1)
            hu[index] = 0.5 * hu[index] + 0.5 * moved
    lesion_slices = lesion.sum(axis=(1, 2)) >= 6
    lesion &= lesion_slices[:, None, None]
    return OtherCt(
        hounsfield=hu,
        lesion=lesion,
        positive=positive and int(lesion_slices.sum()) >= 2,
        subtype=subtype,
        pixel_spacing=spacing,
        slice_thickness=thickness,
        field_radius=float(rng.uniform(0.47, 0.5)) * MATRIX * spacing,
        kvp=int(rng.choice([80, 100, 120])),
        encoding=ENCODING,
    )


def _embolus(
    canvas: _Canvas,
    lesion: np.ndarray,
    rng: np.random.Generator,
    *,
    subtype: str,
    arteries: list[_Segment],
) -> None:
    """A filling defect (20-60 HU) inside an artery's lumen, shaped by its type."""
    value = np.float32(rng.uniform(20, 60))
    if subtype == "saddle":
        chosen = arteries[1:3]
    elif subtype in ("central", "mural", "tram_track"):
        chosen = [arteries[int(rng.integers(1, 3))]]
        lobar = [s for s in arteries if s.generation == 1]
        if subtype != "central" and lobar and rng.random() < 0.5:
            chosen = [lobar[int(rng.integers(0, len(lobar)))]]
    else:
        segmental = [s for s in arteries if s.generation == 2] or arteries[3:]
        chosen = [segmental[int(rng.integers(0, len(segmental)))]]
    for segment in chosen:
        found = canvas.tube_distance(segment, 0.0)
        if found is None:
            continue
        box, distance = found
        z = canvas.zs[box[0]][:, None, None]
        y = canvas.ys[box[1]][None, :, None]
        x = canvas.xs[box[2]][None, None, :]
        axis = segment.b - segment.a
        length = float(np.linalg.norm(axis))
        along = ((z - segment.a[0]) * axis[0] + (y - segment.a[1]) * axis[1] + (x - segment.a[2])
                 * axis[2]) / max(length, 1e-6)  # fmt: skip
        r = segment.radius
        lumen = distance < r - 0.3
        if subtype == "saddle":
            span = along < float(rng.uniform(12, 22))  # from the bifurcation outwards
            defect = lumen & span & (distance < r * 0.75)
        elif subtype == "central":
            start = float(rng.uniform(0.1, 0.5)) * length
            span = (along > start) & (along < start + float(rng.uniform(12, 25)))
            offset = np.asarray(rng.normal(0, 1, 3))
            offset -= (offset @ axis) / max(length**2, 1e-6) * axis
            offset *= r * 0.35 / max(float(np.linalg.norm(offset)), 1e-6)
            shifted = np.sqrt(
                (z - (segment.a[0] + offset[0]) - along / length * axis[0]) ** 2
                + (y - (segment.a[1] + offset[1]) - along / length * axis[1]) ** 2
                + (x - (segment.a[2] + offset[2]) - along / length * axis[2]) ** 2
            )
            defect = lumen & span & (shifted < r * float(rng.uniform(0.55, 0.8)))
        elif subtype == "mural":
            start = float(rng.uniform(0.1, 0.5)) * length
            span = (along > start) & (along < start + float(rng.uniform(15, 30)))
            side = np.asarray(rng.normal(0, 1, 3))
            side -= (side @ axis) / max(length**2, 1e-6) * axis
            side /= max(float(np.linalg.norm(side)), 1e-6)
            toward = (
                (z - segment.a[0]) * side[0]
                + (y - segment.a[1]) * side[1]
                + (x - segment.a[2]) * side[2]
            )
            defect = lumen & span & (toward > r * 0.35)
        elif subtype == "tram_track":
            start = float(rng.uniform(0.1, 0.4)) * length
            span = (along > start) & (along < start + float(rng.uniform(15, 28)))
            defect = lumen & span & (distance < r * 0.5)
        else:  # segmental: an occlusive plug
            start = float(rng.uniform(0.0, 0.4)) * length
            defect = lumen & (along > start) & (along < start + float(rng.uniform(8, 20)))
        region = canvas.hu[box]
        region[defect] = value
        lesion[box] |= defect
