"""Vectorised shape primitives for phantom volumes: a millimetre grid, ellipsoids, tubes, noise.

Every shape is evaluated only inside its bounding box and blended with a one-voxel soft edge, so
a phantom costs a few dozen whole-volume numpy operations however many shapes it holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Point = tuple[float, float, float]  # (z, y, x) in mm
Box = tuple[slice, slice, slice]


@dataclass(frozen=True)
class Grid:
    """Voxel centres in mm: z superior (slice 0 most inferior), y posterior, x patient left."""

    z: np.ndarray  # (slices,)
    y: np.ndarray  # (rows,)
    x: np.ndarray  # (columns,)
    spacing: float  # in-plane mm per pixel
    thickness: float  # mm between slice centres

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.z.size, self.y.size, self.x.size)

    @property
    def height(self) -> float:
        """mm covered along z: slices times thickness."""
        return self.z.size * self.thickness

    def box(self, low: Point, high: Point) -> Box | None:
        """Index ranges of the voxels whose centres lie inside [low, high]; None when empty."""
        ranges = []
        for axis, lo, hi in zip((self.z, self.y, self.x), low, high, strict=True):
            start = int(np.searchsorted(axis, lo, side="left"))
            stop = int(np.searchsorted(axis, hi, side="right"))
            if stop <= start:
                return None
            ranges.append(slice(start, stop))
        return (ranges[0], ranges[1], ranges[2])

    def coords(self, box: Box) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Open (broadcastable) coordinate grids of a box."""
        return (
            self.z[box[0]][:, None, None],
            self.y[box[1]][None, :, None],
            self.x[box[2]][None, None, :],
        )


def grid_make(
    *, slices: int, size: int, spacing: float, thickness: float, offset: tuple[float, float]
) -> Grid:
    """A grid centred in-plane on (0, 0) shifted by offset (y, x) mm, z from 0 upwards."""
    centre = (size - 1) / 2.0
    axis = (np.arange(size, dtype=np.float32) - centre) * np.float32(spacing)
    return Grid(
        z=(np.arange(slices, dtype=np.float32) * np.float32(thickness)),
        y=axis + np.float32(offset[0]),
        x=axis + np.float32(offset[1]),
        spacing=spacing,
        thickness=thickness,
    )


def grid_draw(
    rng: np.random.Generator,
    *,
    size: int,
    spacing: tuple[float, float],
    thicknesses: Sequence[float],
    coverage: tuple[float, float],
    slices: tuple[int, int],
    offset: float,
) -> Grid:
    """A seeded CT grid: pixel spacing drawn from `spacing` (mm, 3 decimals), a slice thickness
    from `thicknesses`, as many slices as cover a drawn `coverage` (mm) within `slices`, and an
    in-plane offset of up to `offset` mm either way."""
    pixel = round(float(rng.uniform(*spacing)), 3)
    thickness = float(rng.choice(list(thicknesses)))
    count = int(np.clip(round(float(rng.uniform(*coverage)) / thickness), *slices))
    return grid_make(
        slices=count,
        size=size,
        spacing=pixel,
        thickness=thickness,
        offset=(float(rng.uniform(-offset, offset)), float(rng.uniform(-offset, offset))),
    )


def soft_edge(inside_mm: np.ndarray, spacing: float) -> np.ndarray:
    """Partial-volume weight from a signed distance (positive inside) in mm."""
    weight = inside_mm * np.float32(1.0 / spacing)
    weight += np.float32(0.5)
    np.clip(weight, 0.0, 1.0, out=weight)
    return weight


def ellipsoid(
    grid: Grid, *, centre: Point, radii: Point, angle: float = 0.0
) -> tuple[Box, np.ndarray] | None:
    """(box, normalised radius) of an ellipsoid, rotated in-plane by angle (radians)."""
    reach = max(radii[1], radii[2])
    box = grid.box(
        (centre[0] - radii[0], centre[1] - reach, centre[2] - reach),
        (centre[0] + radii[0], centre[1] + reach, centre[2] + reach),
    )
    if box is None:
        return None
    z, y, x = grid.coords(box)
    dz = (z - np.float32(centre[0])) * np.float32(1.0 / radii[0])
    dy = y - np.float32(centre[1])
    dx = x - np.float32(centre[2])
    if angle:
        cos, sin = np.float32(np.cos(angle)), np.float32(np.sin(angle))
        dy, dx = cos * dy - sin * dx, sin * dy + cos * dx
    rho2 = (dy * np.float32(1.0 / radii[1])) ** 2 + (dx * np.float32(1.0 / radii[2])) ** 2
    rho2 = rho2 + dz**2
    return box, np.sqrt(rho2)


def ellipsoid_weight(
    grid: Grid, *, centre: Point, radii: Point, angle: float = 0.0
) -> tuple[Box, np.ndarray] | None:
    """(box, partial-volume weight) of a solid ellipsoid."""
    found = ellipsoid(grid, centre=centre, radii=radii, angle=angle)
    if found is None:
        return None
    box, rho = found
    inside = (1.0 - rho) * np.float32(min(radii[1], radii[2]))
    return box, soft_edge(inside, grid.spacing)


@dataclass(frozen=True)
class Tube:
    """A straight vessel or bar: a capsule from start to end with a radius in mm."""

    start: Point
    end: Point
    radius: float


def tube_distance(
    grid: Grid, tube: Tube, *, margin: float = 0.0
) -> tuple[Box, np.ndarray, np.ndarray] | None:
    """(box, distance to the axis in mm, position along the axis in [0, 1]) around a tube."""
    reach = tube.radius + margin + grid.spacing
    start = np.asarray(tube.start, dtype=np.float32)
    end = np.asarray(tube.end, dtype=np.float32)
    low = np.minimum(start, end) - reach
    high = np.maximum(start, end) + reach
    low[0] -= grid.thickness / 2
    high[0] += grid.thickness / 2
    box = grid.box(
        (float(low[0]), float(low[1]), float(low[2])),
        (float(high[0]), float(high[1]), float(high[2])),
    )
    if box is None:
        return None
    z, y, x = grid.coords(box)
    axis = end - start
    length2 = float(np.dot(axis, axis)) or 1e-6
    rz, ry, rx = z - start[0], y - start[1], x - start[2]
    along = (rz * axis[0] + ry * axis[1]) + rx * axis[2]
    along *= np.float32(1.0 / length2)
    np.clip(along, 0.0, 1.0, out=along)
    dz = rz - along * axis[0]
    dy = ry - along * axis[1]
    dx = rx - along * axis[2]
    distance = np.sqrt(dz * dz + dy * dy + dx * dx)
    return box, distance, along


def tube_weight(grid: Grid, tube: Tube) -> tuple[Box, np.ndarray] | None:
    found = tube_distance(grid, tube)
    if found is None:
        return None
    box, distance, _ = found
    return box, soft_edge(np.float32(tube.radius) - distance, grid.spacing)


def paint(volume: np.ndarray, box: Box, weight: np.ndarray, value: float | np.ndarray) -> None:
    """Blend value into the volume with a partial-volume weight (in place)."""
    region = volume[box]
    region += weight * (value - region)


def noise_add(volume: np.ndarray, rng: np.random.Generator, *, sd: float, bank: int = 12) -> None:
    """Add white noise per slice from random crops of a small bank (much cheaper than drawing
    one normal per voxel, and no two slices share a noise pattern)."""
    slices, rows, cols = volume.shape
    pad = 24
    planes = rng.standard_normal((bank, rows + pad, cols + pad), dtype=np.float32)
    planes *= np.float32(sd)
    picks: list[int] = np.asarray(rng.integers(0, bank, slices)).tolist()
    offsets: list[list[int]] = np.asarray(rng.integers(0, pad + 1, (slices, 2))).tolist()
    flips: list[int] = np.asarray(rng.integers(0, 2, slices)).tolist()
    for index in range(slices):
        oy, ox = offsets[index]
        crop = planes[picks[index], oy : oy + rows, ox : ox + cols]
        volume[index] += crop[::-1] if flips[index] else crop


def _hat_matrix(count: int, cells: int) -> np.ndarray:
    """(count, cells + 1) linear-interpolation weights from a coarse lattice to count samples."""
    position = np.linspace(0.0, cells, count, dtype=np.float32)
    knots = np.arange(cells + 1, dtype=np.float32)
    return np.clip(1 - np.abs(position[:, None] - knots[None, :]), 0, 1).astype(np.float32)


def smooth_field(
    rng: np.random.Generator, shape: Sequence[int], *, cells: Sequence[int]
) -> np.ndarray:
    """A smooth random field in about [-1, 1]: coarse normals linearly interpolated to shape
    (as matrix products, so it costs about one pass over the output)."""
    coarse = rng.standard_normal(tuple(c + 1 for c in cells)).astype(np.float32)
    rows = _hat_matrix(shape[-2], cells[-2])
    cols = _hat_matrix(shape[-1], cells[-1])
    planes = rows @ coarse @ cols.T  # (..., rows, cols)
    if len(shape) == 3:
        depth = _hat_matrix(shape[0], cells[0])
        planes = (depth @ planes.reshape(cells[0] + 1, -1)).reshape(tuple(shape))
    planes *= np.float32(1 / 1.5)
    return planes


def blur2d(image: np.ndarray, passes: int = 1) -> np.ndarray:
    """A cheap [1 2 1]/4 separable blur of the last two axes, repeated."""
    out = image.astype(np.float32, copy=True)
    for _ in range(passes):
        padded = np.pad(out, [(0, 0)] * (out.ndim - 2) + [(1, 1), (1, 1)], mode="edge")
        rows = padded[..., :-2, :] + 2 * padded[..., 1:-1, :] + padded[..., 2:, :]
        out = (rows[..., :-2] + 2 * rows[..., 1:-1] + rows[..., 2:]) * np.float32(1 / 16)
    return out


def segment_distance2d(
    ys: np.ndarray,
    xs: np.ndarray,
    start: tuple[float, float],
    end: tuple[float, float],
) -> tuple[np.ndarray, np.ndarray]:
    """(distance, position along) from 2D open grids (ys column, xs row) to a segment."""
    ay, ax = end[0] - start[0], end[1] - start[1]
    length2 = ay * ay + ax * ax or 1e-6
    ry, rx = ys - np.float32(start[0]), xs - np.float32(start[1])
    along = (ry * np.float32(ay) + rx * np.float32(ax)) * np.float32(1.0 / length2)
    np.clip(along, 0.0, 1.0, out=along)
    dy = ry - along * np.float32(ay)
    dx = rx - along * np.float32(ax)
    return np.sqrt(dy * dy + dx * dx), along
