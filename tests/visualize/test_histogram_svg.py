"""histogram_svg: well-formed inline SVG, one bar per bin, empty and band cases."""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from galleria import records
from galleria.visualize.histogram_svg import density_svg, format_compact, histogram_svg

NS = "{http://www.w3.org/2000/svg}"


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def bars(root: ET.Element) -> list[tuple[str, float]]:
    """Each bin as (class, height): the bar paths step along their bins' tops, one unit a bin."""
    found = []
    for path in root.iter(f"{NS}path"):
        if "hist-bar" not in path.get("class", "").split():
            continue
        base = float(re.match(r"M[\d.]+ ([\d.]+)", path.get("d")).group(1))
        found += [(path.get("class"), base - float(top)) for top in re.findall(r"V([\d.]+)h1", path.get("d"))]
    return found


def bands(root: ET.Element) -> list[tuple[float, float]]:
    """Each shaded band as (x, width)."""
    return [(float(x), float(w)) for path in root.iter(f"{NS}path") if "hist-band" in path.get("class", "")
            for x, w in re.findall(r"M([\d.]+) [\d.]+h([\d.]+)", path.get("d"))]


def texts(root: ET.Element) -> list[str]:
    return [e.text for e in root.iter(f"{NS}text")]


def test_valid_xml_one_bar_per_bin():
    hist = records.Histogram(width=0.25, lo=-4, counts=(1, 0, 5, 40, 1000, 300, 20, 2, 0, 1))
    svg = histogram_svg(hist)
    root = parse(svg)
    assert root.tag == f"{NS}svg"
    assert root.get("role") == "img"
    assert "log" in root.get("aria-label")
    assert root.get("width") == "360" and root.get("height") == "96"
    assert len(bars(root)) == len(hist.counts)
    assert 'class="hist-bar"' in svg  # the stylesheet colours it, in either colour scheme


def test_bar_heights_follow_counts_and_tails_stay_visible():
    hist = records.Histogram(width=1.0, lo=0, counts=(1_000_000, 1, 0))
    root = parse(histogram_svg(hist))
    heights = [height for _, height in bars(root)]
    assert heights[0] > heights[1] > heights[2] == 0
    assert heights[1] >= 1.0  # a single value still shows


def test_negative_bins_are_marked():
    hist = records.Histogram(width=1.0, lo=-2, counts=(3, 4, 5, 6))
    root = parse(histogram_svg(hist))
    classes = [cls for cls, _ in bars(root)]
    assert classes == ["hist-bar neg", "hist-bar neg", "hist-bar", "hist-bar"]


def test_axis_labels_min_zero_max_and_zero_line():
    hist = records.Histogram(width=0.5, lo=-10, counts=tuple([1] * 30))  # -5 .. 10
    root = parse(histogram_svg(hist))
    assert texts(root) == ["-5", "10", "0"]
    zero = [e for e in root.iter(f"{NS}path") if e.get("class") == "hist-zero"]
    assert len(zero) == 1
    x0 = float(re.match(r"M([\d.]+)", zero[0].get("d")).group(1))
    assert 2 + 356 * 5 / 15 - 0.05 <= x0 <= 2 + 356 * 5 / 15 + 0.05  # coordinates are in tenths of a pixel


def test_no_zero_line_when_zero_out_of_range():
    hist = records.Histogram(width=0.1, lo=10, counts=(1, 2, 3))
    root = parse(histogram_svg(hist))
    assert not [e for e in root.iter(f"{NS}path") if e.get("class") == "hist-zero"]
    assert texts(root) == ["1", "1.3"]


def test_relu_like_histogram_labels_zero_once():
    hist = records.Histogram(width=0.1, lo=0, counts=(500, 20, 3, 1))
    root = parse(histogram_svg(hist))
    assert texts(root) == ["0", "0.4"]


@pytest.mark.parametrize("counts", [(), (0, 0, 0)])
def test_empty_histogram(counts):
    svg = histogram_svg(records.Histogram(width=1.0, lo=0, counts=counts))
    root = parse(svg)
    assert root.get("role") == "img"
    assert "no data" in root.get("aria-label")
    assert "no data" in texts(root)
    assert bars(root) == []


def test_bands_drawn_and_clipped():
    hist = records.Histogram(width=1.0, lo=-5, counts=tuple([2] * 10))  # -5 .. 5
    root = parse(histogram_svg(hist, bands=[(1.0, 2.0), (4.0, 99.0), (20.0, 30.0), (-1.0, -3.0)]))
    xs = bands(root)
    assert len(xs) == 3  # the one fully outside the range is dropped
    plot = 356 / 10
    assert sorted(xs)[1][0] == pytest.approx(2 + 6 * plot, abs=0.05)
    assert sorted(xs)[1][1] == pytest.approx(plot, abs=0.05)
    assert max(x + w for x, w in xs) == pytest.approx(358, abs=0.05)  # clipped at the right edge
    assert min(x for x, _ in xs) == pytest.approx(2 + 2 * plot, abs=0.05)  # reversed bounds accepted
    children = [e.get("class", "") for e in root]  # bands are drawn behind the bars
    assert max(i for i, c in enumerate(children) if "hist-band" in c) < children.index("hist-bar")


def test_custom_size():
    hist = records.Histogram(width=1.0, lo=0, counts=(1, 2))
    root = parse(histogram_svg(hist, width=200, height=50))
    assert root.get("viewBox") == "0 0 200 50"
    assert all(0 <= height <= 50 for _, height in bars(root))


@pytest.mark.parametrize(
    "value, text",
    [(0.0, "0"), (1.25, "1.25"), (-0.5, "-0.5"), (1.2e-05, "1.2e-5"), (12345.0, "1.23e4"), (0.30000000000000004, "0.3"), (100.0, "100")],
)
def test_format_compact(value, text):
    assert format_compact(value) == text


def test_density_of_a_layer_on_a_log_scale_with_dead_units_counted():
    """Quarter-decade bins from the rarest active unit's decade to 1, a label at each decade; units
    never above zero have no place on a log scale and are counted in the label."""
    root = parse(density_svg([0.0, 0.0, 2e-3, 3e-3, 0.05, 0.5, 1.0]))
    heights = [h for _, h in bars(root)]
    assert len(heights) == 3 * 4  # 1e-3 .. 1
    assert heights[1] == max(heights) > heights[6] > 0  # 2e-3 and 3e-3 share a bin; 0.05 has one alone
    assert [i for i, h in enumerate(heights) if h] == [1, 6, 10, 11]  # 0.5, and 1.0 in the last bin
    assert texts(root) == ["0.001", "0.01", "0.1", "1"]
    label = root.get("aria-label")
    assert "5 units" in label and "2 dead units (never above zero) not shown" in label


def test_density_when_every_unit_is_dead_or_all_always_on():
    assert "no unit was ever above zero" in density_svg([0.0, 0.0])
    root = parse(density_svg([1.0]))
    assert texts(root) == ["0.1", "1"] and "1 unit," in root.get("aria-label")
