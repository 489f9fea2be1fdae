"""Text examples as HTML: each token a span coloured by the unit, built with Jinja's own escaping.

Thousands of token spans per page would make a template loop the slowest part of a build,
so they are joined here; every piece of corpus text passes through ``markupsafe.escape``,
so a corpus holding ``<script>`` shows it as text.
"""
from __future__ import annotations

import json
import math

import numpy as np

from markupsafe import Markup, escape

from galleria.sources.text import TextCorpus
from galleria.visualize.tokens import LEVELS, TokenContext, visible


_SHOWN: dict[int, tuple[list[str], list[str]]] = {}  # id(corpus) -> escaped visible pieces, whitespace classes


def _shown(corpus: TextCorpus) -> tuple[list[str], list[str]]:
    """Every piece of a corpus escaped and with its whitespace drawn, once per process."""
    found = _SHOWN.get(id(corpus))
    if found is None:
        found = _SHOWN[id(corpus)] = ([str(escape(visible(p))) for p in corpus.pieces],
                                      ["" if p.strip() else " ws" for p in corpus.pieces])
    return found


def spans(corpus: TextCorpus, start: int, values, lo: int, hi: int, at: int | None, scale: float) -> Markup:
    """Tokens lo..hi of a window starting at stream position ``start``, coloured by ``values``."""
    shown, ws = _shown(corpus)
    chunk = np.asarray(values[lo:hi], dtype=np.float64)
    steps = np.clip(np.rint(np.nan_to_num(chunk / scale * LEVELS, nan=0.0, posinf=LEVELS, neginf=-LEVELS)),
                    -LEVELS, LEVELS).astype(int).tolist()
    out = []
    for i, value, step in zip(range(lo, hi), chunk.tolist(), steps):
        kind = f"p{step}" if step > 0 else f"n{-step}" if step < 0 else "z"
        mark = " x" if i == at else ""
        out.append(f'<span class="t {kind}{ws[start + i]}{mark}" title="{value:.3g}">{shown[start + i]}</span>')
    return Markup("".join(out))


def context(corpus: TextCorpus, ctx: TokenContext, around: int, scale: float) -> dict:
    """The stretch around an example's extreme token."""
    lo, hi = ctx.around(around)
    return {"context": spans(corpus, ctx.start, ctx.values, lo, hi, ctx.at, scale),
            "clipped_left": lo > 0, "clipped_right": hi < len(ctx.values)}


def windows(corpus: TextCorpus, contexts: dict[str, TokenContext], scale: float) -> Markup:
    """Whole windows of some examples as JSON for the page's script to draw on request: a few
    numbers and strings each, where pre-drawn spans would make a page several times larger.
    ``<``, ``>`` and ``&`` are written as JSON escapes, so corpus text cannot end the script."""
    data: dict = {"scale": scale}
    for anchor, ctx in contexts.items():
        pieces = corpus.pieces[ctx.start:ctx.start + len(ctx.values)]
        data[anchor] = {"p": [visible(p) for p in pieces], "at": ctx.at,
                        "v": [float(f"{v:.3g}") if math.isfinite(v) else 0.0 for v in map(float, ctx.values)]}
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return Markup(text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


def plain(corpus: TextCorpus, start: int, stop: int) -> Markup:
    """A stretch of the text as it was, whitespace drawn, nothing coloured."""
    shown, ws = _shown(corpus)
    return Markup("".join(f'<span class="t z{ws[i]}">{shown[i]}</span>' for i in range(start, stop)))
