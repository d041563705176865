"""Chest radiograph phantoms (CR or DX, PA or AP): lungs with branching vessel markings,
mediastinum and heart, ribs, clavicles, scapulae and diaphragm; pneumothorax positives.

A pneumothorax is a thin bright visceral pleural line with no lung markings between it and the
chest wall. The negatives' confounders are skin folds (an edge crossing the lung with markings on
both sides of it) and scapular borders projected over the upper lung.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from inference.phantoms.geometry import blur2d, segment_distance2d, smooth_field, soft_edge
from inference.phantoms.study import PhantomStudy
from triage.findings import Finding

SIZE = 256
PNEUMOTHORACES = ("apical_small", "apicolateral", "large", "tension")
MIMICS = ("negative", "skin_fold", "scapula")


@dataclass
class Thorax:
    y: np.ndarray  # (rows, 1) mm, + inferior
    x: np.ndarray  # (1, cols) mm, + patient left (image right)
    spacing: float
    centre_y: float
    semi: tuple[float, float]  # (lateral, craniocaudal) of the rib cage
    midline: float  # mediastinal centre x
    heart: tuple[float, float, float, float]  # centre y, centre x, semi y, semi x
    domes: tuple[float, float]  # peak y of right and left hemidiaphragm
    dome_curve: tuple[float, float]
    hila: tuple[tuple[float, float], tuple[float, float]]

    def wall_depth(self) -> np.ndarray:
        """mm inside the rib cage outline (its inner surface)."""
        rho = np.sqrt((self.x / self.semi[0]) ** 2 + ((self.y - self.centre_y) / self.semi[1]) ** 2)
        return ((1 - rho) * np.float32(np.sqrt(self.semi[0] * self.semi[1]))).astype(np.float32)


def thorax_shape(rng: np.random.Generator, *, ap_view: bool) -> Thorax:
    spacing = round(float(rng.uniform(1.35, 1.45)), 3)
    axis = (np.arange(SIZE, dtype=np.float32) - (SIZE - 1) / 2) * np.float32(spacing)
    y = (axis + np.float32(rng.uniform(-8, 8)))[:, None]
    x = (axis + np.float32(rng.uniform(-6, 6)))[None, :]
    lateral = float(rng.uniform(128, 148))
    craniocaudal = float(rng.uniform(140, 160))
    heart_scale = float(rng.uniform(0.9, 1.1)) * (1.15 if ap_view else 1.0)
    centre = float(rng.uniform(2, 16))
    dome = centre + float(rng.uniform(62, 85))
    return Thorax(
        y=y,
        x=x,
        spacing=spacing,
        centre_y=centre,
        semi=(lateral, craniocaudal),
        midline=float(rng.uniform(-4, 4)),
        heart=(centre + 55.0, 18.0, 62.0 * heart_scale, 68.0 * heart_scale),
        domes=(dome, dome + float(rng.uniform(5, 18))),
        dome_curve=(float(rng.uniform(0.004, 0.006)), float(rng.uniform(0.004, 0.006))),
        hila=((centre - 12.0, -58.0), (centre - 20.0, 60.0)),
    )


def heart_weight(thorax: Thorax) -> np.ndarray:
    """The cardiac silhouette (long axis down and to the patient's left) and the aortic knob."""
    y, x = thorax.y, thorax.x
    hy, hx, sy, sx = thorax.heart
    cos, sin = np.float32(np.cos(0.55)), np.float32(np.sin(0.55))
    dy, dx = y - np.float32(hy), x - np.float32(hx + thorax.midline)
    along, across = cos * dy + sin * dx, -sin * dy + cos * dx
    rho = np.sqrt((along / np.float32(sy)) ** 2 + (across / np.float32(sx * 0.78)) ** 2)
    heart = soft_edge((1 - rho) * np.float32(min(sy, sx)), thorax.spacing)
    knob = np.hypot(y - np.float32(hy - 92), x - np.float32(thorax.midline + 27))
    return np.maximum(heart, soft_edge(np.float32(13.0) - knob, thorax.spacing))


def body_density(thorax: Thorax, rng: np.random.Generator) -> np.ndarray:
    """Soft tissue: neck, sloping shoulders, then the trunk with the arms beside it."""
    y, x = thorax.y, thorax.x
    apex = thorax.centre_y - thorax.semi[1]
    neck = np.float32(rng.uniform(48, 60))
    shoulder = apex + np.float32(rng.uniform(10, 30))
    width = neck + (np.float32(thorax.semi[0] + 70) - neck) * np.clip(
        (y - shoulder) / np.float32(45.0), 0, 1
    ) ** np.float32(0.6)
    body = soft_edge(width - np.abs(x - np.float32(thorax.midline * 0.5)), 3.0)
    arms = np.clip((np.abs(x) - np.float32(thorax.semi[0] + 25)) / 30, 0, 1) * (y > shoulder)
    return body * np.float32(1.0) + arms * np.float32(0.25)


def lung_fields(thorax: Thorax) -> tuple[np.ndarray, np.ndarray]:
    """(right, left) lung weights: inside the rib cage, above the domes, beside the mediastinum."""
    depth = thorax.wall_depth()
    inside = soft_edge(depth, thorax.spacing)
    y, x = thorax.y, thorax.x
    not_heart = 1 - heart_weight(thorax)
    band = 26.0 + 10.0 * np.clip((y + 60.0) / 60.0, 0, 1)  # upper mediastinum widening down
    lungs = []
    for side, peak, curve in zip((-1.0, 1.0), thorax.domes, thorax.dome_curve, strict=True):
        lateral = (x - thorax.midline) * np.float32(side)
        medial = soft_edge(lateral - band, thorax.spacing)
        centre = side * thorax.semi[0] * 0.45
        dome = np.float32(peak) + np.float32(curve) * (x - np.float32(centre)) ** 2
        above = soft_edge(dome - y, thorax.spacing)
        lungs.append(inside * medial * above * not_heart)
    return lungs[0], lungs[1]


def markings_draw(
    thorax: Thorax, rng: np.random.Generator, lungs: tuple[np.ndarray, np.ndarray]
) -> np.ndarray:
    """Vessel markings: trees from each hilum, branching and tapering towards the periphery,
    where they fade a centimetre or so inside the chest wall.

    The tree is grown a generation at a time as arrays, then rasterised by stamping points
    sampled along every branch (no per-branch Python loop)."""
    spacing = thorax.spacing
    angles = np.array([-1.35, -0.85, -0.35, 0.15, 0.6, 1.05, 1.4])  # from lateral: up .. down
    sides = np.repeat([-1.0, 1.0], angles.size)
    angle = np.tile(angles, 2)
    heading = np.arctan2(np.sin(angle), sides * np.cos(angle)) + rng.normal(0, 0.1, angle.size)
    hila_y = np.where(sides < 0, thorax.hila[0][0], thorax.hila[1][0])
    hila_x = np.where(sides < 0, thorax.hila[0][1], thorax.hila[1][1]) + thorax.midline
    py = hila_y + rng.normal(0, 6, angle.size)
    px = hila_x + rng.normal(0, 4, angle.size)
    length = rng.uniform(26, 34, angle.size)
    width = np.full(angle.size, 3.4)
    segments = []
    for _generation in range(6):
        bend = heading + rng.normal(0, 0.12, heading.size)
        ey = py + np.sin(bend) * length
        ex = px + np.cos(bend) * length
        segments.append(np.stack([py, px, ey, ex, width]))
        spread = rng.uniform(0.3, 0.55, bend.size) * 2 * rng.choice([-1.0, 1.0], bend.size)
        split = rng.uniform(0.3, 0.7, bend.size)
        heading = np.concatenate([bend - split * spread, bend + (1 - split) * spread])
        py, px = np.tile(ey, 2), np.tile(ex, 2)
        length = np.tile(length, 2) * rng.uniform(0.74, 0.88, 2 * bend.size)
        width = np.tile(np.maximum(width * 0.72, 0.8), 2)
    y0, x0, y1, x1, widths = np.concatenate(segments, axis=1)
    steps = np.ceil(np.hypot(y1 - y0, x1 - x0) / (0.45 * spacing)).astype(np.int64) + 1
    owner = np.repeat(np.arange(steps.size), steps)
    first = np.repeat(np.cumsum(steps) - steps, steps)
    t = (np.arange(owner.size) - first) / np.repeat(steps - 1, steps)
    rows = np.rint((y0[owner] + t * (y1 - y0)[owner] - float(thorax.y[0, 0])) / spacing)
    cols = np.rint((x0[owner] + t * (x1 - x0)[owner] - float(thorax.x[0, 0])) / spacing)
    radius = widths[owner] / (2 * spacing)
    strength = (0.035 + 0.025 * widths[owner]).astype(np.float32)
    density = np.zeros((SIZE, SIZE), dtype=np.float32)
    for dr in range(-2, 3):
        for dc in range(-2, 3):
            reach = float(np.hypot(dr, dc))
            chosen = radius >= reach - 0.35
            r = rows[chosen] + dr
            c = cols[chosen] + dc
            inside = (r >= 0) & (r < SIZE) & (c >= 0) & (c < SIZE)
            np.maximum.at(
                density,
                (r[inside].astype(np.int64), c[inside].astype(np.int64)),
                strength[chosen][inside],
            )
    density = blur2d(density[None], passes=1)[0] * np.float32(1.5)
    lung = lungs[0] + lungs[1]
    fade = np.clip(thorax.wall_depth() / np.float32(14.0), 0, 1)
    return density * lung * (0.35 + 0.65 * fade)


def ribs_density(thorax: Thorax, rng: np.random.Generator) -> np.ndarray:
    y, x = thorax.y, thorax.x
    lateral = np.abs(x - thorax.midline)
    inside = soft_edge(thorax.wall_depth() + 8.0, thorax.spacing)
    period = float(rng.uniform(21, 25))
    # posterior ribs: rising a little from the spine, then curving down at the side
    warped = y + np.float32(0.28) * lateral - np.float32(0.0032) * lateral**2
    phase = np.mod(warped - np.float32(rng.uniform(0, period)), np.float32(period)) / period
    band = np.clip(1 - np.abs(phase - 0.5) * np.float32(4.2), 0, 1)
    edge = np.clip(1 - np.abs(np.abs(phase - 0.5) - 0.23) * np.float32(30), 0, 1)
    posterior = (band * np.float32(0.16) + edge * np.float32(0.08)) * (lateral > 14)
    # anterior ribs: fainter, descending towards the sternum
    warped2 = y - np.float32(0.42) * lateral
    phase2 = np.mod(warped2 - np.float32(rng.uniform(0, period)), np.float32(period * 1.3))
    anterior = np.clip(1 - np.abs(phase2 / (period * 1.3) - 0.5) * 5, 0, 1) * np.float32(0.06)
    anterior *= lateral > 30
    within = (y > thorax.centre_y - thorax.semi[1] * 0.98) & (y < thorax.domes[1] + 40)
    return (posterior + anterior) * inside * within


def band_density(
    thorax: Thorax, start: tuple[float, float], end: tuple[float, float], width: float
) -> np.ndarray:
    distance, _ = segment_distance2d(thorax.y, thorax.x, start, end)
    return soft_edge(np.float32(width / 2) - distance, thorax.spacing)


def scapula_density(thorax: Thorax, rng: np.random.Generator, *, over_lung: bool) -> np.ndarray:
    """The scapulae: lateral to the rib cage, or with the medial border over the upper lung."""
    reach = float(rng.uniform(0.72, 0.85) if over_lung else rng.uniform(0.95, 1.05))
    density = np.zeros((SIZE, SIZE), dtype=np.float32)
    y, x = thorax.y, thorax.x
    for side in (-1.0, 1.0):
        top = thorax.centre_y - thorax.semi[1] * 0.85
        bottom = top + float(rng.uniform(110, 140))
        border_top = side * thorax.semi[0] * reach
        border_bottom = side * thorax.semi[0] * (reach + 0.12)
        t = np.clip((y - top) / (bottom - top), 0, 1)
        border = border_top + (border_bottom - border_top) * t
        beyond = soft_edge((x - border) * np.float32(side), thorax.spacing)
        rows = soft_edge(y - top, thorax.spacing) * soft_edge(
            np.float32(bottom) - y - np.abs(x - border) * 0.3, thorax.spacing
        )
        edge = soft_edge(np.float32(1.6) - np.abs(x - border), thorax.spacing)
        density += (beyond * np.float32(0.12) + edge * np.float32(0.1)) * rows
    return density


def skin_fold_density(thorax: Thorax, rng: np.random.Generator) -> np.ndarray:
    """A skin fold: a long, gently curved edge, denser on one side, fading away from the edge."""
    side = float(rng.choice([-1.0, 1.0]))
    y, x = thorax.y, thorax.x
    x_mid = side * thorax.semi[0] * float(rng.uniform(0.55, 0.85))
    bend = float(rng.uniform(-0.004, 0.004))
    tilt = float(rng.uniform(-0.25, 0.25))
    y_mid = float(rng.uniform(-40, 30))
    line = np.float32(x_mid) + np.float32(tilt) * (y - y_mid) + np.float32(bend) * (y - y_mid) ** 2
    signed = (x - line) * np.float32(side)  # + lateral of the fold
    fade = float(rng.uniform(12, 25))
    profile = soft_edge(signed, thorax.spacing) * np.exp(-np.clip(signed, 0, None) / fade)
    length = float(rng.uniform(110, 200))
    rows = soft_edge(np.float32(length / 2) - np.abs(y - y_mid), 6.0)
    return profile * rows * np.float32(rng.uniform(0.05, 0.09))


def pneumothorax_region(
    thorax: Thorax, rng: np.random.Generator, lung: np.ndarray, side: float, subtype: str
) -> tuple[np.ndarray, np.ndarray, float]:
    """(air region weight, pleural line weight, deepest gap mm) on one side."""
    depth_max, centre, half_span = {
        "apical_small": (float(rng.uniform(16, 26)), -1.25, 0.75),
        "apicolateral": (float(rng.uniform(22, 36)), -0.75, 1.3),
        "large": (float(rng.uniform(38, 58)), -0.2, 2.0),
        "tension": (float(rng.uniform(60, 80)), 0.0, 2.6),
    }[subtype]
    hy, hx = thorax.hila[0 if side < 0 else 1]
    cy = hy - 10.0
    cx = hx + thorax.midline
    # angle around the lung centre: 0 lateral, -pi/2 up, + down
    theta = np.arctan2(thorax.y - cy, (thorax.x - cx) * np.float32(side)).astype(np.float32)
    delta = theta - np.float32(centre)
    bump = np.sqrt(np.clip(np.cos(np.pi / 2 * delta / np.float32(half_span)), 0, 1)) * (
        np.abs(delta) < half_span
    )
    gap = np.float32(depth_max) * bump
    wall = thorax.wall_depth()
    x_side = (thorax.x - thorax.midline) * np.float32(side) > 0
    air = soft_edge(gap - wall, thorax.spacing) * lung * x_side
    line = soft_edge(np.float32(1.2) - np.abs(wall - gap), thorax.spacing) * (gap > 3) * lung
    return air.astype(np.float32), (line * x_side).astype(np.float32), depth_max


def chest_radiograph_generate(rng: np.random.Generator, *, positive: bool) -> PhantomStudy:
    ap_view = bool(rng.random() < 0.3)
    subtype = (
        str(rng.choice(PNEUMOTHORACES, p=[0.3, 0.3, 0.25, 0.15]))
        if positive
        else str(rng.choice(MIMICS, p=[0.4, 0.3, 0.3]))
    )
    thorax = thorax_shape(rng, ap_view=ap_view)
    side = float(rng.choice([-1.0, 1.0]))
    if subtype == "tension":
        shift = float(rng.uniform(14, 28))
        thorax.midline -= side * shift
        hy, hx, sy, sx = thorax.heart
        thorax.heart = (hy, hx - side * shift, sy, sx)
        domes = list(thorax.domes)
        curves = list(thorax.dome_curve)
        affected = 0 if side < 0 else 1
        domes[affected] += float(rng.uniform(14, 26))
        curves[affected] *= 0.35
        thorax.domes = (domes[0], domes[1])
        thorax.dome_curve = (curves[0], curves[1])
        thorax.hila = (
            (thorax.hila[0][0], thorax.hila[0][1] - side * shift * 0.6),
            (thorax.hila[1][0], thorax.hila[1][1] - side * shift * 0.6),
        )
    y, x = thorax.y, thorax.x
    lungs = lung_fields(thorax)
    density = body_density(thorax, rng)
    lung_total = lungs[0] + lungs[1]
    density -= lung_total * np.float32(0.6)
    density += heart_weight(thorax) * np.float32(0.12)  # the heart is thicker than the wall
    # perihilar vessels and a faint interstitial texture
    for hy, hx in thorax.hila:
        distance = np.hypot(y - np.float32(hy), x - np.float32(hx + thorax.midline))
        density += lung_total * np.float32(0.09) * np.exp(-distance / np.float32(45.0))
    density += lung_total * smooth_field(rng, (SIZE, SIZE), cells=(18, 18)) * np.float32(0.025)
    spine = soft_edge(np.float32(17.0) - np.abs(x - thorax.midline * 0.3), thorax.spacing)
    density += spine * np.float32(0.2) * (1 - lung_total)
    trachea = soft_edge(np.float32(8.0) - np.abs(x - thorax.midline), thorax.spacing) * soft_edge(
        np.float32(thorax.hila[0][0] - 25) - y, thorax.spacing
    )
    density -= trachea * np.float32(0.14)
    density += ribs_density(thorax, rng)
    apex = thorax.centre_y - thorax.semi[1]
    for side_sign in (-1.0, 1.0):
        inner = (apex + float(rng.uniform(38, 48)), side_sign * 16.0 + thorax.midline)
        outer = (apex + float(rng.uniform(14, 26)), side_sign * thorax.semi[0] * 1.02)
        width = float(rng.uniform(11, 15))
        density += band_density(thorax, inner, outer, width) * np.float32(0.28)
    scapula_over = subtype == "scapula" or (ap_view and rng.random() < 0.4)
    density += scapula_density(thorax, rng, over_lung=scapula_over)
    markings = markings_draw(thorax, rng, lungs)
    mask = np.zeros((SIZE, SIZE), dtype=bool)
    size = ""
    if positive:
        size = {"apical_small": "small", "apicolateral": "medium"}.get(subtype, "large")
        lung = lungs[0] if side < 0 else lungs[1]
        air, line, gap = pneumothorax_region(thorax, rng, lung, side, subtype)
        markings *= 1 - air
        density -= air * np.float32(rng.uniform(0.12, 0.17))
        collapsed = lung * (1 - air)
        density += collapsed * np.float32(0.04 + 0.1 * min(gap / 70.0, 1.0))
        density += line * np.float32(rng.uniform(0.22, 0.32))
        mask = air > 0.5
    density += markings
    if subtype == "skin_fold" or rng.random() < 0.1:
        density += skin_fold_density(thorax, rng)
    density *= np.float32(rng.uniform(0.9, 1.1))
    image = 1 - np.exp(-np.clip(density, 0, None) * np.float32(rng.uniform(1.4, 1.8)))
    image = blur2d(image[None], passes=1)[0]
    image += rng.standard_normal(image.shape, dtype=np.float32) * np.float32(
        rng.uniform(0.006, 0.014)
    )
    image = np.clip(image, 0.0, 1.0).astype(np.float32)
    photometric = "MONOCHROME1" if rng.random() < 0.35 else "MONOCHROME2"
    modality = "DX" if rng.random() < 0.5 else "CR"
    return PhantomStudy(
        finding=Finding.PNEUMOTHORAX,
        positive=positive,
        subtype=subtype,
        size=size,
        modality=modality,
        pixels=image[None],
        lesion_mask=mask[None],
        slice_labels=np.asarray([bool(mask.any())]),
        pixel_spacing=(thorax.spacing, thorax.spacing),
        slice_thickness=0.0,
        body_part="CHEST",
        study_description="XR CHEST 1 VIEW",
        series_description="AP" if ap_view else "PA",
        contrast_agent="",
        photometric=photometric,
    )
