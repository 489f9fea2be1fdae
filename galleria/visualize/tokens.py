"""Text examples as pages show them: which stretch of text, each token coloured by the unit.

No second model run: the reducers kept each example's values at every token of its window.
Overlapping windows hold the same text twice, so an example whose extreme token lies within
the context of a better example's is left out, as a repeated crop is for images.
"""
from __future__ import annotations

import numpy as np

from galleria.records import TEXT_LEVELS, Example, TextShown, packed
from galleria.sources.images import InputSet

CONTEXT = {"chars": 40, "subwords": 12}  # tokens each side of the extreme one, by default
LEVELS = 8  # colour steps each side of zero, in the theme's CSS


def shown_text(start: int, levels: str, at: int, context: int, whole: bool) -> TextShown:
    """How a text example is shown: the tokens within ``context`` of its extreme one (``at``), with
    the colour ``levels`` of its window (text_levels); with ``whole``, the levels of its whole window
    (the shown stretch is a part of it: see TextShown.shown_levels)."""
    lo, hi = max(0, at - context), min(len(levels), at + context + 1)
    if whole:
        return TextShown(start, lo, hi, None, len(levels), packed(levels))
    return TextShown(start, lo, hi, packed(levels[lo:hi]), len(levels))


_TEXT_CODES = np.frombuffer(TEXT_LEVELS.encode("ascii"), dtype=np.uint8)


def text_levels(values: np.ndarray, scale: float) -> list[str]:
    """Each row of ``values`` (a window's values) as one TEXT_LEVELS character per value: its step of
    ±LEVELS on a scale of ±``scale`` (NaN as zero). All rows at once: a unit's examples cost one pass."""
    values = np.asarray(values, dtype=np.float64)
    steps = np.rint(values / (scale or 1.0) * LEVELS)
    steps[np.isnan(steps)] = 0.0
    np.clip(steps, -LEVELS, LEVELS, out=steps)
    codes = _TEXT_CODES[steps.astype(np.int64) + LEVELS].reshape(-1, values.shape[-1] if values.ndim else 1)
    return [row.tobytes().decode("ascii") for row in codes]


def distinct(candidates: tuple[Example, ...], inputs: InputSet, want: int, context: int) -> list[tuple[int, Example]]:
    """The best ``want`` candidates whose extreme tokens are more than ``context`` tokens apart in
    the text, as (slot among candidates, example)."""
    chosen: list[tuple[int, Example]] = []
    taken: list[int] = []
    for slot, example in enumerate(candidates):
        where = inputs.items[example.input_index].span[0] + example.position[0]
        if any(abs(where - other) <= context for other in taken):
            continue
        chosen.append((slot, example))
        taken.append(where)
        if len(chosen) == want:
            break
    return chosen


def visible(piece: str) -> str:
    """A token's text with its whitespace drawn: ↵ before a line break, → for a tab, and · for the
    spaces of a token that is only whitespace (a word's leading space stays a plain gap)."""
    text = piece if piece.strip() else piece.replace(" ", "·")
    return text.replace("\t", "→").replace("\r\n", "\n").replace("\n", "↵\n")


def shown_label(token: str) -> str:
    """A vocabulary entry on one line: its whitespace drawn, a line break as ↵ alone."""
    return visible(token).replace("\n", "") if token else "∅"
