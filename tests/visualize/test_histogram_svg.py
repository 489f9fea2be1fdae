"""histogram_svg: well-formed inline SVG, one bar per bin, empty and interval cases."""
from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from galleria import records
from galleria.visualize.histogram_svg import format_compact, histogram_svg

NS = "{http://www.w3.org/2000/svg}"


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def bars(root: ET.Element) -> list[ET.Element]:
    return [e for e in root.iter(f"{NS}rect") if "hist-bar" in e.get("class", "").split()]


def texts(root: ET.Element) -> list[str]:
    return [e.text for e in root.iter(f"{NS}text")]


def test_valid_xml_one_bar_per_bin():
    hist = records.Histogram(width=0.25, lo=-4, counts=(1, 0, 5, 40, 1000, 300, 20, 2, 0, 1))
    svg = histogram_svg(hist)
    root = parse(svg)
    assert root.tag == f"{NS}svg"
    assert root.get("role") == "img"
    assert "log" in root.get("aria-label")
    assert "log" in root.find(f"{NS}title").text
    assert root.get("width") == "360" and root.get("height") == "96"
    assert len(bars(root)) == len(hist.counts)
    assert "currentColor" in svg


def test_bar_heights_follow_counts_and_tails_stay_visible():
    hist = records.Histogram(width=1.0, lo=0, counts=(1_000_000, 1, 0))
    root = parse(histogram_svg(hist))
    heights = [float(b.get("height")) for b in bars(root)]
    assert heights[0] > heights[1] > heights[2] == 0
    assert heights[1] >= 1.0  # a single value still shows
    assert all(b.find(f"{NS}title") is not None for b in bars(root))


def test_negative_bins_are_marked():
    hist = records.Histogram(width=1.0, lo=-2, counts=(3, 4, 5, 6))
    root = parse(histogram_svg(hist))
    classes = [b.get("class") for b in bars(root)]
    assert classes == ["hist-bar neg", "hist-bar neg", "hist-bar", "hist-bar"]


def test_axis_labels_min_zero_max_and_zero_line():
    hist = records.Histogram(width=0.5, lo=-10, counts=tuple([1] * 30))  # -5 .. 10
    root = parse(histogram_svg(hist))
    assert texts(root) == ["-5", "10", "0"]
    zero = [e for e in root.iter(f"{NS}line") if e.get("class") == "hist-zero"]
    assert len(zero) == 1
    x0 = float(zero[0].get("x1"))
    assert 2 + 356 * 5 / 15 - 0.01 <= x0 <= 2 + 356 * 5 / 15 + 0.01


def test_no_zero_line_when_zero_out_of_range():
    hist = records.Histogram(width=0.1, lo=10, counts=(1, 2, 3))
    root = parse(histogram_svg(hist))
    assert not [e for e in root.iter(f"{NS}line") if e.get("class") == "hist-zero"]
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


def test_intervals_drawn_and_clipped():
    hist = records.Histogram(width=1.0, lo=-5, counts=tuple([2] * 10))  # -5 .. 5
    root = parse(histogram_svg(hist, intervals=[(1.0, 2.0), (4.0, 99.0), (20.0, 30.0), (-1.0, -3.0)]))
    shaded = [e for e in root.iter(f"{NS}rect") if e.get("class") == "hist-interval"]
    assert len(shaded) == 3  # the one fully outside the range is dropped
    xs = [(float(e.get("x")), float(e.get("width"))) for e in shaded]
    plot = 356 / 10
    assert xs[0][0] == pytest.approx(2 + 6 * plot, abs=0.01)
    assert xs[0][1] == pytest.approx(plot, abs=0.01)
    assert xs[1][0] + xs[1][1] == pytest.approx(358, abs=0.01)  # clipped at the right edge
    assert xs[2][0] == pytest.approx(2 + 2 * plot, abs=0.01)  # reversed bounds accepted
    # intervals are drawn behind the bars
    children = list(root)
    assert children.index(shaded[0]) < children.index(root.find(f"{NS}g"))


def test_custom_size():
    hist = records.Histogram(width=1.0, lo=0, counts=(1, 2))
    root = parse(histogram_svg(hist, width=200, height=50))
    assert root.get("viewBox") == "0 0 200 50"
    assert all(float(b.get("y")) + float(b.get("height")) <= 50 for b in bars(root))


@pytest.mark.parametrize(
    "value, text",
    [(0.0, "0"), (1.25, "1.25"), (-0.5, "-0.5"), (1.2e-05, "1.2e-5"), (12345.0, "1.23e4"), (0.30000000000000004, "0.3"), (100.0, "100")],
)
def test_format_compact(value, text):
    assert format_compact(value) == text
