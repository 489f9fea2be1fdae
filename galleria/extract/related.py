"""Units related to each unit, linked from its page with a value each.

For a dictionary's latents (and directions), what their decoder rows say: the latents that write
the most nearly the same direction (cosine), and the host layer's units the row loads on most
(Neuronpedia's "neuron alignment"). For every other unit, the units of its layer whose peaks over
the inputs correlate most with its own: they fire on the same inputs, found by the health check's
search for near-duplicates over the same correlations. Both are read off what the build already
holds (the weights, each unit's peak on every input): no extra pass over the inputs.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from galleria.extract.effects import strongest
from galleria.extract.architecture import LayerInfo
from galleria.records import EffectsTable
from galleria.extract.similarity import nearest
from galleria.sources.dictionaries import dictionary_at, host_of

if TYPE_CHECKING:
    from galleria.extract.health import Correlated

SHOWN = 4  # related units shown per kind
CORRELATED = "units whose peaks over the {inputs} inputs correlate most with its own"
NEIGHBOURS = "latents whose decoder rows point most nearly its way (cosine)"
LOADINGS = "units its decoder row loads on most, and most negatively"


def layer_related(module: torch.nn.Module, layer: LayerInfo, correlated: "Correlated",
                  shown: dict[str, tuple[int, ...]]) -> tuple[EffectsTable, ...]:
    """Per related kind that applies to ``layer``, a table of each shown unit's related units (as unit
    numbers, ``layer`` of the table naming their layer). ``correlated`` is what the layer's health
    check found of its peaks' correlations; ``shown`` the units each chosen layer of the model shows,
    so that every unit named has a page."""
    dictionary = dictionary_at(module, layer.name)
    if dictionary is None or dictionary.W_dec is None:
        return (_table(correlated.index, correlated.value, CORRELATED.format(inputs=correlated.inputs), layer),)
    rows = dictionary.W_dec.detach().double().cpu().numpy()[list(layer.units)]  # [units, d_in]
    found = [_table(*nearest(rows, SHOWN), NEIGHBOURS, layer)]
    host = host_of(module, layer.name)
    if host in shown:
        units = shown[host]
        loads = strongest(rows[:, list(units)], LOADINGS, SHOWN, SHOWN // 2)
        found.append(_numbered(loads, units, host))
    return tuple(found)


def _table(index: np.ndarray, value: np.ndarray, method: str, layer: LayerInfo) -> EffectsTable:
    """Nearest units (positions in ``layer``) as a table of its unit numbers, none pushed down."""
    empty = np.full((len(index), 0), -1)
    return _numbered(EffectsTable(method, index, value, empty, empty.astype(np.float64)), layer.units, layer.name)


def _numbered(table: EffectsTable, units: tuple[int, ...], layer: str) -> EffectsTable:
    """``table`` with its column positions turned into the unit numbers of ``layer`` (-1 stays -1)."""
    numbers = np.asarray(units + (-1,))
    return EffectsTable(table.method, numbers[table.up], table.up_values, numbers[table.down], table.down_values,
                        layer)
