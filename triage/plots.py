"""Small server-rendered SVG line plots (no JavaScript, no plotting library): curves with 95%
bands and a marker at the current threshold."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

import numpy as np

WIDTH, HEIGHT = 560, 320
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 28, 44
COLOURS = ["#5aa9ff", "#6bd49a", "#f5c15c", "#ff8a8a", "#c792ea"]


@dataclass(frozen=True)
class Series:
    label: str
    x: np.ndarray
    y: np.ndarray
    low: np.ndarray | None = None
    high: np.ndarray | None = None


def _fmt(value: float) -> str:
    return f"{value:.1f}"


def line_plot(
    series: Sequence[Series],
    *,
    title: str,
    x_label: str,
    y_label: str,
    x_range: tuple[float, float] = (0.0, 1.0),
    y_range: tuple[float, float] | None = None,
    marker_x: float | None = None,
    marker_label: str = "current threshold",
    diagonal: bool = False,
) -> str:
    finite = [
        value
        for item in series
        for array in (item.y, item.low, item.high)
        if array is not None
        for value in np.asarray(array)[np.isfinite(array)]
    ]
    if y_range is None:
        top = max(finite) if finite else 1.0
        y_range = (0.0, top * 1.1 if top > 0 else 1.0)
    x0, x1 = x_range
    y0, y1 = y_range
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def px(x: float) -> float:
        return LEFT + (x - x0) / (x1 - x0) * plot_w

    def py(y: float) -> float:
        return TOP + plot_h - (y - y0) / (y1 - y0 or 1) * plot_h

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'class="plot" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<text x="{LEFT}" y="18" class="plot-title">{escape(title)}</text>',
    ]
    for tick in np.linspace(y0, y1, 5):
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{_fmt(py(tick))}" y2="{_fmt(py(tick))}" '
            'class="grid"/>'
            f'<text x="{LEFT - 6}" y="{_fmt(py(tick) + 4)}" class="tick" text-anchor="end">'
            f"{tick:.2g}</text>"
        )
    for tick in np.linspace(x0, x1, 6):
        parts.append(
            f'<text x="{_fmt(px(tick))}" y="{HEIGHT - BOTTOM + 16}" class="tick" '
            f'text-anchor="middle">{tick:.2g}</text>'
        )
    parts.append(
        f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 8}" class="axis" text-anchor="middle">'
        f"{escape(x_label)}</text>"
        f'<text x="14" y="{TOP + plot_h / 2}" class="axis" text-anchor="middle" '
        f'transform="rotate(-90 14 {TOP + plot_h / 2})">{escape(y_label)}</text>'
    )
    if diagonal:
        parts.append(
            f'<line x1="{px(x0)}" y1="{py(y0)}" x2="{px(x1)}" y2="{py(y1)}" class="diagonal"/>'
        )
    for index, item in enumerate(series):
        colour = COLOURS[index % len(COLOURS)]
        ok = np.isfinite(item.y)
        if item.low is not None and item.high is not None:
            band_ok = ok & np.isfinite(item.low) & np.isfinite(item.high)
            upper = [
                f"{_fmt(px(x))},{_fmt(py(y))}"
                for x, y in zip(item.x[band_ok], item.high[band_ok], strict=True)
            ]
            lower = [
                f"{_fmt(px(x))},{_fmt(py(y))}"
                for x, y in zip(item.x[band_ok][::-1], item.low[band_ok][::-1], strict=True)
            ]
            if upper:
                parts.append(
                    f'<polygon points="{" ".join(upper + lower)}" fill="{colour}" '
                    'fill-opacity="0.18" stroke="none" class="band"/>'
                )
        points = " ".join(
            f"{_fmt(px(x))},{_fmt(py(y))}" for x, y in zip(item.x[ok], item.y[ok], strict=True)
        )
        parts.append(
            f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2" '
            f'class="series" data-label="{escape(item.label)}"/>'
        )
        legend_x = LEFT + 8 + index * 130
        parts.append(
            f'<rect x="{legend_x}" y="{TOP + 4}" width="10" height="10" fill="{colour}"/>'
            f'<text x="{legend_x + 14}" y="{TOP + 13}" class="legend">{escape(item.label)}</text>'
        )
    if marker_x is not None:
        parts.append(
            f'<line x1="{_fmt(px(marker_x))}" x2="{_fmt(px(marker_x))}" y1="{TOP}" '
            f'y2="{TOP + plot_h}" class="marker"/>'
            f'<text x="{_fmt(px(marker_x) + 4)}" y="{TOP + plot_h - 6}" class="marker-label">'
            f"{escape(marker_label)} {marker_x:.2f}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)
