"""What a page's link-preview card shows, chosen from its records (drawn by visualize.cards), and
which pages get a card of their own.

Every page of a site with a public url has a preview image. Model and layer pages draw their own;
so do the units worth sharing by default (``site.cards: auto``): those with a note or a feature
visualization. Any other unit page previews with its layer's card, under its own title and
description. ``site.cards: all`` draws one per unit (about 35 KB each), ``none`` none at all.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from galleria.records import TEXT_LEVELS, ImageShown, InputRecord, ModelBuild, UnitRecord, unpacked
from galleria.visualize.cards import Card, CardTile

if TYPE_CHECKING:
    from galleria.site.content import Note
    from galleria.site.views import ModelPages

CARD_PICTURES = 12  # a montage of more would be too small to see at preview size


def wants_card(policy: str, record: UnitRecord, note: Note | None) -> bool:
    """Whether a unit page gets a card of its own under the site's ``cards`` policy."""
    if policy == "all":
        return True
    if policy == "none":
        return False
    return note is not None or (record.featureviz is not None and record.featureviz.channel is not None)


def unit_card(site: str, build: ModelBuild, model: ModelPages, record: UnitRecord, about: list[str]) -> Card:
    """A unit's feature visualization and top examples, or its top text examples."""
    pictures: list = []
    lines: tuple = ()
    made = build.featureviz.get(record.layer, {}).get(record.unit)
    feature = made is not None and made.channel is not None
    if feature:
        pictures.append(made.channel.path)
    if build.text:
        lines = tuple(_line(model, example, record.scale[1]) for example in record.top[:4])
    else:
        pictures.extend(_tile(build, model.by_id[e.input], e.shown) for e in record.top[:6])
    stats = record.stats
    facts = f"max {stats.max:.3g} · active {stats.frac_active:.0%}" + (f" · top: {', '.join(about)}" if about else "")
    return Card(site, f"Unit {record.unit}", f"{record.layer} · {build.model.config.title}", record.label, facts,
                tuple(p for p in pictures if p is not None), feature, lines)


def group_card(site: str, build: ModelBuild, title: str, subtitle: str, label: str, facts: str, layers: list,
               inputs: dict[int, InputRecord]) -> Card:
    """A layer's units, or one unit per layer of a model: feature visualizations, else thumbnails."""
    pictures: list = []
    for layer in layers:
        made = build.featureviz.get(layer.name, {})
        thumbs = build.thumbs.get(layer.name, ())
        for position, unit in enumerate(layer.units):
            viz = made.get(unit)
            picture = viz.channel.path if viz is not None and viz.channel is not None else \
                _tile(build, inputs[thumbs[position][0]], thumbs[position][1]) if thumbs and thumbs[position] else None
            if picture is not None:
                pictures.append(picture)
                if len(layers) > 1 or len(pictures) >= CARD_PICTURES:
                    break
        if len(pictures) >= CARD_PICTURES:
            break
    return Card(site, title, subtitle, label, facts, tuple(pictures), caption="units" if len(layers) == 1 else "layers")


def _tile(build: ModelBuild, record: InputRecord, shown: ImageShown) -> CardTile | None:
    """An example as a card draws it: its window of the stored source image, its heat and mark."""
    stored = build.sources.get(build.inputs.items[record.index].source)
    if stored is None:
        return None
    height, width = build.model.config.preprocessing.size
    box = shown.box or (0, 0, width, height)
    left, top, w, h = record.crop(box, (height, width))
    window = (left, top, left + w, top + h)
    mark = None
    if shown.mark is not None:
        bw, bh = box[2] - box[0], box[3] - box[1]
        mark = tuple((v - o) / d for v, o, d in zip(shown.mark, (box[0], box[1], box[0], box[1]), (bw, bh, bw, bh)))
    return CardTile(stored.path, window, shown.heat, mark)


def _line(model: ModelPages, example, scale: float) -> tuple[tuple[str, float], ...]:
    """The tokens around a text example's extreme one, with values on the card's -1..1 scale."""
    shown = example.shown
    pieces = model.corpus.pieces[shown.start + shown.lo:shown.start + shown.hi]
    levels = np.array([TEXT_LEVELS.index(c) - 8 for c in unpacked(shown.shown_levels())], dtype=np.float64) / 8
    return tuple(zip(pieces, map(float, levels)))
