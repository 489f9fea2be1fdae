"""Text examples as HTML: each token a span coloured by the unit, built with Jinja's own escaping.

Thousands of token spans per page would make a template loop the slowest part of a build,
so they are joined here; every piece of corpus text passes through ``markupsafe.escape``,
so a corpus holding ``<script>`` shows it as text.
"""
from __future__ import annotations

import math

from markupsafe import Markup, escape

from galleria.sources.text import TextCorpus
from galleria.visualize.tokens import TokenContext, level, visible


def spans(corpus: TextCorpus, start: int, values, lo: int, hi: int, at: int | None, scale: float) -> Markup:
    """Tokens lo..hi of a window starting at stream position ``start``, coloured by ``values``."""
    out = []
    for i in range(lo, hi):
        value = float(values[i])
        step = level(value, scale)
        kind = f"p{step}" if step > 0 else f"n{-step}" if step < 0 else "z"
        piece = corpus.pieces[start + i]
        extra = " ws" if not piece.strip() else ""
        mark = " x" if i == at else ""
        shown = f"{value:.3g}" if math.isfinite(value) else str(value)
        out.append(f'<span class="t {kind}{extra}{mark}" title="{escape(repr(piece))} {shown}">'
                   f'{escape(visible(piece))}</span>')
    return Markup("".join(out))


def context(corpus: TextCorpus, ctx: TokenContext, around: int, scale: float, whole: bool) -> dict:
    """The stretch around an example's extreme token, and (when ``whole``) its whole window."""
    size = len(ctx.values)
    lo, hi = max(0, ctx.at - around), min(size, ctx.at + around + 1)
    return {"context": spans(corpus, ctx.start, ctx.values, lo, hi, ctx.at, scale),
            "clipped_left": lo > 0, "clipped_right": hi < size,
            "window": spans(corpus, ctx.start, ctx.values, 0, size, ctx.at, scale) if whole else None}


def plain(corpus: TextCorpus, start: int, stop: int) -> Markup:
    """A stretch of the text as it was, whitespace drawn, nothing coloured."""
    return Markup("".join(f'<span class="t z{"" if p.strip() else " ws"}">{escape(visible(p))}</span>'
                          for p in corpus.pieces[start:stop]))
