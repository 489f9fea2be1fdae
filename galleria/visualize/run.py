"""Every image a gallery shows, rendered once and kept in the cache by content key.

Tiles are keyed by the activation results they are drawn from plus the tile settings, so a
rebuild with nothing changed encodes nothing; the site stage only links the cached files into
the output. Work is grouped by input so each input is decoded once however many units chose it.
"""
from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from galleria.cache import Cache, content_key
from galleria.config import ExamplesConfig
from galleria.errors import in_user_model
from galleria.extract.layout import Layout
from galleria.extract.probe import LayerInfo
from galleria.extract.run import ModelActivations
from galleria.forking import fork_map
from galleria.records import Example
from galleria.sources.images import ImageLoader, InputSet
from galleria.sources.models import LoadedModel
from galleria.visualize.receptive import ReceptiveField, receptive_fields
from galleria.visualize.tiles import as_image, encode, render_tile

FORMAT = 3  # bump when the drawing changes
THUMB_SIZE = 64
MIN_CONTEXT_DIVISOR = 4  # tiles show at least a quarter of the input's side
SAME_SPOT_IOU = 0.5  # two examples whose fields overlap this much in one photo show the same thing
INPUT_QUALITY = 88


@dataclass
class UnitImages:
    top_examples: list[Example]  # the examples shown: the best, with repeats of one spot left out
    bottom_examples: list[Example]
    top: list[Path]
    bottom: list[Path]
    top_boxes: list[tuple[int, int, int, int] | None]
    bottom_boxes: list[tuple[int, int, int, int] | None]
    thumb: Path | None
    intervals: list[list[Path]]  # per band of summary.intervals, the tiles of its examples
    interval_boxes: list[list[tuple[int, int, int, int] | None]]
    scale_top: tuple[float, float]  # heatmap colour scale of the top tiles (and of the bands')
    scale_bottom: tuple[float, float]  # of the bottom tiles, drawn on the negated map


@dataclass
class ModelImages:
    layers: dict[str, list[UnitImages]]  # per layer, one entry per shown unit, in layer order
    receptive: dict[str, ReceptiveField | None]
    inputs: dict[int, Path]  # input index -> the input as the model saw it
    rendered: int  # images encoded in this build (0 when everything came from the cache)


def model_receptive_fields(model: LoadedModel, layers: list[LayerInfo],
                           cache: Cache) -> dict[str, ReceptiveField | None]:
    pre = model.config.preprocessing
    names = [layer.name for layer in layers]
    key = content_key(FORMAT, model.key, [(layer.name, layer.layout) for layer in layers])
    path = cache.file("receptive", key, ".json")
    if path.is_file():
        data = json.loads(path.read_text())
        return {n: None if d is None else ReceptiveField(**{k: tuple(v) for k, v in d.items()})
                for n, d in data.items()}
    with in_user_model(model.config.id, model.module, "receptive field measurement"):
        fields = receptive_fields(model.module, names, (pre.channels, *pre.size),
                                  {layer.name: layer.layout.grid_view for layer in layers})
    cache.put_file("receptive", key, ".json", json.dumps(
        {n: None if f is None else {"size": f.size, "stride": f.stride, "offset": f.offset,
                                    "input_size": f.input_size} for n, f in fields.items()}).encode())
    return fields


def render_images(model: LoadedModel, acts: ModelActivations, inputs: InputSet, examples: ExamplesConfig,
                  cache: Cache, progress=None) -> ModelImages:
    fields = model_receptive_fields(model, [layer.info for layer in acts.layers], cache)
    settings = (FORMAT, examples.tile_size, examples.heatmap)

    def tile(layer, position, kind, slot, example, act_map, scale, size) -> tuple[Path, tuple | None]:
        """The cached path of one tile, queued for drawing if it is not there yet."""
        layout = layer.info.layout
        act_map = None if act_map is None else layout.image_map(act_map)  # None: nothing to lay over the image
        box, mark = example_box(fields[layer.info.name], layout, example.position, act_map)
        key = content_key(settings, acts.key, layer.info.name, position, kind, slot, size, example.input_index,
                          example.position)  # bands are re-cut when their count changes: name the example
        path = cache.file("tiles", key, ".jpg")
        if not path.is_file():
            jobs[example.input_index].append(("tiles", key, box, act_map, scale, size, mark))
        return path, box

    jobs: dict[int, list] = defaultdict(list)  # input index -> tiles to draw from it
    layers: dict[str, list[UnitImages]] = {}
    for layer in acts.layers:
        rf = fields[layer.info.name]
        reducer = layer.reducer
        spatial = reducer.spatial_shape
        units = []
        for position, summary in enumerate(layer.summaries):
            stats = summary.stats
            scale_top = (0.0, max(stats.max, 1e-6))
            scale_bottom = (0.0, max(-stats.min, 1e-6))
            images = UnitImages([], [], [], [], [], [], None, [], [], scale_top, scale_bottom)
            for kind, candidates, maps, want in (
                    ("top", summary.top, reducer.top_maps(position), examples.top),
                    ("bottom", summary.bottom, reducer.bottom_maps(position), examples.bottom)):
                for rank, (slot, example) in enumerate(distinct(candidates, rf, layer.info.layout, inputs, want)):
                    getattr(images, f"{kind}_examples").append(example)
                    act_map = None if maps is None else maps[slot].astype(np.float32)
                    if kind == "bottom" and act_map is not None:
                        act_map = -act_map
                    scale = scale_top if kind == "top" else scale_bottom
                    path, box = tile(layer, position, kind, slot, example, act_map, scale, examples.tile_size)
                    getattr(images, kind).append(path)
                    getattr(images, f"{kind}_boxes").append(box)
                    if kind == "top" and rank == 0:
                        images.thumb = tile(layer, position, kind, slot, example, act_map, scale, THUMB_SIZE)[0]
            for band_number, band in enumerate(summary.intervals):
                maps = layer.intervals.interval_maps(position, band, spatial)
                paths, boxes = [], []
                for slot, example in enumerate(band.examples):
                    act_map = None if maps is None else maps[slot]
                    path, box = tile(layer, position, f"band{band_number}", slot, example, act_map, scale_top,
                                     examples.tile_size)
                    paths.append(path)
                    boxes.append(box)
                images.intervals.append(paths)
                images.interval_boxes.append(boxes)
            units.append(images)
        layers[layer.info.name] = units

    input_paths = {}
    pre = model.config.preprocessing
    for index in (item.index for item in inputs.usable):
        key = content_key(FORMAT, inputs.key, inputs.items[index].id, pre.size, pre.channels)
        path = cache.file("inputs", key, ".jpg")
        input_paths[index] = path
        if not path.is_file():
            jobs[index].append(("inputs", key, None, None, None, None, None))

    total = sum(len(j) for j in jobs.values())
    if progress is not None:
        progress.reset(total=max(total, 1))
        if not total:
            progress.update(1)
    by_source: dict[str, list] = defaultdict(list)  # a worker decodes each source file once
    for index in sorted(jobs):
        item = inputs.items[index]
        by_source[item.source].append((item, jobs[index]))
    chunks = sorted(by_source.values(), key=lambda c: -sum(len(j) for _, j in c))  # big first: even finish
    tasks = [(pre, cache, chunk) for chunk in chunks]
    for drawn in fork_map(_draw_source, tasks):
        if progress is not None:
            progress.update(drawn)
    return ModelImages(layers, fields, input_paths, total)


def _draw_source(task) -> int:
    """Draw and cache every pending image of the inputs cut from one source file."""
    pre, cache, chunk = task
    loader = ImageLoader(pre)
    drawn = 0
    for item, item_jobs in chunk:
        pixels = loader.pixels(item)
        for kind, key, box, act_map, scale, size, mark in item_jobs:
            if size is None:
                data = encode(as_image(pixels), quality=INPUT_QUALITY)
            else:
                data = encode(render_tile(pixels, box, act_map, scale, size, heatmap=act_map is not None, mark=mark))
            cache.put_file(kind, key, ".jpg", data)
            drawn += 1
    return drawn


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


def _source_box(item, rf: ReceptiveField | None, cell: tuple[int, int] | None) -> tuple[float, float, float, float]:
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
