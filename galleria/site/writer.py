"""Turns the records of earlier stages into pages, unit.json files and linked images.

Like MkDocs, all page data is gathered first and rendered second, so every page (prev/next
links, labels in grids, input pages) sees the same consistent picture of the site.
"""
from __future__ import annotations

import copy
import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np

from galleria import __version__
from galleria.cache import Cache
from galleria.config import Config
from galleria.extract.effects import UnitEffects, UnitSources
from galleria.extract.health import DEFINITIONS, FLAGS, LayerHealth
from galleria.extract.layout import Layout
from galleria.extract.probe import LayerInfo, ModelLayout
from galleria.extract.run import ModelActivations
from galleria.forking import fork_map
from galleria.records import Example, UnitSummary
from galleria.site import structure as S
from galleria.site.content import Note
from galleria.site.search_index import SearchLayer, SearchModel, SearchUnit, note_words, write_search_index
from galleria.site.theme import Theme
from galleria.sources.images import InputSet
from galleria.sources.models import LoadedModel
from galleria.visualize.histogram_svg import histogram_svg
from galleria.visualize.featureviz import UnitViz
from galleria.visualize.run import ModelImages, UnitImages
from galleria.visualize.tokens import ModelText, UnitText, shown_label
from galleria.site import token_html
from galleria.site.previews import group_card, unit_card
from galleria.visualize.cards import Card, card_file
from galleria.visualize.tiles import legend_svg

UNITS_PER_INPUT_LAYER = 6  # responsive units listed per layer on an input page
PAGE_SHARDS_PER_CORE = 4


@dataclass
class ModelBuild:
    """Everything the site stage needs about one model."""

    model: LoadedModel
    layout: ModelLayout
    acts: ModelActivations
    images: ModelImages
    health: dict[str, LayerHealth]  # per layer name
    effects: dict[str, list[UnitEffects] | None]  # per layer name, per shown unit
    sources: dict[str, list[UnitSources] | None]  # per layer name, per shown unit
    featureviz: dict[str, dict[int, UnitViz]]  # per layer name and unit, where made
    inputs: InputSet  # what the model read: images, or windows of text
    text: ModelText | None = None  # text models: token contexts instead of images

    def thumb(self, layer: str, position: int) -> Path | None:
        return self.images.layers[layer][position].thumb if self.images else None

    def receptive(self, layer: str):
        return self.images.receptive[layer] if self.images else None

    def layer(self, name: str) -> LayerInfo:
        return next(layer for layer in self.layout.layers if layer.name == name)


class _RecordedNotes:
    """The notes, remembering which keys were looked up (found or not) for the page being made."""

    def __init__(self, notes: dict[str, Note], reading: set[str]):
        self._notes, self._reading = notes, reading

    def get(self, key: str) -> Note | None:
        self._reading.add(key)
        return self._notes.get(key)


class SiteWriter:
    """Writes the whole site, or with ``only`` just those page folders, in place (``galleria serve``).

    ``reads`` maps every page written to the note keys its content looked up, so that a note
    edit can re-render exactly the pages that show that note.
    """

    def __init__(self, config: Config, theme: Theme, notes: dict[str, Note], out: Path, cache: Cache,
                 progress=None, only: set[str] | None = None):
        self.config, self.theme, self.out, self.cache = config, theme, out, cache
        self._reading: set[str] = set()
        self.notes = _RecordedNotes(notes, self._reading)
        self.reads: dict[str, frozenset[str]] = {}
        self.only = only
        self.progress = progress
        self.pages: list[str] = []  # folders of written pages, for the sitemap
        self.files = 0
        self.search_bytes = 0  # size of the search index, for the build summary
        self._made: set[str] = set()  # folders already created: mkdir is a syscall per call
        self._positions: dict[tuple[str, str], dict[int, int]] = {}  # (model, layer) -> unit -> position

    def _folder(self, folder: str) -> Path:
        path = self.out / folder
        if folder not in self._made:
            path.mkdir(parents=True, exist_ok=True)
            self._made.add(folder)
        return path

    # -- helpers ------------------------------------------------------------------------

    def _common(self, folder: str, kind: str, title: str, description: str, crumbs: list[tuple[str, str]],
                nav: dict | None = None, card: str | None = None) -> dict:
        """What every page's base template needs; ``card`` is the site path of its preview image."""
        site = self.config.site
        canonical = f"{site.url}{folder}/" if site.url and folder else site.url
        return {
            "site": {"title": site.title, "description": site.description, "url": site.url},
            "page": {"title": title, "description": description or site.description, "kind": kind,
                     "canonical": canonical, "image": f"{site.url}{card}" if card else None,
                     "breadcrumbs": [{"title": t, "url": S.href(folder, S.page_file(f))} for t, f in crumbs]},
            "root": S.root(folder),
            "nav": {k: (S.href(folder, S.page_file(v)) if v is not None else None)
                    for k, v in (nav or {"prev": None, "next": None, "up": None}).items()},
            "generator": f"galleria {__version__}",
        }

    def _skip(self, folder: str) -> bool:
        """True when this run re-renders some pages only, and not this one."""
        return self.only is not None and folder not in self.only

    def _put(self, path: Path, text: str) -> None:
        """Write a file; rewriting a served site in place, through a rename, so that no
        visitor gets half a page."""
        if self.only is None:
            path.write_text(text, encoding="utf-8")
            return
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)

    def _write(self, folder: str, template: str, context: dict) -> None:
        self._put(self._folder(folder) / "index.html", self.theme.render(template, **context))
        self.reads[folder] = frozenset(self._reading)  # every note read since the previous page
        self._reading.clear()
        self.pages.append(folder)
        if self.progress is not None:
            self.progress.update(1)

    def page_count(self, builds: list[ModelBuild]) -> int:
        """Pages write() will produce: the index and search, then per model its page, layers, units and inputs."""
        return 2 + sum(3 + 2 * len(b.layout.layers) + sum(len(l.units) for l in b.layout.layers)
                       + len(b.inputs.usable) + sum(1 for v in b.featureviz.values() if v) for b in builds)

    def _place(self, cached: Path, target: str) -> None:
        """Link a cached image into the output: instant, and costs no disk space."""
        folder, _, name = target.rpartition("/")
        dest = self._folder(folder) / name
        try:
            os.link(cached, dest)
        except FileExistsError:
            if os.path.samefile(cached, dest):  # placed already, by the layer grid
                return
            dest.unlink()  # an older image of an in-place rebuild: a card whose label changed
            return self._place(cached, target)
        except OSError:
            shutil.copyfile(cached, dest)
        self.files += 1

    # -- pages --------------------------------------------------------------------------

    def write(self, builds: list[ModelBuild]) -> None:
        if self.only is None:
            self.theme.copy_assets(self.out)
        models = [self._model_summary(b) for b in builds]
        if not self._skip(""):
            self._write("", "index.html", {
                **self._common("", "index", self.config.site.title, self.config.site.description, []),
                "models": [{**m, "url": S.href("", S.page_file(S.model_dir(m["id"]))),
                            "thumb": S.href("", m["thumb"]) if m["thumb"] else None} for m in models],
            })
        for build, summary in zip(builds, models):
            self._write_model(build, summary)
        self._write_everywhere(builds, models)
        if not self._skip("search"):
            self._write_search(builds)
        if self.only is None:  # the rest depends on the theme and the page list, which notes never change
            self._write_404()
            (self.out / ".nojekyll").write_text("")
            if self.config.site.url:
                self._write_sitemap()

    def _write_everywhere(self, builds: list[ModelBuild], models: list[dict]) -> None:
        """Unit and input pages, the bulk of a site, in shards spread over every core.

        More shards than cores, so the progress bar moves as each one finishes.
        """
        global _SHARDING
        # A few pages re-rendered in place (galleria serve) are written here: no processes to fork
        # from a server's threads.
        shards = 1 if self.only is not None else PAGE_SHARDS_PER_CORE * (os.cpu_count() or 1)
        _SHARDING = (self, builds, models)
        try:
            for pages, files, reads in fork_map(_shard, [(s, shards) for s in range(shards)]):
                self.pages.extend(pages)
                self.files += files
                self.reads.update(reads)
                if self.progress is not None:
                    self.progress.update(len(pages))
        finally:
            _SHARDING = None

    def _write_shard(self, builds: list[ModelBuild], models: list[dict], worker: int, workers: int) -> None:
        for build, summary in zip(builds, models):
            crumbs = self._model_crumbs(build)
            for index in range(len(build.layout.layers)):
                self._write_units(build, summary, index, crumbs, worker, workers)
            self._write_input_pages(build, summary, crumbs, worker, workers)

    def _model_summary(self, build: ModelBuild) -> dict:
        cfg = build.model.config
        pre = cfg.preprocessing
        layers = build.layout.layers
        first_thumb = build.thumb(layers[0].name, 0) if layers else None
        return {
            "id": cfg.id, "title": cfg.title, "description": cfg.description,
            "num_layers": len(layers), "num_units": sum(len(l.units) for l in layers),
            "params": _human(build.model.params),
            "input_size": f"windows of {build.inputs.text.window} tokens" if build.text else
            f"{pre.size[0]} × {pre.size[1]} × {pre.channels}",
            "thumb": f"{S.unit_dir(cfg.id, layers[0].name, layers[0].units[0])}/thumb.jpg" if first_thumb else None,
        }

    def _model_context(self, build: ModelBuild, summary: dict, folder: str) -> dict:
        cfg = build.model.config
        note = self.notes.get(S.model_dir(cfg.id))
        layers = []
        for layer in build.layout.layers:
            rf = build.receptive(layer.name)
            layer_note = self.notes.get(S.layer_dir(cfg.id, layer.name))
            layers.append({
                "name": layer.name, "module": layer.module, "num_units": len(layer.units),
                "url": S.href(folder, S.page_file(S.layer_dir(cfg.id, layer.name))),
                "shape": layer.layout.describe(), "receptive": _receptive_text(rf, layer.layout, build.text),
                "label": layer_note.label if layer_note else "",
                "thumb": S.href(folder, f"{S.unit_dir(cfg.id, layer.name, layer.units[0])}/thumb.jpg")
                if build.images else None,
                "featureviz_url": S.href(folder, S.page_file(S.featureviz_dir(cfg.id, layer.name)))
                if build.featureviz.get(layer.name) else None,
            })
        return {
            **summary, "url": S.href(folder, S.page_file(S.model_dir(cfg.id))), "source": cfg.source,
            "classifier": build.layout.classifier,
            "num_classes": build.layout.output_shape[0] if build.layout.classifier else None,
            "note_html": note.html if note else "", "label": note.label if note else "",
            "inputs_url": S.href(folder, S.page_file(S.inputs_dir(cfg.id))), "num_inputs": len(build.inputs.usable),
            "text": build.text is not None,
            "layers": layers, "health_url": S.href(folder, S.page_file(S.health_dir(cfg.id))),
            "flagged": sum(len(h.by_unit) for h in build.health.values()),
        }

    def _model_crumbs(self, build: ModelBuild) -> list[tuple[str, str]]:
        cfg = build.model.config
        return [(self.config.site.title, ""), (cfg.title, S.model_dir(cfg.id))]

    def _write_model(self, build: ModelBuild, summary: dict) -> None:
        """The model's pages that are one of a kind: model, layer grids, health, inputs listing."""
        cfg = build.model.config
        folder = S.model_dir(cfg.id)
        crumbs = self._model_crumbs(build)
        if not self._skip(folder):
            context = self._model_context(build, summary, folder)
            card = self._card(folder, group_card(
                self.config.site.title, build, cfg.title, f"input {summary['input_size']}", context["label"],
                f"{summary['num_layers']} layers · {summary['num_units']:,} units · {summary['params']} parameters",
                build.layout.layers))
            self._write(folder, "model.html", {
                **self._common(folder, "model", cfg.title, cfg.description, crumbs,
                               {"prev": None, "next": None, "up": ""}, card),
                "model": context,
            })
        names = [l.name for l in build.layout.layers]
        for i in range(len(build.layout.layers)):
            self._write_layer(build, summary, i, crumbs, names)
        for layer in build.layout.layers:
            if build.featureviz.get(layer.name):
                self._write_featureviz(build, summary, crumbs, layer)
        self._write_health(build, summary, crumbs, None)
        for layer in build.layout.layers:
            self._write_health(build, summary, crumbs + [(layer.name, S.layer_dir(cfg.id, layer.name))], layer.name)
        self._write_inputs(build, summary, crumbs)

    def _layer_context(self, build: ModelBuild, index: int) -> dict:
        cfg = build.model.config
        layer = build.layout.layers[index]
        folder = S.layer_dir(cfg.id, layer.name)
        note = self.notes.get(folder)
        return {"name": layer.name, "url": S.href(folder, S.page_file(folder)), "module": layer.module,
                "shape": layer.layout.describe(), "num_units": len(layer.units),
                "receptive": _receptive_text(build.receptive(layer.name), layer.layout, build.text),
                "statistics_note": layer.layout.statistics_note(),
                "note_html": note.html if note else "", "label": note.label if note else "",
                "health_url": S.href(folder, S.page_file(S.health_dir(cfg.id, layer.name))),
                "flagged": len(build.health[layer.name].by_unit),
                "featureviz_url": S.href(folder, S.page_file(S.featureviz_dir(cfg.id, layer.name)))
                if build.featureviz.get(layer.name) else None}

    def _write_layer(self, build: ModelBuild, summary: dict, index: int, crumbs: list, names: list[str]) -> None:
        cfg = build.model.config
        layer = build.layout.layers[index]
        folder = S.layer_dir(cfg.id, layer.name)
        if self._skip(folder):
            return
        layer_ctx = self._layer_context(build, index)
        texts = build.text.layers[layer.name] if build.text else None
        units = []
        for position, (unit, unit_summary) in enumerate(zip(layer.units, build.acts.layers[index].summaries)):
            unit_folder = S.unit_dir(cfg.id, layer.name, unit)
            stats = unit_summary.stats
            thumb = build.thumb(layer.name, position)
            if thumb is not None:
                self._place(thumb, f"{unit_folder}/thumb.jpg")
            viz = build.featureviz.get(layer.name, {}).get(unit)
            if viz is not None and viz.channel is not None:
                self._place(viz.channel.path, f"{unit_folder}/featureviz.png")
            units.append({"id": unit, "url": S.href(folder, S.page_file(unit_folder)),
                          "viz": S.href(folder, f"{unit_folder}/featureviz.png")
                          if viz is not None and viz.channel is not None else None,
                          "label": _unit_label(build, layer.name, unit, self.notes.get(unit_folder)),
                          "thumb": S.href(folder, f"{unit_folder}/thumb.jpg") if thumb else None,
                          "snippet": self._snippet(build, texts[position]) if texts else None,
                          "max": stats.max, "mean": stats.mean, "frac_active": stats.frac_active,
                          "flags": build.health[layer.name].flags(unit)})
        prev_layer = S.layer_dir(cfg.id, names[index - 1]) if index > 0 else None
        next_layer = S.layer_dir(cfg.id, names[index + 1]) if index + 1 < len(names) else None
        card = self._card(folder, group_card(self.config.site.title, build, layer.name, cfg.title, layer_ctx["label"],
                                             f"{len(layer.units):,} units · {layer_ctx['shape']}", [layer]))
        self._write(folder, "layer.html", {
            **self._common(folder, "layer", f"{layer.name} · {cfg.title}", layer_ctx["label"] or
                           f"{len(layer.units)} units of {layer.name} in {cfg.title}", crumbs + [(layer.name, folder)],
                           {"prev": prev_layer, "next": next_layer, "up": S.model_dir(cfg.id)}, card),
            "model": self._model_context(build, summary, folder), "layer": layer_ctx, "units": units,
        })

    def _write_units(self, build: ModelBuild, summary: dict, index: int, crumbs: list, worker: int,
                     workers: int) -> None:
        """This worker's share of one layer's unit pages."""
        cfg = build.model.config
        layer = build.layout.layers[index]
        folder = S.layer_dir(cfg.id, layer.name)
        summaries = build.acts.layers[index].summaries
        images = build.images.layers[layer.name] if build.images else build.text.layers[layer.name]
        effects = build.effects[layer.name]
        sources = build.sources[layer.name]
        crumbs = crumbs + [(layer.name, folder)]
        for position in range(worker, len(layer.units), workers):
            unit = layer.units[position]
            if self._skip(S.unit_dir(cfg.id, layer.name, unit)):
                continue
            layer_ctx = self._layer_context(build, index)  # per page, so that its note is read for each
            nav = {"prev": S.unit_dir(cfg.id, layer.name, layer.units[position - 1]) if position > 0 else None,
                   "next": S.unit_dir(cfg.id, layer.name, layer.units[position + 1])
                   if position + 1 < len(layer.units) else None,
                   "up": folder}
            self._write_unit(build, summary, layer_ctx, unit, summaries[position], images[position], crumbs, nav,
                             effects[position] if effects else None, sources[position] if sources else None)

    def _examples(self, build: ModelBuild, folder: str, layout: Layout, kind: str, examples: list[Example],
                  tiles: list[Path], boxes: list) -> tuple[list[dict], list[dict]]:
        """Example contexts for the page and records for unit.json."""
        cfg = build.model.config
        shown, recorded = [], []
        for rank, (example, tile, box) in enumerate(zip(examples, tiles, boxes), start=1):
            name = f"{kind}-{rank}.jpg"
            self._place(tile, f"{folder}/{name}")
            item = build.inputs.items[example.input_index]
            prediction = self._prediction(build, example.input_index)
            at = layout.position_name(example.position)
            shown.append({"rank": rank, "anchor": _anchor(kind, rank), "value": example.value,
                          "tile": name, "input_title": item.title, "prediction": prediction, "at": at,
                          "at_prefix": layout.kind == "tokens" and layout.cell(example.position) is None,
                          "input_url": S.href(folder, S.page_file(S.input_dir(cfg.id, item.id)))})
            recorded.append({"rank": rank, "value": example.value, "input": item.id, "input_title": item.title,
                             "position": list(example.position) if example.position is not None else None,
                             "at": at, "box": list(box) if box is not None else None, "tile": name,
                             "prediction": prediction})
        return shown, recorded

    def _text_examples(self, build: ModelBuild, folder: str, kind: str, contexts: list, scale: float,
                       whole: bool) -> tuple[list[dict], list[dict]]:
        """Token contexts for the page, and records for unit.json with the value at every token."""
        cfg = build.model.config
        corpus = build.inputs.text
        shown, recorded = [], []
        for rank, ctx in enumerate(contexts, start=1):
            item = build.inputs.items[ctx.example.input_index]
            piece = corpus.pieces[ctx.start + ctx.at]
            shown.append({"rank": rank, "anchor": _anchor(kind, rank), "value": ctx.example.value, "prediction": None,
                          "input_title": item.title,
                          "input_url": S.href(folder, S.page_file(S.input_dir(cfg.id, item.id))),
                          "whole": whole, **token_html.context(corpus, ctx, build.text.context, scale)})
            recorded.append({"rank": rank, "value": ctx.example.value, "input": item.id, "input_title": item.title,
                             "position": [ctx.at], "token": piece, "window_start": ctx.start,
                             **({"values": [float(f"{v:.4g}") for v in ctx.values.tolist()]} if whole else {})})
        return shown, recorded

    def _top_tokens(self, build: ModelBuild, unit_text: UnitText) -> list[dict]:
        labels = build.inputs.text.labels
        return [{"token": shown_label(labels[token]), "id": token, "mean": mean, "count": count}
                for token, mean, count in unit_text.tokens]

    def _snippet(self, build: ModelBuild, unit_text: UnitText):
        """The few tokens around a unit's strongest example, for the layer grid."""
        if not unit_text.top:
            return None
        ctx = unit_text.top[0]
        around = max(2, build.text.context // 4)
        return token_html.context(build.inputs.text, ctx, around, unit_text.scale)["context"]

    def _prediction(self, build: ModelBuild, index: int) -> dict | None:
        if build.acts.predictions is None:
            return None
        cls = int(build.acts.predictions[index, 0])
        return {"label": build.model.labels[cls], "prob": float(build.acts.probabilities[index, 0])}

    def _write_unit(self, build: ModelBuild, summary: dict, layer_ctx: dict, unit: int, unit_summary: UnitSummary,
                    images: UnitImages, crumbs: list, nav: dict, effects: UnitEffects | None,
                    sources: UnitSources | None) -> None:
        cfg = build.model.config
        folder = S.unit_dir(cfg.id, layer_ctx["name"], unit)
        note = self.notes.get(folder)
        stats = unit_summary.stats
        layout = build.layer(layer_ctx["name"]).layout
        is_text = isinstance(images, UnitText)
        if is_text:
            top, top_json = self._text_examples(build, folder, "top", images.top, images.scale, True)
            bottom, bottom_json = self._text_examples(build, folder, "bottom", images.bottom, images.scale, True)
            groups = [(band, images.intervals[number - 1]) for number, band in enumerate(unit_summary.intervals, 1)]
        else:
            top, top_json = self._examples(build, folder, layout, "top", images.top_examples, images.top,
                                           images.top_boxes)
            bottom, bottom_json = self._examples(build, folder, layout, "bottom", images.bottom_examples,
                                                 images.bottom, images.bottom_boxes)
            groups = [(band, (tiles, boxes)) for band, tiles, boxes in zip(unit_summary.intervals, images.intervals,
                                                                          images.interval_boxes)]
        bands, bands_json = [], []
        for number, (band, shown_by) in enumerate(groups, start=1):
            if is_text:
                shown, recorded = self._text_examples(build, folder, f"range{number}", shown_by, images.scale, False)
            else:
                shown, recorded = self._examples(build, folder, layout, f"range{number}", list(band.examples),
                                                 *shown_by)
            numbers = {"lo": band.lo, "hi": band.hi, "count": band.count, "fraction": band.fraction}
            bands.append({**numbers, "examples": shown})
            bands_json.append({**numbers, "examples": recorded})
        built_from = self._sources(build, folder, sources)
        viz = self._featureviz(build.featureviz.get(layer_ctx["name"], {}).get(unit), folder, stats)
        health = build.health[layer_ctx["name"]]
        flags = health.flags(unit)
        duplicates = [{"unit": d.other if d.unit == unit else d.unit, "similarity": d.similarity}
                      for d in health.duplicates_of(unit)]
        for d in duplicates:
            d["url"] = S.href(folder, S.page_file(S.unit_dir(cfg.id, layer_ctx["name"], d["unit"])))
        label = _unit_label(build, layer_ctx["name"], unit, note)
        stats_dict = {"count": stats.count, "mean": stats.mean, "std": stats.std, "min": stats.min,
                      "max": stats.max, "frac_active": stats.frac_active, "nonfinite": stats.nonfinite}
        rf = build.receptive(layer_ctx["name"])
        top_classes = [t["prediction"]["label"] for t in top if t["prediction"]][:3]
        top_tokens = self._top_tokens(build, images) if is_text else None
        if top_tokens:
            top_classes = [repr(t["token"]) for t in top_tokens[:3]]
        description = (f"{label} · " if label else "") + f"Unit {unit} of {layer_ctx['name']} in {cfg.title}: " \
            f"max {stats.max:.3g}, active {stats.frac_active:.1%}" + \
            (f"; {'fires most on' if is_text else 'top examples look like'} {', '.join(dict.fromkeys(top_classes))}"
             if top_classes else "")
        record = {
            "model": cfg.id, "layer": layer_ctx["name"], "unit": unit, "url": f"{folder}/",
            "label": label, "tags": list(note.tags) if note else [], "flags": flags, "stats": stats_dict,
            "duplicates": [{"unit": d["unit"], "similarity": d["similarity"]} for d in duplicates],
            "saturation": health.saturation.get(unit),
            "logit_effects": self._effects(build, effects),
            "built_from": None if built_from is None else {
                "layer": built_from["layer"], "method": built_from["method"],
                **{side: [{"unit": u["unit"], "value": u["value"]} for u in built_from[side]] for side in ("up", "down")}},
            "histogram": {"width": stats.histogram.width, "lo": stats.histogram.lo,
                          "counts": list(stats.histogram.counts), "edges": stats.histogram.edges},
            "receptive_field": None if rf is None else {"size": list(rf.size), "stride": list(rf.stride),
                                                        "offset": list(rf.offset)},
            "heatmap_scale": None if is_text else {"top": list(images.scale_top),
                                                "bottom": [-images.scale_bottom[1], 0.0]},
            "colour_scale": [-images.scale, images.scale] if is_text else None,
            "top_tokens": top_tokens,
            "top": top_json, "bottom": bottom_json,
            "intervals": bands_json,
            "featureviz": viz,
            "note": note.text if note else "",
        }
        try:
            text = json.dumps(record, allow_nan=False)
        except ValueError:  # a unit with NaN statistics
            text = json.dumps(_json_safe(record), allow_nan=False)
        self._put(self._folder(folder) / "unit.json", text)
        card = self._card(folder, unit_card(self.config.site.title, build, layer_ctx["name"], unit, label, stats,
                                            images, list(dict.fromkeys(top_classes))))
        self._write(folder, "unit.html", {
            **self._common(folder, "unit", f"Unit {unit} · {layer_ctx['name']} · {cfg.title}", description,
                           crumbs + [(f"Unit {unit}", folder)], nav, card),
            "model": {**summary, "url": S.href(folder, S.page_file(S.model_dir(cfg.id)))},
            "layer": {**layer_ctx, "url": S.href(folder, S.page_file(S.layer_dir(cfg.id, layer_ctx["name"])))},
            "unit": {"id": unit, "label": label, "tags": list(note.tags) if note else [],
                     "note_html": note.html if note else "", "stats": stats_dict, "flags": flags,
                     "duplicates": duplicates, "effects": self._effects(build, effects),
                     "histogram_svg": _markup(histogram_svg(stats.histogram,
                                                            intervals=[(b["lo"], b["hi"]) for b in bands])),
                     "intervals": bands, "built_from": built_from, "featureviz": viz,
                     "legend_svg": "" if is_text else _markup(legend_svg(images.scale_top)),
                     "legend_bottom_svg": _markup(legend_svg((0.0, stats.min)))
                     if bottom and stats.min < 0 and not is_text else "",
                     "text": {"scale": images.scale, "tokens": top_tokens,
                              "windows": token_html.windows(build.inputs.text, {
                                  **{_anchor("top", i): c for i, c in enumerate(images.top, 1)},
                                  **{_anchor("bottom", i): c for i, c in enumerate(images.bottom, 1)}}, images.scale)}
                     if is_text else None,
                     "receptive": _receptive_text(rf, layout, build.text), "json_url": "unit.json", "top": top,
                     "bottom": bottom, "tiles_note": "" if is_text else _tiles_note(rf, layout)},
        })

    def _card(self, folder: str, card: Card) -> str | None:
        """Draw (or find in the cache) a page's preview card, link it beside the page; its site path.

        None without the site's public url: link previews fetch their image by absolute url, so a
        card no one could fetch is not drawn (the build summary says so)."""
        if not self.config.site.url:
            return None
        path = card_file(card, self.cache)
        target = f"{folder}/card{path.suffix}"
        self._place(path, target)
        return target

    def _effects(self, build: ModelBuild, effects: UnitEffects | None) -> dict | None:
        if effects is None:
            return None
        labels = build.model.labels
        name = shown_label if build.text else str
        return {"method": effects.method,
                "up": [{"label": name(labels[e.index]), "class": e.index, "value": e.value} for e in effects.up],
                "down": [{"label": name(labels[e.index]), "class": e.index, "value": e.value} for e in effects.down]}

    def _featureviz(self, viz: UnitViz | None, folder: str, stats) -> dict | None:
        """The unit's optimized images, linked into its folder, with what they reach."""
        if viz is None:
            return None

        def place(image, name: str) -> dict:
            self._place(image.path, f"{folder}/{name}")
            return {"src": name, "mean": image.mean, "peak": image.peak}

        out: dict = {"never_active": stats.max <= 0, "dataset_max": stats.max, "channel": None, "negative": None,
                     "neuron": None, "diverse": None}
        if viz.channel:
            out["channel"] = place(viz.channel, "featureviz.png")
        if viz.negative:
            out["negative"] = place(viz.negative, "featureviz-negative.png")
        if viz.neuron:
            out["neuron"] = place(viz.neuron, "featureviz-neuron.png")
        if viz.diverse:
            out["diverse"] = [place(image, f"featureviz-diverse-{i}.png") for i, image in enumerate(viz.diverse, 1)]
        return out

    def _sources(self, build: ModelBuild, folder: str, sources: UnitSources | None) -> dict | None:
        """The units of the layer before that build this one, linked, with their thumbnails."""
        if sources is None:
            return None
        cfg = build.model.config
        layer = build.layer(sources.layer)
        positions = self._positions.setdefault((cfg.id, layer.name), {u: i for i, u in enumerate(layer.units)})

        def link(effect) -> dict:
            unit_folder = S.unit_dir(cfg.id, layer.name, effect.index)
            has_thumb = build.thumb(layer.name, positions[effect.index]) is not None
            return {"unit": effect.index, "value": effect.value, "url": S.href(folder, S.page_file(unit_folder)),
                    "thumb": S.href(folder, f"{unit_folder}/thumb.jpg") if has_thumb else None,
                    "label": _unit_label(build, layer.name, effect.index, self.notes.get(unit_folder))}

        return {"layer": layer.name, "method": sources.effects.method,
                "layer_url": S.href(folder, S.page_file(S.layer_dir(cfg.id, layer.name))),
                "up": [link(e) for e in sources.effects.up], "down": [link(e) for e in sources.effects.down]}

    def _write_featureviz(self, build: ModelBuild, summary: dict, crumbs: list, layer) -> None:
        """Every feature visualization of one layer on one page, each linked to its unit."""
        cfg = build.model.config
        folder = S.featureviz_dir(cfg.id, layer.name)
        if self._skip(folder):
            return
        layer_folder = S.layer_dir(cfg.id, layer.name)
        made = build.featureviz[layer.name]
        units = []
        for unit in layer.units:
            viz = made.get(unit)
            if viz is None or viz.channel is None:
                continue
            unit_folder = S.unit_dir(cfg.id, layer.name, unit)
            self._place(viz.channel.path, f"{unit_folder}/featureviz.png")
            units.append({"id": unit, "url": S.href(folder, S.page_file(unit_folder)),
                          "image": S.href(folder, f"{unit_folder}/featureviz.png"), "peak": viz.channel.peak,
                          "label": _unit_label(build, layer.name, unit, self.notes.get(unit_folder))})
        self._write(folder, "featureviz.html", {
            **self._common(folder, "featureviz", f"Feature visualizations · {layer.name} · {cfg.title}",
                           f"Images optimized to excite {len(units)} units of {layer.name} in {cfg.title}",
                           crumbs + [(layer.name, layer_folder), ("feature visualizations", folder)],
                           {"prev": None, "next": None, "up": layer_folder}),
            "model": {**summary, "url": S.href(folder, S.page_file(S.model_dir(cfg.id)))},
            "layer": {"name": layer.name, "url": S.href(folder, S.page_file(layer_folder)),
                      "num_units": len(layer.units)},
            "units": units,
        })

    def _write_health(self, build: ModelBuild, summary: dict, crumbs: list, only: str | None) -> None:
        """The health page of the whole model (only=None) or of one layer."""
        cfg = build.model.config
        folder = S.health_dir(cfg.id, only)
        if self._skip(folder):
            return
        layers = []
        for layer in build.layout.layers:
            if only is not None and layer.name != only:
                continue
            health = build.health[layer.name]
            notes = {u: self.notes.get(S.unit_dir(cfg.id, layer.name, u)) for u in health.by_unit}

            thumbs = {u: build.thumb(layer.name, i) is not None for i, u in enumerate(layer.units)}

            def chip(unit: int, detail: str = "") -> dict:
                unit_folder = S.unit_dir(cfg.id, layer.name, unit)
                return {"id": unit, "url": S.href(folder, S.page_file(unit_folder)),
                        "thumb": S.href(folder, f"{unit_folder}/thumb.jpg") if thumbs[unit] else None,
                        "detail": detail,
                        "label": _unit_label(build, layer.name, unit, notes.get(unit))}

            groups = [{"flag": flag, "units": [chip(u, f"{health.saturation[u]:.0%} of inputs" if flag == "saturated"
                                                    else "") for u in health.units[flag]]}
                      for flag in FLAGS if health.units[flag] and flag != "duplicate"]
            layers.append({
                "name": layer.name, "url": S.href(folder, S.page_file(S.layer_dir(cfg.id, layer.name))),
                "health_url": S.href(folder, S.page_file(S.health_dir(cfg.id, layer.name))),
                "num_units": len(layer.units), "counts": {flag: len(health.units[flag]) for flag in FLAGS},
                "total": len(health.by_unit), "groups": groups,
                "duplicates": [{"unit": d.unit, "other": d.other, "similarity": d.similarity,
                                "unit_url": S.href(folder, S.page_file(S.unit_dir(cfg.id, layer.name, d.unit))),
                                "other_url": S.href(folder, S.page_file(S.unit_dir(cfg.id, layer.name, d.other)))}
                               for d in health.duplicates],
            })
        scope = only or "model"
        up = S.layer_dir(cfg.id, only) if only else S.model_dir(cfg.id)
        self._write(folder, "health.html", {
            **self._common(folder, "health", f"Health · {only + ' · ' if only else ''}{cfg.title}",
                           f"Dead, always-on, saturated, non-finite and duplicate units of {only or cfg.title}",
                           crumbs + [("health", folder)], {"prev": None, "next": None, "up": up}),
            "model": {**summary, "url": S.href(folder, S.page_file(S.model_dir(cfg.id))),
                      "num_inputs": len(build.inputs.usable)},
            "health": {"scope": scope, "definitions": [{"flag": f, "text": t} for f, t in DEFINITIONS.items()],
                       "layers": layers},
        })

    def _write_inputs(self, build: ModelBuild, summary: dict, crumbs: list) -> None:
        cfg = build.model.config
        listing = S.inputs_dir(cfg.id)
        if self._skip(listing):
            return
        crumbs = crumbs + [("inputs", listing)]
        entries = []
        corpus = build.inputs.text
        for item in build.inputs.usable:
            folder = S.input_dir(cfg.id, item.id)
            entries.append({"id": item.id, "title": item.title, "url": S.href(listing, S.page_file(folder)),
                            "thumb": None if corpus else S.href(listing, f"{folder}/input.jpg"),
                            "snippet": token_html.plain(corpus, item.span[0], min(item.span[1], item.span[0] + 24))
                            if corpus else None})
        self._write(listing, "inputs.html", {
            **self._common(listing, "inputs", f"Inputs · {cfg.title}",
                           f"The {len(entries)} inputs {cfg.title} was run on", crumbs,
                           {"prev": None, "next": None, "up": S.model_dir(cfg.id)}),
            "model": {**summary, "url": S.href(listing, S.page_file(S.model_dir(cfg.id)))}, "inputs": entries,
        })
    def _write_input_pages(self, build: ModelBuild, summary: dict, crumbs: list, worker: int, workers: int) -> None:
        """This worker's share of the input pages: each input and the units that respond most to it."""
        cfg = build.model.config
        listing = S.inputs_dir(cfg.id)
        crumbs = crumbs + [("inputs", listing)]
        layers = build.layout.layers
        maxima = [np.array([s.stats.max for s in a.summaries]) for a in build.acts.layers]
        corpus = build.inputs.text
        usable = build.inputs.usable
        for rank in range(worker, len(usable), workers):
            item = usable[rank]
            folder = S.input_dir(cfg.id, item.id)
            if self._skip(folder):
                continue
            if build.images:
                self._place(build.images.inputs[item.index], f"{folder}/input.jpg")
            units = []
            for layer, acts, peak_max in zip(layers, build.acts.layers, maxima):
                peaks = np.asarray(acts.peaks[item.index], dtype=np.float64)
                relative = np.where(peak_max > 0, peaks / np.where(peak_max > 0, peak_max, 1), -np.inf)
                for position in np.argsort(-relative, kind="stable")[:UNITS_PER_INPUT_LAYER]:
                    if not np.isfinite(relative[position]) or relative[position] <= 0:
                        continue
                    unit = layer.units[position]
                    unit_folder = S.unit_dir(cfg.id, layer.name, unit)
                    note = self.notes.get(unit_folder)
                    units.append({"layer": layer.name, "unit": unit, "url": S.href(folder, S.page_file(unit_folder)),
                                  "thumb": S.href(folder, f"{unit_folder}/thumb.jpg") if build.images else None,
                                  "value": float(peaks[position]), "relative": float(relative[position]),
                                  "label": _unit_label(build, layer.name, unit, note)})
            predictions = []
            if build.acts.predictions is not None:
                predictions = [{"label": build.model.labels[int(c)], "prob": float(p)}
                               for c, p in zip(build.acts.predictions[item.index], build.acts.probabilities[item.index])]
            nav = {"prev": S.input_dir(cfg.id, usable[rank - 1].id) if rank > 0 else None,
                   "next": S.input_dir(cfg.id, usable[rank + 1].id) if rank + 1 < len(usable) else None,
                   "up": listing}
            self._write(folder, "input.html", {
                **self._common(folder, "input", f"{item.title} · {cfg.title}",
                               f"Units of {cfg.title} that respond most to {item.title}",
                               crumbs + [(item.title, folder)], nav),
                "model": {**summary, "url": S.href(folder, S.page_file(S.model_dir(cfg.id)))},
                "input": {"id": item.id, "title": item.title, "image": None if corpus else "input.jpg",
                          "text": token_html.plain(corpus, *item.span) if corpus else None,
                          "source": item.source if corpus else Path(item.source).name + (f" {item.box}" if item.box
                                                                                        else ""),
                          "predictions": predictions, "units": units},
            })

    def _write_search(self, builds: list[ModelBuild]) -> None:
        """The search page and the index its box loads: every model, layer and unit."""
        found = []
        for build in builds:
            cfg = build.model.config
            note = self.notes.get(S.model_dir(cfg.id))
            model = SearchModel(cfg.title, S.model_dir(cfg.id), note.label if note else "")
            for layer in build.layout.layers:
                folder = S.layer_dir(cfg.id, layer.name)
                layer_note = self.notes.get(folder)
                found_layer = SearchLayer(layer.name, folder, layer_note.label if layer_note else "")
                for position, unit in enumerate(layer.units):
                    unit_note = self.notes.get(S.unit_dir(cfg.id, layer.name, unit))
                    words = [note_words(unit_note.text), *unit_note.tags] if unit_note else []
                    found_layer.units.append(SearchUnit(
                        unit, _unit_label(build, layer.name, unit, unit_note),
                        " ".join(words + self._unit_terms(build, layer.name, position)),
                        tuple(build.health[layer.name].flags(unit))))
                model.layers.append(found_layer)
            found.append(model)
        self.search_bytes = write_search_index(self.out, found)
        folder = "search"
        self._write(folder, "search.html", {
            **self._common(folder, "search", "Search", f"Search the models, layers and units of {self.config.site.title}",
                           [("search", folder)]),
        })

    def _unit_terms(self, build: ModelBuild, layer: str, position: int) -> list[str]:
        """What a unit is found by besides its notes: the classes or tokens it is about."""
        effects = build.effects.get(layer)
        terms = [build.model.labels[e.index] for e in effects[position].up[:3]] if effects else []
        if build.text:
            labels = build.inputs.text.labels
            # as typed: without the subword markers of WordPiece (##ing) and byte-level BPE (Ġthe)
            terms += [labels[token].strip().removeprefix("##").lstrip("Ġ▁")
                      for token, _, _ in build.text.layers[layer][position].tokens[:5]]
        elif build.acts.predictions is not None:
            terms += [self._prediction(build, e.input_index)["label"]
                      for e in build.images.layers[layer][position].top_examples[:3]]
        return list(dict.fromkeys(t for t in terms if t))

    def _write_404(self) -> None:
        context = self._common("", "404", "Page not found", "", [])
        if self.config.site.url:
            context["root"] = self.config.site.base_path  # 404 pages are served at any depth
        (self.out / "404.html").write_text(self.theme.render("404.html", **context), encoding="utf-8")

    def _write_sitemap(self) -> None:
        base = self.config.site.url
        urls = "".join(f"  <url><loc>{escape(base + (p + '/' if p else ''))}</loc></url>\n" for p in self.pages)
        (self.out / "sitemap.xml").write_text(
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">\n{urls}</urlset>\n', encoding="utf-8")


_SHARDING = None  # (writer, builds, models) while shards are written; forked workers inherit it


def _shard(job: tuple[int, int]) -> tuple[list[str], int, dict[str, frozenset[str]]]:
    """Write one shard of the unit and input pages; returns the pages written, files linked and
    the notes each page read."""
    writer, builds, models = _SHARDING
    shard = copy.copy(writer)  # its own counts, so the parent's stay whole when shards run in-process
    shard.pages, shard.files, shard.reads, shard.progress = [], 0, {}, None
    shard._write_shard(builds, models, *job)
    return shard.pages, shard.files, shard.reads


def _unit_label(build: ModelBuild, layer_name: str, unit: int, note: Note | None) -> str:
    """A note's label, else the class name for units of a classifier's output layer."""
    if note and note.label:
        return note.label
    layer = build.layer(layer_name)
    if layer.is_output and build.layout.labelled_output:
        label = build.model.labels[unit]
        return shown_label(label) if build.text else label
    return ""


def _anchor(kind: str, rank: int) -> str:
    """An example's id on its page: top examples are the page's examples (``#example-3``)."""
    return f"example-{rank}" if kind == "top" else f"{kind}-{rank}"


def _markup(svg: str):
    from markupsafe import Markup

    return Markup(svg)  # drawn by our own code from numbers, never from user text


def _json_safe(value):
    """NaN and infinity are not JSON: they become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def _tiles_note(rf, layout: Layout) -> str:
    """How to read a unit's tiles when they show the whole input rather than a crop."""
    sees_all = rf is None or (rf.size[0] >= rf.input_size[0] and rf.size[1] >= rf.input_size[1])
    if layout.kind == "tokens" and layout.grid is not None:
        prefix = ", ".join(dict.fromkeys(name.rstrip("0123456789 ") for name in layout.prefix))
        return ("Each tile is the whole input with the unit's value on every patch token laid over it; "
                + ("the outlined patch is where it peaked" if sees_all else "cropped to the peak patch's field")
                + (f". {prefix} is not a patch: a tile that peaked there says so under it." if prefix else "."))
    if sees_all and rf is not None and len(layout.positions) == 2 and layout.positions != (1, 1):
        return ("The unit sees the whole input, so each tile shows all of it with the unit's map laid over it; "
                "the outlined cell is where it peaked.")
    return ""


def _receptive_text(rf, layout: Layout, text=None) -> str:
    if text is not None:
        return ""  # a token's state depends on all text before it (recurrent) or the whole window
    if rf is None:
        return "whole input"
    if rf.size[0] >= rf.input_size[0] and rf.size[1] >= rf.input_size[1]:
        if layout.kind == "tokens":
            return "whole input: every patch reaches every token (attention)"
        return f"whole input ({rf.size[0]} × {rf.size[1]} px)"
    return f"{rf.size[0]} × {rf.size[1]} px" + (" (its patch)" if layout.kind == "tokens" else "")


def _human(count: int) -> str:
    if count >= 1e9:
        return f"{count / 1e9:.3g} B"
    if count >= 1e6:
        return f"{count / 1e6:.3g} M"
    if count >= 1e3:
        return f"{count / 1e3:.3g} k"
    return str(count)

