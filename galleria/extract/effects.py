"""What a unit does to the output: the classes it pushes up and down.

For units that feed the final linear layer directly (pooled features), the effect is exact:
each unit's activation is multiplied by one weight per class, and that weight is its vote.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from galleria.extract.probe import LayerInfo, ModelLayout

TOP_UP = 10
TOP_DOWN = 5
EXACT = "exact: the final layer's weight from this unit to each class logit (its vote per unit of activation)"


@dataclass(frozen=True)
class Effect:
    cls: int
    value: float


@dataclass(frozen=True)
class UnitEffects:
    method: str  # one line, shown on the page, saying how the numbers were computed
    up: tuple[Effect, ...]  # strongest first
    down: tuple[Effect, ...]  # most negative first


def exact_effects(module: torch.nn.Module, layout: ModelLayout, layer: LayerInfo) -> list[UnitEffects] | None:
    """Per shown unit of a layer that feeds the final linear layer, its weights to every class."""
    if not layer.feeds_head or layout.head is None or not layout.classifier:
        return None
    weight = module.get_submodule(layout.head).weight.detach().float().cpu()  # [classes, features]
    columns = weight[:, list(layer.units)].T  # [units, classes]
    up = columns.topk(min(TOP_UP, columns.shape[1]), dim=1)
    down = columns.topk(min(TOP_DOWN, columns.shape[1]), dim=1, largest=False)
    effects = []
    for i in range(columns.shape[0]):
        effects.append(UnitEffects(
            EXACT,
            tuple(Effect(int(c), float(v)) for v, c in zip(up.values[i], up.indices[i]) if v > 0),
            tuple(Effect(int(c), float(v)) for v, c in zip(down.values[i], down.indices[i]) if v < 0)))
    return effects
