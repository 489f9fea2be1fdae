"""Unit-page tiles: the input a unit saw, cropped to its receptive field, with its activation map laid over it.

A build renders tens of thousands of tiles, so everything works at the tile's own resolution on
the cropped region only, with PIL doing the resampling and blending.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

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


def render_tile(
    image: np.ndarray,
    box: tuple[int, int, int, int] | None,
    act_map: np.ndarray | None,
    scale: tuple[float, float],
    size: int,
    heatmap: bool = True,
    mark: tuple[int, int, int, int] | None = None,
) -> Image.Image:
    """The part of image a unit saw, with its activation map over it, as a size x size RGB tile.

    image: HxWx3 uint8, the model-sized input as the model saw it (before normalization);
    box: (left, top, right, bottom) in image pixels, or None for the whole image;
    act_map: the unit's activation map for this input (h x w float), or None for no heatmap;
    scale: (vmin, vmax), the unit's colour scale, the same for all its tiles, so they compare.
    mark: a box in image pixels to outline (where the unit peaked, when the tile shows the whole input).
    A non-square crop keeps its aspect and is padded to square with neutral grey.
    """
    height, width = image.shape[:2]
    left, top, right, bottom = box if box is not None else (0, 0, width, height)
    if not (0 <= left < right <= width and 0 <= top < bottom <= height):
        raise ValueError(f"box {box} is empty or leaves the {width} x {height} image")
    zoom = size / max(right - left, bottom - top)
    shape = (max(1, round((right - left) * zoom)), max(1, round((bottom - top) * zoom)))
    resample = Image.Resampling.NEAREST if zoom >= _BLOCKY else Image.Resampling.BILINEAR
    photo = Image.fromarray(image[top:bottom, left:right]).resize(shape, resample)
    if heatmap and act_map is not None:
        region = (left / width, top / height, right / width, bottom / height)
        photo = _overlay(photo, act_map, region, scale)
    if mark is not None:
        _outline(photo, [(v - o) * zoom for v, o in zip(mark, (left, top, left, top))])
    if shape == (size, size):
        return photo
    tile = Image.new("RGB", (size, size), _GREY)
    tile.paste(photo, ((size - shape[0]) // 2, (size - shape[1]) // 2))
    return tile


def _outline(photo: Image.Image, box: list[float]) -> None:
    """A white frame with a dark edge around box (photo pixels): visible on any image and heat."""
    from PIL import ImageDraw

    draw = ImageDraw.Draw(photo)
    left, top, right, bottom = (round(v) for v in box)
    right, bottom = max(right - 1, left), max(bottom - 1, top)
    draw.rectangle((left - 1, top - 1, right + 1, bottom + 1), outline=(0, 0, 0))
    draw.rectangle((left, top, right, bottom), outline=(255, 255, 255))


def _overlay(
    photo: Image.Image, act_map: np.ndarray, region: tuple[float, float, float, float], scale: tuple[float, float]
) -> Image.Image:
    """photo with the part of act_map under region (fractions of the image) blended over it.

    The map is stretched over the whole image, as if upsampled to it, and sampled only where the
    crop is, at the photo's resolution.
    """
    values = np.asarray(act_map, dtype=np.float32)
    map_height, map_width = values.shape
    left, top, right, bottom = region
    heat = Image.fromarray(values).resize(
        photo.size,
        Image.Resampling.BILINEAR,
        box=(left * map_width, top * map_height, right * map_width, bottom * map_height),
    )
    vmin, vmax = scale
    if vmax > vmin:
        strength = np.nan_to_num(np.clip((np.asarray(heat) - vmin) / (vmax - vmin), 0, 1))
    else:  # a unit that never varied: nothing to highlight
        strength = np.zeros(heat.size[::-1], dtype=np.float32)
    colour = Image.fromarray(colormap(strength))
    opacity = Image.fromarray(np.rint(strength * (_ALPHA * 255)).astype(np.uint8))
    return Image.composite(colour, photo, opacity)


def legend_svg(scale: tuple[float, float], width: int = 160, height: int = 12) -> str:
    """A colour bar from scale's min to its max with both labelled, as inline SVG markup.

    Drawn as solid bands rather than a gradient: a gradient needs an id, and ids repeated across
    the many legends of one page, or defined in a hidden one, break in some browsers.
    """
    vmin, vmax = scale
    bands = max(1, width // 4)  # 4-pixel bands look continuous and keep the markup small
    rects = []
    for i, (r, g, b) in enumerate(colormap((np.arange(bands) + 0.5) / bands)):
        x0, x1 = round(i * width / bands), round((i + 1) * width / bands)
        rects.append(f'<rect x="{x0}" y="0" width="{x1 - x0}" height="{height}" fill="#{r:02x}{g:02x}{b:02x}"/>')
    low, high = f"{vmin:.3g}", f"{vmax:.3g}"
    baseline = height + 11  # room for 10-pixel labels under the bar
    total = baseline + 3
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{total}" viewBox="0 0 {width} {total}"'
        f' role="img" aria-label="colour scale from {low} to {high}">'
        f'<g shape-rendering="crispEdges">{"".join(rects)}</g>'
        f'<text x="0" y="{baseline}" font-size="10" fill="currentColor">{low}</text>'
        f'<text x="{width}" y="{baseline}" font-size="10" fill="currentColor" text-anchor="end">{high}</text>'
        "</svg>"
    )


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
