"""Token contexts for text units: which stretch of text each example shows, coloured by the unit.

No second model run: the reducers kept each example's values at every token of its window.
Overlapping windows hold the same text twice, so an example whose extreme token lies within
the context of a better example's is left out, as a repeated crop is for images.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from galleria.config import ExamplesConfig
from galleria.extract.run import ModelActivations
from galleria.records import Example
from galleria.sources.images import InputSet

CONTEXT = {"chars": 40, "subwords": 12}  # tokens each side of the extreme one, by default
LEVELS = 8  # colour steps each side of zero, in the theme's CSS


@dataclass
class TokenContext:
    example: Example
    start: int  # stream position of the window's first token
    values: np.ndarray  # [window] the unit's value at each token of the window

    @property
    def at(self) -> int:
        """The extreme token, as a position in the window."""
        return self.example.position[0]

    def around(self, tokens: int) -> tuple[int, int]:
        """The stretch of the window within ``tokens`` of the extreme token, as [lo, hi)."""
        return max(0, self.at - tokens), min(len(self.values), self.at + tokens + 1)


@dataclass
class UnitText:
    top: list[TokenContext]
    bottom: list[TokenContext]
    intervals: list[list[TokenContext]]  # per band of the summary's intervals
    tokens: list[tuple[int, float, int]]  # highest mean activation: (vocabulary id, mean, occurrences)
    scale: float  # the colour scale runs from -scale to +scale, zero white


@dataclass
class ModelText:
    layers: dict[str, list[UnitText]]  # per layer, one entry per shown unit
    context: int  # tokens shown each side of an example's extreme token


def token_contexts(acts: ModelActivations, inputs: InputSet, examples: ExamplesConfig) -> ModelText:
    corpus = inputs.text
    context = examples.context or CONTEXT[corpus.kind]
    layers = {}
    for layer in acts.layers:
        reducer = layer.reducer
        strongest = layer.token_means.strongest(corpus.counted) if layer.token_means else None
        units = []
        for position, summary in enumerate(layer.summaries):
            stats = summary.stats
            scale = max(abs(stats.max), abs(stats.min), 1e-6)
            shown = {}
            for kind, candidates, maps, want in (("top", summary.top, reducer.top_maps(position), examples.top),
                                                 ("bottom", summary.bottom, reducer.bottom_maps(position),
                                                  examples.bottom)):
                shown[kind] = [_context(inputs, example, maps[slot])
                               for slot, example in distinct(candidates, inputs, want, context)]
            bands = []
            for band in summary.intervals:
                maps = layer.intervals.interval_maps(position, band, reducer.spatial_shape)
                bands.append([_context(inputs, e, maps[slot]) for slot, e in enumerate(band.examples)])
            units.append(UnitText(shown["top"], shown["bottom"], bands,
                                  strongest[position] if strongest else [], scale))
        layers[layer.info.name] = units
    return ModelText(layers, context)


def _context(inputs: InputSet, example: Example, values: np.ndarray) -> TokenContext:
    return TokenContext(example, inputs.items[example.input_index].span[0], np.asarray(values, dtype=np.float32))


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
