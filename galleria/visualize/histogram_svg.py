"""Inline SVG of a unit's activation histogram.

The SVG is meant to sit inside an HTML page: it draws with ``currentColor`` and carries
CSS classes (``hist``, ``hist-bar``, ``hist-bar neg``, ``hist-zero``, ``hist-interval``,
``hist-axis``, ``hist-label``) so that the page's stylesheet, dark mode included, can
restyle it. It also stands alone as a valid XML document.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from xml.sax.saxutils import escape, quoteattr

from galleria import records

__all__ = ["histogram_svg", "format_compact"]

SCALE_NOTE = "bar heights on a log scale, log(1 + count), so that rare values stay visible"


def format_compact(x: float) -> str:
    """A short label for an axis: 3 significant digits, "1.2e-5" rather than "1.2e-05"."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "∞" if x > 0 else "-∞"
    if x == 0:
        return "0"
    text = f"{x:.3g}"
    if "e" in text:
        mantissa, exp = text.split("e")
        sign = "-" if exp.startswith("-") else ""
        text = f"{mantissa}e{sign}{exp.lstrip('+-').lstrip('0') or '0'}"
    return text


def _n(v: float) -> str:
    """A coordinate for SVG: short, no float noise."""
    text = f"{v:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _svg_open(width: int, height: int, label: str, extra_class: str = "") -> str:
    cls = "hist" + (f" {extra_class}" if extra_class else "")
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="{cls}" role="img" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'aria-label={quoteattr(label)} font-family="system-ui, sans-serif" font-size="10">'
    )


def _empty_svg(width: int, height: int) -> str:
    h = min(height, 32)
    label = "Activation histogram: no data"
    return (
        _svg_open(width, h, label, "hist-empty")
        + f"<title>{escape(label)}</title>"
        + f'<rect class="hist-frame" x="0.5" y="0.5" width="{width - 1}" height="{h - 1}" rx="3" '
        'fill="none" stroke="currentColor" stroke-opacity="0.3" stroke-dasharray="3 3"/>'
        + f'<text class="hist-label" x="{_n(width / 2)}" y="{_n(h / 2)}" text-anchor="middle" '
        'dominant-baseline="central" fill="currentColor" fill-opacity="0.7">no data</text>'
        + "</svg>"
    )


def histogram_svg(
    hist: records.Histogram,
    width: int = 360,
    height: int = 96,
    intervals: list[tuple[float, float]] | None = None,
) -> str:
    """Inline SVG (a string) of ``hist``: one ``<rect class="hist-bar">`` per bin.

    Bar heights are on a log(1 + count) scale (stated in the SVG's ``<title>``); every
    non-empty bin is at least 1 px tall. The x axis is labelled at the histogram's lowest
    edge, at 0 when 0 lies inside, and at its highest edge; a line marks 0. ``intervals``
    (in activation units) are shaded behind the bars. A histogram without counts gives a
    small "no data" SVG.
    """
    counts = [int(c) for c in hist.counts]
    total = sum(counts)
    if not counts or total <= 0 or not (hist.width > 0) or not math.isfinite(hist.width):
        return _empty_svg(width, height)

    edges = hist.edges
    x_min, x_max = edges[0], edges[-1]
    n = len(counts)

    pad_x = 2.0
    label_h = 14.0
    top = 2.0
    plot_w = max(1.0, width - 2 * pad_x)
    base_y = height - label_h  # baseline of the bars
    plot_h = max(1.0, base_y - top)

    def x_of(v: float) -> float:
        return pad_x + (v - x_min) / (x_max - x_min) * plot_w

    peak = math.log1p(max(counts))
    bin_w = plot_w / n

    label = (
        f"Histogram of {total:,} activation values from {format_compact(x_min)} "
        f"to {format_compact(x_max)}, {SCALE_NOTE}"
    )
    parts = [_svg_open(width, height, label), f"<title>{escape(label)}</title>"]

    # shaded intervals, behind everything else; every other one lighter, so neighbours stay apart
    for i, (lo, hi) in enumerate(_clip_intervals(intervals or (), x_min, x_max)):
        x0, x1 = x_of(lo), x_of(hi)
        parts.append(
            f'<rect class="hist-interval" x="{_n(x0)}" y="{_n(top)}" width="{_n(max(x1 - x0, 1.0))}" '
            f'height="{_n(plot_h)}" fill="currentColor" fill-opacity="{0.12 if i % 2 == 0 else 0.05}">'
            f"<title>{escape(format_compact(lo))} to {escape(format_compact(hi))}</title></rect>"
        )

    # bars
    parts.append('<g class="hist-bars" fill="currentColor">')
    for i, c in enumerate(counts):
        h = 0.0 if c <= 0 else max(1.0, math.log1p(c) / peak * plot_h)
        x = pad_x + i * bin_w
        neg = edges[i + 1] <= 0 and edges[i] < 0
        cls = "hist-bar neg" if neg else "hist-bar"
        opacity = ' fill-opacity="0.55"' if neg else ""
        tip = f"{format_compact(edges[i])} to {format_compact(edges[i + 1])}: {c:,}"
        parts.append(
            f'<rect class="{cls}" x="{_n(x)}" y="{_n(base_y - h)}" width="{_n(max(bin_w - (0.5 if bin_w > 3 else 0), 0.5))}" '
            f'height="{_n(h)}"{opacity}><title>{escape(tip)}</title></rect>'
        )
    parts.append("</g>")

    # axis
    parts.append(
        f'<line class="hist-axis" x1="{_n(pad_x)}" y1="{_n(base_y + 0.5)}" x2="{_n(pad_x + plot_w)}" '
        f'y2="{_n(base_y + 0.5)}" stroke="currentColor" stroke-opacity="0.35"/>'
    )
    zero_in = x_min <= 0 <= x_max
    if zero_in:
        zx = x_of(0.0)
        parts.append(
            f'<line class="hist-zero" x1="{_n(zx)}" y1="{_n(top)}" x2="{_n(zx)}" y2="{_n(base_y + 3)}" '
            'stroke="currentColor" stroke-opacity="0.6" stroke-dasharray="2 2"/>'
        )

    label_y = height - 2.5
    ticks = [(pad_x, "start", x_min), (pad_x + plot_w, "end", x_max)]
    if zero_in and x_min != 0 and x_max != 0:
        zx = x_of(0.0)
        # keep the 0 label clear of the end labels
        room = 6.5 * max(len(format_compact(x_min)), len(format_compact(x_max))) + 6
        if zx - pad_x > room and pad_x + plot_w - zx > room:
            ticks.append((zx, "middle", 0.0))
    for x, anchor, value in ticks:
        parts.append(
            f'<text class="hist-label" x="{_n(x)}" y="{_n(label_y)}" text-anchor="{anchor}" '
            f'fill="currentColor" fill-opacity="0.75">{escape(format_compact(value))}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _clip_intervals(
    intervals: Iterable[tuple[float, float]], x_min: float, x_max: float
) -> list[tuple[float, float]]:
    out = []
    for a, b in intervals:
        a, b = float(a), float(b)
        if math.isnan(a) or math.isnan(b):
            continue
        lo, hi = max(min(a, b), x_min), min(max(a, b), x_max)
        if lo <= hi:
            out.append((lo, hi))
    return out
