"""galleria.Gallery: the build's pipeline on a model object and inputs in memory, for notebooks.

No YAML: the arguments become the same settings site.yaml would hold (checked by the same code,
errors naming the argument as site.yaml would name the key), the model is used as it is (a copy
is watched, never the caller's), and the inputs are written once into the cache, named by their
content, so that the stages read them as they read any input set. Everything after that is the
build's own: the same cache, records and views, a unit's inline view rendered from the unit
page's own template block.
"""
from __future__ import annotations

import hashlib
import io
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import replace
from functools import cached_property
from pathlib import Path

from markupsafe import escape

from galleria.cache import Cache
from galleria.config import TOP
from galleria.errors import UsageError

SETTINGS = tuple(key for key in TOP if key not in ("site", "models", "inputs"))  # site.yaml's sections a Gallery takes
PROBE_SHOWN = 12  # units per layer a probe's answer lists, as the page's probe lists them


class Gallery:
    """A model's gallery, built in memory: ``gallery.unit(layer, index)``, ``gallery.layer(name)``
    and ``gallery.probe(image_or_text)`` show inline in Jupyter, JupyterLab and VS Code;
    ``gallery.save(folder)`` writes the site ``galleria build`` would.

    ``model``: a torch.nn.Module. ``inputs``: a folder of images (or of .txt files), or a list (or a
    dict by name) of PIL images, HxWxC arrays, CxHxW tensors or image files, or strings for a text
    model. ``layers``: names or globs of its modules, or site.yaml's layer entries (dicts).
    ``preprocessing`` (image models: size, mean, std), ``labels`` (class names, a file or
    torchvision:imagenet) and ``tokenizer`` (text models: chars:VOCAB.json or a tokenizer.json)
    are a model's keys of site.yaml; ``window`` and ``overlap`` (text) and ``crops`` (images) an
    input set's; ``settings`` are its sections (examples, extract, attribution, featureviz, probe,
    seed). Feature visualization is off unless ``featureviz`` asks for it: it costs seconds a unit.
    """

    def __init__(self, model, inputs, layers: Iterable, *, id: str = "model", title: str | None = None,
                 preprocessing: Mapping | None = None, labels=None, tokenizer: str | None = None,
                 window: int | None = None, overlap: int | None = None, crops: Mapping | None = None,
                 cache: str | os.PathLike = ".galleria-cache", notes: str | os.PathLike | None = None,
                 quiet: bool = False, **settings):
        import torch

        from galleria.commands.build import gather
        from galleria.config import config_from_data
        from galleria.records import BuildReport

        if not isinstance(model, torch.nn.Module):
            raise UsageError(f"Gallery: model is a {type(model).__name__}, not a torch.nn.Module")
        unknown = sorted(set(settings) - set(SETTINGS))
        if unknown:
            raise UsageError(f"Gallery: unknown setting '{unknown[0]}' (known: {', '.join(SETTINGS)})")
        cache = Path(cache).resolve()
        text = tokenizer is not None
        folder = stored_inputs(inputs, text, cache)
        entry = {"id": id, "title": title or type(model).__name__, "layers": list(layers),
                 **{key: value for key, value in (("preprocessing", preprocessing), ("labels", labels),
                                                  ("tokenizer", tokenizer)) if value is not None}}
        input_set = {"id": "inputs", "type": "text" if text else "image", "path": str(folder),
                     **({"include": ["*.txt"]} if text else {}),
                     **{key: value for key, value in (("window", window), ("overlap", overlap), ("crops", crops))
                        if value is not None}}
        data = {"site": {"title": title or type(model).__name__, "cache_dir": str(cache),
                         "content_dir": str(Path(notes).resolve() if notes is not None else folder / "notes")},
                "models": [entry], "inputs": [input_set], "featureviz": False, **settings}
        self.config = config_from_data(data, Path.cwd() / "Gallery", "Gallery",
                                       {id: f"object:{type(model).__module__}.{type(model).__qualname__}"})
        self.report = BuildReport()
        self._model = model
        self._gathered = gather(self.config, self.report, quiet, objects={id: model})
        self.build = self._gathered.builds[0]

    # -- what the site's pages are made from --------------------------------------------------

    @cached_property
    def _pages(self):
        """The model as its pages see it; without the live probe, which a notebook answers itself."""
        from galleria.site import views as V
        from galleria.site.assemble import input_records, model_record
        from galleria.site.text_shards import shard_folder

        build = self.build
        record = replace(model_record(build, self._gathered.notes), probe=None)
        return V.ModelPages(record, input_records(build), build.inputs.text, self.config.examples.tile_size,
                            shard_folder(build.inputs.key) if build.text else None)

    @cached_property
    def _files(self) -> dict[str, Path]:
        """Where a site's images would be, and the cached files holding them."""
        from galleria.site import structure as S
        from galleria.site.assemble import VIZ_FILES

        files = {S.source_file(source, stored.path): stored.path for source, stored in self.build.sources.items()}
        for layer, made in self.build.featureviz.items():
            for unit, viz in made.items():
                folder = S.unit_dir(self.build.model.config.id, layer, unit)
                for kind, name in VIZ_FILES.items():
                    if getattr(viz, kind) is not None:
                        files[f"{folder}/{name}"] = getattr(viz, kind).path
        return files

    def _layer_index(self, name: str) -> int:
        names = [layer.name for layer in self.build.layout.layers]
        if name not in names:
            raise UsageError(f"no layer '{name}' in this gallery (its layers: {', '.join(names)})")
        return names.index(name)

    def _inline(self, page) -> str:
        from galleria.site.inline import inline_view

        return inline_view(self._gathered.theme, self.config.site, page, self._files)

    # -- the public face ------------------------------------------------------------------------

    @property
    def layers(self) -> list[str]:
        """The gallery's layers, by name."""
        return [layer.name for layer in self.build.layout.layers]

    def unit(self, layer: str, index: int) -> "UnitView":
        """A unit's record (what its unit.json holds), shown inline as its unit page shows it."""
        from galleria.site import structure as S
        from galleria.site import views as V
        from galleria.site.assemble import LayerRecords, unit_label

        at = self._layer_index(layer)
        units = self.build.layout.layers[at].units
        if index not in units:
            raise UsageError(f"layer '{layer}' shows no unit {index} (its units: {_ranges(units)})")
        position = units.index(index)
        record = LayerRecords(self.build, at, self._gathered.notes, self.config.examples,
                              range(position, position + 1)).unit(position)
        model = self._pages
        facts = {**V.layer_facts(model.record.layers[at], S.unit_dir(model.id, layer, index), None,
                                 self.config.examples.tile_size), "related": False}  # related.js is a site's
        found = record.built_from
        labels = {} if found is None else {e.index: unit_label(self.build, found.layer, e.index, None)
                                           for e in found.up + found.down}
        page = V.unit_page(record, model, facts, None, labels, None, None)
        return UnitView(record, lambda: self._inline(page))

    def layer(self, name: str) -> "Shown":
        """A layer's grid of units, as its layer page shows it."""
        from galleria.site import views as V
        from galleria.site.assemble import LayerRecords
        from galleria.site.writer import PAGES_PER_TASK

        at = self._layer_index(name)
        entries = []
        for span in self.build.acts.spans(at, PAGES_PER_TASK):
            records = LayerRecords(self.build, at, self._gathered.notes, self.config.examples, span)
            entries += [records.entry(position) for position in span]
        page = V.layer_page(self._pages, self._pages.record.layers[at], None, entries, self.config.examples.tile_size)
        return Shown(f"{len(entries):,} units of {name}", lambda: self._inline(page))

    def probe(self, item) -> "ProbeAnswer":
        """The units that respond most to ``item`` (an image, an image file, or a string for a text
        model), per layer, relative to the largest value each reached on the gallery's inputs."""
        answer = self._answers.answer(self.build.model.config.id, _probe_bytes(item, self.build.text))
        return ProbeAnswer(self, answer)

    @cached_property
    def _answers(self):
        """The build's PyTorch probe (as galleria serve answers it), its copy of the model kept."""
        from galleria.probe.answer import ProbeAnswers
        from galleria.site.assemble import unit_label

        return ProbeAnswers(self.config.root, [self.build], lambda build, layer, unit: unit_label(
            build, layer, unit, None), {self.build.model.config.id: self._model})

    def save(self, folder: str | os.PathLike = "site", *, site_url: str | None = None) -> Path:
        """Write the gallery's site into ``folder`` (replaced whole once written, as a build does);
        returns its path."""
        from galleria.commands.build import check_ours, write_site
        from galleria.config import with_site_url
        from galleria.records import BuildReport

        out = Path(folder).resolve()
        check_ours(out, "output")
        config = with_site_url(self.config, site_url, "site_url")
        write_site(config, self._gathered, out, f"gallery {self.build.model.key}", BuildReport(), quiet=True)
        return out

    def __repr__(self) -> str:
        layers = self.build.layout.layers
        return (f"<galleria.Gallery of {self.build.model.config.title}: {len(layers)} layers, "
                f"{sum(len(l.units) for l in layers):,} units, {len(self.build.inputs.usable):,} inputs>")


class Shown:
    """Something a notebook shows as HTML, drawn when it is first shown."""

    def __init__(self, text: str, html):
        self._text, self._html = text, html

    def _repr_html_(self) -> str:
        if callable(self._html):
            self._html = self._html()
        return self._html

    def __repr__(self) -> str:
        return f"<{self._text}>"


class UnitView(Shown):
    """A unit's record (records.UnitRecord: its fields read through), shown inline as its page."""

    def __init__(self, record, html):
        stats = record.stats
        super().__init__(f"unit {record.unit} of {record.layer}" + (f" ({record.label})" if record.label else "")
                         + f": max {stats.max:.4g}, active on {stats.frac_active:.1%}", html)
        self.record = record

    def __getattr__(self, name: str):
        if name.startswith("__") or name == "record":
            raise AttributeError(name)
        return getattr(self.record, name)


class ProbeAnswer(Shown):
    """The units that respond most to one input: ``strongest`` per layer, as (unit, value, share of
    its largest value on the gallery's inputs, label)."""

    def __init__(self, gallery: Gallery, answer: dict):
        import numpy as np

        from galleria.site.assemble import responses, unit_label

        build = gallery.build
        self.values = {  # layer -> (units x positions) values
            info.name: np.asarray(found["values"], dtype=np.float64).reshape(len(info.units), found["positions"])
            for info, found in zip(build.layout.layers, answer["layers"])}
        peaks = [values.max(axis=1)[None] for values in self.values.values()]  # one input: [1, units] a layer
        ranked = dict(responses(build, peaks, PROBE_SHOWN)[0])
        self.strongest: dict[str, list[tuple[int, float, float, str]]] = {
            name: [(r.unit, r.value, r.relative, unit_label(build, name, r.unit, None)) for r in ranked.get(name, ())]
            for name in self.values}
        self.pieces = answer.get("pieces")
        self.truncated = answer.get("truncated", False)
        super().__init__(f"probe: {len(self.strongest)} layers", self._table)

    def _table(self) -> str:
        """Per layer, its units that respond most, each its share of its own largest value."""
        from galleria.site.inline import VIEW_CLASS

        rows = []
        for layer, found in self.strongest.items():
            units = "".join(f'<li><b>{unit}</b>{f" {escape(label)}" if label else ""} '
                            f'<span class="muted">{value:.4g} · {share:.0%} of its max</span></li>'
                            for unit, value, share, label in found)
            rows.append(f'<section><h3 class="section-title">{escape(layer)}</h3><ol class="probe-units">{units}</ol></section>')
        cut = '<p class="muted">The text was cut to one window.</p>' if self.truncated else ""
        return (f'<div class="{VIEW_CLASS}"><p>The units that respond most to this input, each relative to the '
                f'largest value it reached on the gallery\'s inputs.</p>{cut}{"".join(rows)}</div>')


def stored_inputs(inputs, text: bool, cache: Path) -> Path:
    """The inputs as a folder the build reads: a folder given is used as it is; anything else is
    written once into the cache (``inputs/<hash of their content>/``), each image as a PNG (an image
    file as it is), each text as a .txt file."""
    if isinstance(inputs, (str, os.PathLike)) and not (text and isinstance(inputs, str)):
        folder = Path(inputs)
        if not folder.is_dir():
            raise UsageError(f"Gallery: inputs '{inputs}' is not a folder (give a folder, or a list of "
                             + ("strings)" if text else "images or image files)"))
        return folder.resolve()
    if isinstance(inputs, Mapping):
        named = dict(inputs)
    else:
        named = {}
        for number, item in enumerate(inputs):
            name = Path(item).name if isinstance(item, os.PathLike) or (isinstance(item, str) and not text) \
                else f"{'text' if text else 'image'}-{number:04d}"
            named[name if name not in named else f"{number:04d}-{name}"] = item
    if not named:
        raise UsageError("Gallery: no inputs given")
    files = {}
    for name, item in named.items():
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", str(name)).strip("-") or "input"
        files.update([_encoded(stem, item, text)])
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    store, key = Cache(cache), digest.hexdigest()[:16]
    if store.entry("inputs", key) is None:
        with store.writing("inputs", key) as partial:
            for name, data in files.items():
                (partial / name).write_bytes(data)
    return store.entry("inputs", key)


def _encoded(stem: str, item, text: bool) -> tuple[str, bytes]:
    """One input as a file's name and bytes."""
    if text:
        if not isinstance(item, str):
            raise UsageError(f"Gallery: input '{stem}' is a {type(item).__name__}; a text model's inputs are strings")
        return (stem if stem.endswith(".txt") else f"{stem}.txt"), item.encode("utf-8")
    if isinstance(item, (str, os.PathLike)):
        path = Path(item)
        if not path.is_file():
            raise UsageError(f"Gallery: '{item}' is a folder: give its images, or the folder alone as inputs"
                             if path.is_dir() else f"Gallery: no image file '{item}'")
        return path.name if stem == path.name else stem + path.suffix, path.read_bytes()
    buffer = io.BytesIO()
    _as_image(stem, item).save(buffer, format="PNG")
    return (stem if stem.endswith(".png") else f"{stem}.png"), buffer.getvalue()


def _as_image(stem: str, item):
    """A PIL image from a PIL image, an HxW(xC) array (uint8, or floats in 0..1) or a CxHxW tensor."""
    import numpy as np
    from PIL import Image

    if isinstance(item, Image.Image):
        return item
    if hasattr(item, "detach"):  # a torch tensor: channels first
        item = item.detach().cpu().numpy()
        if item.ndim == 3:
            item = item.transpose(1, 2, 0)
    array = np.asarray(item)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise UsageError(f"Gallery: input '{stem}' has shape {array.shape}; give HxW, HxWx3 or 3xHxW (a tensor)")
    if array.dtype != np.uint8:
        array = (np.clip(array.astype(np.float64), 0, 1) * 255).round().astype(np.uint8)
    return Image.fromarray(array)


def _probe_bytes(item, text: bool) -> bytes:
    """What a probe sends the model: a text's bytes, or an image file's (any image made a PNG)."""
    if text:
        if not isinstance(item, str):
            raise UsageError(f"Gallery.probe: a text model reads a string, not a {type(item).__name__}")
        return item.encode("utf-8")
    return _encoded("probe", item, False)[1]


def _ranges(units: tuple[int, ...]) -> str:
    """Unit numbers as ranges: 0-63, 100."""
    parts, start = [], None
    for i, unit in enumerate(units):
        if start is None:
            start = unit
        if i + 1 == len(units) or units[i + 1] != unit + 1:
            parts.append(str(start) if start == unit else f"{start}-{unit}")
            start = None
    return ", ".join(parts)
