"""Records made from the stages' outputs, in one place: every number a page shows is made here.

A layer is assembled while it is written, a run of its units at a time: their summaries and example
maps are read from the activation cache once (LayerRecords), each unit's record is made from them
when its page is written, and all of it is dropped before the next run, so that memory does not
grow with the width of a layer.
"""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from galleria.extract.health import LayerHealth
from galleria.records import (BandRecord, EffectRecord, EffectsRecord, EffectsTable, ExampleRecord, FeatureVizRecord,
                              InputRecord, LayerData, LayerRecord, ModelBuild, ModelRecord, ProbeSummary, Response, UnitEntry,
                              UnitRecord, UnitSummary, VizRecord, packed, unpacked)
from galleria.site import structure as S
from galleria.site.content import Note
from galleria.visualize.examples import distinct as distinct_images, shown_image
from galleria.visualize.featureviz import UnitViz
from galleria.visualize.tokens import distinct as distinct_texts, shown_label, shown_text, text_levels, visible

DUPLICATES_SHOWN = 8  # a unit page names its most similar near-duplicates; its layer's health page, all

#: File names of feature visualizations in a unit's folder.
VIZ_FILES = {"channel": "featureviz.png", "negative": "featureviz-negative.png", "neuron": "featureviz-neuron.png"}


class LayerRecords:
    """A run of one layer's units (``span``, positions among its units) as records, from their
    summaries and example maps read once. Methods take a unit's position in the layer."""

    def __init__(self, build: ModelBuild, index: int, notes, examples, span: range) -> None:
        self.build, self.notes, self.settings, self.span = build, notes, examples, span
        self.info = build.layout.layers[index]
        self.data: LayerData = build.acts.layer(index, units=span)
        self.health: LayerHealth = build.health[self.info.name]

    def unit(self, position: int) -> UnitRecord:
        build, info = self.build, self.info
        cfg = build.model.config
        local = position - self.span.start  # its place in what was read
        summary = self.data.summaries[local]
        unit = info.units[position]
        folder = S.unit_dir(cfg.id, info.name, unit)
        note = self.notes.get(folder)
        if build.text:
            scale = (-text_scale(summary), text_scale(summary))
            top, bottom, bands = self._texts(local, summary, scale[1])
        else:
            scale = (0.0, max(summary.stats.max, 1e-6))
            top, bottom, bands = self._images(local, summary, scale)
        rf = build.receptive.get(info.name)
        pairs = self.health.duplicates_of(unit)
        tokens = self.data.tokens[local] if self.data.tokens is not None else None
        labels = build.model.labels
        return UnitRecord(
            model=cfg.id, layer=info.name, unit=unit, url=folder + "/", label=unit_label(build, info.name, unit, note),
            tags=note.tags if note else (), note=note.text if note else "", flags=tuple(self.health.flags(unit)),
            saturation=self.health.saturation.get(unit),
            duplicates=tuple((d.other if d.unit == unit else d.unit, d.similarity)
                             for d in sorted(pairs, key=lambda d: -d.similarity)[:DUPLICATES_SHOWN]),
            duplicate_count=len(pairs),
            stats=summary.stats, scale=scale,
            effects=effects_record(build.effects.get(info.name), position, labels, build.text),
            built_from=effects_record(build.built_from.get(info.name), position, None, False),
            receptive_field=None if rf is None else (rf.size, rf.stride, rf.offset),
            top=top, bottom=bottom, bands=bands, inactive=summary.inactive,
            featureviz=featureviz_record(build.featureviz.get(info.name, {}).get(unit), summary),
            top_tokens=None if tokens is None else tuple((shown_label(labels[t]), t, m, c) for t, m, c in tokens),
            auto_labels=self._auto_labels(position))

    def _auto_labels(self, position: int):
        found = self.build.auto_labels.get(self.info.name)
        return found[position] if found else ()

    def entry(self, position: int) -> UnitEntry:
        """The unit as its layer's grid lists it, without the rest of its record."""
        build, info = self.build, self.info
        unit = info.units[position]
        local = position - self.span.start
        summary = self.data.summaries[local]
        viz = build.featureviz.get(info.name, {}).get(unit)
        snippet = None
        if build.text and summary.top:
            chosen = distinct_texts(summary.top, build.inputs, 1, build.context)
            if chosen:
                slot, example = chosen[0]
                levels = text_levels(self.data.top_maps[local, slot], text_scale(summary))[0]
                snippet = _narrowed(self._text(example, levels, False), max(2, build.context // 4))
        note = self.notes.get(S.unit_dir(build.model.config.id, info.name, unit))
        stats = summary.stats
        return UnitEntry(unit, unit_label(build, info.name, unit, note), stats.max, stats.mean, stats.frac_active,
                         tuple(self.health.flags(unit)),
                         None if build.text else build.thumbs.get(info.name, ())[position], snippet,
                         VIZ_FILES["channel"] if viz is not None and viz.channel is not None else None,
                         next(iter(self._auto_labels(position)), None))

    def _images(self, local: int, summary: UnitSummary, scale: tuple[float, float]):
        build, info, data = self.build, self.info, self.data
        rf, layout, inputs = build.receptive.get(info.name), info.layout, build.inputs
        heatmap = self.settings.heatmap
        bottom_scale = (0.0, max(-summary.stats.min, 1e-6))

        def record(example, act_map, on_scale) -> ExampleRecord:
            at = layout.position_name(example.position) if layout.kind == "tokens" else None  # else: position says it
            return ExampleRecord(example.value, inputs.items[example.input_index].id, example.position, at,
                                 shown_image(rf, layout, example, act_map, on_scale, heatmap))

        def maps(stored, slot, sign=1.0):
            return None if stored is None else sign * stored[local, slot].astype(np.float32)

        top = tuple(record(e, maps(data.top_maps, slot), scale)
                    for slot, e in distinct_images(summary.top, rf, layout, inputs, self.settings.top))
        bottom = tuple(record(e, maps(data.bottom_maps, slot, -1.0), bottom_scale)
                       for slot, e in distinct_images(summary.bottom, rf, layout, inputs, self.settings.bottom))
        bands = []
        for number, band in enumerate(summary.bands):
            band_maps = data.band_maps[local][number] if data.band_maps else None
            examples = tuple(record(e, None if band_maps is None else band_maps[slot].astype(np.float32), scale)
                             for slot, e in enumerate(band.examples))
            bands.append(BandRecord(band.lo, band.hi, band.count, band.fraction, examples))
        return top, bottom, tuple(bands)

    def _text(self, example, levels: str, whole: bool) -> ExampleRecord:
        """A text example, its window coloured with ``levels`` (text_levels)."""
        inputs = self.build.inputs
        start = inputs.items[example.input_index].span[0]
        at = example.position[0]
        return ExampleRecord(example.value, inputs.items[example.input_index].id, example.position,
                             visible(inputs.text.pieces[start + at]),
                             shown_text(start, levels, at, self.build.context, whole))

    def _texts(self, local: int, summary: UnitSummary, scale: float):
        data, inputs, context = self.data, self.build.inputs, self.build.context

        def chosen(candidates, maps, want: int) -> tuple[ExampleRecord, ...]:
            picked = distinct_texts(candidates, inputs, want, context)
            levels = text_levels(maps[[slot for slot, _ in picked]], scale) if picked else []
            return tuple(self._text(e, row, True) for (_, e), row in zip(picked, levels))

        top = chosen(summary.top, data.top_maps[local], self.settings.top)
        bottom = chosen(summary.bottom, data.bottom_maps[local], self.settings.bottom)
        bands = []
        for number, band in enumerate(summary.bands):
            band_maps = data.band_maps[local][number] if data.band_maps else None
            levels = text_levels(band_maps, scale) if band_maps is not None else []
            examples = tuple(self._text(e, row, False) for e, row in zip(band.examples, levels))
            bands.append(BandRecord(band.lo, band.hi, band.count, band.fraction, examples))
        return top, bottom, tuple(bands)


def _narrowed(example: ExampleRecord, tokens: int) -> ExampleRecord:
    """A text example narrowed to ``tokens`` each side of its extreme token (grid snippets)."""
    shown, at = example.shown, example.position[0]
    lo, hi = max(shown.lo, at - tokens), min(shown.hi, at + tokens + 1)
    levels = packed(unpacked(shown.shown_levels())[lo - shown.lo:hi - shown.lo])
    return replace(example, shown=replace(shown, lo=lo, hi=hi, levels=levels, window=None))


def text_scale(summary: UnitSummary) -> float:
    """A text unit's colour scale: ±its largest magnitude, so zero is white on every page of it."""
    return max(abs(summary.stats.max), abs(summary.stats.min), 1e-6)


def unit_label(build: ModelBuild, layer_name: str, unit: int, note: Note | None) -> str:
    """A note's label, else the class name (or next token) for units of a model's labelled output."""
    if note and note.label:
        return note.label
    layer = build.layer(layer_name)
    if layer.is_output and build.layout.labelled_output:
        label = build.model.labels[unit]
        return shown_label(label) if build.text else label
    return ""


def effects_record(table: EffectsTable | None, position: int, labels, text: bool) -> EffectsRecord | None:
    """One unit's row of an effects table, with class or token names when ``labels`` are given."""
    if table is None:
        return None
    up, down = table.row(position)

    def named(pairs):
        return tuple(EffectRecord(i, (shown_label(labels[i]) if text else labels[i]) if labels is not None else "", v)
                     for i, v in pairs)
    return EffectsRecord(table.method, named(up), named(down), table.layer)


def featureviz_record(viz: UnitViz | None, summary: UnitSummary) -> FeatureVizRecord | None:
    if viz is None:
        return None

    def record(image, file: str) -> VizRecord | None:
        return None if image is None else VizRecord(file, image.mean, image.peak)
    return FeatureVizRecord(record(viz.channel, VIZ_FILES["channel"]), record(viz.negative, VIZ_FILES["negative"]),
                            record(viz.neuron, VIZ_FILES["neuron"]),
                            tuple(record(image, f"featureviz-diverse-{i}.png")
                                  for i, image in enumerate(viz.diverse or (), start=1)),
                            summary.stats.max <= 0)


def input_records(build: ModelBuild) -> dict[int, InputRecord]:
    """The model's usable inputs by index: titles, where their image is, what the model predicts."""
    inputs, acts, labels = build.inputs, build.acts, build.model.labels
    out = {}
    for item in inputs.usable:
        predictions = ()
        if acts.predictions is not None:
            predictions = tuple((labels[int(c)], float(p)) for c, p in
                                zip(acts.predictions[item.index], acts.probabilities[item.index]))
        source = build.sources.get(item.source)
        if source is None:  # text
            out[item.index] = InputRecord(item.index, item.id, item.title, None, None, None, item.span, predictions)
            continue
        (sx, sy), (left, top, right, bottom) = source.scale, item.box
        window = (left * sx, top * sy, right * sx, bottom * sy)
        out[item.index] = InputRecord(item.index, item.id, item.title, S.source_file(item.source, source.path),
                                      window, source.size, None, predictions)
    return out


def layer_record(build: ModelBuild, index: int, notes) -> LayerRecord:
    info = build.layout.layers[index]
    cfg = build.model.config
    folder = S.layer_dir(cfg.id, info.name)
    note = notes.get(folder)
    made = build.featureviz.get(info.name) or {}
    return LayerRecord(
        model=cfg.id, name=info.name, url=folder + "/", module=info.module, layout=info.layout, units=info.units,
        receptive=build.receptive.get(info.name), text=build.text, label=note.label if note else "",
        flagged=len(build.health[info.name].by_unit),
        dead=len(build.health[info.name].units["dead"]), related=bool(build.related.get(info.name)),
        featureviz=tuple((unit, made[unit].channel.peak) for unit in info.units
                         if unit in made and made[unit].channel is not None),
        thumb=build.thumbs.get(info.name, (None,))[0] if info.units else None)


def model_record(build: ModelBuild, notes) -> ModelRecord:
    cfg = build.model.config
    pre = cfg.preprocessing
    folder = S.model_dir(cfg.id)
    note = notes.get(folder)
    layout = build.layout
    return ModelRecord(
        id=cfg.id, title=cfg.title, description=cfg.description, source=cfg.source, url=folder + "/",
        params=build.model.params, input_size=None if build.text else (*pre.size, pre.channels),
        window=build.inputs.text.window if build.text else None,
        classes=layout.output_shape[0] if layout.classifier else None, label=note.label if note else "",
        inputs=len(build.inputs.usable), flagged=sum(len(h.by_unit) for h in build.health.values()),
        layers=tuple(layer_record(build, i, notes) for i in range(len(layout.layers))), probe=_probe(build))


def _probe(build: ModelBuild) -> ProbeSummary | None:
    cfg = build.model.config
    if not cfg.probe.enabled:
        return None
    found = build.probe
    if found is None:
        return ProbeSummary(cfg.kind, False, 0, cfg.probe.precision, 0.0, build.probe_left_out)
    return ProbeSummary(cfg.kind, True, found.carried.stat().st_size, found.precision, found.fidelity, "")


def responses(build: ModelBuild, peaks: list[np.ndarray], count: int) -> list[list[tuple[str, list[Response]]]]:
    """Per input and layer, the ``count`` units that respond most to the input relative to their own
    highest peak; layers where none rose above zero are left out. ``peaks``: each layer's units'
    peaks [inputs, units] on some of the gallery's inputs, or on a probe's. Each layer is ranked
    for all the inputs at once."""
    found: list[list[tuple[str, list[Response]]]] = [[] for _ in range(len(peaks[0]) if peaks else 0)]
    for layer, layer_peaks in zip(build.layout.layers, peaks):
        highest = build.maxima[layer.name]
        values = np.asarray(layer_peaks, dtype=np.float64)
        relative = np.where(highest > 0, values / np.where(highest > 0, highest, 1), -np.inf)
        order = np.argsort(-relative, axis=1, kind="stable")[:, :count]
        taken = zip(order.tolist(), np.take_along_axis(values, order, 1).tolist(),
                    np.take_along_axis(relative, order, 1).tolist())
        for shown, (positions, peak, share) in zip(found, taken):
            chosen = [Response(layer.units[p], v, r) for p, v, r in zip(positions, peak, share)
                      if math.isfinite(r) and r > 0]
            if chosen:
                shown.append((layer.name, chosen))
    return found
