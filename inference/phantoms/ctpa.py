"""CT pulmonary angiogram phantoms: chest, lungs, heart, aorta and a contrast-filled pulmonary
arterial tree (main -> lobar -> segmental -> subsegmental), with emboli as filling defects.

Arteries hold 260-400 HU of contrast; an embolus is a 25-55 HU defect inside the lumen. The
negatives' confounders are mixing artefact (120-180 HU, blotchy, no sharp edge) and lymph nodes
(soft tissue beside an artery, never inside it).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np

from inference.phantoms.geometry import (
    Grid,
    Tube,
    blur2d,
    ellipsoid_weight,
    grid_draw,
    paint,
    smooth_field,
    soft_edge,
    tube_distance,
    tube_weight,
)
from inference.phantoms.study import (
    PhantomStudy,
    ct_phantom_finish,
    lesion_draw_until,
    lesion_paint,
)
from triage.findings import Finding

SIZE = 128
EMBOLI = ("main", "lobar", "segmental")
MIMICS = ("negative", "mixing", "node")


@dataclass(frozen=True)
class Artery:
    name: str
    level: str  # "main" | "lobar" | "segmental" | "subsegmental"
    tube: Tube


@dataclass
class Chest:
    grid: Grid
    height: float
    body: tuple[float, float]  # (lateral, AP) semi-axes of the body, mm
    cavity: tuple[float, float]  # of the thoracic cavity
    lungs: list[tuple[float, float, float, float]]  # (centre y, centre x, semi y, semi x)
    domes: tuple[float, float]  # z of the right and left diaphragm domes
    apex: float  # z where the lungs start to taper

    def lung_inside(self, point: tuple[float, float, float], margin: float = 6.0) -> bool:
        z, y, x = point
        if z < min(self.domes) + 5 or z > self.height * 1.02:
            return False
        taper = lung_taper(self, np.float32(z))
        for cy, cx, sy, sx in self.lungs:
            rho = np.hypot((y - cy) / (sy * taper - margin), (x - cx) / (sx * taper - margin))
            if rho < 1:
                return True
        return False


def lung_taper(chest: Chest, z: np.ndarray | np.floating) -> np.ndarray:
    over = np.clip((z - chest.apex) / (chest.height * 1.06 - chest.apex), 0, 0.999)
    return np.sqrt(1 - over * over).astype(np.float32)


def chest_shape(rng: np.random.Generator) -> Chest:
    grid = grid_draw(
        rng,
        size=SIZE,
        spacing=(2.5, 3.0),
        thicknesses=(1.0, 1.25, 1.5, 2.0),
        coverage=(230.0, 280.0),
        slices=(64, 200),
        offset=6.0,
    )
    height = grid.height
    half = SIZE * grid.spacing / 2
    lateral = min(float(rng.uniform(140.0, 168.0)), half * 0.94)
    ap = min(lateral * float(rng.uniform(0.62, 0.74)), half * 0.8)
    wall = float(rng.uniform(16.0, 28.0))
    cavity = (lateral - wall, ap - wall * 0.8)
    lungs = []
    for side in (-1.0, 1.0):
        sx = cavity[0] * float(rng.uniform(0.42, 0.47))
        lungs.append((ap * 0.02, side * (cavity[0] - sx - 2), cavity[1] * 0.9, sx))
    dome = height * float(rng.uniform(0.1, 0.18))
    return Chest(
        grid=grid,
        height=height,
        body=(lateral, ap),
        cavity=cavity,
        lungs=lungs,
        domes=(dome + 12.0, dome),
        apex=height * float(rng.uniform(0.72, 0.8)),
    )


def wall_draw(chest: Chest, rng: np.random.Generator) -> np.ndarray:
    """The slice-invariant part: body wall, mediastinal soft tissue, spine; as one 2D image."""
    grid = chest.grid
    y = grid.y[:, None]
    x = grid.x[None, :]
    spacing = grid.spacing
    lateral, ap = chest.body
    image = np.full(grid.shape[1:], -1000.0, dtype=np.float32)
    rho = np.sqrt((x / lateral) ** 2 + (y / ap) ** 2)
    depth = (1 - rho) * np.float32(np.sqrt(lateral * ap))
    image += soft_edge(depth, spacing) * np.float32(910.0)  # fat
    muscle = soft_edge(depth - np.float32(rng.uniform(6, 14)), spacing)
    image += muscle * (np.float32(45.0) - image)
    crho = np.sqrt((x / chest.cavity[0]) ** 2 + (y / chest.cavity[1]) ** 2)
    cdepth = (1 - crho) * np.float32(np.sqrt(chest.cavity[0] * chest.cavity[1]))
    inside = soft_edge(cdepth, spacing)
    image += inside * (np.float32(-70.0) - image)  # mediastinal fat as the default filling
    spine_y = chest.cavity[1] * 0.92
    for centre, radius, value in (
        ((spine_y + 2, 0.0), 17.0, 900.0),
        ((spine_y + 2, 0.0), 15.0, 280.0),
        ((spine_y + 27, 0.0), 8.0, 15.0),
    ):
        r = np.hypot(y - centre[0], x - centre[1])
        image += soft_edge(np.float32(radius) - r, spacing) * (np.float32(value) - image)
    for side in (-1.0, 1.0):  # posterior elements and paraspinal muscle
        r = np.hypot((y - spine_y - 30) / 1.4, x - side * 22)
        image += soft_edge(np.float32(16.0) - r, spacing) * (np.float32(50.0) - image)
    lamina = (np.abs(x) < 14) & (np.abs(y - spine_y - 38) < 3)
    image[lamina] = 800.0
    return image


def ribs_draw(volume: np.ndarray, chest: Chest, rng: np.random.Generator) -> None:
    """Rib cross-sections: short bony arcs in the chest wall that march around with height."""
    grid = chest.grid
    y = grid.y[:, None]
    x = grid.x[None, :]
    crho = np.sqrt((x / (chest.cavity[0] + 6)) ** 2 + (y / (chest.cavity[1] + 6)) ** 2)
    ring = np.clip(1 - np.abs(crho - 1) * np.float32(np.sqrt(chest.cavity[0] * 30) / 6), 0, 1)
    ring[y[:, 0] > chest.cavity[1] * 0.85, :] = 0  # not across the spine
    where = np.flatnonzero(ring > 0)
    theta = np.arctan2(y, x).reshape(-1)[where]
    count = 7
    phase = grid.z * np.float32(2 * np.pi / float(rng.uniform(30, 40)))
    pattern = np.cos(count * theta[None, :] - phase[:, None]).astype(np.float32)
    rib = np.clip((pattern - np.float32(0.55)) * np.float32(4.0), 0, 1) * ring.reshape(-1)[where]
    flat = volume.reshape(volume.shape[0], -1)
    values = flat[:, where]
    flat[:, where] = values + rib * (np.float32(650.0) - values)


def lung_weight_2d(chest: Chest, taper: float, z: float | None) -> np.ndarray:
    """Both lungs' partial-volume weight on one slice (z None: above the diaphragm domes)."""
    grid = chest.grid
    y = grid.y[:, None]
    x = grid.x[None, :]
    weight = np.zeros(grid.shape[1:], dtype=np.float32)
    for (cy, cx, sy, sx), dome in zip(chest.lungs, chest.domes, strict=True):
        q = np.sqrt(((y - cy) / (sy * taper)) ** 2 + ((x - cx) / (sx * taper)) ** 2)
        side = soft_edge((np.float32(1.0) - q) * np.float32(min(sy, sx) * taper), grid.spacing)
        if z is not None:
            dome_z = dome - 0.004 * ((x - cx) ** 2 + (y - cy + 20) ** 2)
            side *= soft_edge((np.float32(z) - dome_z.astype(np.float32)) * 0.5, 1.0)
        np.maximum(weight, side, out=weight)
    return weight


def texture_bank(rng: np.random.Generator, size: int, count: int) -> np.ndarray:
    """Planes of small round vessel cross-sections (0..1), to be cropped slice by slice."""
    planes = rng.standard_normal((count, size, size), dtype=np.float32)
    planes = blur2d(planes, passes=2)
    planes *= np.float32(1.0 / planes.std())
    return np.clip((planes - np.float32(1.7)) * np.float32(1.2), 0, 1)


def lungs_draw(
    volume: np.ndarray, wall: np.ndarray, chest: Chest, rng: np.random.Generator
) -> None:
    """Aerated lung (-850) inside the cavity, tapering at the apices, above the diaphragm domes,
    with small vessels as dots that drift from slice to slice; abdomen below the domes."""
    grid = chest.grid
    slices, rows, cols = grid.shape
    middle = lung_weight_2d(chest, 1.0, None)
    low = max(chest.domes) + 4.0
    pad = 96
    bank = texture_bank(rng, rows + pad, 6)
    drifts = rng.uniform(-0.45, 0.45, (3, 2))
    starts = rng.integers(0, pad // 4, (3, 2)) + pad // 2
    run = int(rng.integers(30, 50))
    cavity = np.sqrt(
        (grid.x[None, :] / chest.cavity[0]) ** 2 + (grid.y[:, None] / chest.cavity[1]) ** 2
    )
    abdomen = soft_edge((1 - cavity) * np.float32(chest.cavity[0] * 0.7), grid.spacing)
    for index in range(slices):
        z = float(grid.z[index])
        taper = float(lung_taper(chest, np.float32(z)))
        if z < low or taper < 0.999:
            weight = lung_weight_2d(chest, taper, z if z < low else None)
        else:
            weight = middle
        tissue = np.full((rows, cols), -850.0, dtype=np.float32)
        for layer in range(3):
            plane = bank[(layer * 2 + index // run) % bank.shape[0]]
            oy = int(np.clip(starts[layer, 0] + drifts[layer, 0] * (index % run) * 2, 0, pad))
            ox = int(np.clip(starts[layer, 1] + drifts[layer, 1] * (index % run) * 2, 0, pad))
            tissue += plane[oy : oy + rows, ox : ox + cols] * np.float32(850.0)
        image = volume[index]
        image += weight * (tissue - image)
        if z < low:
            image += (1 - weight) * abdomen * (np.float32(60.0) - image)


def heart_draw(volume: np.ndarray, chest: Chest, rng: np.random.Generator, pa: float) -> None:
    grid = chest.grid
    level = max(chest.domes) + 10.0 + float(rng.uniform(0, 10))
    centre = (level + 25.0, -chest.cavity[1] * 0.15, chest.cavity[0] * 0.15)
    radii = (45.0, chest.cavity[1] * 0.5, chest.cavity[0] * 0.38)
    angle = float(rng.uniform(-0.6, -0.4))
    for grow, value in ((8.0, -90.0), (0.0, 50.0)):
        found = ellipsoid_weight(
            grid,
            centre=centre,
            radii=(radii[0] + grow, radii[1] + grow, radii[2] + grow),
            angle=angle,
        )
        if found:
            paint(volume, found[0], found[1], value)
    chambers = (
        ((-0.35, -0.25), (0.55, 0.45, 0.5), pa),  # right ventricle, anterior right
        ((-0.1, -0.7), (0.6, 0.4, 0.35), pa * 0.95),  # right atrium
        ((0.3, 0.35), (0.55, 0.5, 0.45), pa * 0.9),  # left ventricle (a well-timed bolus)
        ((0.6, 0.0), (0.45, 0.35, 0.45), pa * 0.88),  # left atrium, posterior
    )
    for (fy, fx), (rz, ry, rx), value in chambers:
        found = ellipsoid_weight(
            grid,
            centre=(centre[0], centre[1] + fy * radii[1], centre[2] + fx * radii[2]),
            radii=(radii[0] * rz, radii[1] * ry, radii[2] * rx),
            angle=angle,
        )
        if found:
            paint(volume, found[0], found[1], value)


def tube_paint(volume: np.ndarray, grid: Grid, tube: Tube, value: float) -> None:
    found = tube_weight(grid, tube)
    if found:
        paint(volume, found[0], found[1], value)


def great_vessels_draw(
    volume: np.ndarray, chest: Chest, rng: np.random.Generator, pa: float
) -> None:
    grid = chest.grid
    h = chest.height
    ay, ax = chest.cavity[1], chest.cavity[0]
    aorta = pa * float(rng.uniform(0.85, 1.0))  # well opacified, so never a grey disc by the PA
    top = h * 0.8
    for start, end, radius in (
        ((h * 0.3, -0.12 * ay, -0.05 * ax), (top, -0.12 * ay, -0.06 * ax), 14.0),
        ((top, -0.12 * ay, -0.06 * ax), (top + 8, 0.35 * ay, 0.14 * ax), 12.0),
        ((top + 8, 0.35 * ay, 0.14 * ax), (0.0, 0.6 * ay, 0.16 * ax), 11.0),
    ):
        tube_paint(volume, grid, Tube(start=start, end=end, radius=radius), aorta)
    svc = Tube(
        start=(h * 1.05, -0.05 * ay, -0.25 * ax), end=(h * 0.5, -0.1 * ay, -0.2 * ax), radius=9
    )
    tube_paint(volume, grid, svc, pa * float(rng.uniform(1.2, 2.0)))
    # trachea and main bronchi: air in a soft-tissue wall
    carina = (h * 0.66, 0.2 * ay, 0.0)
    airways = [
        Tube(start=(h * 1.1, 0.1 * ay, 0.0), end=carina, radius=9.0),
        Tube(start=carina, end=(h * 0.6, 0.22 * ay, -0.42 * ax), radius=6.0),
        Tube(start=carina, end=(h * 0.62, 0.25 * ay, 0.42 * ax), radius=6.0),
    ]
    for airway in airways:
        tube_paint(volume, grid, Tube(airway.start, airway.end, airway.radius + 1.8), 40.0)
    for airway in airways:
        tube_paint(volume, grid, airway, -950.0)


def arteries_plan(chest: Chest, rng: np.random.Generator) -> list[Artery]:
    """The pulmonary arterial tree as straight tubes, from the right ventricle outwards."""
    h = chest.height
    ay, ax = chest.cavity[1], chest.cavity[0]
    trunk_start = (max(chest.domes) + 45.0, -0.55 * ay, 0.1 * ax)
    bifurcation = (h * 0.6, -0.08 * ay, 0.06 * ax)
    r_main = float(rng.uniform(14.0, 17.0))
    arteries = [Artery("trunk", "main", Tube(trunk_start, bifurcation, r_main))]
    hila = {
        "right": (h * 0.58, 0.0, -0.4 * ax),
        "left": (h * 0.62, 0.08 * ay, 0.4 * ax),
    }
    for side, hilum in hila.items():
        arteries.append(
            Artery(f"{side} pulmonary", "main", Tube(bifurcation, hilum, r_main * 0.72))
        )
    lobes = {
        "right upper": ("right", (h * 0.78, -0.1 * ay, -0.6 * ax)),
        "right middle": ("right", (h * 0.46, -0.5 * ay, -0.55 * ax)),
        "right lower": ("right", (h * 0.3, 0.35 * ay, -0.6 * ax)),
        "left upper": ("left", (h * 0.8, -0.1 * ay, 0.6 * ax)),
        "lingula": ("left", (h * 0.48, -0.45 * ay, 0.58 * ax)),
        "left lower": ("left", (h * 0.3, 0.35 * ay, 0.6 * ax)),
    }
    for name, (side, end) in lobes.items():
        start = hila[side]
        end = (max(end[0], max(chest.domes) + 25.0), end[1], end[2])
        radius = float(rng.uniform(9.0, 11.0))  # exaggerated, like the segmental ones below
        arteries.append(Artery(name, "lobar", Tube(start, end, radius)))
        for branch in range(3):
            direction = np.subtract(end, start)
            direction = direction / np.linalg.norm(direction)
            turn = rng.normal(0, 0.6, 3)
            turn[0] *= 0.8
            new = direction + turn
            new /= np.linalg.norm(new)
            length = float(rng.uniform(34, 50))
            seg_end = tuple(float(v) for v in np.add(end, new * length))
            while length > 12 and not chest.lung_inside(seg_end):  # type: ignore[arg-type]
                length *= 0.8
                seg_end = tuple(float(v) for v in np.add(end, new * length))
            if length <= 12:
                continue
            # exaggerated calibre, so that a segmental embolus still shows at 64x64
            seg = Tube(end, seg_end, float(rng.uniform(6.0, 7.0)))  # type: ignore[arg-type]
            arteries.append(Artery(f"{name} {branch + 1}", "segmental", seg))
            for twig in range(2):
                turn = rng.normal(0, 0.7, 3)
                child = new + turn
                child /= np.linalg.norm(child)
                length = float(rng.uniform(18, 30))
                tip = tuple(float(v) for v in np.add(seg_end, child * length))
                while length > 8 and not chest.lung_inside(tip, margin=3):  # type: ignore[arg-type]
                    length *= 0.75
                    tip = tuple(float(v) for v in np.add(seg_end, child * length))
                if length > 8:
                    twig_tube = Tube(seg_end, tip, float(rng.uniform(2.2, 3.0)))  # type: ignore[arg-type]
                    arteries.append(
                        Artery(f"{name} {branch + 1}.{twig}", "subsegmental", twig_tube)
                    )
    return arteries


def veins_draw(volume: np.ndarray, chest: Chest, rng: np.random.Generator, pa: float) -> None:
    """Pulmonary veins: a second, less enhanced tree converging on the left atrium."""
    grid = chest.grid
    h = chest.height
    ay, ax = chest.cavity[1], chest.cavity[0]
    atrium = (max(chest.domes) + 40.0, 0.1 * ay, 0.05 * ax)
    value = pa * float(rng.uniform(0.7, 0.85))
    for side in (-1.0, 1.0):
        for level in (0.35, 0.55):
            end = (h * level, float(rng.uniform(-0.3, 0.3)) * ay, side * 0.7 * ax)
            tube_paint(volume, grid, Tube(atrium, end, 5.0), value)
            for _ in range(2):
                tip = np.add(end, rng.normal(0, 22, 3))
                if chest.lung_inside((float(tip[0]), float(tip[1]), float(tip[2]))):
                    tube_paint(
                        volume,
                        grid,
                        Tube(end, (float(tip[0]), float(tip[1]), float(tip[2])), 2.5),
                        value,
                    )


def embolus_draw(
    volume: np.ndarray,
    mask: np.ndarray,
    chest: Chest,
    rng: np.random.Generator,
    arteries: list[Artery],
    subtype: str,
) -> int:
    grid = chest.grid
    levels = {"main": ("main",), "lobar": ("lobar",), "segmental": ("segmental",)}[subtype]
    candidates = [a for a in arteries if a.level in levels]
    count = {"main": 1, "lobar": int(rng.integers(1, 3)), "segmental": int(rng.integers(1, 3))}[
        subtype
    ]
    added = 0
    for index in rng.permutation(len(candidates))[:count]:
        artery = candidates[int(index)]
        found = tube_distance(grid, artery.tube)
        if found is None:
            continue
        box, distance, along = found
        length = float(np.linalg.norm(np.subtract(artery.tube.end, artery.tube.start)))
        span = {"main": 0.55, "lobar": 0.5, "segmental": 0.6}[subtype] * float(
            rng.uniform(0.8, 1.2)
        )
        span = max(span, min(0.9, 20.0 / max(length, 1.0)))
        # a main-artery embolus sits in the distal trunk or the right / left pulmonary artery
        # (saddle region), clear of the heart
        earliest = 0.5 if artery.name == "trunk" else 0.05
        start = float(rng.uniform(earliest, max(earliest + 0.01, 0.95 - span)))
        fill = {"main": (0.55, 0.8), "lobar": (0.6, 0.85), "segmental": (1.0, 1.0)}[subtype]
        radius = artery.tube.radius * float(rng.uniform(*fill))
        ends = np.minimum(along - np.float32(start), np.float32(start + span) - along)
        weight = soft_edge(np.float32(radius) - distance, grid.spacing)
        weight *= soft_edge(ends * np.float32(length), grid.spacing)
        lumen = (distance < np.float32(artery.tube.radius - grid.spacing * 0.25)) & (weight > 0.75)
        if radius >= artery.tube.radius:
            weight *= soft_edge(np.float32(artery.tube.radius) - distance, grid.spacing)
        value = float(rng.uniform(20, 50))
        added += lesion_paint(volume, mask, box, weight, value, min_pixels=5, eligible=lumen)
    return added


def mixing_draw(
    volume: np.ndarray, chest: Chest, rng: np.random.Generator, arteries: list[Artery]
) -> None:
    """Unopacified blood mixing in: a blotchy, lower (120-180 HU) stretch of a large artery."""
    grid = chest.grid
    pick = [a for a in arteries if a.level in ("main", "lobar")]
    for index in rng.permutation(len(pick))[: int(rng.integers(1, 3))]:
        artery = pick[int(index)]
        found = tube_distance(grid, artery.tube)
        if found is None:
            continue
        box, distance, along = found
        centre = float(rng.uniform(0.3, 0.7))
        ramp = np.clip(1 - np.abs(along - np.float32(centre)) * np.float32(2.2), 0, 1)
        lumen = soft_edge(np.float32(artery.tube.radius) - distance, grid.spacing)
        blotch = np.float32(rng.uniform(130, 170)) + np.float32(25.0) * smooth_field(
            rng, distance.shape, cells=(3, 3, 3)
        )
        paint(volume, box, lumen * np.sqrt(ramp), blotch)


def nodes_draw(
    volume: np.ndarray, chest: Chest, rng: np.random.Generator, arteries: list[Artery], count: int
) -> None:
    """Soft-tissue lymph nodes beside (never inside) the hilar and lobar arteries."""
    grid = chest.grid
    pick = [a for a in arteries if a.level in ("main", "lobar")]
    for index in rng.integers(0, len(pick), count):
        artery = pick[int(index)]
        t = float(rng.uniform(0.2, 0.8))
        point = np.add(artery.tube.start, t * np.subtract(artery.tube.end, artery.tube.start))
        axis = np.subtract(artery.tube.end, artery.tube.start)
        side = np.cross(axis, rng.normal(0, 1, 3))
        side /= np.linalg.norm(side) or 1.0
        radius = float(rng.uniform(5.0, 9.0))
        centre = point + side * (artery.tube.radius + radius + 1.5)
        found = ellipsoid_weight(
            grid,
            centre=(float(centre[0]), float(centre[1]), float(centre[2])),
            radii=(radius * 1.2, radius, radius * float(rng.uniform(0.7, 1.0))),
            angle=float(rng.uniform(0, np.pi)),
        )
        if found:
            paint(volume, found[0], found[1], float(rng.uniform(35, 60)))


def ctpa_generate(rng: np.random.Generator, *, positive: bool) -> PhantomStudy:
    chest = chest_shape(rng)
    grid = chest.grid
    subtype = str(rng.choice(EMBOLI)) if positive else str(rng.choice(MIMICS, p=[0.4, 0.3, 0.3]))
    pa = float(rng.uniform(260, 400))
    volume = np.empty(grid.shape, dtype=np.float32)
    wall = wall_draw(chest, rng)
    volume[:] = wall[None]
    ribs_draw(volume, chest, rng)
    lungs_draw(volume, wall, chest, rng)
    heart_draw(volume, chest, rng, pa)
    great_vessels_draw(volume, chest, rng, pa)
    arteries = arteries_plan(chest, rng)
    nodes = 0
    if subtype == "node":
        nodes = int(rng.integers(1, 4))
    elif rng.random() < 0.2:
        nodes = 1
    if nodes:
        nodes_draw(volume, chest, rng, arteries, nodes)
    veins_draw(volume, chest, rng, pa)
    for artery in arteries:
        tube_paint(volume, grid, artery.tube, pa)
    if subtype == "mixing" or (positive and rng.random() < 0.15):
        mixing_draw(volume, chest, rng, arteries)
    mask = np.zeros(grid.shape, dtype=bool)
    size = ""
    if positive:
        size = {"main": "large", "lobar": "medium", "segmental": "small"}[subtype]
        lesion_draw_until(
            partial(embolus_draw, volume, mask, chest, rng, arteries, subtype), mask, min_slices=3
        )
    return ct_phantom_finish(
        volume,
        mask,
        rng,
        grid=grid,
        finding=Finding.PULMONARY_EMBOLISM,
        positive=positive,
        subtype=subtype,
        size=size,
        noise_sd=(9.0, 15.0),
        body_part="CHEST",
        study_description="CTPA CHEST W CONTRAST",
        contrast_agents=("IOHEXOL", "IOPAMIDOL", "IODIXANOL"),
    )
