"""Tiles: crops, heatmap placement and blending, the colour map, the legend and encoding.

An example is its crop's heat levels (examples.heat_over, what pages and unit.json carry) drawn
over its window of the stored image (tiles.draw_tile, as link-preview cards draw it and as the
page's script lays it over the image)."""
from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from galleria.visualize.examples import heat_over
from galleria.visualize.tiles import colormap, draw_tile, encode


def render_tile(photo, box, act_map, scale, size, heatmap=True, mark=None):
    """An example drawn as the site shows it: the map's heat over the crop, on the crop."""
    height, width = photo.shape[:2]
    heat = heat_over(np.asarray(act_map, np.float32), box, (height, width), scale) \
        if heatmap and act_map is not None else None
    left, top, right, bottom = box or (0, 0, width, height)
    fraction = None if mark is None else ((mark[0] - left) / (right - left), (mark[1] - top) / (bottom - top),
                                          (mark[2] - left) / (right - left), (mark[3] - top) / (bottom - top))
    return draw_tile(Image.fromarray(photo), (left, top, right, bottom), heat, fraction, size)

GREY = (128, 128, 128)


def _photo(height: int = 224, width: int = 224) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _peak_map(cells: int, row: int, col: int) -> np.ndarray:
    act_map = np.zeros((cells, cells), dtype=np.float32)
    act_map[row, col] = 1.0
    return act_map


def _luminance(colours: np.ndarray) -> np.ndarray:
    """Relative luminance (Y of linear sRGB) of uint8 RGB colours."""
    c = np.asarray(colours, dtype=float) / 255
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return linear @ np.array([0.2126, 0.7152, 0.0722])


@pytest.mark.parametrize("box", [None, (10, 20, 77, 87), (0, 0, 150, 80), (30, 5, 60, 200), (100, 100, 107, 107)])
@pytest.mark.parametrize("heatmap", [True, False])
def test_tile_is_square_rgb_of_the_requested_size(box, heatmap):
    tile = render_tile(_photo(), box, np.random.default_rng(1).random((14, 14)), (0.0, 1.0), 112, heatmap)
    assert tile.size == (112, 112) and tile.mode == "RGB"


def test_heatmap_is_strongest_over_the_maps_peak_and_absent_where_the_map_is_low():
    flat = np.full((224, 224, 3), 128, dtype=np.uint8)
    tile = render_tile(flat, None, _peak_map(8, 2, 5), (0.0, 1.0), 112)
    brightness = _luminance(tile)
    row, col = np.unravel_index(brightness.argmax(), brightness.shape)
    # Cell (2, 5) of an 8 x 8 map stretched over 112 pixels is centred on (35, 77).
    assert abs(row - 35) <= 1 and abs(col - 77) <= 1
    assert (np.asarray(tile)[100:, :20] == GREY).all()


def test_top_of_the_scale_is_the_colour_maps_top_at_65_percent_opacity():
    flat = np.full((224, 224, 3), 128, dtype=np.uint8)
    tile = np.asarray(render_tile(flat, None, np.ones((7, 7)), (0.0, 1.0), 32), dtype=float)
    expected = 0.35 * 128 + 0.65 * colormap(np.array(1.0)).astype(float)
    assert np.abs(tile - expected).max() <= 1


def test_heatmap_is_cropped_with_the_image():
    flat = np.full((224, 224, 3), 128, dtype=np.uint8)
    # Cell (3, 10) of a 14 x 14 map covers image pixels around (56, 168), the centre of this box.
    tile = render_tile(flat, (140, 28, 196, 84), _peak_map(14, 3, 10), (0.0, 1.0), 112)
    brightness = _luminance(tile)
    row, col = np.unravel_index(brightness.argmax(), brightness.shape)
    assert abs(row - 56) <= 2 and abs(col - 56) <= 2
    assert (np.asarray(tile)[0, 0] == GREY).all()


def test_values_are_clipped_to_the_units_scale():
    photo = _photo()
    plain = np.asarray(render_tile(photo, None, None, (0.0, 1.0), 64))
    below = render_tile(photo, None, np.full((7, 7), -5.0), (0.0, 1.0), 64)
    above = render_tile(photo, None, np.full((7, 7), 9.0), (0.0, 1.0), 64)
    at_top = render_tile(photo, None, np.full((7, 7), 1.0), (0.0, 1.0), 64)
    assert np.array_equal(np.asarray(below), plain)
    assert np.array_equal(np.asarray(above), np.asarray(at_top))
    assert not np.array_equal(np.asarray(above), plain)


def test_a_unit_that_never_varied_gets_no_heat():
    photo = _photo()
    tile = render_tile(photo, None, np.full((7, 7), 2.0), (2.0, 2.0), 64)
    assert np.array_equal(np.asarray(tile), np.asarray(render_tile(photo, None, None, (2.0, 2.0), 64)))


def test_without_heatmap_the_tile_is_the_plain_crop():
    photo = _photo()
    box = (10, 20, 110, 120)
    act_map = np.random.default_rng(1).random((14, 14))
    plain = render_tile(photo, box, act_map, (0.0, 1.0), 50, heatmap=False)
    expected = Image.fromarray(photo).resize((50, 50), Image.Resampling.BILINEAR, box=box)  # the window, resampled
    assert np.array_equal(np.asarray(plain), np.asarray(expected))
    assert np.array_equal(np.asarray(render_tile(photo, box, None, (0.0, 1.0), 50)), np.asarray(expected))


def test_non_square_crop_keeps_its_aspect_and_is_padded_with_grey():
    photo = np.full((224, 224, 3), (200, 30, 40), dtype=np.uint8)
    wide = np.asarray(render_tile(photo, (0, 0, 200, 100), None, (0.0, 1.0), 112))
    assert (wide[:28] == GREY).all() and (wide[84:] == GREY).all()
    assert (wide[28:84] == (200, 30, 40)).all()
    tall = np.asarray(render_tile(photo, (0, 0, 50, 200), None, (0.0, 1.0), 112))
    assert (tall[:, :42] == GREY).all() and (tall[:, 70:] == GREY).all()
    assert (tall[:, 42:70] == (200, 30, 40)).all()


def test_much_enlarged_crops_show_their_pixels_as_blocks():
    photo = _photo()
    tile = np.asarray(render_tile(photo, (100, 100, 107, 107), None, (0.0, 1.0), 112))
    assert (tile[:16, :16] == photo[100, 100]).all()
    assert (tile[96:, 96:] == photo[106, 106]).all()


def test_a_window_that_leaves_the_image_is_kept_inside_it():
    photo = np.full((224, 224, 3), (200, 30, 40), dtype=np.uint8)
    tile = np.asarray(render_tile(photo, (-10, 0, 234, 224), None, (0.0, 1.0), 32))
    assert tile.shape == (32, 32, 3) and (tile[12:20, 12:20] == (200, 30, 40)).all()


def test_colormap_runs_from_black_to_pale_yellow_with_rising_lightness():
    ends = colormap(np.array([0.0, 1.0]))
    assert ends.dtype == np.uint8 and ends.shape == (2, 3)
    assert ends[0].max() <= 5  # near black
    assert ends[1][0] > 240 and ends[1][1] > 240 and ends[1][2] < 180  # pale yellow
    assert (np.diff(_luminance(colormap(np.linspace(0.0, 1.0, 256)))) > 0).all()


def test_colormap_clips_out_of_range_values_and_keeps_the_input_shape():
    values = np.array([[-1.0, 0.0], [1.0, 7.0]])
    colours = colormap(values)
    assert colours.shape == (2, 2, 3)
    assert np.array_equal(colours[0, 0], colours[0, 1]) and np.array_equal(colours[1, 0], colours[1, 1])
    assert np.array_equal(colormap(np.array(np.nan)), colormap(np.array(0.0)))


def test_the_stylesheets_legend_is_the_colour_map():
    css = (Path(__file__).resolve().parents[2] / "themes" / "default" / "assets" / "galleria.css").read_text()
    stops = re.search(r"\.legend-bar \{[^}]*linear-gradient\(to right, ([^)]*)\)", css).group(1).split(", ")
    expected = colormap(np.linspace(0.0, 1.0, len(stops)))
    assert [tuple(int(stop[i:i + 2], 16) for i in (1, 3, 5)) for stop in stops] == [tuple(c) for c in expected]


def test_encode_writes_jpeg_and_png():
    tile = render_tile(_photo(), None, np.random.default_rng(1).random((14, 14)), (0.0, 1.0), 112)
    jpeg = encode(tile)
    assert jpeg[:2] == b"\xff\xd8" and Image.open(io.BytesIO(jpeg)).size == (112, 112)
    assert encode(tile, "jpg", quality=40)[:2] == b"\xff\xd8"
    assert len(encode(tile, quality=40)) < len(jpeg)
    png = encode(tile, "png")
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png))), np.asarray(tile))


def test_the_marked_cell_is_framed_white_inside_a_dark_edge_and_nothing_else_changes():
    grey = np.full((64, 64, 3), 128, dtype=np.uint8)
    plain = np.asarray(render_tile(grey, None, None, (0.0, 1.0), 64, heatmap=False))
    framed = np.asarray(render_tile(grey, None, None, (0.0, 1.0), 64, heatmap=False, mark=(16, 32, 32, 48)))
    assert (framed[32, 16:32] == 255).all() and (framed[47, 16:32] == 255).all()  # top and bottom edges
    assert (framed[32:48, 16] == 255).all() and (framed[32:48, 31] == 255).all()  # left and right edges
    assert (framed[31, 16:32] == 0).all() and (framed[32:48, 32] == 0).all()  # the dark edge outside
    assert (framed[34:46, 18:30] == plain[34:46, 18:30]).all()  # inside: the image, untouched
    changed = np.argwhere((framed != plain).any(axis=2))
    assert changed.min(axis=0).tolist() == [31, 15] and changed.max(axis=0).tolist() == [48, 32]
