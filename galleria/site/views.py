"""Page builders: each turns records into what one kind of page shows (its template's context).

A builder knows records and links, never the stages that made the records; the writer renders
what the builders return and writes it. Markup that repeats on every page in large numbers (an
example's tile, a text example's tokens) is built here as escaped HTML strings: as template
loops they would be most of a build's time.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from markupsafe import Markup, escape

from galleria import __version__
from galleria.config import SiteConfig
from galleria.extract.health import DEFINITIONS, FLAGS, LayerHealth
from galleria.extract.labels import SHOWN, shown_labels
from galleria.records import (AutoLabel, EffectsRecord, EffectsTable, ExampleRecord, Histogram, ImageShown, InputRecord, LayerRecord, ModelRecord,
                              Response, TextShown, UnitEntry, UnitRecord, UnitStats)
from galleria.site import structure as S
from galleria.site.content import Note
from galleria.site.search_index import script_json
from galleria.visualize.histogram_svg import density_svg, histogram_svg
from galleria.visualize.tokens import visible

THUMB = 64  # px: unit thumbnails in grids and lists
CHIP = 32  # px: thumbnails in "built from" and health chips


@dataclass
class Page:
    """One page to write: where, with which template, its title and place in the site, and what
    its template shows (``context``)."""

    folder: str
    template: str
    kind: str
    title: str
    description: str
    crumbs: list[tuple[str, str]]  # (title, folder) from below the site's home down to this page
    nav: dict  # "prev", "next", "up": folders of neighbouring pages, or None
    context: dict


@dataclass
class ModelPages:
    """What every page of one model shares: its record, its inputs as records, its summary."""

    record: ModelRecord
    inputs: dict[int, InputRecord]  # by input index
    corpus: object | None = None  # text models: the TextCorpus
    tile: int = 112  # px: example tiles
    shards: str | None = None  # text models: the site folder of the corpus' token shards
    by_id: dict[str, InputRecord] = field(init=False)
    summary: dict = field(init=False)  # what index, unit, input and other pages say about the model

    def __post_init__(self) -> None:
        self.by_id = {record.id: record for record in self.inputs.values()}
        record = self.record
        self.summary = {
            "id": record.id, "title": record.title, "description": record.description,
            "num_layers": len(record.layers), "num_units": sum(len(l.units) for l in record.layers),
            "params": human_count(record.params),
            "input_size": f"windows of {record.window} tokens" if record.window is not None else
            " × ".join(map(str, record.input_size)),
            "images": self.corpus is None,  # unit links get thumbnails from their layer's thumbs.js
        }

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def title(self) -> str:
        return self.record.title

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) of what an image model sees."""
        return self.record.input_size[:2] if self.record.input_size else (0, 0)

    def about(self, folder: str) -> dict:
        """The model's summary as a page in ``folder`` links it."""
        return {**self.summary, "url": S.href(folder, S.page_file(self.record.url.rstrip("/")))}

    def crumbs(self) -> list[tuple[str, str]]:
        return [(self.title, S.model_dir(self.id))]

    def probe(self, folder: str, layer: str | None = None) -> dict | None:
        """The live probe as a page in ``folder`` runs it (galleria-probe.js), on one layer or on all of them."""
        found = self.record.probe
        if found is None:
            return None
        names = [l.name for l in self.record.layers]
        return {"src": S.href(folder, S.probe_script(self.id)), "layer": names.index(layer) if layer is not None else None,
                "kind": found.kind, "in_browser": found.in_browser, "megabytes": found.bytes / 1e6,
                "precision": found.precision, "fidelity": found.fidelity, "left_out": found.left_out,
                "page_url": S.href(folder, S.page_file(S.probe_dir(self.id)))}


def common(site: SiteConfig, page: Page, card: str | None = None) -> dict:
    """What every page's base template needs; ``card`` is the site path of its preview image."""
    folder = page.folder
    canonical = f"{site.url}{folder}/" if site.url and folder else site.url
    return {
        "site": {"title": site.title, "description": site.description, "url": site.url},
        "page": {"title": page.title, "description": page.description or site.description, "kind": page.kind,
                 "canonical": canonical, "image": f"{site.url}{card}" if card else None,
                 "breadcrumbs": [{"title": t, "url": S.href(folder, S.page_file(f))} for t, f in page.crumbs]},
        "root": S.root(folder),
        "nav": {k: (S.href(folder, S.page_file(page.nav.get(k))) if page.nav.get(k) is not None else None)
                for k in ("prev", "next", "up")},
        "generator": f"galleria {__version__}",
    }


def human_count(count: int) -> str:
    """A parameter count in a few characters: 4.65 M."""
    for size, suffix in ((1e9, " B"), (1e6, " M"), (1e3, " k")):
        if count >= size:
            return f"{count / size:.3g}{suffix}"
    return str(count)


# --- tiles and text: the markup that repeats ---------------------------------------------------

def _pct(value: float) -> str:
    return f"{value * 100:.4g}%".replace("-0%", "0%")


def tile_geometry(record: InputRecord, shown: ImageShown | None,
                  input_size: tuple[int, int]) -> tuple[tuple[float, float, float], tuple[float, float] | None]:
    """Where the stored source image sits in a tile showing ``shown.box`` of the input: its width, left
    and top as fractions of the window, and the window's width and height as fractions of the tile
    when the crop is not square (letterboxed), else None."""
    height, width = input_size
    box = shown.box if shown is not None and shown.box is not None else (0, 0, width, height)
    left, top, w, h = record.crop(box, input_size)
    image = (record.image_size[0] / w, -left / w, -top / h)
    side = max(box[2] - box[0], box[3] - box[1])
    window = None if box[2] - box[0] == box[3] - box[1] else ((box[2] - box[0]) / side, (box[3] - box[1]) / side)
    return image, window


def tile_html(record: InputRecord, shown: ImageShown | None, folder: str, input_size: tuple[int, int],
              heat: bool = True, cls: str = "tile", link: tuple[str, str] | None = None, lazy: bool = True) -> Markup:
    """A square window onto the input's stored source image, showing ``shown.box`` (all of the input
    without one), with the unit's map over it (drawn by the page's script from ``data-h``) and its
    peak cell outlined. Without script it is still the crop. Non-square crops are letterboxed.

    Thousands of these make up a site, so only what differs from the stylesheet's defaults (an image
    or a map as wide as its window, at its top left) is written. ``lazy`` loading is for pages listing
    many inputs; a unit page's few source images are wanted at once."""
    (iw, il, it), window = tile_geometry(record, shown, input_size)
    style = [f"{name}:{_pct(value)}" for name, value, default in (("width", iw, 1.0), ("left", il, 0.0), ("top", it, 0.0))
             if abs(value - default) > 5e-5]
    img = f'<img src="{S.href(folder, record.source)}" alt=""' + (' loading="lazy"' if lazy else "") + \
        (f' style="{";".join(style)}">' if style else ">")
    inner = [img]
    if shown is not None and heat and shown.heat is not None:
        heat = shown.heat
        frame = ""
        if heat.frame is not None:
            left, top, right, bottom = heat.frame
            placed = [f"{name}:{_pct(value)}" for name, value, default in
                      (("left", left, 0.0), ("top", top, 0.0), ("width", right - left, 1.0), ("height", bottom - top, 1.0))
                      if abs(value - default) > 5e-5]
            frame = f' style="{";".join(placed)}"' if placed else ""
        inner.append(f'<i data-h="{heat.cols} {heat.rows} {heat.levels}"{frame}></i>')
    if shown is not None and shown.mark is not None:
        box = shown.box or (0, 0, input_size[1], input_size[0])
        bw, bh = box[2] - box[0], box[3] - box[1]
        ml, mt, mr, mb = shown.mark
        inner.append(f'<b class="mark" style="left:{_pct((ml - box[0]) / bw)};top:{_pct((mt - box[1]) / bh)};'
                     f'width:{_pct((mr - ml) / bw)};height:{_pct((mb - mt) / bh)}"></b>')
    body = "".join(inner)
    if window is not None:  # letterboxed in grey, as the model's own crop would be padded
        body = f'<span class="win" style="width:{_pct(window[0])};height:{_pct(window[1])}">{body}</span>'
    if link is not None:  # the tile is the link itself: (href, title)
        return Markup(f'<a class="{cls}" href="{link[0]}" title="{escape(link[1])}">{body}</a>')
    return Markup(f'<span class="{cls}">{body}</span>')


def thumbs_script(model: ModelPages, folder: str, units: tuple[int, ...],
                  thumbs: tuple[tuple[int, ImageShown] | None, ...]) -> str:
    """A layer's thumbnails as one shared script (``<layer>/thumbs.js``) that pages listing its
    units (input pages, "built from", health) load, instead of each repeating the windows: per
    unit [image, width, left, top] (+ [window width, height] when letterboxed), in % of its tile."""
    images: dict[str, int] = {}
    table = {}
    for unit, thumb in zip(units, thumbs):
        if thumb is None or thumb[0] not in model.inputs:
            continue
        record = model.inputs[thumb[0]]
        (iw, il, it), window = tile_geometry(record, thumb[1], model.input_size)
        entry = [images.setdefault(S.href(folder, record.source), len(images)),
                 *(float(f"{v * 100:.4g}") for v in (iw, il, it))]
        if window is not None:
            entry += [float(f"{v * 100:.4g}") for v in window]
        table[unit] = entry
    return f"galleriaThumbs({script_json(list(images))},{script_json(table)});\n"


def related_script(model: ModelPages, folder: str, units: tuple[int, ...], tables: tuple[EffectsTable, ...],
                   label: Callable[[str, int], str]) -> str:
    """A layer's related units (extract/related.py) as one shared script (``<layer>/related.js``) that
    its unit pages draw as chips, instead of each page carrying its own (in a wide gallery they would
    be a twentieth of its size): per kind its layer, that layer's folder relative to the script and
    the method; per unit, per kind, its [unit, value] pairs; ``label(layer, unit)`` of each unit named,
    where it has one."""
    kinds = [{"layer": t.layer, "href": S.href(folder, S.layer_dir(model.id, t.layer)) + "/", "method": t.method}
             for t in tables]
    table, named = {}, {}
    for position, unit in enumerate(units):
        rows = []
        for t in tables:
            up, down = t.row(position)
            rows.append([[index, float(f"{value:.3g}")] for index, value in up + down])
            for index, _ in up + down:
                key = f"{t.layer}/{index}"
                if key not in named:
                    named[key] = label(t.layer, index)
        if any(rows):
            table[unit] = rows
    named = {key: text for key, text in named.items() if text}
    return f"galleriaRelated({script_json(kinds)},{script_json(table)},{script_json(named)});\n"


_SHOWN: dict[int, tuple[list[str], list[str], list[int]]] = {}  # id(corpus) -> shown_pieces(corpus)


def shown_pieces(corpus) -> tuple[list[str], list[str], list[int]]:
    """Every piece of a corpus with its whitespace drawn (tokens.visible), the same escaped for HTML,
    and its drawn length; once per process, as thousands of pages and the text shards show
    stretches of the same corpus."""
    found = _SHOWN.get(id(corpus))
    if found is None:
        drawn = [visible(p) for p in corpus.pieces]
        found = _SHOWN[id(corpus)] = (drawn, [str(escape(p)) for p in drawn], [len(p) for p in drawn])
    return found


def _lengths(lengths: list[int]) -> str:
    """Each piece's length as one character (chr(48 + length)), or comma-separated numbers if a
    piece is longer than that can say."""
    if max(lengths, default=0) <= 78:
        return "".join(map(chr, (48 + n for n in lengths)))
    return ",".join(map(str, lengths))


def text_html(corpus, shown: TextShown, at: int) -> Markup:
    """A stretch of text as plain, readable text, with what the page's script needs to colour each
    token (``data-l`` levels, ``data-n`` lengths, ``data-at`` the extreme token; ``data-cut`` says
    whether the window goes on left or right) or, for top and bottom examples, the levels of the
    whole window instead (``data-w``, of which the shown stretch starts at ``data-lo``: the window's
    text loads when asked for).
    Characters need no lengths: each is a token, a drawn line break "↵\\n" among them."""
    _, pieces, lengths = shown_pieces(corpus)
    first, last = shown.start + shown.lo, shown.start + shown.hi
    code = "" if corpus.kind == "chars" else f' data-n="{escape(_lengths(lengths[first:last]))}"'
    window = f' data-w="{shown.window}" data-s="{shown.start}" data-lo="{shown.lo}"' \
        if shown.window is not None else ""
    cut = ("l" if shown.lo > 0 else "") + ("r" if shown.hi < shown.length else "")
    cut = f' data-cut="{cut}"' if cut else ""
    levels = "" if shown.window is not None else f' data-l="{shown.levels}"'  # else: the script cuts them from data-w
    return Markup(f'<pre class="tx-ctx"{levels}{code} data-at="{at - shown.lo}"{cut}{window}>'
                  f'{"".join(pieces[first:last])}</pre>')


def plain_text(corpus, start: int, stop: int) -> Markup:
    """A stretch of the text as it was, whitespace drawn, nothing coloured."""
    return Markup("".join(shown_pieces(corpus)[1][start:stop]))


# --- what a layer's pages say about it -----------------------------------------------------------

def receptive_text(layer: LayerRecord) -> str:
    """The input region one position of a layer sees, in words."""
    rf = layer.receptive
    if layer.text:
        return ""  # a token's state depends on all text before it (recurrent) or the whole window
    if rf is None:
        return "whole input"
    if rf.size[0] >= rf.input_size[0] and rf.size[1] >= rf.input_size[1]:
        if layer.layout.kind == "tokens":
            return "whole input: every patch reaches every token (attention)"
        return f"whole input ({rf.size[0]} × {rf.size[1]} px)"
    return f"{rf.size[0]} × {rf.size[1]} px" + (" (its patch)" if layer.layout.kind == "tokens" else "")


def tiles_note(layer: LayerRecord) -> str:
    """How to read a unit's tiles when they show the whole input rather than a crop."""
    rf, layout = layer.receptive, layer.layout
    if layer.text:
        return ""
    sees_all = rf is None or (rf.size[0] >= rf.input_size[0] and rf.size[1] >= rf.input_size[1])
    if layout.kind == "tokens" and layout.grid is not None:
        prefix = ", ".join(dict.fromkeys(name.rstrip("0123456789 ") for name in layout.prefix))
        return ("Each tile is the whole input with the unit's value on every patch token laid over it; "
                + ("the outlined patch is where it peaked" if sees_all else "cropped to the peak patch's field")
                + (f" ({prefix} is not a patch: a tile that peaked there says so)" if prefix else ""))
    if sees_all and rf is not None and len(layout.positions) == 2 and layout.positions != (1, 1):
        return ("The unit sees the whole input, so each tile shows all of it with the unit's map laid over it; "
                "the outlined cell is where it peaked")
    return ""


def layer_facts(layer: LayerRecord, folder: str, note: Note | None, tile_size: int) -> dict:
    """What the pages of a layer in ``folder`` (its own, or its units') say about it."""
    return {"name": layer.name, "module": layer.module, "shape": layer.layout.describe(),
            "num_units": len(layer.units), "receptive": receptive_text(layer),
            "statistics_note": layer.layout.statistics_note(), "tiles_note": tiles_note(layer),
            "tile_size": tile_size, "note_html": note.html if note else "", "label": layer.label,
            "flagged": layer.flagged, "dead": layer.dead, "related": layer.related, "url": S.href(folder, S.page_file(layer.url.rstrip("/"))),
            "health_url": S.href(folder, S.page_file(S.health_dir(layer.model, layer.name))),
            "featureviz_url": S.href(folder, S.page_file(S.featureviz_dir(layer.model, layer.name)))
            if layer.featureviz else None}


# --- unit pages ---------------------------------------------------------------------------------

def anchor(kind: str, rank: int) -> str:
    """An example's id on its page: top examples are the page's examples (``#example-3``)."""
    return f"example-{rank}" if kind == "top" else f"{kind}-{rank}"


def _examples(model: ModelPages, folder: str, kind: str, examples: tuple[ExampleRecord, ...],
              text: bool) -> list[dict]:
    shown = []
    for rank, example in enumerate(examples, start=1):
        record = model.by_id[example.input]
        entry = {"rank": rank, "anchor": anchor(kind, rank), "value": example.value, "input_title": record.title,
                 "input_url": S.href(folder, S.page_file(S.input_dir(model.id, record.id))), "at": example.at}
        if text:
            entry["text"] = text_html(model.corpus, example.shown, example.position[0])
            entry["whole"] = example.shown.window is not None
        else:
            entry["tile"] = tile_html(record, example.shown, folder, model.input_size, lazy=False,
                                      link=(entry["input_url"], record.title + (f" · at {example.at}" if example.at else "")))
            entry["at_prefix"] = example.at is not None and not example.at.startswith(("patch", "row", "position"))
            entry["prediction"] = {"label": record.predictions[0][0], "prob": record.predictions[0][1]} \
                if record.predictions else None
        shown.append(entry)
    return shown


def _effects(effects: EffectsRecord | None) -> dict | None:
    if effects is None:
        return None
    return {"method": effects.method, "up": [{"label": e.label, "value": e.value} for e in effects.up],
            "down": [{"label": e.label, "value": e.value} for e in effects.down]}


def chip(model: ModelPages, folder: str, layer: str, unit: int, label: str, value: float | None,
         detail: str = "") -> dict:
    """A link to a unit; the page's script gives it a thumbnail from its layer's thumbs.js (image models)."""
    return {"unit": unit, "label": label, "value": value, "detail": detail,
            "url": S.href(folder, S.page_file(S.unit_dir(model.id, layer, unit)))}


def drawn_histogram(stats: UnitStats) -> tuple[Histogram, float]:
    """The histogram a unit's page draws, and the share of its values left out: a unit that is exactly
    0 on some of its values and never below (a ReLU, an SAE latent) is drawn by its non-zero values, as
    Neuronpedia draws latents, since its zeros would be the tallest bar by far. A unit that is 0
    everywhere keeps its one bar."""
    h = stats.histogram
    zeros = stats.count - round(stats.frac_active * stats.count) if stats.min == 0 else 0
    at = -h.lo  # the bin that holds 0
    if not 0 < zeros < stats.count or not 0 <= at < len(h.counts) or h.counts[at] < zeros:
        return h, 0.0
    counts = list(h.counts)
    counts[at] -= zeros
    return replace(h, counts=tuple(counts)), zeros / stats.count


def unit_page(record: UnitRecord, model: ModelPages, layer: dict, note: Note | None,
              built_from_labels: dict[int, str], prev_unit: int | None, next_unit: int | None) -> Page:
    """A unit's page. ``layer`` is its layer's facts (layer_facts) as its unit pages link them;
    ``built_from_labels`` the labels of the units it is built from."""
    folder = record.url.rstrip("/")
    text = model.corpus is not None
    stats = record.stats
    probe = model.probe(folder, record.layer)
    top = _examples(model, folder, "top", record.top, text)
    bottom = _examples(model, folder, "bottom", record.bottom, text)
    bands = [{"lo": b.lo, "hi": b.hi, "count": b.count, "fraction": b.fraction,
              "examples": _examples(model, folder, f"band{number}", b.examples, text)}
             for number, b in enumerate(record.bands, start=1)]
    viz = record.featureviz
    featureviz = None if viz is None or viz.channel is None else {
        "never_active": viz.never_active, "dataset_max": stats.max,
        **{kind: None if image is None else {"src": image.file, "mean": image.mean, "peak": image.peak}
           for kind, image in (("channel", viz.channel), ("negative", viz.negative), ("neuron", viz.neuron))},
        "diverse": [{"src": image.file} for image in viz.diverse] or None}
    about = unit_about(record, model)
    drawn, left_out = drawn_histogram(stats)
    description = (f"{record.label} · " if record.label else "") + \
        f"Unit {record.unit} of {record.layer} in {model.title}: max {stats.max:.3g}, active {stats.frac_active:.1%}" + \
        (f"; {'fires most on' if text else 'top examples look like'} {', '.join(about)}" if about else "")
    layer_folder = S.layer_dir(model.id, record.layer)
    built_from = record.built_from
    chips = [] if built_from is None else [
        {**chip(model, folder, built_from.layer, e.index, built_from_labels.get(e.index, ""), e.value), "sign": sign}
        for sign, effects in (("up", built_from.up), ("down", built_from.down)) for e in effects]
    context = {
        "about": about,
        "model": model.about(folder),
        "layer": layer,
        "unit": {
            "id": record.unit, "label": record.label, "tags": list(record.tags), "flags": list(record.flags),
            "note_html": note.html if note else "", "json_url": "unit.json", "auto": auto_labels(record),
            "stats": {"count": stats.count, "mean": stats.mean, "std": stats.std, "min": stats.min, "max": stats.max,
                      "frac_active": stats.frac_active, "nonfinite": stats.nonfinite},
            "duplicates": [{"unit": u, "similarity": v,
                            "url": S.href(folder, S.page_file(S.unit_dir(model.id, record.layer, u)))}
                           for u, v in record.duplicates],
            "more_duplicates": record.duplicate_count - len(record.duplicates),
            "effects": _effects(record.effects),
            "built_from": None if built_from is None else {
                "layer": built_from.layer, "method": built_from.method,
                "layer_url": S.href(folder, S.page_file(S.layer_dir(model.id, built_from.layer))), "chips": chips},
            "histogram_svg": Markup(histogram_svg(drawn, bands=[(b["lo"], b["hi"]) for b in bands])),
            "zeros_left_out": left_out,
            "inactive": record.inactive, "inactive_fraction": record.inactive / max(1, model.record.inputs),
            "probe": probe,
            "scale": record.scale, "bottom_scale": (0.0, stats.min) if bottom and stats.min < 0 and not text else None,
            "top": top, "bottom": bottom, "bands": bands, "featureviz": featureviz,
            "text": {"scale": record.scale[1], "shards": S.root(folder) + model.shards + "/",
                     "tokens": [{"token": t, "mean": m, "count": c} for t, _, m, c in record.top_tokens or ()]}
            if text else None,
        },
    }
    return Page(folder, "unit.html", "unit", f"Unit {record.unit} · {record.layer} · {model.title}", description,
                model.crumbs() + [(record.layer, layer_folder), (f"Unit {record.unit}", folder)],
                {"prev": S.unit_dir(model.id, record.layer, prev_unit) if prev_unit is not None else None,
                 "next": S.unit_dir(model.id, record.layer, next_unit) if next_unit is not None else None,
                 "up": layer_folder}, context)


def unit_about(record: UnitRecord, model: ModelPages) -> list[str]:
    """What a unit is about in a few words: the tokens it fires most on, or what the model called
    its top examples."""
    if record.top_tokens:
        about = [f"'{t[0]}'" for t in record.top_tokens[:3]]
    else:
        about = [model.by_id[e.input].predictions[0][0] for e in record.top if model.by_id[e.input].predictions][:3]
    return list(dict.fromkeys(about))


# --- layer, model, featureviz, health, input and site-wide pages --------------------------------

def grid_unit(model: ModelPages, folder: str, layer: str, entry: UnitEntry) -> dict:
    """A unit in a layer's grid: its thumbnail (top example, or a stretch of text), number, label, flags."""
    unit_folder = S.unit_dir(model.id, layer, entry.unit)
    record = model.inputs.get(entry.thumb[0]) if entry.thumb is not None else None
    snippet = entry.snippet
    return {"id": entry.unit, "url": S.href(folder, S.page_file(unit_folder)), "label": entry.label,
            "thumb": tile_html(record, entry.thumb[1], folder, model.input_size, cls="tile thumb-ex")
            if record is not None else None,
            "viz": S.href(folder, f"{unit_folder}/{entry.featureviz}") if entry.featureviz else None,
            "snippet": text_html(model.corpus, snippet.shown, snippet.position[0]) if snippet is not None else None,
            "max": entry.max, "mean": entry.mean, "frac_active": entry.frac_active,
            "flags": list(entry.flags), **_auto_fields(entry.auto_label)}


def _auto_fields(best: AutoLabel | None) -> dict:
    """A unit's automatic label as a grid lists it: its score always (to sort by), its label when it
    scores SHOWN or more."""
    return {"score": best.score if best is not None else None,
            "auto": best.label if best is not None and shown_labels((best,)) else None}


def auto_labels(record: UnitRecord) -> dict | None:
    """A unit's automatic labels as its page shows them: those that score SHOWN or more, and how
    they were scored; None when none does."""
    shown = [{"label": a.label, "score": a.score} for a in shown_labels(record.auto_labels)]
    return {"labels": shown, "method": record.auto_labels[0].method, "threshold": SHOWN} if shown else None


def layer_page(model: ModelPages, layer: LayerRecord, note: Note | None, entries: list[UnitEntry],
               tile_size: int) -> Page:
    """A layer's grid of units, sortable and filterable by the page's script."""
    folder = layer.url.rstrip("/")
    names = [l.name for l in model.record.layers]
    index = names.index(layer.name)
    return Page(folder, "layer.html", "layer", f"{layer.name} · {model.title}",
                layer.label or f"{len(layer.units)} units of {layer.name} in {model.title}",
                model.crumbs() + [(layer.name, folder)],
                {"prev": S.layer_dir(model.id, names[index - 1]) if index > 0 else None,
                 "next": S.layer_dir(model.id, names[index + 1]) if index + 1 < len(names) else None,
                 "up": S.model_dir(model.id)},
                {"model": model.about(folder), "layer": layer_facts(layer, folder, note, tile_size),
                 "probe": model.probe(folder, layer.name),
                 "density_svg": Markup(density_svg(entry.frac_active for entry in entries)) if entries else None,
                 "units": [grid_unit(model, folder, layer.name, entry) for entry in entries]})


def model_page(model: ModelPages, note: Note | None) -> Page:
    """A model: what it is, and a table of its layers."""
    record = model.record
    folder = S.model_dir(record.id)
    layers = [{
        "name": layer.name, "module": layer.module, "num_units": len(layer.units),
        "url": S.href(folder, S.page_file(layer.url.rstrip("/"))), "shape": layer.layout.describe(),
        "receptive": receptive_text(layer), "label": layer.label,
        "thumb": None if layer.thumb is None or layer.thumb[0] not in model.inputs else
        tile_html(model.inputs[layer.thumb[0]], layer.thumb[1], folder, model.input_size, heat=False),
        "featureviz_url": S.href(folder, S.page_file(S.featureviz_dir(record.id, layer.name)))
        if layer.featureviz else None,
    } for layer in record.layers]
    return Page(folder, "model.html", "model", record.title, record.description, model.crumbs(),
                {"prev": None, "next": None, "up": ""},
                {"model": {**model.about(folder), "source": record.source, "classifier": record.classes is not None,
                           "num_classes": record.classes, "note_html": note.html if note else "",
                           "label": record.label, "inputs_url": S.href(folder, S.page_file(S.inputs_dir(record.id))),
                           "num_inputs": record.inputs, "text": model.corpus is not None, "layers": layers,
                           "health_url": S.href(folder, S.page_file(S.health_dir(record.id))),
                           "flagged": record.flagged}, "probe": model.probe(folder)})


def probe_page(model: ModelPages) -> Page:
    """A model's probe page: a visitor's own input, and the units of every layer that respond most
    to it relative to their own maximum (as an input page lists them for the gallery's inputs)."""
    folder = S.probe_dir(model.id)
    return Page(folder, "probe.html", "probe", f"Try your own input · {model.title}",
                f"Run your own {'text' if model.corpus is not None else 'image'} through {model.title} and see "
                "which units respond most", model.crumbs() + [("try your own", folder)],
                {"prev": None, "next": None, "up": S.model_dir(model.id)},
                {"model": model.about(folder), "probe": model.probe(folder)})


def featureviz_page(model: ModelPages, layer: LayerRecord, labels: dict[int, str], file: str) -> Page:
    """Every feature visualization of one layer (``file`` in each unit's folder), each linked to its unit."""
    folder = S.featureviz_dir(model.id, layer.name)
    layer_folder = layer.url.rstrip("/")
    units = [{"id": unit, "url": S.href(folder, S.page_file(S.unit_dir(model.id, layer.name, unit))),
              "image": S.href(folder, f"{S.unit_dir(model.id, layer.name, unit)}/{file}"), "peak": peak,
              "label": labels.get(unit, "")} for unit, peak in layer.featureviz]
    return Page(folder, "featureviz.html", "featureviz", f"Feature visualizations · {layer.name} · {model.title}",
                f"Images optimized to excite {len(units)} units of {layer.name} in {model.title}",
                model.crumbs() + [(layer.name, layer_folder), ("feature visualizations", folder)],
                {"prev": None, "next": None, "up": layer_folder},
                {"model": model.about(folder),
                 "layer": {"name": layer.name, "url": S.href(folder, S.page_file(layer_folder)),
                           "num_units": len(layer.units)},
                 "units": units})


MODEL_HEALTH_SHOWN = 100  # a model's health page lists this many units per flag and layer; its layers' pages all


def health_shown(health: LayerHealth, scope: LayerRecord | None) -> tuple[dict[str, list[int]], list]:
    """What a health page lists of a layer: per flag its flagged units, and its duplicate pairs; on a
    model's page the first MODEL_HEALTH_SHOWN of each (half the units of a random or broken layer
    can be flagged: the page stays readable and its size grows with the layers, not the units)."""
    most = None if scope is not None else MODEL_HEALTH_SHOWN
    return {flag: health.units[flag][:most] for flag in FLAGS}, health.duplicates[:most]


def health_page(model: ModelPages, scope: LayerRecord | None,
                layers: list[tuple[LayerRecord, LayerHealth, dict[int, str]]]) -> Page:
    """The health of a whole model (``scope`` None) or of one layer: per layer (record, health,
    labels of the units listed) the counts per flag, the flagged units and the duplicate pairs
    (health_shown: on a model's page, the first few with a link to the rest)."""
    folder = S.health_dir(model.id, scope.name if scope else None)
    up = scope.url.rstrip("/") if scope else S.model_dir(model.id)
    crumbs = model.crumbs() + ([(scope.name, up)] if scope else []) + [("health", folder)]
    return Page(folder, "health.html", "health", f"Health · {scope.name + ' · ' if scope else ''}{model.title}",
                f"Dead, always-on, saturated, non-finite and duplicate units of {scope.name if scope else model.title}",
                crumbs, {"prev": None, "next": None, "up": up},
                {"model": {**model.about(folder), "num_inputs": model.record.inputs},
                 "health": {"scope": scope.name if scope else "model",
                            "definitions": [{"flag": f, "text": t} for f, t in DEFINITIONS.items()],
                            "layers": [_health_layer(model, folder, scope, *found) for found in layers]}})


def _health_layer(model: ModelPages, folder: str, scope: LayerRecord | None, layer: LayerRecord,
                  health: LayerHealth, labels: dict[int, str]) -> dict:
    def unit_chip(unit: int, detail: str = "") -> dict:
        return chip(model, folder, layer.name, unit, labels.get(unit, ""), None, detail)

    shown, pairs = health_shown(health, scope)
    groups = [{"flag": flag, "more": len(health.units[flag]) - len(shown[flag]),
               "units": [unit_chip(u, f"{health.saturation[u]:.0%} of inputs" if flag == "saturated" else "")
                         for u in shown[flag]]}
              for flag in FLAGS if health.units[flag] and flag != "duplicate"]
    return {"name": layer.name, "url": S.href(folder, S.page_file(layer.url.rstrip("/"))),
            "health_url": S.href(folder, S.page_file(S.health_dir(model.id, layer.name))),
            "num_units": len(layer.units), "counts": {flag: len(health.units[flag]) for flag in FLAGS},
            "total": len(health.by_unit), "groups": groups,
            "duplicates": [{"unit": d.unit, "other": d.other, "similarity": d.similarity,
                            "unit_url": S.href(folder, S.page_file(S.unit_dir(model.id, layer.name, d.unit))),
                            "other_url": S.href(folder, S.page_file(S.unit_dir(model.id, layer.name, d.other)))}
                           for d in pairs], "more_duplicates": len(health.duplicates) - len(pairs)}


def input_page(model: ModelPages, record: InputRecord, found: list[tuple[str, list[Response]]],
               labels: dict[tuple[str, int], str], prev_id: str | None, next_id: str | None,
               source: str | None) -> Page:
    """An input: its image (or window of text), what the model predicts, and per layer the units that
    respond most (``found``, from assemble.responses; ``labels`` by (layer, unit))."""
    folder = S.input_dir(model.id, record.id)
    listing = S.inputs_dir(model.id)
    layers = [{"name": layer, "url": S.href(folder, S.page_file(S.layer_dir(model.id, layer))),
               "units": [{**chip(model, folder, layer, r.unit, labels.get((layer, r.unit), ""), r.value),
                          "relative": r.relative} for r in responses]}
              for layer, responses in found]
    return Page(folder, "input.html", "input", f"{record.title} · {model.title}",
                f"Units of {model.title} that respond most to {record.title}",
                model.crumbs() + [("inputs", listing), (record.title, folder)],
                {"prev": S.input_dir(model.id, prev_id) if prev_id else None,
                 "next": S.input_dir(model.id, next_id) if next_id else None, "up": listing},
                {"model": model.about(folder),
                 "input": {"id": record.id, "title": record.title,
                           "image": tile_html(record, None, folder, model.input_size, cls="tile input-image")
                           if record.source else None,
                           "text": plain_text(model.corpus, *record.span) if record.span else None,
                           "source": source,
                           "predictions": [{"label": label, "prob": prob} for label, prob in record.predictions],
                           "layers": layers}})


def inputs_page(model: ModelPages) -> Page:
    """Every input of a model, each a thumbnail (or the start of its text) linking to its page."""
    folder = S.inputs_dir(model.id)
    entries = [{"id": record.id, "title": record.title, "url": S.href(folder, S.page_file(S.input_dir(model.id, record.id))),
                "thumb": tile_html(record, None, folder, model.input_size, cls="tile input-thumb")
                if record.source else None,
                "snippet": plain_text(model.corpus, record.span[0], min(record.span[1], record.span[0] + 24))
                if record.span else None} for record in model.inputs.values()]
    return Page(folder, "inputs.html", "inputs", f"Inputs · {model.title}",
                f"The {len(entries)} inputs {model.title} was run on", model.crumbs() + [("inputs", folder)],
                {"prev": None, "next": None, "up": S.model_dir(model.id)},
                {"model": model.about(folder), "inputs": entries})


def index_page(site: SiteConfig, models: list[ModelPages]) -> Page:
    """The site's home: a card per model."""
    cards = []
    for model in models:
        first = next((l.thumb for l in model.record.layers if l.thumb is not None), None)
        thumb = None if first is None or first[0] not in model.inputs else tile_html(
            model.inputs[first[0]], first[1], "", model.input_size, cls="tile card-thumb")
        cards.append({**model.about(""), "thumb": thumb})
    return Page("", "index.html", "index", site.title, site.description, [], {}, {"models": cards})


def search_page(site: SiteConfig) -> Page:
    """Every match of ?q=..., drawn by the page's script from the search index."""
    return Page("search", "search.html", "search", "Search", f"Search the models, layers and units of {site.title}",
                [("search", "search")], {}, {})


def not_found_page() -> Page:
    return Page("", "404.html", "404", "Page not found", "", [], {}, {})
