"""Non-contrast head CT phantoms: skull, brain, ventricles; five bleed types; three mimics.

Blood is 60-85 HU against brain at 28-38 HU. The negatives' confounders (calcification, streak
artefact, skull-base partial volume) are bright too, but calcification is far denser (>150 HU),
streaks are straight lines crossing the whole head, and skull-base partial volume stays in the
lowest slices against bone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np

from inference.phantoms.geometry import (
    Grid,
    Tube,
    ellipsoid_weight,
    grid_draw,
    paint,
    smooth_field,
    soft_edge,
    tube_weight,
)
from inference.phantoms.study import (
    PhantomStudy,
    ct_phantom_finish,
    lesion_draw_until,
    lesion_paint,
    size_draw,
)
from triage.findings import Finding

SIZE = 128
BLEEDS = ("epidural", "subdural", "subarachnoid", "intraparenchymal", "intraventricular")
MIMICS = ("negative", "calcification", "streak", "skull_base")


Part = tuple[str, tuple[float, float, float], tuple[float, float, float], float]


@dataclass
class Head:
    """The head's shape, per slice: the outer skull ellipse and its depth map."""

    grid: Grid
    semi_x: np.ndarray  # (slices,) outer skull semi-axis, mm
    semi_y: np.ndarray
    centre_y: np.ndarray  # (slices,)
    skull: float  # skull thickness, mm
    depth: np.ndarray  # (slices, rows, cols) mm inside the outer skull surface
    theta: np.ndarray  # (rows, cols) angle around the head centre
    height: float  # mm covered
    inner_depth: np.ndarray  # mm inside the inner table (negative in bone and outside)


def head_shape(rng: np.random.Generator) -> Head:
    grid = grid_draw(
        rng,
        size=SIZE,
        spacing=(1.5, 2.0),
        thicknesses=(2.5, 3.0, 3.75, 4.0, 5.0),
        coverage=(135.0, 165.0),
        slices=(24, 64),
        offset=5.0,
    )
    height = grid.height
    semi_ap = min(float(rng.uniform(86.0, 96.0)), SIZE * grid.spacing * 0.46)
    semi_lat = semi_ap * float(rng.uniform(0.76, 0.85))
    u = grid.z / np.float32(height)
    equator = np.float32(rng.uniform(0.28, 0.36))
    above = np.sqrt(np.clip(1 - ((u - equator) / (1.05 - equator)) ** 2, 0.02, 1))
    below = 1 - 0.22 * ((equator - u) / equator) ** 2
    scale = np.where(u > equator, above, below).astype(np.float32)
    centre_y = np.where(u < equator, 10 * ((equator - u) / equator) ** 2, 0).astype(np.float32)
    semi_x = semi_lat * scale
    semi_y = semi_ap * scale
    x = grid.x[None, None, :]
    y = grid.y[None, :, None] - centre_y[:, None, None]
    rho = np.sqrt((x / semi_x[:, None, None]) ** 2 + (y / semi_y[:, None, None]) ** 2)
    mean_radius = np.sqrt(semi_x * semi_y)[:, None, None]
    depth = (1 - rho) * mean_radius
    skull = float(rng.uniform(5.0, 7.5))
    theta = np.arctan2(grid.y[:, None], grid.x[None, :]).astype(np.float32)
    return Head(
        grid=grid,
        semi_x=semi_x,
        semi_y=semi_y,
        centre_y=centre_y,
        skull=skull,
        depth=depth.astype(np.float32),
        inner_depth=(depth - np.float32(skull)).astype(np.float32),
        theta=theta,
        height=height,
    )


def ventricle_parts(head: Head, rng: np.random.Generator, *, scale: float) -> list[Part]:
    """(name, centre, radii, angle) of the CSF spaces, sized by the atrophy scale."""
    level = head.height * float(rng.uniform(0.52, 0.58))
    s = scale
    parts: list[Part] = []
    for side in (-1.0, 1.0):
        parts += [
            ("body", (level, 2.0, side * 9.0 * s), (13.0 * s, 20.0 * s, 4.5 * s), side * 0.12),
            ("frontal", (level - 3, -18.0 * s, side * 7.5 * s), (11.0 * s, 10.0, 5.0 * s), 0.0),
            (
                "atrium",
                (level - 6, 22.0 * s, side * 14.0 * s),
                (10.0 * s, 10.0 * s, 6.5 * s),
                side * -0.35,
            ),
        ]
    parts.append(("third", (head.height * 0.42, 3.0, 0.0), (9.0, 10.0 * s, 2.0 * s), 0.0))
    parts.append(("fourth", (head.height * 0.16, 34.0, 0.0), (6.0, 4.5, 6.0 * s), 0.0))
    return parts


def depth_profile(head: Head, depth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(HU, brain weight) as functions of depth below the outer skull surface: air, scalp,
    skull (dense tables around a softer diploe), a thin CSF layer, cortex, white matter."""
    spacing = head.grid.spacing
    values = np.full(depth.shape, -1000.0, dtype=np.float32)
    values += soft_edge(depth + np.float32(4.0), spacing) * np.float32(1030.0)
    table = np.clip(np.abs(depth - np.float32(head.skull / 2)) * np.float32(2 / head.skull), 0, 1)
    bone = np.float32(750.0) + np.float32(650.0) * table**2
    values += soft_edge(depth, spacing) * (bone - values)
    inner = depth - np.float32(head.skull)
    tissue = np.float32(28.0) + np.float32(10.0) * soft_edge(np.float32(4.0) - inner, spacing)
    tissue += soft_edge(np.float32(1.2) - inner, spacing) * (np.float32(8.0) - tissue)
    brain = soft_edge(inner, spacing)
    values += brain * (tissue - values)
    return values, brain


def brain_draw(head: Head, rng: np.random.Generator, *, ventricles: list[Part]) -> np.ndarray:
    grid = head.grid
    inner = head.inner_depth
    spacing = grid.spacing
    # radial layers through a lookup table on depth (1/8 mm steps): one gather per voxel
    step = np.float32(8.0)
    low, high = -12.0, 120.0
    samples = np.arange(low, high, 1 / 8, dtype=np.float32)
    lut_values, lut_brain = depth_profile(head, samples)
    index = head.depth - np.float32(low)
    index *= step
    np.clip(index, 0, samples.size - 1, out=index)
    index = index.astype(np.int32)
    volume = lut_values[index]
    brain = lut_brain[index]
    volume += brain * smooth_field(rng, grid.shape, cells=(3, 4, 4)) * np.float32(1.5)
    # sulci: thin radial CSF clefts reaching 6-12 mm into the cortex, their phase drifting
    count = int(rng.integers(18, 26))
    wobble = 0.25 * np.sin(3 * head.theta + rng.uniform(0, 6.3)) + 0.02 * np.hypot(
        grid.y[:, None], grid.x[None, :]
    )
    base_cos = np.cos(count * head.theta + wobble).astype(np.float32)
    base_sin = np.sin(count * head.theta + wobble).astype(np.float32)
    phase = (grid.z * np.float32(rng.uniform(0.03, 0.08)) + np.float32(rng.uniform(0, 6.3)))[
        :, None, None
    ]
    sulci = base_cos[None] * np.cos(phase) - base_sin[None] * np.sin(phase)
    sulci -= np.float32(0.86)
    sulci *= np.float32(12.0)
    np.clip(sulci, 0, 1, out=sulci)
    reach = np.float32(6.0) + np.float32(6.0) * np.sin(7 * head.theta + rng.uniform(0, 6.3)) ** 2
    sulci *= soft_edge(reach[None] - inner, spacing)
    sulci *= brain
    volume += sulci * (np.float32(10.0) - volume)
    # interhemispheric fissure: CSF with a faint falx, front and back of the deep structures
    fissure = soft_edge(np.float32(1.0) - np.abs(grid.x)[None, :], spacing) * (
        np.abs(grid.y)[:, None] > 25
    ).astype(np.float32)
    volume += fissure[None] * brain * (np.float32(14.0) - volume)
    # deep grey matter
    for centre, radii in (
        ((0.45, -2.0, 20.0), (13.0, 13.0, 7.0)),
        ((0.45, 12.0, 9.0), (10.0, 9.0, 7.0)),
    ):
        for side in (-1.0, 1.0):
            found = ellipsoid_weight(
                grid,
                centre=(head.height * centre[0], centre[1], side * centre[2]),
                radii=radii,
            )
            if found:
                paint(volume, found[0], found[1], 36.0)
    for _, centre, radii, angle in ventricles:
        found = ellipsoid_weight(grid, centre=centre, radii=radii, angle=angle)
        if found:
            paint(volume, found[0], found[1] * soft_edge(inner[found[0]], spacing), 5.0)
    return volume


def skull_base_draw(
    volume: np.ndarray, head: Head, rng: np.random.Generator, *, pronounced: bool
) -> None:
    """Petrous ridges, clivus, sphenoid sinus and the orbital roofs in the lowest slices; when
    pronounced, the same bones reach a slice or two higher as blotchy partial volume (90-300
    HU) against the brain, with a dark Hounsfield bar between the petrous bones."""
    grid = head.grid
    top = head.height * float(rng.uniform(0.12, 0.17))
    layers = [(0.0, 1.0, float(rng.uniform(1100, 1500)))]  # (lift mm, radius scale, HU)
    if pronounced:
        lift = max(grid.thickness * 1.6, 6.0)
        layers.append((lift, 1.5, float(rng.uniform(160, 300))))
    for lift, grow, value in layers[::-1]:
        for side in (-1.0, 1.0):
            petrous = Tube(
                start=(top * 0.2 + lift, 28.0, side * 50.0),
                end=(top * 0.95 + lift, -2.0, side * 14.0),
                radius=float(rng.uniform(5.0, 7.0)) * grow,
            )
            found = tube_weight(grid, petrous)
            if found:
                blotch = np.clip(smooth_field(rng, found[1].shape, cells=(2, 3, 3)) + 0.8, 0, 1)
                paint(volume, found[0], found[1] * (blotch if lift else 1.0), value)
        # orbital roofs: bony shelves either side of the midline, in front
        for side in (-1.0, 1.0):
            roof = ellipsoid_weight(
                head.grid,
                centre=(top * 0.5 + lift, -0.62 * float(head.semi_y[0]), side * 26.0),
                radii=(top * 0.4, 11.0 * grow, 20.0 * grow),
                angle=side * 0.5,
            )
            if roof:
                inside = soft_edge(head.inner_depth[roof[0]] + 1.0, grid.spacing)
                field = smooth_field(rng, roof[1].shape, cells=(2, 4, 4))
                blotch = np.clip(field * 2.0 + 0.4, 0, 1)
                paint(volume, roof[0], roof[1] * inside * blotch, value * 0.8)
    for side in (-1.0, 1.0):
        mastoid = ellipsoid_weight(
            grid, centre=(top * 0.3, 30.0, side * 54.0), radii=(top * 0.4, 8.0, 6.0)
        )
        if mastoid:
            paint(volume, mastoid[0], mastoid[1], -700.0)
    clivus = tube_weight(grid, Tube(start=(0.0, 10.0, 0.0), end=(top, -8.0, 0.0), radius=6.0))
    if clivus:
        paint(volume, clivus[0], clivus[1], 1100.0)
    sinus = ellipsoid_weight(grid, centre=(top * 0.5, -24.0, 0.0), radii=(top * 0.6, 9.0, 11.0))
    if sinus:
        paint(volume, sinus[0], sinus[1], -950.0)
    if pronounced:  # the dark Hounsfield bar between the petrous bones
        bar = ellipsoid_weight(grid, centre=(top * 0.7, 8.0, 0.0), radii=(top * 0.6, 12.0, 30.0))
        if bar:
            volume[bar[0]] -= bar[1] * np.float32(rng.uniform(8, 18))


def calcifications_draw(
    volume: np.ndarray, head: Head, rng: np.random.Generator, *, pineal: bool, plexus: bool
) -> None:
    grid = head.grid
    if pineal:
        radius = float(rng.uniform(2.0, 3.5))
        found = ellipsoid_weight(
            grid,
            centre=(head.height * 0.44, float(rng.uniform(13, 18)), 0.0),
            radii=(max(radius, grid.thickness * 0.6), radius, radius),
        )
        if found:
            paint(volume, found[0], found[1], float(rng.uniform(250, 600)))
    if plexus:
        for side in (-1.0, 1.0):
            radius = float(rng.uniform(1.8, 3.0))
            found = ellipsoid_weight(
                grid,
                centre=(head.height * 0.5, float(rng.uniform(20, 25)), side * 15.0),
                radii=(max(radius, grid.thickness * 0.6), radius, radius),
            )
            if found:
                paint(volume, found[0], found[1], float(rng.uniform(180, 400)))


def streaks_draw(volume: np.ndarray, head: Head, rng: np.random.Generator) -> None:
    """Straight bright/dark lines across the head through one point, over a few slices."""
    grid = head.grid
    slices = grid.shape[0]
    count = int(rng.integers(2, min(7, slices)))
    first = int(rng.integers(0, slices - count))
    y0, x0 = float(rng.uniform(-30, 40)), float(rng.uniform(-20, 20))
    pattern = np.zeros(grid.shape[1:], dtype=np.float32)
    yy = grid.y[:, None] - np.float32(y0)
    xx = grid.x[None, :] - np.float32(x0)
    for line in range(int(rng.integers(3, 8))):
        angle = float(rng.uniform(0, np.pi))
        distance = np.abs(xx * np.float32(np.sin(angle)) - yy * np.float32(np.cos(angle)))
        width = float(rng.uniform(0.7, 1.4)) * grid.spacing
        sign = 1.0 if line % 2 == 0 else -1.0
        pattern += np.float32(sign * rng.uniform(40, 120)) * np.exp(-((distance / width) ** 2))
    inside = soft_edge(head.depth[first : first + count] + np.float32(3.0), grid.spacing)
    profile = np.float32(rng.uniform(0.6, 1.0)) ** np.abs(
        np.arange(count, dtype=np.float32) - count / 2
    )
    volume[first : first + count] += pattern[None] * inside * profile[:, None, None]


def lesion_centre_z(head: Head, rng: np.random.Generator, low: float, high: float) -> float:
    """A z between two slice centres, so a lesion more than a slice thick spans two slices."""
    t = head.grid.thickness
    index = int(rng.integers(int(head.height * low / t), int(head.height * high / t)))
    return (index + 0.5) * t


def inner_point(head: Head, z: float, theta: float) -> tuple[float, float, float, float]:
    """(y, x, normal_y, normal_x) of the inner skull surface at a height and angle."""
    index = int(np.clip(round(z / head.grid.thickness), 0, head.grid.shape[0] - 1))
    a, b = float(head.semi_x[index]), float(head.semi_y[index])
    shrink = 1 - head.skull / np.sqrt(a * b)
    x, y = a * shrink * np.cos(theta), float(head.centre_y[index]) + b * shrink * np.sin(theta)
    nx, ny = np.cos(theta) / a, np.sin(theta) / b
    norm = np.hypot(nx, ny)
    return y, x, ny / norm, nx / norm


def side_angle(rng: np.random.Generator) -> float:
    """Mostly lateral convexities (temporal/parietal), sometimes frontal or occipital."""
    side = 0.0 if rng.random() < 0.5 else np.pi
    return float(side + rng.normal(0, 0.5))


BLOOD = (62.0, 82.0)


def epidural_draw(
    volume: np.ndarray, mask: np.ndarray, head: Head, rng: np.random.Generator, size: str
) -> int:
    length, thick, height = {
        "small": (28.0, 8.0, 13.0),
        "medium": (44.0, 11.0, 22.0),
        "large": (64.0, 18.0, 34.0),
    }[size]
    scale = float(rng.uniform(0.85, 1.15))
    z = lesion_centre_z(head, rng, 0.4, 0.75)
    y, x, ny, nx = inner_point(head, z, side_angle(rng))
    radii = (max(height * scale / 2, head.grid.thickness * 1.2), thick * scale, length * scale / 2)
    found = ellipsoid_weight(head.grid, centre=(z, y, x), radii=radii, angle=np.arctan2(-nx, ny))
    if found is None:
        return 0
    box, weight = found
    inner = head.inner_depth[box]
    weight *= soft_edge(inner, head.grid.spacing)
    eligible = inner > head.grid.spacing * 0.5
    return lesion_paint(
        volume, mask, box, weight, float(rng.uniform(*BLOOD)), min_pixels=12, eligible=eligible
    )


def angular_bump(theta: np.ndarray, centre: float, half_span: float) -> np.ndarray:
    delta = np.angle(np.exp(1j * (theta - centre))).astype(np.float32)
    return np.sqrt(np.clip(np.cos(np.pi / 2 * delta / np.float32(half_span)), 0, 1)) * (
        np.abs(delta) < half_span
    )


def subdural_draw(
    volume: np.ndarray, mask: np.ndarray, head: Head, rng: np.random.Generator, size: str
) -> int:
    depth_max, span, height = {
        "small": (6.5, 0.55, 22.0),
        "medium": (8.5, 0.9, 40.0),
        "large": (14.0, 1.3, 65.0),
    }[size]
    scale = float(rng.uniform(0.85, 1.15))
    grid = head.grid
    z = lesion_centre_z(head, rng, 0.4, 0.72)
    half = max(height * scale / 2, grid.thickness * 1.2)
    box = grid.box((z - half, -300.0, -300.0), (z + half, 300.0, 300.0))
    if box is None:
        return 0
    zz = grid.z[box[0]][:, None, None]
    z_bump = np.sqrt(np.clip(1 - ((zz - np.float32(z)) / np.float32(half)) ** 2, 0, 1))
    theta_bump = angular_bump(head.theta, side_angle(rng), span * scale)
    thickness = np.float32(depth_max * scale) * z_bump * theta_bump[None]
    inner = head.inner_depth[box]
    weight = soft_edge(thickness - inner, grid.spacing) * soft_edge(inner, grid.spacing)
    weight *= thickness > 1.0
    eligible = inner > grid.spacing * 0.5
    return lesion_paint(
        volume, mask, box, weight, float(rng.uniform(*BLOOD)), min_pixels=12, eligible=eligible
    )


def subarachnoid_draw(
    volume: np.ndarray, mask: np.ndarray, head: Head, rng: np.random.Generator, size: str
) -> int:
    """Blood in the sulci of a region (and, when larger, the basal cisterns and Sylvian
    fissures): the sulci are drawn again wider and hyperdense."""
    grid = head.grid
    value = float(rng.uniform(66, 82))
    span, height = {"small": (0.6, 16.0), "medium": (1.0, 26.0), "large": (1.6, 40.0)}[size]
    added = 0
    z = lesion_centre_z(head, rng, 0.45, 0.8)
    half = max(height / 2, grid.thickness * 1.2)
    box = grid.box((z - half, -300.0, -300.0), (z + half, 300.0, 300.0))
    if box is not None:
        count = int(rng.integers(16, 22))
        phase = float(rng.uniform(0, 6.3))
        pattern = np.cos(count * head.theta + phase + 0.3 * np.sin(2 * head.theta)).astype(
            np.float32
        )
        sulci = np.clip((pattern - np.float32(0.62)) * np.float32(6.0), 0, 1)
        theta_bump = angular_bump(head.theta, side_angle(rng), span)
        inner = head.inner_depth[box]
        weight = sulci[None] * theta_bump[None] * soft_edge(np.float32(15.0) - inner, grid.spacing)
        weight = np.maximum(
            weight, theta_bump[None] * soft_edge(np.float32(2.0) - inner, grid.spacing)
        )
        weight *= soft_edge(inner, grid.spacing)
        added += lesion_paint(
            volume, mask, box, weight, value, min_pixels=12, eligible=inner > grid.spacing * 0.5
        )
    if size != "small":
        # suprasellar cistern (a ring around the midbrain) and the Sylvian fissures
        level = head.height * float(rng.uniform(0.3, 0.36))
        cistern = ellipsoid_weight(
            grid, centre=(level, 0.0, 0.0), radii=(max(6.0, grid.thickness * 1.2), 17.0, 17.0)
        )
        midbrain = ellipsoid_weight(
            grid, centre=(level, 6.0, 0.0), radii=(max(8.0, grid.thickness * 1.6), 10.0, 11.0)
        )
        if cistern and midbrain and cistern[0] == midbrain[0]:
            box, weight = cistern
            ring = weight * (1 - midbrain[1])
            added += lesion_paint(volume, mask, box, ring, value, min_pixels=12)
        for side in (-1.0, 1.0):
            fissure = Tube(
                start=(level, -6.0, side * 12.0),
                end=(level + 6.0, -14.0, side * 52.0),
                radius=2.2,
            )
            found = tube_weight(grid, fissure)
            if found:
                added += lesion_paint(volume, mask, found[0], found[1], value, min_pixels=8)
    return added


def intraparenchymal_draw(
    volume: np.ndarray, mask: np.ndarray, head: Head, rng: np.random.Generator, size: str
) -> int:
    radius = {"small": 6.5, "medium": 11.0, "large": 19.0}[size] * float(rng.uniform(0.9, 1.2))
    grid = head.grid
    if rng.random() < 0.45:  # hypertensive: basal ganglia / thalamus
        z = lesion_centre_z(head, rng, 0.4, 0.5)
        y, x = float(rng.uniform(-6, 12)), float(rng.choice([-1, 1]) * rng.uniform(14, 24))
    else:  # lobar
        z = lesion_centre_z(head, rng, 0.45, 0.75)
        angle = float(rng.uniform(0, 2 * np.pi))
        reach = float(rng.uniform(0.25, 0.5))
        index = int(np.clip(round(z / grid.thickness), 0, grid.shape[0] - 1))
        y = float(head.centre_y[index]) + reach * float(head.semi_y[index]) * np.sin(angle)
        x = reach * float(head.semi_x[index]) * np.cos(angle)
    radii = (
        max(radius * float(rng.uniform(0.8, 1.1)), grid.thickness * 1.1),
        radius * float(rng.uniform(0.75, 1.0)),
        radius * float(rng.uniform(0.75, 1.0)),
    )
    angle = float(rng.uniform(0, np.pi))
    if size != "small":
        edema = ellipsoid_weight(
            grid,
            centre=(z, y, x),
            radii=(radii[0] + 3.0, radii[1] + 4.0, radii[2] + 4.0),
            angle=angle,
        )
        if edema:
            paint(volume, edema[0], edema[1] * soft_edge(head.inner_depth[edema[0]], 2.0), 20.0)
    value = float(rng.uniform(*BLOOD))
    added = 0
    for lobe in range(2):  # two overlapping ellipsoids for an irregular clot
        shift = (0.0, 0.0, 0.0) if lobe == 0 else tuple(float(r) * 0.4 for r in radii)
        found = ellipsoid_weight(
            grid,
            centre=(z, y + shift[1] * float(rng.uniform(-1, 1)), x + shift[2] * rng.uniform(-1, 1)),
            radii=radii if lobe == 0 else tuple(r * 0.7 for r in radii),  # type: ignore[arg-type]
            angle=angle,
        )
        if found:
            weight = found[1] * soft_edge(head.inner_depth[found[0]] - 3.0, grid.spacing)
            added += lesion_paint(volume, mask, found[0], weight, value, min_pixels=12)
    return added


def intraventricular_draw(
    volume: np.ndarray,
    mask: np.ndarray,
    head: Head,
    rng: np.random.Generator,
    size: str,
    parts: list[Part],
) -> int:
    """Blood layering in the dependent (posterior) ventricles, or a cast of them when large."""
    side = float(rng.choice([-1.0, 1.0]))
    value = float(rng.uniform(*BLOOD))
    added = 0
    for name, centre, radii, angle in parts:
        if size == "small" and not (name == "atrium" and centre[2] * side > 0):
            continue
        if size == "medium" and name not in ("atrium", "body"):
            continue
        found = ellipsoid_weight(head.grid, centre=centre, radii=radii, angle=angle)
        if not found:
            continue
        box, weight = found
        if size != "large" or name == "body":
            level = centre[1] - (0.2 if size == "small" else 0.5) * radii[1]
            if name == "body":
                level = centre[1] + 0.1 * radii[1]
            weight = weight * soft_edge(head.grid.y[box[1]][None, :, None] - level, 1.0)
        added += lesion_paint(volume, mask, box, weight, value, min_pixels=8)
    return added


BLEED_DRAWS: dict[str, Callable[..., int]] = {
    "epidural": epidural_draw,
    "subdural": subdural_draw,
    "subarachnoid": subarachnoid_draw,
    "intraparenchymal": intraparenchymal_draw,
}


def head_ct_generate(rng: np.random.Generator, *, positive: bool) -> PhantomStudy:
    head = head_shape(rng)
    subtype = (
        str(rng.choice(BLEEDS)) if positive else str(rng.choice(MIMICS, p=[0.4, 0.2, 0.2, 0.2]))
    )
    ventricle_scale = float(rng.uniform(0.8, 1.3))
    if subtype == "intraventricular":
        ventricle_scale = float(rng.uniform(1.2, 1.5))
    parts = ventricle_parts(head, rng, scale=ventricle_scale)
    volume = brain_draw(head, rng, ventricles=parts)
    skull_base_draw(volume, head, rng, pronounced=subtype == "skull_base")
    calcified = subtype == "calcification"
    calcifications_draw(
        volume,
        head,
        rng,
        pineal=calcified or rng.random() < 0.3,
        plexus=(calcified and rng.random() < 0.7) or rng.random() < 0.15,
    )
    mask = np.zeros(volume.shape, dtype=bool)
    size = ""
    if positive:
        size = size_draw(rng)
        draw: Callable[[], int] = (
            partial(intraventricular_draw, volume, mask, head, rng, size, parts)
            if subtype == "intraventricular"
            else partial(BLEED_DRAWS[subtype], volume, mask, head, rng, size)
        )
        lesion_draw_until(draw, mask, min_slices=2)
    if subtype == "streak" or rng.random() < 0.1:
        streaks_draw(volume, head, rng)
    return ct_phantom_finish(
        volume,
        mask,
        rng,
        grid=head.grid,
        finding=Finding.INTRACRANIAL_HEMORRHAGE,
        positive=positive,
        subtype=subtype,
        size=size,
        noise_sd=(3.5, 5.5),
        body_part="HEAD",
        study_description="CT HEAD WO CONTRAST",
    )
