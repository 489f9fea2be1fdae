"""Image examples as pages show them: which part of the input, the unit's map over it, and which
examples are worth showing at all.

A tile is a window onto the stored source image (see sources.py), cropped to the unit's
receptive field with some context around it, and the unit's map over that window as a small
grid of colour levels that the page's script lays over the image. Nothing here encodes an image,
so a gallery costs a few hundred bytes per example instead of a JPEG each.
"""
from __future__ import annotations

import math

import numpy as np

from galleria.extract.layout import Layout
from galleria.records import HEAT_LEVELS, Example, Heat, ImageShown, InputItem, LayerData, packed
from galleria.sources.images import InputSet
from galleria.visualize.receptive import ReceptiveField

MIN_CONTEXT_DIVISOR = 4  # tiles show at least a quarter of the input's side
SAME_SPOT_IOU = 0.5  # two examples whose fields overlap this much in one photo show the same thing
HEAT_CELLS = 12  # a tile's heat has at most this many cells each way: finer maps are resampled (smoothly)
_TOP = len(HEAT_LEVELS) - 1
_HEAT_CODES = np.frombuffer(HEAT_LEVELS.encode("ascii"), dtype=np.uint8)


def shown_image(rf: ReceptiveField | None, layout: Layout, example: Example, act_map: np.ndarray | None,
                scale: tuple[float, float], heatmap: bool = True) -> ImageShown:
    """How one example is shown: its crop, and its map over that crop on the unit's colour scale
    (``act_map`` is the example's map as the reducer kept it, negated for bottom examples)."""
    image_map = None if act_map is None else layout.image_map(act_map)
    box, mark = example_box(rf, layout, example.position, image_map)
    heat = None
    if heatmap and image_map is not None and rf is not None:
        heat = heat_over(np.asarray(image_map, dtype=np.float32), box, rf.input_size, scale)
    return ImageShown(box, heat, mark)


def unit_thumbs(data: LayerData, rf: ReceptiveField | None, layout: Layout, inputs: InputSet,
                heatmap: bool = True) -> tuple[tuple[int, ImageShown] | None, ...]:
    """Each unit's strongest example (input index, as shown): its thumbnail in grids and lists."""
    thumbs = []
    for position, summary in enumerate(data.summaries):
        chosen = distinct(summary.top, rf, layout, inputs, 1)
        if not chosen:
            thumbs.append(None)
            continue
        slot, example = chosen[0]
        act_map = None if data.top_maps is None else data.top_maps[position, slot].astype(np.float32)
        thumbs.append((example.input_index, shown_image(rf, layout, example, act_map,
                                                         (0.0, max(summary.stats.max, 1e-6)), heatmap)))
    return tuple(thumbs)


def example_box(rf: ReceptiveField | None, layout: Layout, position: tuple[int, ...] | None,
                image_map: np.ndarray | None) -> tuple[tuple[int, int, int, int] | None, tuple | None]:
    """The crop a tile shows (None: the whole input) and the box it outlines (None: none).

    A unit whose field is a part of the input is shown cropped to it, with some context around.
    One that sees the whole input (late layers; every token after a transformer's first
    attention) is shown whole, with the cell of its peak outlined on its map's grid.
    """
    cell = layout.cell(position)
    if rf is None or cell is None:
        return None, None
    height, width = rf.input_size
    field = rf.box(cell)
    if field != (0, 0, width, height):
        return with_context(field, rf.input_size), None
    if image_map is None or np.size(image_map) < 2:
        return None, None
    rows, cols = np.shape(image_map)
    row, col = cell
    return None, (round(col * width / cols), round(row * height / rows), round((col + 1) * width / cols),
                  round((row + 1) * height / rows))


def with_context(box: tuple[int, int, int, int], input_size: tuple[int, int]) -> tuple[int, int, int, int]:
    """Grow a small receptive field (3 px in a stem) to a quarter of the input, so the tile shows
    what surrounds it instead of a few blurred pixels; the heatmap still marks the field itself."""
    height, width = input_size
    left, top, right, bottom = box
    side = min(height, width) // MIN_CONTEXT_DIVISOR
    spans = []
    for lo, hi, limit in ((left, right, width), (top, bottom, height)):
        if hi - lo < side:
            lo = min(max(0, (lo + hi - side) // 2), max(0, limit - side))
            hi = min(limit, lo + side)
        spans.append((lo, hi))
    (left, right), (top, bottom) = spans
    return left, top, right, bottom


def heat_over(image_map: np.ndarray, box: tuple[int, int, int, int] | None, input_size: tuple[int, int],
              scale: tuple[float, float]) -> Heat:
    """The map's cells under ``box`` (the map stretched over the whole input), as levels of
    ``scale``, and where that grid of cells lies on the tile: cells cut by the box's edges are kept
    whole and the grid overhangs the tile, so each cell keeps its own value and the page's smoothing
    runs between cell centres, as an upsampled map does. Grids over HEAT_CELLS a side are pooled."""
    height, width = input_size
    left, top, right, bottom = box or (0, 0, width, height)
    rows, cols = image_map.shape
    x0, y0, x1, y1 = left * cols / width, top * rows / height, right * cols / width, bottom * rows / height
    c0, r0 = int(math.floor(x0 + 1e-6)), int(math.floor(y0 + 1e-6))
    c1, r1 = max(c0 + 1, int(math.ceil(x1 - 1e-6))), max(r0 + 1, int(math.ceil(y1 - 1e-6)))
    patch = image_map[r0:r1, c0:c1]
    factor = -(-max(patch.shape) // HEAT_CELLS)
    if factor > 1:  # average each factor x factor block (edge blocks over what is there)
        patch = _pooled(patch, factor)
        c1, r1 = c0 + patch.shape[1] * factor, r0 + patch.shape[0] * factor
    vmin, vmax = scale
    if vmax > vmin:
        strength = (patch - vmin) * (_TOP / (vmax - vmin))
        strength[~(strength > 0)] = 0  # NaN too
        levels = np.rint(np.minimum(strength, _TOP)).astype(np.int64).ravel()
    else:
        levels = np.zeros(patch.size, dtype=np.int64)
    frame = ((c0 - x0) / (x1 - x0), (r0 - y0) / (y1 - y0), (c1 - x0) / (x1 - x0), (r1 - y0) / (y1 - y0))
    frame = None if all(abs(v - d) <= 1e-4 for v, d in zip(frame, (0, 0, 1, 1))) else tuple(round(v, 4) for v in frame)
    return Heat(patch.shape[1], patch.shape[0], packed(_HEAT_CODES[levels].tobytes().decode("ascii")), frame)


def _pooled(patch: np.ndarray, factor: int) -> np.ndarray:
    """The mean of each ``factor`` x ``factor`` block of a float32 map, edge blocks over the cells they have."""
    height, width = patch.shape
    rows, cols = -(-height // factor), -(-width // factor)
    if (height, width) != (rows * factor, cols * factor):
        grown = np.zeros((rows * factor, cols * factor), dtype=np.float32)
        grown[:height, :width] = patch
        patch = grown
    sums = patch.reshape(rows, factor, cols, factor).sum((1, 3))
    down = np.minimum(factor, height - factor * np.arange(rows, dtype=np.float32))
    across = np.minimum(factor, width - factor * np.arange(cols, dtype=np.float32))
    return sums / np.outer(down, across)


def distinct(candidates: tuple[Example, ...], rf: ReceptiveField | None, layout: Layout, inputs: InputSet,
             want: int) -> list[tuple[int, Example]]:
    """The best ``want`` candidates, skipping any that shows the same spot of the same photo as
    a better one (overlapping crops see it more than once), as (slot among candidates, example)."""
    chosen: list[tuple[int, Example]] = []
    seen: list[tuple[str, tuple[float, float, float, float]]] = []
    for slot, example in enumerate(candidates):
        item = inputs.items[example.input_index]
        spot = _source_box(item, rf, layout.cell(example.position))
        if any(source == item.source and _iou(spot, other) > SAME_SPOT_IOU for source, other in seen):
            continue
        chosen.append((slot, example))
        seen.append((item.source, spot))
        if len(chosen) == want:
            break
    return chosen


def _source_box(item: InputItem, rf: ReceptiveField | None,
                cell: tuple[int, int] | None) -> tuple[float, float, float, float]:
    """Where a unit looked, in the source photo's pixels."""
    left, top, right, bottom = item.box or (0, 0, 1, 1)
    if rf is None or cell is None:
        return float(left), float(top), float(right), float(bottom)
    height, width = rf.input_size
    sx, sy = (right - left) / width, (bottom - top) / height
    x0, y0, x1, y1 = rf.box(cell)
    return left + x0 * sx, top + y0 * sy, left + x1 * sx, top + y1 * sy


def _iou(a, b) -> float:
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 1.0
