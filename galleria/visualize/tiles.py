"""Unit-page tiles: the input a unit saw, cropped to its receptive field, with its activation map laid over it.

A build renders tens of thousands of tiles, so everything works at the tile's own resolution on
the cropped region only, with PIL doing the resampling and blending.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw

from galleria.records import HEAT_LEVELS, Heat, unpacked

# Inferno (perceptually uniform, lightness rising throughout, readable in greyscale), sampled from
# matplotlib's CC0 table at entries 0, 16, ..., 240, 255; linear interpolation between them stays
# within one 8-bit step of the full table.
_INFERNO_AT = np.array([0, 16, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208, 224, 240, 255])
_INFERNO = np.array(
    [
        [0.001462, 0.000466, 0.013866],
        [0.042253, 0.028139, 0.141141],
        [0.129285, 0.047293, 0.290788],
        [0.238273, 0.036621, 0.396353],
        [0.341500, 0.062325, 0.429425],
        [0.441207, 0.099338, 0.431594],
        [0.540920, 0.134729, 0.415123],
        [0.640135, 0.171438, 0.381065],
        [0.735683, 0.215906, 0.330245],
        [0.822386, 0.275197, 0.266085],
        [0.894305, 0.353399, 0.193584],
        [0.946965, 0.449191, 0.115272],
        [0.978422, 0.557937, 0.034931],
        [0.987874, 0.675267, 0.065257],
        [0.974638, 0.797692, 0.206332],
        [0.947594, 0.917399, 0.410665],
        [0.988362, 0.998364, 0.644924],
    ]
)
_LUT = np.rint(
    255 * np.stack([np.interp(np.arange(256), _INFERNO_AT, channel) for channel in _INFERNO.T], axis=1)
).astype(np.uint8)

_GREY = (128, 128, 128)  # padding for non-square crops: no hue, mid lightness, reads as "no image"
_ALPHA = 0.65  # opacity of the strongest heat; weaker heat lets more of the photo through
_BLOCKY = 4  # crops enlarged this many times or more show their pixels (nearest) rather than a blur


def colormap(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] (clipped; NaN counts as 0) to uint8 RGB with a trailing axis of 3, by table lookup."""
    values = np.nan_to_num(np.asarray(values, dtype=np.float32))
    return _LUT.take(np.clip(np.rint(values * 255), 0, 255).astype(np.uint8), axis=0)  # take: 4x faster than []


def draw_tile(image: Image.Image, window: tuple[float, float, float, float], heat: Heat | None,
              mark: tuple[float, float, float, float] | None, size: int) -> Image.Image:
    """An example as a size x size RGB picture (link-preview cards draw them; pages lay the same
    pieces over each other in the browser): ``window`` (left, top, right, bottom, in image pixels)
    of ``image``, the unit's heat over it, and ``mark`` (fractions of the window) outlined. A
    non-square window keeps its aspect and is padded to square with neutral grey."""
    left, top, right, bottom = (min(max(v, 0.0), limit) for v, limit in zip(window, image.size * 2))
    window = (left, top, right, bottom)
    zoom = size / max(right - left, bottom - top)
    shape = (max(1, round((right - left) * zoom)), max(1, round((bottom - top) * zoom)))
    resample = Image.Resampling.NEAREST if zoom >= _BLOCKY else Image.Resampling.BILINEAR
    photo = image.convert("RGB").resize(shape, resample, box=window)
    if heat is not None:
        photo = _overlay(photo, heat)
    if mark is not None:
        _outline(photo, [v * d for v, d in zip(mark, (shape[0], shape[1], shape[0], shape[1]))])
    if shape == (size, size):
        return photo
    tile = Image.new("RGB", (size, size), _GREY)
    tile.paste(photo, ((size - shape[0]) // 2, (size - shape[1]) // 2))
    return tile


def _outline(photo: Image.Image, box: list[float]) -> None:
    """A white frame with a dark edge around box (photo pixels): visible on any image and heat."""
    draw = ImageDraw.Draw(photo)
    left, top, right, bottom = (round(v) for v in box)
    right, bottom = max(right - 1, left), max(bottom - 1, top)
    draw.rectangle((left - 1, top - 1, right + 1, bottom + 1), outline=(0, 0, 0))
    draw.rectangle((left, top, right, bottom), outline=(255, 255, 255))


def _overlay(photo: Image.Image, heat: Heat) -> Image.Image:
    """photo with the heat's levels blended over it, stretched over its frame and smoothed as the
    pages' script does: colour from the colour map, opacity rising with the level to _ALPHA."""
    levels = np.array([HEAT_LEVELS.index(c) for c in unpacked(heat.levels)], dtype=np.float32).reshape(heat.rows,
                                                                                                       heat.cols)
    strength = levels / (len(HEAT_LEVELS) - 1)
    rgba = np.dstack([colormap(strength), np.rint(strength * (_ALPHA * 255)).astype(np.uint8)])
    grid = Image.fromarray(rgba, "RGBA")
    width, height = photo.size
    fl, ft, fr, fb = heat.frame or (0.0, 0.0, 1.0, 1.0)
    # the grid stretched over its frame, sampled where the photo is: box is the photo in grid pixels
    box = (-fl / (fr - fl) * heat.cols, -ft / (fb - ft) * heat.rows,
           (1 - fl) / (fr - fl) * heat.cols, (1 - ft) / (fb - ft) * heat.rows)
    layer = grid.resize(photo.size, Image.Resampling.BILINEAR, box=box)
    return Image.alpha_composite(photo.convert("RGBA"), layer).convert("RGB")


def as_image(pixels: np.ndarray) -> Image.Image:
    """An H x W x C uint8 array as a PIL image; one channel becomes greyscale."""
    return Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels)


def encode(img: Image.Image, fmt: str = "jpeg", quality: int = 85) -> bytes:
    """img as file bytes in fmt (any format PIL writes; "jpg" means JPEG); quality applies to JPEG and WebP."""
    fmt = "jpeg" if fmt.lower() == "jpg" else fmt.lower()
    options = {"quality": quality} if fmt in ("jpeg", "webp") else {}
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **options)
    return buffer.getvalue()
