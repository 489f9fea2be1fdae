"""Typed records passed between stages (config → sources → extract → visualize → site).

They are small, plain and JSON-serializable so that a unit's record can become its
``unit.json`` unchanged, and so that no stage needs another stage's internals.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

if TYPE_CHECKING:
    from pathlib import Path

    from galleria.extract.health import LayerHealth
    from galleria.extract.layout import Layout
    from galleria.extract.architecture import LayerInfo, ModelLayout
    from galleria.extract.run import ModelActivations
    from galleria.sources.images import InputSet
    from galleria.sources.models import LoadedModel
    from galleria.visualize.featureviz import UnitViz
    from galleria.visualize.receptive import ReceptiveField
    from galleria.visualize.sources import SourceImage


@dataclass(frozen=True)
class InputItem:
    """One candidate example: a source image, a crop of one, or a window of text."""

    index: int  # position in the input set; what reducers store
    id: str  # URL-safe and stable across builds, e.g. "chelsea-s3-1-2"
    source: str  # path of the file it was read from
    title: str  # human description, e.g. "chelsea.png · scale 3 · row 1, col 2"
    box: tuple[int, int, int, int] | None  # crop in source pixels: (left, top, right, bottom)
    span: tuple[int, int] | None = None  # a text window: [start, stop) in its corpus' token stream
    label: str | None = None  # an image's own class, where its set has them (labels: folders)


class Example(NamedTuple):
    """An input that drove a unit to an extreme, and where in the unit's map it did. A named tuple:
    a layer's summaries hold hundreds of thousands, and a frozen dataclass took 4x as long to make."""

    input_index: int
    value: float
    position: tuple[int, ...] | None  # index into the unit's spatial map; None for vectors


@dataclass(frozen=True)
class Histogram:
    """Counts over equal-width bins; bin i covers [(lo + i) * width, (lo + i + 1) * width)."""

    width: float
    lo: int
    counts: tuple[int, ...]

    @property
    def edges(self) -> list[float]:
        return [(self.lo + i) * self.width for i in range(len(self.counts) + 1)]


@dataclass(frozen=True)
class UnitStats:
    """Summary of every activation value (every input, every position) of one unit."""

    count: int  # finite values seen
    mean: float
    std: float
    min: float
    max: float
    frac_active: float  # share of values above zero
    nonfinite: int  # NaN or infinite values, excluded from everything above
    histogram: Histogram


@dataclass(frozen=True)
class Band:
    """A band of a unit's per-input peaks, [lo, hi), with a fair sample of the inputs in it."""

    lo: float
    hi: float
    count: int  # inputs whose peak falls in the band
    total: int  # inputs with a finite peak: all bands', and those on which the unit's peak is 0 (in none)
    examples: tuple[Example, ...]  # highest first

    @property
    def fraction(self) -> float:
        return self.count / self.total if self.total else 0.0


@dataclass(frozen=True)
class UnitSummary:
    """What extraction knows about one unit once all inputs have streamed past."""

    unit: int
    stats: UnitStats
    top: tuple[Example, ...]
    bottom: tuple[Example, ...]
    bands: tuple[Band, ...] = ()  # highest first
    inactive: int = 0  # inputs on which its peak is exactly 0: in no band


@dataclass(frozen=True)
class LayerData:
    """One layer's extraction results as later stages read them: the units' summaries and the maps
    of the examples they name, so that no stage needs the reducers that made them."""

    summaries: tuple[UnitSummary, ...]
    top_maps: np.ndarray | None  # [units, top candidates, *positions] float16, in summary.top's order
    bottom_maps: np.ndarray | None  # the same for summary.bottom; None for layers without positions
    band_maps: tuple[tuple[np.ndarray | None, ...], ...] = ()  # per unit, per band: [examples, *positions]
    tokens: tuple[tuple[tuple[int, float, int], ...], ...] | None = None  # text: per unit, (token, mean, count)


@dataclass
class BuildReport:
    """Counts and timings gathered through a build, printed as the closing summary."""

    models: int = 0
    layers: int = 0
    units: int = 0
    inputs_used: int = 0
    inputs_skipped: int = 0
    pages: int = 0
    images: int = 0  # encoded in this build; cached ones are not counted
    output: str = ""
    up_to_date: bool = False  # nothing changed: the existing output was kept
    warnings: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)  # said once in the summary; not failures under --strict
    search_bytes: int = 0  # the search index, all shards
    site_bytes: int = 0  # every file of the written site
    site_files: int = 0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    ranks: list[dict] = field(default_factory=list)  # under torchrun, each rank's stage_seconds and time waited
    probes: list[str] = field(default_factory=list)  # each live probe in the site: model, download, precision, fidelity
    labelled: int = 0  # units whose automatic label scores labels.SHOWN or more


# --- what the extract stage hands on about effects --------------------------------------

@dataclass(frozen=True)
class EffectsTable:
    """Per unit of a layer, the outputs it pushes up and down most: classes or next tokens (its
    effects), units of the layer before it (what it is built from), or units related to it (see
    extract/related.py). Arrays, not objects: a layer may have tens of thousands of units."""

    method: str  # one line, shown on pages, saying how the numbers were computed
    up: np.ndarray  # [units, k] indices, strongest first; -1 where a unit has fewer
    up_values: np.ndarray  # [units, k]
    down: np.ndarray  # [units, k'] indices, most negative first; -1 where fewer
    down_values: np.ndarray
    layer: str | None = None  # built from, related: the layer whose units the indices are

    def row(self, position: int) -> tuple[tuple[tuple[int, float], ...], tuple[tuple[int, float], ...]]:
        """The (index, value) pairs of one unit, up and down."""
        return (tuple((int(i), float(v)) for i, v in zip(self.up[position], self.up_values[position]) if i >= 0),
                tuple((int(i), float(v)) for i, v in zip(self.down[position], self.down_values[position]) if i >= 0))


# --- what the visualize stage makes of examples ---------------------------------------------

HEAT_LEVELS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"  # level i: i / 63 of the scale
TEXT_LEVELS = "abcdefghijklmnopq"  # one character per token: "i" is zero, "a" -8/8 of the scale, "q" +8/8


@dataclass(frozen=True)
class Heat:
    """A unit's map over the part of the input a tile shows: rows × cols colour levels of the
    unit's scale, row by row (HEAT_LEVELS, packed), laid over the tile and smoothed by the page's script."""

    cols: int
    rows: int
    levels: str  # packed(): see there
    frame: tuple[float, float, float, float] | None = None  # where the grid lies, in fractions of the tile
    # (left, top, right, bottom; it may overhang the tile); None: exactly on it


@dataclass(frozen=True)
class ImageShown:
    """How an image example is shown: which part of the input, and the unit's map over it."""

    box: tuple[int, int, int, int] | None  # (left, top, right, bottom) in model-input pixels; None: all of it
    heat: Heat | None
    mark: tuple[int, int, int, int] | None = None  # the cell where the unit peaked, outlined (same pixels)


@dataclass(frozen=True)
class TextShown:
    """How a text example is shown: a stretch of its window, every token coloured by the unit."""

    start: int  # stream position of the window's first token
    lo: int  # the stretch shown: tokens [lo, hi) of the window
    hi: int
    levels: str | None  # one TEXT_LEVELS character per shown token, packed(); None when ``window`` holds them
    length: int  # tokens in the window
    window: str | None = None  # the levels of every token of the window, packed (top and bottom: "whole window")

    def shown_levels(self) -> str:
        """The levels of the shown stretch, packed."""
        return self.levels if self.levels is not None else packed(unpacked(self.window)[self.lo:self.hi])


RUN_COUNTS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_RUN = re.compile(r"(.)\1{3,}")


def packed(levels: str) -> str:
    """Levels as records, pages and unit.json carry them: a run of one level is written once, then
    "~" and a character of RUN_COUNTS saying how many more times it repeats (1 to 62), so a heat
    map's zeros or a text's stretch of quiet tokens cost three characters. See unpacked()."""
    return _RUN.sub(_run, levels)


def _run(match: re.Match) -> str:
    more = len(match.group(0)) - 1
    parts = [match.group(1)]
    while more:
        step = min(more, len(RUN_COUNTS))
        parts.append(f"~{RUN_COUNTS[step - 1]}")
        more -= step
    return "".join(parts)


def unpacked(code: str) -> str:
    """The levels packed() wrote, one character each again."""
    out, last, i = [], "", 0
    while i < len(code):
        if code[i] == "~":
            out.append(last * (RUN_COUNTS.index(code[i + 1]) + 1))
            i += 2
        else:
            last = code[i]
            out.append(last)
            i += 1
    return "".join(out)


# --- the site stage's records: what becomes unit.json, and what pages are drawn from -----------

def _rounded(value: float) -> float | None:
    """A number as JSON carries it: 7 significant digits (all a float32 holds; pages show 3), null for
    NaN or infinity."""
    return float(f"{value:.7g}") if math.isfinite(value) else None


@dataclass(frozen=True)
class ExampleRecord:
    value: float
    input: str  # the input's id (its page: <model>/inputs/<id>/)
    position: tuple[int, ...] | None  # where in the unit's map; None for vectors
    at: str | None  # that position in words: "CLS", "patch 3, 5", "row 2, col 7", or the token's text
    shown: ImageShown | TextShown

    def to_dict(self) -> dict:
        out: dict = {"value": _rounded(self.value), "input": self.input,
                     "position": list(self.position) if self.position is not None else None}
        if self.at is not None:
            out["at"] = self.at
        shown = self.shown
        if isinstance(shown, ImageShown):
            out["box"] = list(shown.box) if shown.box is not None else None
            if shown.heat is not None:
                heat = shown.heat
                out["heat"] = [heat.cols, heat.rows, heat.levels] + ([list(heat.frame)] if heat.frame else [])
            if shown.mark is not None:
                out["mark"] = list(shown.mark)
        else:
            out.update(window_start=shown.start, shown=[shown.lo, shown.hi])
            if shown.levels is not None:
                out["levels"] = shown.levels
            if shown.window is not None:
                out["window_levels"] = shown.window
        return out


@dataclass(frozen=True)
class BandRecord:
    lo: float
    hi: float
    count: int  # inputs whose peak falls in the band
    fraction: float  # of all inputs with a finite peak
    examples: tuple[ExampleRecord, ...]


@dataclass(frozen=True)
class EffectRecord:
    index: int  # a class, a vocabulary token, or a unit of the layer before
    label: str  # its name ("" for units)
    value: float


@dataclass(frozen=True)
class EffectsRecord:
    method: str
    up: tuple[EffectRecord, ...]
    down: tuple[EffectRecord, ...]
    layer: str | None = None  # built from: the layer whose units these are

    def to_dict(self) -> dict:
        def entries(effects):
            return [{"index": e.index, **({"label": e.label} if e.label else {}), "value": _rounded(e.value)}
                    for e in effects]
        return {**({"layer": self.layer} if self.layer else {}), "method": self.method,
                "up": entries(self.up), "down": entries(self.down)}


@dataclass(frozen=True)
class VizRecord:
    """An image optimized for a unit, as the site stores it."""

    file: str  # file name in the unit's folder
    mean: float  # the unit's mean over positions on the image
    peak: float


@dataclass(frozen=True)
class FeatureVizRecord:
    channel: VizRecord | None
    negative: VizRecord | None
    neuron: VizRecord | None
    diverse: tuple[VizRecord, ...]
    never_active: bool  # the unit never rose above zero on any input


@dataclass(frozen=True)
class AutoLabel:
    """A label galleria proposes for a unit (extract/labels.py): what it detects, its detection score
    (the AUC, on held-out data, with which the label picks out where the unit is high: 0.5 is chance,
    1 exact) and how that was measured."""

    label: str
    score: float
    method: str


@dataclass(frozen=True)
class UnitRecord:
    """Everything known about one unit: ``unit.json`` is this record, serialized, and the unit's
    page is drawn from it."""

    model: str
    layer: str
    unit: int
    url: str  # its page's folder in the site, e.g. "efficientnet-lite0/blocks.4/37/"
    label: str
    tags: tuple[str, ...]
    note: str  # the Markdown of its note, if any
    flags: tuple[str, ...]  # health flags
    saturation: float | None  # share of inputs at its maximum, when saturated
    duplicates: tuple[tuple[int, float], ...]  # (unit, similarity of their peaks): the most similar few
    duplicate_count: int  # all the units it is a near-duplicate of (the layer's health page lists them)
    stats: UnitStats
    scale: tuple[float, float]  # the colour scale of its examples: heat 0..max, text -s..s
    effects: EffectsRecord | None  # the classes or next tokens it pushes up and down
    built_from: EffectsRecord | None  # the units of the layer before that add to and take from its peaks
    receptive_field: tuple[tuple[int, int], tuple[int, int], tuple[int, int]] | None  # size, stride, offset
    top: tuple[ExampleRecord, ...]
    bottom: tuple[ExampleRecord, ...]
    bands: tuple[BandRecord, ...]  # examples across its range, highest band first
    inactive: int  # inputs on which its peak is exactly 0 (never above 0 for a ReLU or an SAE latent): in no band
    featureviz: FeatureVizRecord | None
    top_tokens: tuple[tuple[str, int, float, int], ...] | None  # text: (token, id, mean, occurrences)
    auto_labels: tuple[AutoLabel, ...] = ()  # best first; pages show the first if it scores labels.SHOWN or more

    def to_dict(self) -> dict:
        s, h = self.stats, self.stats.histogram
        viz = self.featureviz

        def shown(image: VizRecord | None):
            return None if image is None else {"file": image.file, "mean": _rounded(image.mean),
                                               "peak": _rounded(image.peak)}
        return {
            "model": self.model, "layer": self.layer, "unit": self.unit, "url": self.url, "label": self.label,
            "tags": list(self.tags), "flags": list(self.flags), "saturation": self.saturation,
            "duplicates": [{"unit": u, "similarity": _rounded(v)} for u, v in self.duplicates],
            "duplicate_count": self.duplicate_count,
            "stats": {"count": s.count, "mean": _rounded(s.mean), "std": _rounded(s.std), "min": _rounded(s.min),
                      "max": _rounded(s.max), "frac_active": _rounded(s.frac_active), "nonfinite": s.nonfinite},
            "histogram": {"width": h.width, "lo": h.lo, "counts": list(h.counts)},
            "scale": [_rounded(v) for v in self.scale],
            "effects": self.effects.to_dict() if self.effects else None,
            "built_from": self.built_from.to_dict() if self.built_from else None,
            "receptive_field": None if self.receptive_field is None else dict(
                zip(("size", "stride", "offset"), (list(v) for v in self.receptive_field))),
            "top": [e.to_dict() for e in self.top],
            "bottom": [e.to_dict() for e in self.bottom],
            "bands": [{"lo": _rounded(b.lo), "hi": _rounded(b.hi), "count": b.count, "fraction": _rounded(b.fraction),
                       "examples": [e.to_dict() for e in b.examples]} for b in self.bands],
            "inactive": self.inactive,
            "featureviz": None if viz is None else {
                "channel": shown(viz.channel), "negative": shown(viz.negative), "neuron": shown(viz.neuron),
                "diverse": [shown(d) for d in viz.diverse], "never_active": viz.never_active},
            "top_tokens": None if self.top_tokens is None else [
                {"token": t, "id": i, "mean": _rounded(m), "count": c} for t, i, m, c in self.top_tokens],
            "note": self.note,
            "auto_labels": [{"label": a.label, "score": a.score, "method": a.method} for a in self.auto_labels],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"), allow_nan=False)


@dataclass(frozen=True)
class InputRecord:
    """One input as pages show it: an image (a window onto its stored source) or a window of text."""

    index: int
    id: str
    title: str
    source: str | None  # images: the stored source image's site path
    window: tuple[float, float, float, float] | None  # images: the input's box in the stored image's pixels
    image_size: tuple[int, int] | None  # images: the stored image's (width, height)
    span: tuple[int, int] | None  # text: [start, stop) in the stream
    predictions: tuple[tuple[str, float], ...]  # the model's top classes on it, with probabilities

    def crop(self, box: tuple[int, int, int, int] | None,
             input_size: tuple[int, int]) -> tuple[float, float, float, float]:
        """Where ``box`` of the input (in the model's (height, width) pixels; None: all of it) lies in
        the stored source image: its left, top, width and height in that image's pixels."""
        height, width = input_size
        box = box or (0, 0, width, height)
        il, it, ir, ib = self.window
        sx, sy = (ir - il) / width, (ib - it) / height
        return il + box[0] * sx, it + box[1] * sy, (box[2] - box[0]) * sx, (box[3] - box[1]) * sy


@dataclass(frozen=True)
class Response:
    """How strongly one unit responded to one input: its peak, and that peak over the unit's
    highest on any input (an input page lists each layer's strongest)."""

    unit: int
    value: float
    relative: float


@dataclass(frozen=True)
class UnitEntry:
    """A unit as a layer's grid lists it: a thumbnail (or a snippet of text), its numbers, its flags.
    A wide layer's entries are all held while its grid is written, so they carry three numbers of
    the unit's statistics, not the whole of them (the histogram)."""

    unit: int
    label: str
    max: float
    mean: float
    frac_active: float
    flags: tuple[str, ...]
    thumb: tuple[int, ImageShown] | None  # images: its top example (input index, how it is shown)
    snippet: ExampleRecord | None  # text: its top example, narrowed to a few tokens
    featureviz: str | None  # the file of its optimized image, if it has one
    auto_label: AutoLabel | None = None  # its best automatic label, shown if it scores labels.SHOWN or more


@dataclass(frozen=True)
class LayerRecord:
    """A layer as its pages show it: what it is, how its positions are read, what it holds."""

    model: str
    name: str
    url: str  # its page's folder
    module: str  # the class of the module, e.g. "Conv2d"
    layout: "Layout"
    units: tuple[int, ...]
    receptive: "ReceptiveField | None"  # image models: the input region one position sees
    text: bool  # positions are tokens of text
    label: str
    flagged: int  # units with a health flag
    dead: int  # units never above zero (health's 'dead')
    related: bool  # its units' related units are in its related.js (a layer-level table, like its thumbnails)
    featureviz: tuple[tuple[int, float], ...]  # units with an optimized image, and its peak
    thumb: tuple[int, ImageShown] | None  # images: its first unit's top example (the model page's preview)


@dataclass(frozen=True)
class ModelRecord:
    """A model as its pages show it."""

    id: str
    title: str
    description: str
    source: str
    url: str
    params: int
    input_size: tuple[int, int, int] | None  # images: (height, width, channels)
    window: int | None  # text: tokens per window
    classes: int | None  # a classifier: how many classes; else None
    label: str
    inputs: int  # usable inputs
    flagged: int  # units with a health flag, all layers
    layers: tuple[LayerRecord, ...]
    probe: "ProbeSummary | None" = None  # the live probe, unless turned off


@dataclass(frozen=True)
class ProbeSummary:
    """What a model's pages say of its live probe."""

    kind: str  # "image" or "text": what a visitor gives it
    in_browser: bool  # its graph is in the site; else only galleria serve answers it
    bytes: int  # the graph as the page downloads it (0 when not in the site)
    precision: str
    fidelity: float  # the graph's largest difference from PyTorch, as a share of a layer's largest value
    left_out: str  # why it is not in the site


@dataclass(frozen=True)
class ProbeModel:
    """A model's live probe: its ONNX graph, what the page feeds it, and how it compares."""

    carried: "Path"  # the graph, weights stored in ``precision``, as <model>/probe.js carries it (gzip,
    #   base64; in the cache): what a visitor downloads
    precision: str  # "float32", "float16" or "int8"
    fidelity: float  # largest difference from PyTorch on real inputs, as a share of a layer's largest value
    feed: dict  # {"kind": "image", size, channels, mean, std} or {"kind": "text", tokenizer, lead, trail, length, window}


@dataclass
class ModelBuild:
    """Everything the earlier stages found about one model: what the site stage is made from.

    Layers are read a run of units at a time (``acts.layer(i, units=span)``), so a site of any size
    is written with a bounded number of units' records in memory."""

    model: "LoadedModel"
    layout: "ModelLayout"
    acts: "ModelActivations"
    inputs: "InputSet"  # what the model read: crops of images, or windows of text
    health: dict[str, "LayerHealth"]  # per layer name
    effects: dict[str, EffectsTable | None]  # per layer name: what its units push in the output
    built_from: dict[str, EffectsTable | None]  # per layer name: the units of the layer before behind them
    related: dict[str, tuple[EffectsTable, ...]]  # per layer name: the units related to its units, by each kind
    featureviz: dict[str, dict[int, "UnitViz"]]  # per layer name and unit, where made
    thumbs: dict[str, tuple[tuple[int, ImageShown] | None, ...]]  # image models, per layer and unit: its top example
    maxima: dict[str, np.ndarray]  # per layer, each unit's highest value on any input
    receptive: dict[str, "ReceptiveField | None"] = field(default_factory=dict)  # image models, per layer
    sources: dict[str, "SourceImage"] = field(default_factory=dict)  # image models: source file -> stored image
    context: int | None = None  # text models: tokens shown each side of an example's extreme token
    minima: dict[str, np.ndarray] = field(default_factory=dict)  # per layer, each unit's lowest value
    probe: ProbeModel | None = None  # the live probe in the page, if the model has one
    probe_left_out: str = ""  # why it has none, when it was not turned off
    auto_labels: dict[str, tuple[tuple[AutoLabel, ...], ...]] = field(default_factory=dict)  # per layer, per unit position

    @property
    def text(self) -> bool:
        return self.inputs.text is not None

    def layer(self, name: str) -> "LayerInfo":
        return next(layer for layer in self.layout.layers if layer.name == name)
