"""Inline SVG of a unit's activation histogram, and of a layer's activation densities.

The SVG is meant to sit inside an HTML page, whose stylesheet draws it: its parts carry CSS
classes (``hist``, ``hist-bar``, ``hist-bar neg``, ``hist-zero``, ``hist-band``, ``hist-band
alt``, ``hist-axis``) and its labels are its ``text`` elements, so dark mode and themes restyle
it, and every unit page carries only its geometry. It is a valid XML document on its own.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from xml.sax.saxutils import escape, quoteattr

from galleria import records

__all__ = ["histogram_svg", "density_svg", "format_compact"]

DENSITY_BINS_PER_DECADE = 4
DENSITY_FLOOR = -8  # decades: a unit active on fewer than 1e-8 of its values is drawn in the lowest bin

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
    """A coordinate for SVG: short (a tenth of a pixel), no float noise."""
    text = f"{v:.1f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _svg_open(width: int, height: int, label: str, extra_class: str = "", extra: str = "") -> str:
    cls = "hist" + (f" {extra_class}" if extra_class else "")
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="{cls}" role="img" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'aria-label={quoteattr(label)} font-size="10"{extra}>'
    )


def _empty_svg(width: int, height: int, label: str = "Activation histogram: no data", text: str = "no data") -> str:
    h = min(height, 32)
    return (
        _svg_open(width, h, label, "hist-empty")
        + f"<title>{escape(label)}</title>"
        + f'<rect class="hist-frame" x="0.5" y="0.5" width="{width - 1}" height="{h - 1}" rx="3" '
        'fill="none" stroke="currentColor" stroke-opacity="0.3" stroke-dasharray="3 3"/>'
        + f'<text class="hist-label" x="{_n(width / 2)}" y="{_n(h / 2)}" text-anchor="middle" '
        f'dominant-baseline="central" fill="currentColor" fill-opacity="0.7">{escape(text)}</text>'
        + "</svg>"
    )


def histogram_svg(
    hist: records.Histogram,
    width: int = 360,
    height: int = 96,
    bands: list[tuple[float, float]] | None = None,
) -> str:
    """Inline SVG (a string) of ``hist``: its bars as one path for bins above zero and one below.

    Bar heights are on a log(1 + count) scale (stated in the SVG's ``<title>``); every non-empty
    bin is at least 1 px tall. The x axis is labelled at the histogram's lowest edge, at 0 when 0
    lies inside, and at its highest edge; a line marks 0. ``bands`` (in activation units) are
    shaded behind the bars. A histogram without counts gives a small "no data" SVG. Every unit
    page has one, so it is drawn in as few bytes as it can be: a few hundred for 64 bins.
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

    label = f"Histogram of {total:,} activation values from {format_compact(x_min)} to {format_compact(x_max)} (log counts)"
    # its range, for scripts that mark a value on it (the live probe); the plot spans x = pad_x to width - pad_x
    parts = [_svg_open(width, height, label, extra=f' data-range="{x_min:.7g} {x_max:.7g}"')]

    # shaded bands, behind everything else; every other one lighter, so neighbours stay apart
    shades: list[list[str]] = [[], []]
    for i, (lo, hi) in enumerate(_clip_bands(bands or (), x_min, x_max)):
        x0, x1 = x_of(lo), x_of(hi)
        shades[i % 2].append(f"M{_n(x0)} {_n(top)}h{_n(max(x1 - x0, 1.0))}v{_n(plot_h)}H{_n(x0)}z")
    for shade, steps in enumerate(shades):
        if steps:
            parts.append(f'<path class="hist-band{" alt" if shade else ""}" d="{"".join(steps)}"/>')

    # bars: one outline per sign, stepping along the tops of its bins, each bin one unit wide in a
    # coordinate system stretched to the plot (a few characters a bin, and no rounding that adds up)
    stretch = f"translate({_n(pad_x)} 0) scale({bin_w:.6g} 1)"
    for negative in (True, False):
        bins = [i for i in range(n) if (edges[i + 1] <= 0 and edges[i] < 0) == negative]
        if not bins or not any(counts[i] for i in bins):
            continue
        steps = [f"M{bins[0]} {_n(base_y)}"]
        for i in bins:
            h = 0.0 if counts[i] <= 0 else max(1.0, math.log1p(counts[i]) / peak * plot_h)
            steps.append(f"V{_n(base_y - h)}h1")
        steps.append(f"V{_n(base_y)}z")
        parts.append(f'<path class="hist-bar{" neg" if negative else ""}" transform="{stretch}" d="{"".join(steps)}"/>')

    # axis
    parts.append(f'<path class="hist-axis" d="M{_n(pad_x)} {_n(base_y + 0.5)}h{_n(plot_w)}"/>')
    zero_in = x_min <= 0 <= x_max
    if zero_in:
        parts.append(f'<path class="hist-zero" d="M{_n(x_of(0.0))} {_n(top)}V{_n(base_y + 3)}"/>')

    label_y = height - 2.5
    ticks = [(pad_x, "start", x_min), (pad_x + plot_w, "end", x_max)]
    if zero_in and x_min != 0 and x_max != 0:
        zx = x_of(0.0)
        # keep the 0 label clear of the end labels
        room = 6.5 * max(len(format_compact(x_min)), len(format_compact(x_max))) + 6
        if zx - pad_x > room and pad_x + plot_w - zx > room:
            ticks.append((zx, "middle", 0.0))
    for x, anchor, value in ticks:
        parts.append(f'<text x="{_n(x)}" y="{_n(label_y)}"{"" if anchor == "start" else f" text-anchor={chr(34)}{anchor}{chr(34)}"}>'
                     f'{escape(format_compact(value))}</text>')
    parts.append("</svg>")
    return "".join(parts)


def density_svg(densities: Iterable[float], width: int = 360, height: int = 72) -> str:
    """Inline SVG of a layer's units by activation density (their share of values above zero), on
    a log scale from the rarest active unit's decade to 1: how sparse a layer is, and which units
    fire almost never or almost always. Dead units (density 0) have no place on a log scale: the
    label counts them. Bars are linear in the number of units."""
    values = [float(d) for d in densities if math.isfinite(float(d))]
    active = [d for d in values if d > 0]
    dead = len(values) - len(active)
    if not active:
        return _empty_svg(width, height, "Activation density: no unit was ever above zero", "no unit active")
    per = DENSITY_BINS_PER_DECADE
    low = min(-1, max(DENSITY_FLOOR, math.floor(math.log10(min(active)))))
    counts = [0] * (-low * per)
    for d in active:
        counts[min(len(counts) - 1, max(0, math.floor((math.log10(d) - low) * per)))] += 1
    pad_x, label_h, top = 2.0, 14.0, 2.0
    plot_w, base_y = width - 2 * pad_x, height - label_h
    plot_h, peak, bin_w = base_y - top, max(counts), plot_w / len(counts)
    label = (f"Activation density of {_units(len(active))}, from 1e{low} to 1 (log scale)"
             + (f"; {_units(dead, 'dead unit')} (never above zero) not shown" if dead else ""))
    steps = [f"M0 {_n(base_y)}"]
    for count in counts:
        steps.append(f"V{_n(base_y - (max(1.0, count / peak * plot_h) if count else 0.0))}h1")
    steps.append(f"V{_n(base_y)}z")
    parts = [_svg_open(width, height, label), f"<title>{escape(label)}</title>",
             f'<path class="hist-bar" transform="translate({_n(pad_x)} 0) scale({bin_w:.6g} 1)" d="{"".join(steps)}"/>',
             f'<path class="hist-axis" d="M{_n(pad_x)} {_n(base_y + 0.5)}h{_n(plot_w)}"/>']
    for decade in range(low, 1):  # a tick and a label at each decade
        x = pad_x + (decade - low) / -low * plot_w
        anchor = "start" if decade == low else "end" if decade == 0 else "middle"
        parts.append(f'<path class="hist-axis" d="M{_n(x)} {_n(base_y)}v3"/>'
                     f'<text x="{_n(x)}" y="{_n(height - 2.5)}" text-anchor="{anchor}">'
                     f'{format_compact(10.0 ** decade)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _units(count: int, noun: str = "unit") -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def _clip_bands(
    bands: Iterable[tuple[float, float]], x_min: float, x_max: float
) -> list[tuple[float, float]]:
    out = []
    for a, b in bands:
        a, b = float(a), float(b)
        if math.isnan(a) or math.isnan(b):
            continue
        lo, hi = max(min(a, b), x_min), min(max(a, b), x_max)
        if lo <= hi:
            out.append((lo, hi))
    return out
