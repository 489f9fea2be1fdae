"""What a page's link-preview card shows, chosen from a model's records (drawn by visualize.cards)."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from galleria.visualize.cards import Card
from galleria.visualize.tokens import TokenContext, UnitText

if TYPE_CHECKING:
    from galleria.records import UnitStats
    from galleria.site.writer import ModelBuild
    from galleria.visualize.run import UnitImages

CARD_PICTURES = 12  # a montage of more would be too small to see at preview size


def unit_card(site: str, build: ModelBuild, layer: str, unit: int, label: str, stats: UnitStats,
              images: UnitImages | UnitText, top: list[str]) -> Card:
    """A unit's feature visualization and top examples, or its top text examples."""
    pictures, lines = [], ()
    made = build.featureviz.get(layer, {}).get(unit)
    feature = made is not None and made.channel is not None
    if feature:
        pictures.append(made.channel.path)
    if isinstance(images, UnitText):
        lines = tuple(_line(build, ctx, images.scale) for ctx in images.top[:4])
    else:
        pictures.extend(images.top[:6])
    facts = f"max {stats.max:.3g} · active {stats.frac_active:.0%}" + (f" · top: {', '.join(top)}" if top else "")
    return Card(site, f"Unit {unit}", f"{layer} · {build.model.config.title}", label, facts, tuple(pictures),
                feature, lines)


def group_card(site: str, build: ModelBuild, title: str, subtitle: str, label: str, facts: str,
               layers: list) -> Card:
    """A layer's units, or one unit per layer of a model: feature visualizations, else thumbnails."""
    pictures = []
    for layer in layers:
        made = build.featureviz.get(layer.name, {})
        for position, unit in enumerate(layer.units):
            viz = made.get(unit)
            picture = viz.channel.path if viz is not None and viz.channel is not None else \
                build.thumb(layer.name, position)
            if picture is not None:
                pictures.append(picture)
                if len(layers) > 1 or len(pictures) >= CARD_PICTURES:
                    break
        if len(pictures) >= CARD_PICTURES:
            break
    return Card(site, title, subtitle, label, facts, tuple(pictures), caption="units" if len(layers) == 1 else "layers")


def _line(build: ModelBuild, ctx: TokenContext, scale: float) -> tuple[tuple[str, float], ...]:
    """The tokens around a text example's extreme one, with values on the card's -1..1 scale."""
    lo, hi = ctx.around(build.text.context)
    pieces = build.inputs.text.pieces[ctx.start + lo:ctx.start + hi]
    values = np.clip(np.nan_to_num(np.asarray(ctx.values[lo:hi], dtype=np.float64)) / (scale or 1.0), -1, 1)
    return tuple(zip(pieces, map(float, values)))
