"""Chest radiographs of the "other hospital", built apart from `inference.phantoms.
chest_radiograph`.

Built otherwise on purpose: the image is a projection of thickness maps (an elliptical trunk,
lungs whose air thins towards their edges, an elliptical heart, a spine of stacked vertebrae)
through a film-like characteristic curve; ribs and clavicles are polylines turned into bands by
a distance transform; lung markings are the ridges of band-pass noise, fading from the hila to
a centimetre inside the pleura; the detector is non-square, larger and finer (about 0.9 mm),
edge-enhanced as vendors do, and collimated. A pneumothorax is measured inwards from the lung's
own edge (a distance transform of the lung, not of the rib cage): apical, lateral, large,
tension (a collapsed lung, the mediastinum pushed over, a flattened dome) and the supine deep
sulcus (a lucent, deepened costophrenic angle with no visible pleural line). The negatives carry
their own mimics: a skin fold (an edge with markings on both sides), a bulla (a thin-walled
lucent space), monitoring leads and a central line over the lungs, a rotated patient.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from inference.other_site.volume import OtherRadiograph

PNEUMOTHORACES = ("apical", "lateral", "large", "tension", "deep_sulcus")
MIMICS = ("normal", "skin_fold", "bulla", "devices", "rotated")


def _ramp(distance: np.ndarray, width: float) -> np.ndarray:
    return np.clip(distance / np.float32(width) + np.float32(0.5), 0, 1).astype(np.float32)


def _band_noise(
    rng: np.random.Generator, shape: tuple[int, int], low: float, high: float
) -> np.ndarray:
    white = rng.standard_normal(shape).astype(np.float32)
    band = ndimage.gaussian_filter(white, low) - ndimage.gaussian_filter(white, high)
    return band / np.float32(band.std() + 1e-6)


def _polyline_distance(
    points: list[np.ndarray], shape: tuple[int, int], origin: tuple[float, float], spacing: float
) -> np.ndarray:
    """mm from the nearest point of any of the polylines ((k, 2) arrays of y, x in mm)."""
    marks = np.ones(shape, dtype=bool)
    for line in points:
        steps = max(2, int(np.hypot(*np.diff(line, axis=0).T).sum() / (0.4 * spacing)))
        t = np.linspace(0, len(line) - 1, steps)
        ys = np.interp(t, np.arange(len(line)), line[:, 0])
        xs = np.interp(t, np.arange(len(line)), line[:, 1])
        rows = np.rint((ys - origin[0]) / spacing).astype(np.int64)
        cols = np.rint((xs - origin[1]) / spacing).astype(np.int64)
        keep = (rows >= 0) & (rows < shape[0]) & (cols >= 0) & (cols < shape[1])
        marks[rows[keep], cols[keep]] = False
    if marks.all():
        return np.full(shape, 1e3, dtype=np.float32)
    return (ndimage.distance_transform_edt(marks) * spacing).astype(np.float32)


def chest_radiograph_other(rng: np.random.Generator, *, positive: bool) -> OtherRadiograph:
    spacing = float(rng.uniform(0.72, 0.84))
    rows, cols = int(rng.integers(440, 500)), int(rng.integers(400, 470))
    subtype = str(rng.choice(PNEUMOTHORACES)) if positive else str(rng.choice(MIMICS))
    supine = subtype == "deep_sulcus" or rng.random() < 0.3
    view = "AP" if supine else "PA"
    origin = (-float(rng.uniform(45, 75)), -cols * spacing / 2)  # the top: above the apices
    y = (origin[0] + np.arange(rows, dtype=np.float32) * spacing)[:, None]  # + inferior
    x = (origin[1] + np.arange(cols, dtype=np.float32) * spacing)[None, :]  # + patient left
    side = float(rng.choice([-1.0, 1.0]))  # the pneumothorax's side
    shift = 0.0
    if subtype == "tension":
        shift = -side * float(rng.uniform(12, 30))
    if subtype == "rotated":
        shift = float(rng.choice([-1.0, 1.0])) * float(rng.uniform(8, 16))
    mid = float(rng.uniform(-6, 6)) + shift
    cage_lat = float(rng.uniform(125, 150)) * (1.05 if supine else 1.0)
    apex = float(rng.uniform(-5, 5))
    dome = apex + float(rng.uniform(190, 235)) * (0.9 if supine else 1.0)
    # The trunk: elliptical cross-section, so its projected thickness is a half-ellipse in x.
    trunk_lat = cage_lat + float(rng.uniform(25, 45))
    trunk = np.sqrt(np.clip(1 - ((x - mid * 0.3) / trunk_lat) ** 2, 0, 1)) * np.float32(220)
    neck_w = float(rng.uniform(50, 62))
    shoulder = apex - float(rng.uniform(5, 25))
    neck = np.sqrt(np.clip(1 - ((x - mid * 0.3) / neck_w) ** 2, 0, 1)) * np.float32(120)
    body = np.where(y > shoulder, trunk, np.maximum(neck, trunk * _ramp(y - shoulder + 30, 30.0)))
    for arm in (-1.0, 1.0):
        humerus = np.hypot(y - shoulder - 25, x - arm * (trunk_lat + 12)) - np.float32(24)
        body = body + _ramp(-humerus, 3.0) * np.float32(60)
    density = body * np.float32(0.0095)
    # Lungs: superellipse fields under the apex, above a domed diaphragm, beside the heart.
    lungs = []
    hila = []
    medials = []
    air = []
    for lung_side in (-1.0, 1.0):
        medial = mid + lung_side * float(rng.uniform(14, 22))
        lateral = lung_side * cage_lat * float(rng.uniform(0.92, 0.98))
        centre_x = (medial + lateral) / 2
        half_x = abs(lateral - medial) / 2
        peak = dome + (float(rng.uniform(5, 22)) if lung_side > 0 else 0.0)
        if subtype == "tension" and lung_side == side:
            peak += float(rng.uniform(15, 28))
        centre_y = (apex + peak + 45) / 2  # the outline reaches below; the dome bounds it
        half_y = (peak + 45 - apex) / 2
        p = float(rng.uniform(2.3, 3.2))
        rho = (np.abs((x - centre_x) / half_x) ** p + np.abs((y - centre_y) / half_y) ** p) ** (
            1 / p
        )
        outline = _ramp((1 - rho) * np.float32(min(half_x, half_y)), spacing)
        dome_curve = np.float32(rng.uniform(0.012, 0.02))
        # the dome: highest at its centre, falling to the costophrenic angle
        dome_x = np.float32(centre_x - lung_side * half_x * 0.15)
        diaphragm = np.float32(peak) + dome_curve * (x - dome_x) ** 2 * 0.6
        if subtype == "deep_sulcus" and lung_side == side:
            deep = _ramp(np.float32(half_x * 0.5) - np.abs(x - lateral), 20.0)
            diaphragm = diaphragm + deep * np.float32(rng.uniform(18, 32))
        field = outline * _ramp(diaphragm - y, spacing)
        lungs.append(field)
        air.append(field * np.sqrt(np.clip(1 - rho, 0, 1)))  # thinner towards the edges
        hila.append((centre_y - half_y * 0.05, medial + lung_side * 16.0))
        medials.append(medial)
    heart_y = dome - float(rng.uniform(40, 60))
    heart_x = mid + float(rng.uniform(12, 24))
    heart_a, heart_b = (
        float(rng.uniform(60, 78)) * (1.12 if supine else 1),
        float(rng.uniform(48, 62)),
    )
    heart_rho = np.hypot((y - heart_y) / heart_b, (x - heart_x) / heart_a)
    heart = np.sqrt(np.clip(1 - heart_rho**2, 0, 1))
    lungs = [np.clip(lung * (1 - heart * 1.6), 0, 1) for lung in lungs]
    lung_all = np.clip(lungs[0] + lungs[1], 0, 1)
    air_all = np.clip(air[0] + air[1], 0, 1) * (1 - np.clip(heart * 1.6, 0, 1))
    air_depth = np.float32(rng.uniform(120, 160))
    density -= np.sqrt(air_all) * air_depth * np.float32(0.0095) * np.float32(1.15)
    density += heart * np.float32(0.25)
    # The spine behind the mediastinum: vertebrae stacked every 22-26 mm.
    period = float(rng.uniform(22, 26))
    phase = np.mod(y - np.float32(rng.uniform(0, period)), np.float32(period)) / np.float32(period)
    spine_x = x - np.float32(mid * 0.4)
    column = _ramp(np.float32(20) - np.abs(spine_x), 2.0) * (0.8 + 0.2 * (phase < 0.8))
    density += column * np.float32(0.35) * (1 - 0.5 * lung_all)
    # Ribs: posterior arcs rising from the spine then curving down at the side; anterior arcs
    # falling towards the sternum; clavicles.
    polylines_post, polylines_ant = [], []
    rib_gap = (dome - apex) / float(rng.uniform(8.5, 10.0))
    for k in range(11):
        start = apex + 8 + k * rib_gap
        for rib_side in (-1.0, 1.0):
            u = np.linspace(0, 1, 24)
            reach = cage_lat * (0.55 + 0.45 * np.sin(np.pi / 2 * min(1.0, 0.4 + k * 0.12)))
            xs = mid * 0.4 + rib_side * (18 + u * reach)
            ys = start - 8 * np.sin(np.pi * u * 0.6) + 62 * u**2.2
            polylines_post.append(np.stack([ys, xs], axis=1))
            xa = mid * 0.4 + rib_side * (reach * (1 - u * 0.75) + 18)
            ya = ys[-1] + u * (45 + 4 * k) * 0.9
            polylines_ant.append(np.stack([ya, xa], axis=1))
    posterior = _polyline_distance(polylines_post, (rows, cols), origin, spacing)
    anterior = _polyline_distance(polylines_ant, (rows, cols), origin, spacing)
    rib_half = float(rng.uniform(4.5, 6.0))
    rib = _ramp(np.float32(rib_half) - posterior, 1.5)
    cortex = _ramp(np.float32(1.2) - np.abs(posterior - np.float32(rib_half - 0.8)), 0.8)
    cage = _ramp(np.float32(cage_lat * 1.03) - np.abs(spine_x), 4.0) * _ramp(spine_x**2 - 18**2, 40)
    density += (rib * np.float32(0.09) + cortex * np.float32(0.05)) * cage
    density += _ramp(np.float32(rib_half * 0.9) - anterior, 2.0) * np.float32(0.04) * cage
    clavicles = []
    for clavicle_side in (-1.0, 1.0):
        u = np.linspace(0, 1, 20)
        cx = mid * 0.5 + clavicle_side * (15 + u * cage_lat * 1.05)
        cy = apex + float(rng.uniform(15, 30)) - 22 * u + 6 * np.sin(2 * np.pi * u)
        clavicles.append(np.stack([cy, cx], axis=1))
    clavicle = _polyline_distance(clavicles, (rows, cols), origin, spacing)
    density += _ramp(np.float32(rng.uniform(5.5, 7.5)) - clavicle, 2.0) * np.float32(0.2)
    # Markings: vessels branching from the hila, by width class (one distance transform each),
    # over a faint reticular texture (ridges of band-pass noise); both fade near the pleura.
    classes: list[list[np.ndarray]] = [[], [], [], []]
    for (hy, hx), lung_side in zip(hila, (-1.0, 1.0), strict=True):
        for angle in np.linspace(-1.3, 1.2, int(rng.integers(5, 8))):
            stack = [(hy, hx, float(angle + rng.normal(0, 0.12)), float(rng.uniform(30, 45)), 0)]
            while stack:
                py, px, heading, length, level = stack.pop()
                bend = np.linspace(0, float(rng.normal(0, 0.25)), 6)
                u = np.linspace(0, 1, 6)
                ys = py + np.sin(heading + bend) * length * u
                xs = px + lung_side * np.cos(heading + bend) * length * u
                classes[level].append(np.stack([ys, xs], axis=1))
                if level < 3:
                    for turn in (-1.0, 1.0):
                        spread = float(rng.uniform(0.25, 0.5))
                        stack.append((float(ys[-1]), float(xs[-1]), heading + bend[-1] + turn *
                                      spread, length * float(rng.uniform(0.68, 0.85)),
                                      level + 1))  # fmt: skip
    edge_depth = [ndimage.distance_transform_edt(lung > 0.5) * spacing for lung in lungs]
    fade = np.clip((np.maximum(edge_depth[0], edge_depth[1]) - 4.0) / 12.0, 0, 1).astype(np.float32)
    vessels = np.zeros((rows, cols), dtype=np.float32)
    for lines, half_width, weight in zip(
        classes, (2.2, 1.5, 1.0, 0.6), (0.22, 0.17, 0.13, 0.1), strict=True
    ):
        distance = _polyline_distance(lines, (rows, cols), origin, spacing)
        profile = np.sqrt(np.clip(1 - (distance / np.float32(half_width)) ** 2, 0, 1))
        vessels = np.maximum(vessels, profile * np.float32(weight))
    ridge = np.exp(-np.abs(_band_noise(rng, (rows, cols), 2.6, 14.0)) * np.float32(3.5))
    markings = lung_all * fade * (vessels + ridge * np.float32(rng.uniform(0.05, 0.1)))
    for hy, hx in hila:
        hilum = np.exp(-((np.hypot(y - hy, x - hx) / np.float32(16)) ** 2)) * np.float32(0.2)
        markings += hilum * (lung_all > 0.2)
    lesion = np.zeros((rows, cols), dtype=bool)
    if positive:
        which = 0 if side < 0 else 1
        lung = lungs[which]
        # mm inwards from the costal and diaphragmatic pleura (the mediastinal edge left out)
        medial_side = (x - np.float32(medials[which])) * np.float32(side) < 8
        depth = (ndimage.distance_transform_edt((lung > 0.5) | medial_side) * spacing).astype(
            np.float32
        )
        hy, hx = hila[which]
        hx = hx + side * 25.0
        theta = np.arctan2(y - hy, (x - hx) * np.float32(side))  # 0 lateral, -pi/2 apex
        gap = {
            "apical": (float(rng.uniform(10, 24)), -1.4, 0.7),
            "lateral": (float(rng.uniform(10, 28)), -0.4, 0.9),
            "large": (float(rng.uniform(25, 45)), -0.6, 1.9),
            "tension": (float(rng.uniform(45, 80)), -0.3, 3.2),
            "deep_sulcus": (float(rng.uniform(12, 26)), 0.9, 0.55),
        }[subtype]
        deepest, centre, half_span = gap
        away = np.abs(np.angle(np.exp(1j * (theta - centre)))) / np.float32(half_span)
        g = np.float32(deepest) * np.sqrt(np.clip(1 - away**2, 0, 1))
        gas = (depth < g) & (lung > 0.5)
        lesion = gas
        air_w = ndimage.gaussian_filter(gas.astype(np.float32), 0.8)
        markings *= 1 - air_w
        density -= air_w * np.float32(rng.uniform(0.06, 0.12))
        if subtype != "deep_sulcus":
            line = _ramp(np.float32(0.7) - np.abs(depth - g), spacing) * (g > 2) * (lung > 0.5)
            broken = np.clip(_band_noise(rng, (rows, cols), 6.0, 30.0) + 1.2, 0, 1)
            density += line * broken * np.float32(rng.uniform(0.08, 0.18))
            collapsed = (depth >= g) & (lung > 0.5)
            density += collapsed * np.float32(0.03 + 0.07 * min(deepest / 70, 1.0))
    density += markings
    if subtype == "skin_fold" or rng.random() < 0.08:
        fold_side = float(rng.choice([-1.0, 1.0]))
        fx = fold_side * cage_lat * float(rng.uniform(0.5, 0.85))
        curve = np.float32(fx) + np.float32(rng.uniform(-0.3, 0.3)) * (y - dome / 2)
        signed = (x - curve) * np.float32(fold_side)
        step = _ramp(signed, 1.5) * np.exp(-np.clip(signed, 0, None) / np.float32(15))
        density += step * _ramp(np.float32(rng.uniform(60, 110)) - np.abs(y - dome / 2), 8) * 0.07
    if subtype == "bulla":
        lung = lungs[int(rng.integers(0, 2))]
        inside = np.argwhere(lung > 0.9)
        cy, cx = inside[int(rng.integers(0, len(inside)))]
        r = np.hypot(y - y[cy, 0], x - x[0, cx]) - np.float32(rng.uniform(18, 40))
        space = _ramp(-r, 1.5) * (lung > 0.5)
        markings_here = space * markings
        density -= markings_here + space * np.float32(0.05)
        density += _ramp(np.float32(0.8) - np.abs(r), 1.0) * (lung > 0.5) * np.float32(0.08)
    if subtype == "devices" or rng.random() < 0.2:
        leads = []
        for _ in range(int(rng.integers(2, 5))):
            ly = float(rng.uniform(apex + 20, dome))
            lx = float(rng.uniform(-cage_lat, cage_lat))
            u = np.linspace(0, 1, 12)
            leads.append(np.stack([ly + u * rng.uniform(-150, 150), lx + u * rng.uniform(-150, 150)
                                   + 25 * np.sin(3 * u)], axis=1))  # fmt: skip
            ring = np.abs(np.hypot(y - ly, x - lx) - np.float32(7)) < 1.5
            density += ring * np.float32(0.5)
        wire = _polyline_distance(leads, (rows, cols), origin, spacing)
        density += _ramp(np.float32(0.9) - wire, 0.8) * np.float32(0.45)
    # Exposure: a film-like characteristic curve, scatter, edge enhancement, quantum noise.
    exposure = np.float32(rng.uniform(0.55, 0.75))
    image = np.tanh(np.clip(density, 0, None) * exposure).astype(np.float32)
    image = ndimage.gaussian_filter(image, float(rng.uniform(0.5, 1.1)))
    enhance = float(rng.uniform(0.2, 0.8))
    image = image + np.float32(enhance) * (image - ndimage.gaussian_filter(image, 6.0))
    image += (
        rng.standard_normal(image.shape).astype(np.float32)
        * np.float32(rng.uniform(0.005, 0.015))
        * np.sqrt(np.clip(1 - image, 0.05, 1))
    )
    image = np.clip(image, 0, 1)
    margin = [int(rng.integers(4, 28)) for _ in range(4)]  # collimation: unexposed, dense
    image[: margin[0]] = 1.0
    image[rows - margin[1] :] = 1.0
    image[:, : margin[2]] = 1.0
    image[:, cols - margin[3] :] = 1.0
    lesion &= ~(image >= 1.0)
    return OtherRadiograph(
        intensity=image.astype(np.float32),
        lesion=lesion,
        positive=positive and int(lesion.sum()) >= 40,
        subtype=subtype,
        pixel_spacing=spacing,
        view=view,
    )
