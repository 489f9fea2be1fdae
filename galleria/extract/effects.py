"""What a unit does to the output, and which units of the layer before build it, as pages show them.

For units that feed the final linear layer directly (pooled features), the effect on each
class is exact: the unit's activation is multiplied by one weight per class, and that weight
is its vote. For earlier layers the effects come from gradient attribution (attribution.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from galleria.extract.probe import LayerInfo, ModelLayout

TOP_UP = 10
TOP_DOWN = 5
TOP_SOURCES = 6
BOTTOM_SOURCES = 3
EXACT = "exact: the final layer's weight from this unit to each class logit (its vote per unit of activation)"
EXACT_TOKENS = ("exact: the language model head's weight from this unit to each next-token logit "
                "(its vote per unit of activation, at the same position)")


@dataclass(frozen=True)
class Effect:
    index: int  # a class, or a unit of the source layer
    value: float


@dataclass(frozen=True)
class UnitEffects:
    method: str  # one line, shown on the page, saying how the numbers were computed
    up: tuple[Effect, ...]  # strongest first
    down: tuple[Effect, ...]  # most negative first


@dataclass(frozen=True)
class UnitSources:
    layer: str  # the chosen layer that runs before the unit's own
    effects: UnitEffects  # Effect.index is a unit number of that layer


def exact_effects(module: torch.nn.Module, layout: ModelLayout, layer: LayerInfo) -> list[UnitEffects] | None:
    """Per shown unit of a layer that feeds the final linear layer, its weights to every class."""
    if not layer.feeds_head or layout.head is None or not layout.labelled_output:
        return None
    weight = module.get_submodule(layout.head).weight.detach().float().cpu()  # [classes, features]
    return strongest(weight[:, list(layer.units)].T.numpy(), EXACT_TOKENS if layout.lm_head else EXACT,
                     TOP_UP, TOP_DOWN)


def gradient_effects(table: np.ndarray, sample: int) -> list[UnitEffects]:
    """Per unit, the classes its attribution table [units, classes] says it pushes up and down."""
    method = (f"activation × gradient of the predicted class's logit, summed over the unit's positions, "
              f"averaged over {sample} sampled inputs: about how much each logit would drop without the unit")
    return strongest(table, method, TOP_UP, TOP_DOWN)


def unit_sources(table: np.ndarray, source: LayerInfo, examples: int) -> list[UnitSources]:
    """Per unit, the units of ``source`` that add most to and take most from its peaks."""
    method = (f"activation × gradient of this unit's peak, summed over each {source.name} unit's positions, "
              f"averaged over its {examples} strongest sampled inputs: about how much the peak would drop "
              "without that unit")
    found = strongest(table, method, TOP_SOURCES, BOTTOM_SOURCES)
    units = source.units
    return [UnitSources(source.name, UnitEffects(e.method, tuple(Effect(units[x.index], x.value) for x in e.up),
                                                 tuple(Effect(units[x.index], x.value) for x in e.down)))
            for e in found]


def strongest(table: np.ndarray, method: str, up: int, down: int) -> list[UnitEffects]:
    """Per row of ``table``, its largest positive and most negative columns, strongest first."""
    table = np.nan_to_num(np.asarray(table, dtype=np.float64))
    order = np.argsort(-table, axis=1, kind="stable")
    out = []
    for row, ranked in zip(table, order):
        ups = tuple(Effect(int(c), float(row[c])) for c in ranked[:up] if row[c] > 0)
        downs = tuple(Effect(int(c), float(row[c])) for c in ranked[::-1][:down] if row[c] < 0)
        out.append(UnitEffects(method, ups, downs))
    return out
