"""The inference pipeline: plain functions on numpy arrays, no Django, no torch.

decode -> order slices -> rescale to HU -> window -> resize -> batch -> ONNX Runtime ->
aggregate -> key instance -> key image with heat map. Training uses the same pre-processing
functions, so what a model sees in training is what it sees on a worker.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from PIL import Image

from inference.acquisition import acquisition_of
from inference.png import png_encode
from inference.registry import (
    Aggregation,
    AggregationMethod,
    CtSlicesPreprocessing,
    ModelOutputs,
    Preprocessing,
    Window,
)

# ---------------------------------------------------------------------------------- decode


@dataclass(frozen=True, kw_only=True)
class DecodedSeries:
    """A series as arrays: CT in Hounsfield units, radiographs as display-ready intensities."""

    pixels: np.ndarray  # float32, (slices, rows, columns)
    sop_instance_uids: list[str]
    positions: np.ndarray  # float64, (slices,) along the slice normal; zeros for radiographs
    photometric: str
    modality: str
    # The acquisition bands of the series (inference.acquisition), from its first slice's header.
    acquisition: dict[str, str] = field(default_factory=dict)


class DecodeError(Exception):
    """The pixel data cannot be decoded (a permanent failure for this study)."""


def slice_position(ds: pydicom.Dataset) -> float:
    """Distance along the slice normal: robust to gantry tilt and unordered instance numbers."""
    position = ds.get("ImagePositionPatient")
    orientation = ds.get("ImageOrientationPatient")
    if position is None or orientation is None:
        return float(ds.get("InstanceNumber") or 0)
    row = np.asarray(orientation[:3], dtype=float)
    column = np.asarray(orientation[3:], dtype=float)
    return float(np.dot(np.cross(row, column), np.asarray(position, dtype=float)))


AIR_HU = -1000.0  # what padding (pixels outside the reconstructed field) becomes in a CT


def rescale(ds: pydicom.Dataset, stored: np.ndarray) -> np.ndarray:
    """Stored values to modality values (HU for CT): slope and intercept, any storage (signed
    or unsigned, 12 or 16 bits stored: `pixel_array` has already applied both)."""
    slope = float(ds.get("RescaleSlope", 1) or 1)
    intercept = float(ds.get("RescaleIntercept", 0) or 0)
    return stored.astype(np.float32) * np.float32(slope) + np.float32(intercept)


def padding_mask(ds: pydicom.Dataset, stored: np.ndarray) -> np.ndarray | None:
    """The padded pixels (Pixel Padding Value, or the inclusive range it spans with Pixel Padding
    Range Limit), compared on stored values as the standard says; None when nothing is padded."""
    value = ds.get("PixelPaddingValue")
    if value is None:
        return None
    limit = ds.get("PixelPaddingRangeLimit")
    low, high = sorted((int(value), int(value if limit is None else limit)))
    mask = (stored >= low) & (stored <= high)
    return mask if mask.any() else None


def ct_hounsfield(ds: pydicom.Dataset, stored: np.ndarray) -> np.ndarray:
    """A CT slice in HU with its padding as air. The photometric interpretation is a display
    instruction only: HU are HU, so MONOCHROME1 is not inverted."""
    hu = rescale(ds, stored)
    mask = padding_mask(ds, stored)
    if mask is not None:
        hu[mask] = AIR_HU
    return hu


def radiograph_intensity(ds: pydicom.Dataset, stored: np.ndarray) -> np.ndarray:
    """Radiograph to [0, 1] with bright = dense, whatever the photometric interpretation; padding
    (the border outside the collimated field) is left out of the contrast range and shown black."""
    values = rescale(ds, stored)
    mask = padding_mask(ds, stored)
    image = values if mask is None or mask.all() else values[~mask]
    low, high = np.percentile(image, [0.5, 99.5])
    scaled = np.clip((values - low) / max(float(high - low), 1e-6), 0.0, 1.0)
    if str(ds.get("PhotometricInterpretation", "MONOCHROME2")) == "MONOCHROME1":
        scaled = 1.0 - scaled
    if mask is not None:
        scaled[mask] = 0.0
    return scaled.astype(np.float32)


def decode_series(paths: Sequence[Path]) -> DecodedSeries:
    """Read and decode every instance (any transfer syntax the listener accepts), in order."""
    entries = []
    for path in paths:
        try:
            ds = pydicom.dcmread(path)
            stored = ds.pixel_array
        except Exception as exc:  # pydicom raises many types for broken pixel data
            raise DecodeError(f"cannot decode pixel data: {type(exc).__name__}: {exc}") from exc
        if stored.ndim != 2:
            raise DecodeError(f"expected single-frame grayscale images, got shape {stored.shape}")
        entries.append((slice_position(ds), ds, stored))
    if not entries:
        raise DecodeError("no instances to decode")
    entries.sort(key=lambda entry: entry[0])
    first = entries[0][1]
    modality = str(first.get("Modality", ""))
    shapes = {entry[2].shape for entry in entries}
    if len(shapes) != 1:
        raise DecodeError(f"instances of one series differ in size: {sorted(shapes)}")
    if modality == "CT":
        pixels = np.stack([ct_hounsfield(ds, stored) for _, ds, stored in entries])
    else:
        pixels = np.stack([radiograph_intensity(ds, stored) for _, ds, stored in entries])
    return DecodedSeries(
        pixels=pixels.astype(np.float32),
        sop_instance_uids=[str(ds.SOPInstanceUID) for _, ds, _ in entries],
        positions=np.asarray([position for position, _, _ in entries], dtype=np.float64),
        photometric=str(first.get("PhotometricInterpretation", "")),
        modality=modality,
        acquisition=acquisition_of(first),
    )


# ------------------------------------------------------------------------- pre-processing


def window(hu: np.ndarray, *, center: float, width: float) -> np.ndarray:
    """Map HU to [0, 1] through a display window."""
    low = center - width / 2.0
    return np.clip((hu - low) / width, 0.0, 1.0).astype(np.float32)


def resize(images: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of (n, rows, columns) float images to (n, size, size)."""
    if images.shape[1:] == (size, size):
        return images.astype(np.float32)
    return np.stack(
        [
            np.asarray(
                Image.fromarray(image.astype(np.float32), mode="F").resize(
                    (size, size), Image.Resampling.BILINEAR
                )
            )
            for image in images
        ]
    ).astype(np.float32)


def neighbour_stack(
    images: np.ndarray, positions: np.ndarray | None, neighbours: int
) -> np.ndarray:
    """(slices, rows, columns) -> (slices, 2 * neighbours + 1, rows, columns): each slice with
    what lies `neighbours` slice spacings either side of it (the spacing: the series' median).

    Evenly spaced slices (within 2 %) are taken as they are, so an even series is unchanged by
    this; with gaps, overlaps or a missing slice the neighbours are interpolated at their true
    distance, so a model sees the anatomy it was trained to see. Beyond the ends the end slice
    repeats."""
    count = images.shape[0]
    offsets = np.arange(-neighbours, neighbours + 1)
    steps = np.diff(positions) if positions is not None and count > 1 else np.zeros(0)
    step = float(np.median(steps)) if steps.size else 0.0
    if step <= 0 or np.allclose(steps, step, rtol=0.02, atol=1e-3):
        index = np.clip(np.arange(count)[:, None] + offsets[None, :], 0, count - 1)
        return images[index]
    assert positions is not None
    targets = np.clip(positions[:, None] + offsets[None, :] * step, positions[0], positions[-1])
    upper = np.clip(np.searchsorted(positions, targets, side="left"), 1, count - 1)
    lower = upper - 1
    span = positions[upper] - positions[lower]
    weight = np.where(span > 0, (targets - positions[lower]) / np.where(span > 0, span, 1), 0.0)
    weight = np.clip(weight, 0.0, 1.0).astype(np.float32)
    centre = neighbours  # each slice's own channel is itself, even beside a duplicate position
    lower[:, centre], upper[:, centre], weight[:, centre] = np.arange(count), np.arange(count), 0
    weight = weight[..., None, None]
    return images[lower] * (1 - weight) + images[upper] * weight


def ct_slice_inputs(
    hu: np.ndarray,
    *,
    size: int,
    windows: Sequence[Window],
    neighbours: int,
    positions: np.ndarray | None = None,
) -> np.ndarray:
    """One input per slice: for each window, the slice and its neighbours as channels (see
    `neighbour_stack`; `positions` along the slice normal, ascending, as decoded).

    Returns (slices, len(windows) * (2 * neighbours + 1), size, size).
    """
    stacked = neighbour_stack(resize(hu, size), positions, neighbours)
    channels = [window(stacked, center=w.center, width=w.width) for w in windows]
    return np.concatenate(channels, axis=1).astype(np.float32)


def radiograph_inputs(intensity: np.ndarray, *, size: int) -> np.ndarray:
    """(n, rows, columns) in [0, 1] -> (n, 1, size, size)."""
    return resize(intensity, size)[:, None, :, :]


def model_inputs(series: DecodedSeries, preprocessing: Preprocessing) -> np.ndarray:
    """The model's inputs for a decoded series, as the card's pre-processing says."""
    if isinstance(preprocessing, CtSlicesPreprocessing):
        return ct_slice_inputs(
            series.pixels,
            size=preprocessing.size,
            windows=preprocessing.windows,
            neighbours=preprocessing.neighbours,
            positions=series.positions,
        )
    return radiograph_inputs(series.pixels, size=preprocessing.size)


# ------------------------------------------------------------------------------- predict


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-logits.astype(np.float64)))).astype(np.float32)


class OutputsError(Exception):
    """The model does not have the outputs its card names."""


DEFAULT_OUTPUTS = ModelOutputs()  # what a card without `outputs` names: "logit" and "cam"


def predict(
    session: Any,
    inputs: np.ndarray,
    *,
    outputs: ModelOutputs = DEFAULT_OUTPUTS,
    batch_size: int = 32,
) -> tuple[np.ndarray, np.ndarray]:
    """Run an ONNX Runtime session in batches: (probabilities (n,), activation maps (n, h, w)).

    The outputs are read by the names the card gives them, whatever order the model lists them.
    """
    names = [output.name for output in session.get_outputs()]
    wanted = [outputs.logit, outputs.activation_map]
    missing = [name for name in wanted if name not in names]
    if missing:
        raise OutputsError(
            f"the model has no output named {', '.join(map(repr, missing))}; "
            f"its outputs are {', '.join(map(repr, names))}"
        )
    input_name = session.get_inputs()[0].name
    logits, maps = [], []
    for start in range(0, inputs.shape[0], batch_size):
        batch_logits, batch_maps = (
            np.asarray(value)
            for value in session.run(wanted, {input_name: inputs[start : start + batch_size]})
        )
        logits.append(batch_logits.reshape(-1))
        maps.append(batch_maps.reshape(len(batch_logits), *batch_maps.shape[-2:]))
    return sigmoid(np.concatenate(logits)), np.concatenate(maps).astype(np.float32)


def aggregate(probabilities: np.ndarray, *, method: Aggregation) -> tuple[float, int]:
    """Study score and the index of the key slice (the most probable one)."""
    key = int(np.argmax(probabilities))
    if method.method is AggregationMethod.MAX:
        return float(probabilities[key]), key
    k = max(1, min(method.k, probabilities.size))
    return float(np.sort(probabilities)[-k:].mean()), key


# --------------------------------------------------------------------------------- render


def heat_map_png(
    image: np.ndarray, activation: np.ndarray, *, caption: str = "", max_side: int = 512
) -> bytes:
    """The key image in grey with the activation map blended on top in red-yellow, as PNG.

    `image` is in [0, 1]; `activation` is any real-valued map (normalised here).
    """
    grey = np.clip(image, 0.0, 1.0)
    height, width = grey.shape
    scale = max_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    base = Image.fromarray((grey * 255).astype(np.uint8), mode="L").resize(size).convert("RGB")
    heat = activation - float(activation.min())
    peak = float(heat.max())
    heat = heat / peak if peak > 0 else heat
    heat_image = (
        np.asarray(
            Image.fromarray((heat * 255).astype(np.uint8), mode="L").resize(
                size, Image.Resampling.BILINEAR
            ),
            dtype=np.float32,
        )
        / 255.0
    )
    rgb = np.asarray(base, dtype=np.float32) / 255.0
    colour = np.stack([np.ones_like(heat_image), heat_image, np.zeros_like(heat_image)], axis=-1)
    alpha = (0.55 * np.clip((heat_image - 0.35) / 0.65, 0.0, 1.0))[..., None]
    blended = (rgb * (1 - alpha) + colour * alpha) * 255
    picture = Image.fromarray(blended.astype(np.uint8), mode="RGB")
    if caption:
        from PIL import ImageDraw

        ImageDraw.Draw(picture).text((6, size[1] - 16), caption, fill=(255, 255, 255))
    return png_encode(np.asarray(picture))


def activation_maps_bytes(maps: np.ndarray) -> bytes:
    """A series' activation maps (n, h, w) as a .npy file (float16: a 200-slice series of 8x8
    maps is 26 KB)."""
    out = io.BytesIO()
    np.save(out, maps.astype(np.float16), allow_pickle=False)
    return out.getvalue()


def activation_maps_load(data: bytes) -> np.ndarray:
    return np.asarray(np.load(io.BytesIO(data), allow_pickle=False), dtype=np.float32)


def heat_overlay_png(activation: np.ndarray, *, low: float, high: float, side: int = 256) -> bytes:
    """One slice's activation as a transparent red-yellow overlay (RGBA PNG, `side` square: the
    model saw the image resized to a square, so the overlay is stretched over the frame).
    `low` and `high` are the series' range, so a quiet slice stays faint; the colours and the
    opacity curve are the key-image heat map's."""
    heat = np.clip((activation - low) / max(high - low, 1e-6), 0.0, 1.0)
    grid = Image.fromarray((heat * 255).astype(np.uint8), mode="L")
    smooth = np.asarray(grid.resize((side, side), Image.Resampling.BILINEAR), dtype=np.float32)
    smooth /= 255.0
    rgba = np.stack(
        [
            np.full_like(smooth, 255.0),
            smooth * 255.0,
            np.zeros_like(smooth),
            255.0 * np.clip((smooth - 0.35) / 0.65, 0.0, 1.0),
        ],
        axis=-1,
    ).astype(np.uint8)
    return png_encode(rgba)


def display_image(series: DecodedSeries, index: int, preprocessing: Preprocessing) -> np.ndarray:
    """The key slice in the model's first window (CT) or as is (radiograph), in [0, 1]."""
    if isinstance(preprocessing, CtSlicesPreprocessing):
        first = preprocessing.windows[0]
        return window(series.pixels[index], center=first.center, width=first.width)
    return series.pixels[index]
