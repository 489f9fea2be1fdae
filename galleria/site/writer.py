"""Writes the site: every page rendered from the records the page builders turn into its view.

A model's unit and input pages are written as tasks (runs of a layer's units, shares of its
inputs) spread over every core, and under torchrun over every rank. A task reads its run's
records (site/assemble.py) and drops them when done, so the memory a site needs does not grow
with its units. What pages share (stored source images, a text corpus' tokens, the theme's
assets, the search index) is written once, as are the pages that list units: after their tasks.
"""
from __future__ import annotations

import copy
import os
import shutil
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path
from xml.sax.saxutils import escape

from galleria.cache import Cache
from galleria.config import Config
from galleria.distributed import ranks
from galleria.extract.labels import shown_labels
from galleria.forking import fork_map
from galleria.probe.script import probe_meta, write_probe_script
from galleria.records import LayerRecord, ModelBuild, UnitEntry, UnitRecord
from galleria.site import structure as S
from galleria.site import views as V
from galleria.site.assemble import VIZ_FILES, LayerRecords, input_records, model_record, responses, unit_label
from galleria.site.content import Note
from galleria.site.previews import group_card, unit_card, wants_card
from galleria.site.site_index import write_site_index
from galleria.site.search_index import SearchLayer, SearchModel, SearchUnit, note_words, write_search_index
from galleria.site.text_shards import shard_folder, write_text_shards
from galleria.site.theme import Theme
from galleria.visualize.cards import card_file

UNITS_PER_INPUT_LAYER = 6  # responsive units listed per layer on an input page
INPUT_SHARDS = 32  # a model's input pages are written in this many tasks (the same on every torchrun rank)
PAGES_PER_TASK = 256  # unit pages in one task: small enough that every core stays busy to the end


class _RecordedNotes:
    """The notes, remembering which keys were looked up (found or not) for the page being made."""

    def __init__(self, notes: dict[str, Note], reading: set[str]):
        self._notes, self._reading = notes, reading

    def get(self, key: str) -> Note | None:
        self._reading.add(key)
        return self._notes.get(key)


class SiteWriter:
    """Writes the whole site, or with ``only`` just those page folders, in place (``galleria serve``).

    With ``track_reads``, ``reads`` maps every page written to the note keys its content looked up,
    so that a note edit can re-render exactly the pages that show that note (``galleria serve``); a
    build does without (a few keys a page, 40 MB held at 50,000 units).
    """

    def __init__(self, config: Config, theme: Theme, notes: dict[str, Note], out: Path, cache: Cache,
                 progress=None, only: set[str] | None = None, search: list[SearchModel] | None = None,
                 track_reads: bool = False):
        self.config, self.theme, self.out, self.cache = config, theme, out, cache
        self._reading: set[str] = set()
        self.notes = _RecordedNotes(notes, self._reading)
        self.reads: dict[str, frozenset[str]] | None = {} if track_reads else None
        self.only = only
        self.progress = progress
        self.pages: list[str] = []  # folders of written pages, for the sitemap
        self.search: list[SearchModel] = []
        self._previous = {layer.folder: layer for model in search or () for layer in model.layers}  # see only
        self.search_bytes = 0  # size of the search index, for the build summary
        self._made: set[str] = set()  # folders already created: mkdir is a syscall per call

    # -- files ---------------------------------------------------------------------------

    def _folder(self, folder: str) -> Path:
        path = self.out / folder
        if folder not in self._made:
            path.mkdir(parents=True, exist_ok=True)
            self._made.add(folder)
        return path

    def _skip(self, folder: str) -> bool:
        """True when this run re-renders some pages only, and not this one."""
        return self.only is not None and folder not in self.only

    def _put(self, path: Path, text: str | Iterable[str]) -> None:
        """Write a file (text, or its pieces); rewriting a served site in place, through a rename,
        so that no visitor gets half a page."""
        target = path if self.only is None else path.with_name(f".{path.name}.tmp")
        try:
            with open(target, "w", encoding="utf-8") as file:
                if isinstance(text, str):
                    file.write(text)
                else:
                    file.writelines(text)  # a broken template fails part way through
        except BaseException:
            if target != path:
                target.unlink(missing_ok=True)
            raise
        if target != path:
            os.replace(target, path)

    def _write(self, page: V.Page, card: str | None = None, wide: bool = False) -> None:
        """Render and write a page; a ``wide`` one (a list of every unit of a layer) is written as
        it is rendered, so that its text is never held whole."""
        folder = page.folder
        context = {**V.common(self.config.site, page, card), **page.context}
        render = self.theme.stream if wide else self.theme.render
        self._put(self._folder(folder) / "index.html", render(page.template, **context))
        if self.reads is not None:
            self.reads[folder] = frozenset(self._reading)  # every note read since the previous page
        self._reading.clear()
        self.pages.append(folder)
        if self.progress is not None:
            self.progress.update(1)

    def _place(self, cached: Path, target: str) -> None:
        """Link a cached file into the output: instant, and costs no disk space."""
        folder, _, name = target.rpartition("/")
        dest = self._folder(folder) / name
        try:
            os.link(cached, dest)
        except FileExistsError:
            if os.path.samefile(cached, dest):  # placed already
                return
            dest.unlink()  # an older file of an in-place rebuild: a card whose label changed
            return self._place(cached, target)
        except OSError:
            shutil.copyfile(cached, dest)

    def _card(self, folder: str, card) -> str | None:
        """Draw (or find in the cache) a page's preview card, link it beside the page; its site path.

        None without the site's public url: link previews fetch their image by absolute url, so a
        card no one could fetch is not drawn (the build summary says so)."""
        if not self.config.site.url or card is None:
            return None
        path = card_file(card, self.cache)
        target = f"{folder}/card{path.suffix}"
        self._place(path, target)
        return target

    def page_count(self, builds: list[ModelBuild]) -> int:
        """Pages write() will produce: the index and search, then per model its page, layers, units and inputs."""
        return 2 + sum(3 + 2 * len(b.layout.layers) + sum(len(l.units) for l in b.layout.layers)
                       + len(b.inputs.usable) + sum(1 for v in b.featureviz.values() if v)
                       + (b.model.config.probe.enabled) for b in builds)

    # -- the site ------------------------------------------------------------------------

    def write(self, builds: list[ModelBuild]) -> None:
        """The site; under torchrun, rank 0 writes it with every rank writing a share of the unit
        and input pages (write_share) into the same folder."""
        if self.only is None:
            self.theme.copy_assets(self.out)
            if any(build.probe is not None for build in builds):
                runtime = self.theme.vendored("onnxruntime-web")
                target = self.out / S.PROBE_RUNTIME
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(runtime / "runtime.js", target)
                shutil.copyfile(runtime / "LICENSE", target.with_name("LICENSE"))
        models = [self._model_pages(build) for build in builds]
        self._reading.clear()  # the records' notes are marked on the pages that show them
        for build, model in zip(builds, models):
            self._write_model(build, model)
        if not self._skip(""):
            self._write(V.index_page(self.config.site, models))
        if not self._skip("search"):
            self.search_bytes = write_search_index(self.out, self.search)
            # the index holds every model's, layer's and unit's label and note words
            self._reading.update(key for model in self.search for layer in model.layers for key in
                                 (model.folder, layer.folder, *(f"{layer.folder}/{u.unit}" for u in layer.units)))
            self._write(V.search_page(self.config.site))
        if self.only is None:  # the rest depends on the theme and the page list, which notes never change
            write_site_index(self.out, [model.record for model in models])
            self._write_404()
            (self.out / ".nojekyll").write_text("")
            if self.config.site.url:
                self._write_sitemap()

    def write_share(self, builds: list[ModelBuild]) -> None:
        """A rank's share of the unit and input pages (not rank 0's: it calls write)."""
        for build in builds:
            model = self._model_pages(build)
            self._write_spread(build, model, {index: self._layer_shared(build, model, index)
                                              for index in range(len(model.record.layers))})

    def _model_pages(self, build: ModelBuild) -> V.ModelPages:
        """The model's record and what its pages share; its stored images and text placed once."""
        if self.only is None and ranks().first:
            for source, stored in build.sources.items():
                self._place(stored.path, S.source_file(source, stored.path))
            if build.text:
                write_text_shards(self.out, build.inputs.text, build.inputs.key)
            if build.probe is not None:
                self._write_probe_script(build)
        if build.text:
            V.shown_pieces(build.inputs.text)  # drawn once here (if the shards did not), before page writers fork
        return V.ModelPages(model_record(build, self.notes), input_records(build), build.inputs.text,
                            self.config.examples.tile_size, shard_folder(build.inputs.key) if build.text else None)

    def _write_probe_script(self, build: ModelBuild) -> None:
        """The model's live probe (<model>/probe.js): its graph, and what feeding it and ranking its units take."""
        cfg = build.model.config
        meta = probe_meta(cfg.id, build.layout, build.probe.feed, build.maxima, build.minima,
                          lambda layer, unit: self._label(build, layer, unit))
        path = self.out / S.probe_script(cfg.id)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_probe_script(path, meta, build.probe)

    def _write_model(self, build: ModelBuild, model: V.ModelPages) -> None:
        """Every page of one model: each layer's own pages, then its unit and input pages together on
        every core, then the layers' grids and the model's own pages."""
        record = model.record
        search = SearchModel(record.title, S.model_dir(record.id), record.label)
        self.search.append(search)
        shared = {index: self._write_layer(build, model, index) for index in range(len(record.layers))
                  if self._writes_layer(build, index)}
        rows = self._write_spread(build, model, shared, lambda index, entries: self._write_grid(
            build, model, entries, record.layers[index], shared[index][1]))
        for index, layer in enumerate(record.layers):
            folder = layer.url.rstrip("/")
            previous = {u.unit: u for u in self._previous[folder].units} if folder in self._previous else {}
            found = SearchLayer(layer.name, folder, layer.label)
            found.units = [rows.get((index, u)) or previous[u] for u in layer.units
                           if (index, u) in rows or u in previous]
            search.layers.append(found)
        if not self._skip(S.inputs_dir(model.id)):
            self._write(V.inputs_page(model))
        if record.probe is not None and not self._skip(S.probe_dir(model.id)):
            self._write(V.probe_page(model))
        self._write_health(build, model, None)
        folder = S.model_dir(record.id)
        note = self.notes.get(folder)
        if self._skip(folder):
            return
        self._reading.update(layer.url.rstrip("/") for layer in record.layers)  # their labels are in the table
        summary = model.summary
        card = self._card(folder, group_card(self.config.site.title, build, record.title,
                                             f"input {summary['input_size']}", record.label,
                                             f"{summary['num_layers']} layers · {summary['num_units']:,} units · "
                                             f"{summary['params']} parameters", build.layout.layers, model.inputs))
        self._write(V.model_page(model, note), card)

    def _write_spread(self, build: ModelBuild, model: V.ModelPages, shared: dict[int, tuple],
                      finished=None) -> dict:
        """The model's unit pages (runs of PAGES_PER_TASK units of the layers in ``shared``) and its
        input pages, spread over every core; returns the units' search rows by (layer index, unit).
        As soon as a layer's runs are all written (by every rank), ``finished(index, entries)`` gets
        its grid's entries in unit order, and they are dropped."""
        spread = fork_map if self.only is None else map  # re-rendering a few pages: no processes to start
        shards = 1 if self.only is not None else INPUT_SHARDS
        tasks = [(None, (shard, shards)) for shard in range(shards)]  # input pages first: the runs even out the end
        tasks += [(index, run) for index in shared for run in build.acts.spans(index, PAGES_PER_TASK)]
        left = Counter(index for index, _ in tasks if index is not None)  # each layer's runs not yet written
        if self.only is None:
            tasks = ranks().mine(tasks)
        rows, runs = {}, defaultdict(dict)

        def take(result) -> None:
            (index, run), pages, reads, found, entries = result
            self.pages.extend(pages)
            if reads:
                self.reads.update(reads)
            rows.update(((index, unit), row) for unit, row in found.items())
            if self.progress is not None:
                self.progress.update(len(pages))
            if index is not None and finished is not None:  # (a rank's share: rank 0 writes the grids)
                runs[index][run.start] = entries
                left[index] -= 1
                if not left[index]:
                    written = runs.pop(index)
                    finished(index, [entry for start in sorted(written) for entry in written[start]])

        done = []
        for result in spread(lambda task: _write_task(self, build, model, shared, task), tasks):
            take(result)
            if ranks().world > 1:
                done.append(result)
        if self.only is None and ranks().world > 1:  # the other ranks' shares
            for rank, share in enumerate(ranks().gather(done)):
                if rank != ranks().rank:
                    for result in share:
                        take(result)
        return rows

    # -- a layer -------------------------------------------------------------------------

    def _writes_layer(self, build: ModelBuild, index: int) -> bool:
        """Whether any page of the layer is written: always, unless re-rendering pages not of it."""
        if self.only is None:
            return True
        cfg, layer = build.model.config, build.layout.layers[index]
        return bool(self.only & {S.layer_dir(cfg.id, layer.name), S.featureviz_dir(cfg.id, layer.name),
                                 S.health_dir(cfg.id, layer.name),
                                 *(S.unit_dir(cfg.id, layer.name, u) for u in layer.units)})

    def _write_layer(self, build: ModelBuild, model: V.ModelPages, index: int) -> tuple[dict, str | None]:
        """A layer's feature visualization and health pages and its thumbnails' and related units' scripts; returns what
        each of its unit pages shows of it (_layer_shared)."""
        layer = model.record.layers[index]
        folder = layer.url.rstrip("/")
        if self.only is None and layer.name in build.thumbs:
            (self._folder(folder) / "thumbs.js").write_text(
                V.thumbs_script(model, folder, layer.units, build.thumbs[layer.name]), encoding="utf-8")
        if self.only is None and build.related.get(layer.name):
            (self._folder(folder) / "related.js").write_text(V.related_script(
                model, folder, layer.units, build.related[layer.name],
                lambda name, unit: self._label(build, name, unit)), encoding="utf-8")
        self._write_featureviz(build, model, layer)
        self._write_health(build, model, layer)
        return self._layer_shared(build, model, index)

    def _layer_shared(self, build: ModelBuild, model: V.ModelPages, index: int) -> tuple[dict, str | None]:
        """What each unit page of a layer shows of it: its facts, and its preview card for pages
        without one of their own."""
        layer = model.record.layers[index]
        folder = layer.url.rstrip("/")
        # what every unit page says of the layer: its links are the same from each unit's folder
        facts = V.layer_facts(layer, S.unit_dir(model.id, layer.name, 0), self.notes.get(folder),
                              self.config.examples.tile_size)
        self._reading.discard(folder)  # unit pages do not show the layer's note; its grid reads it again
        card = self._card(folder, group_card(self.config.site.title, build, layer.name, model.title, layer.label,
                                             f"{len(layer.units):,} units · {layer.layout.describe()}",
                                             [build.layer(layer.name)], model.inputs))
        return facts, card

    def _write_run(self, build: ModelBuild, model: V.ModelPages, index: int, run: range,
                   shared: tuple[dict, str | None]) -> tuple[dict[int, SearchUnit], list[UnitEntry]]:
        """A run of one layer's unit pages, its records read here; their search rows, and their
        entries in the layer's grid (none when the grid is not written)."""
        records = LayerRecords(build, index, self.notes, self.config.examples, run)
        found = self._write_units(build, model, records, *shared)
        entries = [] if self._skip(S.layer_dir(model.id, records.info.name)) else \
            [records.entry(position) for position in run]
        self._reading.clear()  # the grid's page says it reads its units' notes (_write_grid)
        return found, entries

    def _label(self, build: ModelBuild, layer: str, unit: int) -> str:
        return unit_label(build, layer, unit, self.notes.get(S.unit_dir(build.model.config.id, layer, unit)))

    def _write_grid(self, build: ModelBuild, model: V.ModelPages, entries: list[UnitEntry],
                    layer: LayerRecord, card: str | None) -> None:
        """The layer's grid of units (``entries``, as records.entry made them); ``card`` its preview."""
        folder = layer.url.rstrip("/")
        if self._skip(folder):
            return
        for entry in entries:
            if entry.featureviz is not None:
                made = build.featureviz[layer.name][entry.unit]
                self._place(made.channel.path, f"{S.unit_dir(model.id, layer.name, entry.unit)}/{entry.featureviz}")
        self._reading.update(S.unit_dir(model.id, layer.name, entry.unit) for entry in entries)  # their labels
        self._write(V.layer_page(model, layer, self.notes.get(folder), entries, self.config.examples.tile_size), card,
                    wide=True)

    def _write_units(self, build: ModelBuild, model: V.ModelPages, records: LayerRecords, facts: dict,
                     layer_card: str | None) -> dict[int, SearchUnit]:
        """The unit pages of ``records``; what the search index holds of each. A unit page without a
        card of its own previews as its layer (``layer_card``)."""
        layer = records.info
        found = {}
        for position in records.span:
            unit = layer.units[position]
            folder = S.unit_dir(model.id, layer.name, unit)
            if self._skip(folder):
                continue
            record = records.unit(position)
            note = self.notes.get(folder)
            self._put(self._folder(folder) / "unit.json", record.to_json())
            made = build.featureviz.get(layer.name, {}).get(unit)
            if made is not None:
                for kind, file in VIZ_FILES.items():
                    if getattr(made, kind) is not None:
                        self._place(getattr(made, kind).path, f"{folder}/{file}")
                for i, image in enumerate(made.diverse or (), start=1):
                    self._place(image.path, f"{folder}/featureviz-diverse-{i}.png")
            built_from = record.built_from
            labels = {} if built_from is None else {e.index: self._label(build, built_from.layer, e.index)
                                                     for e in built_from.up + built_from.down}
            page = V.unit_page(record, model, facts, note, labels,
                               layer.units[position - 1] if position > 0 else None,
                               layer.units[position + 1] if position + 1 < len(layer.units) else None)
            card = None
            if wants_card(self.config.site.cards, record, note):
                card = self._card(folder, unit_card(self.config.site.title, build, model, record,
                                                    page.context["about"]))
            self._write(page, card or layer_card)
            words = [note_words(note.text), *note.tags] if note else []
            found[unit] = SearchUnit(unit, record.label, " ".join(words + _unit_terms(record, model)),
                                     record.flags)
        return found

    def _write_featureviz(self, build: ModelBuild, model: V.ModelPages, layer: LayerRecord) -> None:
        """Every feature visualization of one layer on one page, each linked to its unit."""
        folder = S.featureviz_dir(model.id, layer.name)
        if not layer.featureviz or self._skip(folder):
            return
        made = build.featureviz[layer.name]
        for unit, _ in layer.featureviz:
            self._place(made[unit].channel.path, f"{S.unit_dir(model.id, layer.name, unit)}/{VIZ_FILES['channel']}")
        labels = {unit: self._label(build, layer.name, unit) for unit, _ in layer.featureviz}
        self._write(V.featureviz_page(model, layer, labels, VIZ_FILES["channel"]))

    def _write_health(self, build: ModelBuild, model: V.ModelPages, scope: LayerRecord | None) -> None:
        """The health page of the whole model (scope None) or of one layer."""
        if self._skip(S.health_dir(model.id, scope.name if scope else None)):
            return
        layers = []
        for layer in model.record.layers:
            if scope is None or layer.name == scope.name:
                health = build.health[layer.name]
                shown, pairs = V.health_shown(health, scope)
                listed = {u for units in shown.values() for u in units} | {u for d in pairs for u in (d.unit, d.other)}
                layers.append((layer, health, {u: self._label(build, layer.name, u) for u in sorted(listed)}))
        self._write(V.health_page(model, scope, layers), wide=True)

    # -- inputs ----------------------------------------------------------------------------

    def _write_input_pages(self, build: ModelBuild, model: V.ModelPages, worker: int, workers: int) -> None:
        """This worker's share of the input pages: each input and the units that respond most to it."""
        usable = list(model.inputs.values())
        mine = [rank for rank in range(worker, len(usable), workers)
                if not self._skip(S.input_dir(model.id, usable[rank].id))]
        rows = [usable[rank].index for rank in mine]
        ranked = responses(build, [build.acts.peaks(i)[rows] for i in range(len(build.layout.layers))],
                           UNITS_PER_INPUT_LAYER) if rows else []
        for rank, found in zip(mine, ranked):
            record = usable[rank]
            labels = {(layer, r.unit): self._label(build, layer, r.unit) for layer, chosen in found for r in chosen}
            item = build.inputs.items[record.index]
            source = item.source if build.text else Path(item.source).name + (f" {item.box}" if item.box else "")
            self._write(V.input_page(model, record, found, labels, usable[rank - 1].id if rank > 0 else None,
                                     usable[rank + 1].id if rank + 1 < len(usable) else None, source))

    # -- site-wide pages ---------------------------------------------------------------------

    def _write_404(self) -> None:
        context = V.common(self.config.site, V.not_found_page())
        if self.config.site.url:
            context["root"] = self.config.site.base_path  # 404 pages are served at any depth
        (self.out / "404.html").write_text(self.theme.render("404.html", **context), encoding="utf-8")

    def _write_sitemap(self) -> None:
        base = self.config.site.url
        pages = sorted(self.pages)  # in the same order whatever order the workers finished them in
        urls = "".join(f"  <url><loc>{escape(base + (p + '/' if p else ''))}</loc></url>\n" for p in pages)
        (self.out / "sitemap.xml").write_text(
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">\n{urls}</urlset>\n', encoding="utf-8")


def _write_task(writer: SiteWriter, build: ModelBuild, model: V.ModelPages, shared: dict[int, tuple],
                task: tuple[int | None, object]) -> tuple:
    """One task of a model's spread pages: ``(layer index, run of units)``, or ``(None, (shard, shards))``
    for a shard of its input pages. Returns the task, the pages written, the note keys each read,
    the units' search rows and their grid entries."""
    worker = copy.copy(writer)  # its own lists, so the parent's stay whole when tasks run in-process
    worker.pages, worker.reads, worker.progress = [], None if writer.reads is None else {}, None
    worker._reading = set()
    worker.notes = _RecordedNotes(writer.notes._notes, worker._reading)
    index, part = task
    if index is None:
        worker._write_input_pages(build, model, *part)
        return task, worker.pages, worker.reads, {}, []
    found, entries = worker._write_run(build, model, index, part, shared[index])
    return task, worker.pages, worker.reads, found, entries


def _unit_terms(record: UnitRecord, model: V.ModelPages) -> list[str]:
    """What a unit is found by besides its notes: its automatic labels that are shown, and the
    classes or tokens it is about."""
    terms = [a.label for a in shown_labels(record.auto_labels)]
    terms += [e.label for e in record.effects.up[:3]] if record.effects else []
    if record.top_tokens:
        # as typed: without the subword markers of WordPiece (##ing) and byte-level BPE (Ġthe)
        terms += [t.strip().removeprefix("##").lstrip("Ġ▁") for t, _, _, _ in record.top_tokens[:5]]
    else:
        terms += [model.by_id[e.input].predictions[0][0] for e in record.top[:3] if model.by_id[e.input].predictions]
    return list(dict.fromkeys(t for t in terms if t))
