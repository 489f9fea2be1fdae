"""The client-side search index: small script files the theme's search box loads on first use.

Scripts, not JSON, because browsers refuse ``fetch`` from file:// while ``<script src>`` works
there and on any host. A small ``search/index.js`` holds the models and layers; the units are
split into shards of a few thousand, loaded in parallel, so a gallery of 10,000+ units starts
searching after ~100 KB per shard instead of one large file. Rows are arrays, not objects: the
keys would otherwise be most of the bytes.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from galleria.extract.health import FLAGS

UNITS_PER_SHARD = 2500
NOTE_CHARS = 400  # enough of a note to find it by its words; the page has the rest
MARKDOWN_SYNTAX = re.compile(r"[#*_`>\[\]()|~]+|!\[|https?://\S+")


@dataclass
class SearchUnit:
    unit: int
    label: str
    words: str  # note text, tags, top classes or tokens: matched, never shown
    flags: tuple[str, ...] = ()


@dataclass
class SearchLayer:
    name: str
    folder: str  # site path of the layer page's folder; units live in folder/<unit>/
    label: str
    units: list[SearchUnit] = field(default_factory=list)


@dataclass
class SearchModel:
    title: str
    folder: str
    label: str
    layers: list[SearchLayer] = field(default_factory=list)


def note_words(text: str) -> str:
    """A note's Markdown as plain words, cut to NOTE_CHARS."""
    plain = " ".join(MARKDOWN_SYNTAX.sub(" ", text).split())
    return plain[:NOTE_CHARS]


def write_search_index(out: Path, models: list[SearchModel]) -> int:
    """Write ``search/index.js`` and its unit shards under ``out``; returns the bytes written."""
    folder = out / "search"
    folder.mkdir(parents=True, exist_ok=True)
    layers, rows = [], []
    for model_index, model in enumerate(models):
        for layer in model.layers:
            layer_index = len(layers)
            layers.append([model_index, layer.name, layer.folder, layer.label])
            for u in layer.units:
                bits = sum(1 << FLAGS.index(f) for f in u.flags if f in FLAGS)
                rows.append([layer_index, u.unit, u.label, u.words, bits])
    names, written = [], 0
    for number, start in enumerate(range(0, len(rows), UNITS_PER_SHARD)):
        text = f"galleriaSearch.shard({number},{script_json(rows[start:start + UNITS_PER_SHARD])});\n"
        # named by content, so that a cached index.js of an older build never pairs with new shards
        names.append(f"units-{number}-{hashlib.sha256(text.encode()).hexdigest()[:10]}.js")
        written += _script(folder / names[-1], text)
    meta = {"models": [[m.title, m.folder, m.label] for m in models], "layers": layers,
            "flags": list(FLAGS), "shards": names, "units": len(rows)}
    return written + _script(folder / "index.js", f"galleriaSearch.meta({script_json(meta)});\n")


def script_json(value) -> str:
    """A value as JSON that is safe inside a script: "</" would end a script element if a theme ever
    inlined it; U+2028 and U+2029 end a line inside a string literal for engines before ES2019."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text.replace("</", "<\\/").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _script(path: Path, text: str) -> int:
    data = text.encode("utf-8")
    path.write_bytes(data)
    return len(data)
