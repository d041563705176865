"""Cervical-spine CT phantoms: vertebral bodies (cortical shell, cancellous core), discs,
posterior elements, canal and cord, airway and neck soft tissue; fractures as positives.

A fracture is a lucent line (40-110 HU) breaking the cortex over two or more slices, from a
subtle hairline to a displaced fragment with height loss. The negatives' confounder is
degenerative change: osteophytes, disc-space narrowing and endplate sclerosis, with no break.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

import numpy as np

from inference.phantoms.geometry import (
    Grid,
    grid_draw,
    segment_distance2d,
    smooth_field,
    soft_edge,
)
from inference.phantoms.study import PhantomStudy, ct_phantom_finish, lesion_draw_until
from triage.findings import Finding

SIZE = 128
FRACTURES = ("subtle", "lamina", "compression", "displaced")
MIMICS = ("negative", "degenerative")
PAD = 16  # canvas margin (pixels) for the per-slice anterior-posterior shift of the spine


@dataclass
class Level:
    bottom: float  # z of the inferior endplate, mm
    top: float  # z of the superior endplate
    sclerosis: float = 0.0  # extra endplate thickness, mm (degenerative)
    spurs: float = 0.0  # osteophyte reach, mm (degenerative)


@dataclass
class Spine:
    grid: Grid
    levels: list[Level]
    shift: np.ndarray  # (slices,) mm anterior(-)/posterior(+) offset of the column (lordosis)
    body: tuple[float, float]  # (AP, lateral) semi-axes of a vertebral body, mm
    centre_y: float  # body centre y before the lordotic shift
    degenerate: list[int] = field(default_factory=list)


def spine_shape(rng: np.random.Generator, *, degenerative: bool) -> Spine:
    grid = grid_draw(
        rng,
        size=SIZE,
        spacing=(1.0, 1.3),
        thicknesses=(1.0, 1.25, 1.5, 2.0),
        coverage=(110.0, 140.0),
        slices=(48, 96),
        offset=4.0,
    )
    height = grid.height
    levels: list[Level] = []
    z = -float(rng.uniform(0, 16))
    narrowed = set()
    if degenerative:
        narrowed = {int(k) for k in rng.choice(8, size=int(rng.integers(1, 4)), replace=False)}
    index = 0
    while z < height + 10:
        body = float(rng.uniform(12.5, 15.0))
        disc = float(rng.uniform(4.0, 6.0))
        level = Level(bottom=z, top=z + body)
        if index in narrowed:
            disc = float(rng.uniform(1.2, 2.2))
            level.sclerosis = float(rng.uniform(1.5, 3.0))
            level.spurs = float(rng.uniform(2.5, 5.0))
        levels.append(level)
        z += body + disc
        index += 1
    u = grid.z / np.float32(height)
    shift = -np.float32(rng.uniform(3, 7)) * np.sin(np.pi * u).astype(np.float32)
    return Spine(
        grid=grid,
        levels=levels,
        shift=shift.astype(np.float32),
        body=(float(rng.uniform(8.0, 9.5)), float(rng.uniform(10.0, 12.0))),
        centre_y=float(rng.uniform(-2, 4)),
        degenerate=sorted(narrowed),
    )


def overlap(centre: float, thickness: float, low: float, high: float) -> float:
    """Fraction of a slice [centre +- thickness/2] inside [low, high] (partial volume in z)."""
    lo = max(centre - thickness / 2, low)
    hi = min(centre + thickness / 2, high)
    return max(hi - lo, 0.0) / thickness


@dataclass
class Templates:
    """2D maps of one vertebra on a padded canvas, centred on the body centre."""

    y: np.ndarray
    x: np.ndarray
    body_depth: np.ndarray  # mm inside the body outline
    posterior: np.ndarray  # weight of posterior-element bone
    posterior_core: np.ndarray  # cancellous centre of the lateral masses
    facet: np.ndarray  # weight of the lateral masses (where facet joints open)
    canal: np.ndarray
    cord: np.ndarray
    spur: np.ndarray  # mm in front of the body's anterior surface (osteophyte zone)


def templates_make(spine: Spine, rng: np.random.Generator) -> Templates:
    grid = spine.grid
    spacing = grid.spacing
    size = SIZE + 2 * PAD
    axis = (np.arange(size, dtype=np.float32) - (size - 1) / 2) * np.float32(spacing)
    y = axis[:, None] + np.float32(grid.y.mean() - spine.centre_y)
    x = axis[None, :] + np.float32(grid.x.mean())
    ap, lat = spine.body
    rho = np.sqrt((y / ap) ** 2 + (x / lat) ** 2)
    depth = (1 - rho) * np.float32(np.sqrt(ap * lat))
    depth = np.minimum(depth, np.float32(ap * 0.8) - y)  # flat posterior wall
    parts: list[np.ndarray] = []

    def bar(start: tuple[float, float], end: tuple[float, float], width: float) -> np.ndarray:
        distance, _ = segment_distance2d(y, x, start, end)
        return soft_edge(np.float32(width / 2) - distance, spacing)

    def blob(cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
        r = np.sqrt(((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2)
        return soft_edge((1 - r) * np.float32(min(ry, rx)), spacing)

    facet = np.zeros_like(depth)
    core = np.zeros_like(depth)
    back = ap * 0.8
    for side in (-1.0, 1.0):
        parts.append(bar((back - 1, side * lat * 0.65), (back + 7, side * 14.0), 5.0))  # pedicle
        mass = blob(back + 9, side * 16.0, 6.5, 6.0)
        facet = np.maximum(facet, mass)
        core = np.maximum(core, blob(back + 9, side * 16.0, 4.0, 3.5))
        parts.append(mass)
        parts.append(bar((back + 13, side * 13.0), (back + 21, side * 2.5), 3.5))  # lamina
        transverse = bar((0.0, side * lat * 0.9), (2.0, side * 25.0), 5.5)
        hole = blob(1.5, side * 18.0, 2.6, 2.6)
        parts.append(transverse * (1 - hole))
    parts.append(bar((back + 20, 0.0), (back + 33, 0.0), 5.0))  # spinous process
    tip = float(rng.uniform(2.0, 4.0))
    for side in (-1.0, 1.0):  # bifid tip
        parts.append(bar((back + 32, 0.0), (back + 36, side * tip), 3.5))
    posterior = np.max(np.stack(parts), axis=0)
    canal = blob(back + 9, 0.0, 7.5, 11.0) * (1 - posterior)
    cord = blob(back + 8.5, 0.0, 4.5, 6.5)
    spur = np.float32(0.0) - depth  # distance outside the body outline
    spur = np.where((y < 0) & (np.abs(x) < lat * 0.9), spur, np.float32(99.0)).astype(np.float32)
    return Templates(
        y=y,
        x=x,
        body_depth=depth.astype(np.float32),
        posterior=posterior.astype(np.float32),
        posterior_core=core.astype(np.float32),
        facet=facet.astype(np.float32),
        canal=canal.astype(np.float32),
        cord=cord.astype(np.float32),
        spur=spur,
    )


def neck_draw(spine: Spine, rng: np.random.Generator) -> np.ndarray:
    """The slice-invariant neck: fat, muscle, vessels, airway; one 2D image."""
    grid = spine.grid
    spacing = grid.spacing
    y = grid.y[:, None]
    x = grid.x[None, :]
    half = SIZE * spacing / 2
    lateral = min(float(rng.uniform(52, 64)), half * 0.95)
    ap = min(lateral * float(rng.uniform(0.85, 0.98)), half * 0.92)
    centre = float(rng.uniform(0, 8))
    rho = np.sqrt((x / lateral) ** 2 + ((y - centre) / ap) ** 2)
    depth = (1 - rho) * np.float32(np.sqrt(lateral * ap))
    image = np.full(grid.shape[1:], -1000.0, dtype=np.float32)
    image += soft_edge(depth, spacing) * np.float32(910.0)
    muscle = soft_edge(depth - np.float32(rng.uniform(4, 9)), spacing)
    image += muscle * (np.float32(48.0) - image)
    texture = smooth_field(rng, image.shape, cells=(10, 10)) * np.float32(25.0)
    image += muscle * np.clip(texture, -40, 0)  # intermuscular fat planes
    airway_y = spine.centre_y - float(rng.uniform(28, 34))
    for cy, cx, radius, value in (
        (airway_y, 0.0, 10.0, 40.0),
        (airway_y, 0.0, 7.5, -980.0),
        (spine.centre_y - 15.0, 3.0, 5.0, 35.0),  # oesophagus
    ):
        r = np.hypot(y - cy, x - cx)
        image += soft_edge(np.float32(radius) - r, spacing) * (np.float32(value) - image)
    for side in (-1.0, 1.0):  # carotid and jugular
        for dy, dx, radius in ((-14.0, 24.0, 4.0), (-10.0, 32.0, 6.0)):
            r = np.hypot(y - spine.centre_y - dy, x - side * dx)
            image += soft_edge(np.float32(radius) - r, spacing) * (np.float32(42.0) - image)
    return image


def column_draw(
    volume: np.ndarray, spine: Spine, templates: Templates, rng: np.random.Generator
) -> None:
    """Vertebrae and discs slice by slice, with partial volume in z."""
    grid = spine.grid
    t = grid.thickness
    spacing = grid.spacing
    cortex = soft_edge(templates.body_depth, spacing) - soft_edge(
        templates.body_depth - np.float32(1.4), spacing
    )
    cancellous = soft_edge(templates.body_depth - np.float32(1.4), spacing)
    footprint = soft_edge(templates.body_depth, spacing)
    trabecular = np.float32(320.0) + np.float32(45.0) * smooth_field(
        rng, templates.body_depth.shape, cells=(24, 24)
    )
    body_value = cortex * np.float32(1050.0) + cancellous * trabecular
    body_weight = np.maximum(cortex, cancellous)
    disc_value = np.float32(85.0)
    spurs = [level for level in spine.levels if level.spurs > 0]
    for index in range(grid.shape[0]):
        zc = float(grid.z[index])
        offset = int(round(float(spine.shift[index]) / spacing))
        rows = slice(PAD - offset, PAD - offset + SIZE)
        cols = slice(PAD, PAD + SIZE)
        image = volume[index]
        body_f = sum(overlap(zc, t, lv.bottom, lv.top) for lv in spine.levels)
        plate_f = sum(
            overlap(zc, t, lv.bottom, lv.bottom + 1.2 + lv.sclerosis)
            + overlap(zc, t, lv.top - 1.2 - lv.sclerosis, lv.top)
            for lv in spine.levels
        )
        plate_f = min(plate_f, body_f)
        disc_f = max(0.0, 1.0 - body_f)
        value = (
            (body_f - plate_f) * body_value[rows, cols]
            + plate_f * footprint[rows, cols] * np.float32(850.0)
            + disc_f * footprint[rows, cols] * disc_value
        )
        weight = np.maximum(body_weight[rows, cols] * body_f, footprint[rows, cols])
        image += weight * (value / np.maximum(weight, np.float32(1e-3)) - image)
        # posterior elements: the lateral-mass column is continuous, opened by facet joints
        post_f = sum(overlap(zc, t, lv.bottom + 1.0, lv.top + 2.5) for lv in spine.levels)
        joint_f = sum(overlap(zc, t, lv.top + 2.5, lv.top + 4.0) for lv in spine.levels)
        post = templates.posterior[rows, cols] * np.float32(min(post_f, 1.0))
        post = np.maximum(post, templates.facet[rows, cols] * np.float32(1.0 - joint_f))
        bone = np.float32(900.0) - templates.posterior_core[rows, cols] * np.float32(450.0)
        image += post * (bone - image)
        canal = templates.canal[rows, cols]
        image += canal * (np.float32(12.0) - image)
        image += templates.cord[rows, cols] * np.float32(22.0) * canal
        for level in spurs:
            near = max(
                overlap(zc, t, level.top - 3.0, level.top + 0.5),
                overlap(zc, t, level.bottom - 0.5, level.bottom + 3.0),
            )
            if near > 0:
                spur = soft_edge(np.float32(level.spurs) - templates.spur[rows, cols], spacing)
                spur *= np.float32(near) * (templates.spur[rows, cols] > -0.5)
                image += spur * (np.float32(800.0) - image)


def body_box(spine: Spine, level: Level) -> tuple[slice, slice, slice] | None:
    grid = spine.grid
    reach = max(spine.body) + 6
    return grid.box(
        (level.bottom, spine.centre_y - reach - 8, -reach - 30),
        (level.top + 4, spine.centre_y + reach + 45, reach + 30),
    )


def fracture_draw(
    volume: np.ndarray,
    mask: np.ndarray,
    spine: Spine,
    rng: np.random.Generator,
    subtype: str,
) -> int:
    """Cut a lucent gap through bone along a plane (and, when displaced, move the fragment)."""
    grid = spine.grid
    t = grid.thickness
    inside = [lv for lv in spine.levels if lv.bottom > grid.z[0] + 2 and lv.top < grid.z[-1] - 4]
    if not inside:
        inside = spine.levels[1:-1] or spine.levels
    level = inside[int(rng.integers(0, len(inside)))]
    box = body_box(spine, level)
    if box is None:
        return 0
    z, y, x = grid.coords(box)
    index = box[0]
    shift = spine.shift[index][:, None, None]
    yy = y - np.float32(spine.centre_y) - shift  # body-centred coordinates
    ap, lat = spine.body
    region = volume[box]
    bone = region > 200
    width = {"subtle": 2.4, "lamina": 2.6, "compression": 2.6, "displaced": 3.2}[subtype]
    width *= float(rng.uniform(0.9, 1.2))
    if subtype == "lamina":
        side = float(rng.choice([-1.0, 1.0]))
        cy, cx = ap * 0.8 + 17.0, side * 8.0
        angle = float(np.arctan2(8.0, side * 10.5)) + float(rng.normal(0, 0.2))
        zlo, zhi = level.bottom + 1.0, level.top + 2.5
        target = (yy > ap * 0.8 + 10) & (np.abs(x) < 16)
    else:
        cy = float(rng.uniform(-0.4, 0.3)) * ap
        cx = float(rng.uniform(-0.4, 0.4)) * lat
        angle = float(rng.uniform(0, np.pi))
        body_height = level.top - level.bottom
        length = {"subtle": float(rng.uniform(0.4, 0.65)), "compression": 1.0, "displaced": 1.0}[
            subtype
        ] * body_height
        length = max(length, 2.2 * t + 1.0)
        zlo = level.top - length if rng.random() < 0.5 else level.bottom
        zlo = max(zlo, level.bottom)
        zhi = min(zlo + length, level.top)
        # the vertebral body only (with its cortex), not the transverse processes beside it
        outline = np.sqrt((yy / np.float32(ap)) ** 2 + (x / np.float32(lat)) ** 2)
        target = (outline < 1 + 1.5 / min(ap, lat)) & (yy < ap * 0.8 + 1)
    normal_y, normal_x = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    signed = (yy - np.float32(cy)) * normal_y + (x - np.float32(cx)) * normal_x
    tilt = 0.0
    if subtype == "compression":
        tilt = float(rng.uniform(0.5, 0.9))  # an oblique plane through the anterior body
        signed = signed * np.float32(np.cos(tilt)) + (z - np.float32((zlo + zhi) / 2)) * np.float32(
            np.sin(tilt)
        )
    in_z = (z >= np.float32(zlo)) & (z <= np.float32(zhi))
    if subtype == "compression":
        # anterior wedge: the front of the superior endplate sinks
        loss = float(rng.uniform(0.2, 0.35)) * (level.top - level.bottom)
        front = np.clip(-yy / np.float32(ap), 0, 1)
        sunk = (z > np.float32(level.top) - front * np.float32(loss)) & (z <= level.top) & bone
        sunk = sunk & (yy < ap * 0.8)
        region[sunk] = region[sunk] * np.float32(0.0) + np.float32(90.0)
    if subtype == "displaced":
        offset = int(rng.integers(2, 5))
        direction = int(rng.choice([-1, 1]))
        fragment = (signed > 0) & bone & target & in_z
        moved = np.zeros_like(region)
        moved_mask = np.zeros(region.shape, dtype=bool)
        moved[fragment] = region[fragment]
        moved = np.roll(moved, direction * offset, axis=1)
        moved_mask = np.roll(fragment, direction * offset, axis=1)
        region[fragment] = np.float32(45.0)
        region[moved_mask] = moved[moved_mask]
        loss = float(rng.uniform(0.15, 0.3)) * (level.top - level.bottom)
        crushed = (z > np.float32(level.top - loss)) & (z <= level.top) & (yy < ap * 0.8)
        crushed = crushed & (region > 200)
        region[crushed] = np.float32(90.0)
        bone = region > 200
    gap = (np.abs(signed) < np.float32(width / 2)) & in_z & target
    near_bone = bone | (np.abs(signed) < np.float32(width / 2 + 1.5))
    gap &= near_bone & (yy > -ap - 2) & (np.abs(x) < lat + 14)
    # only voxels that were bone (or lie between bone on both sides) become the gap
    was_bone = bone & gap
    counts = was_bone.sum(axis=(1, 2))
    keep = counts >= 6
    was_bone &= keep[:, None, None]
    value = np.float32(rng.uniform(40, 110))
    region[was_bone] = value
    mask[box] |= was_bone
    return int(was_bone.sum())


def cspine_ct_generate(rng: np.random.Generator, *, positive: bool) -> PhantomStudy:
    subtype = (
        str(rng.choice(FRACTURES, p=[0.35, 0.2, 0.2, 0.25]))
        if positive
        else str(rng.choice(MIMICS, p=[0.5, 0.5]))
    )
    degenerative = subtype == "degenerative" or (positive and rng.random() < 0.25)
    spine = spine_shape(rng, degenerative=degenerative)
    grid = spine.grid
    volume = np.empty(grid.shape, dtype=np.float32)
    volume[:] = neck_draw(spine, rng)[None]
    templates = templates_make(spine, rng)
    column_draw(volume, spine, templates, rng)
    mask = np.zeros(grid.shape, dtype=bool)
    size = ""
    if positive:
        size = {"subtle": "small", "lamina": "medium", "compression": "medium"}.get(
            subtype, "large"
        )
        lesion_draw_until(
            partial(fracture_draw, volume, mask, spine, rng, subtype), mask, min_slices=2
        )
    return ct_phantom_finish(
        volume,
        mask,
        rng,
        grid=grid,
        finding=Finding.FRACTURE,
        positive=positive,
        subtype=subtype,
        size=size,
        noise_sd=(12.0, 20.0),
        body_part="CSPINE",
        study_description="CT C-SPINE WO CONTRAST",
        series_suffix=" BONE",
    )
