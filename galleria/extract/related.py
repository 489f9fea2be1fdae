"""Units related to each unit, linked from its page with a value each.

For a dictionary's latents (and directions), what their decoder rows say: the latents that write
the most nearly the same direction (cosine), and the host layer's units the row loads on most
(Neuronpedia's "neuron alignment"). For every other unit, the units of its layer whose peaks over
the inputs correlate most with its own: they fire on the same inputs. Both are read off what the
build already holds (the weights, each unit's peak on every input): no extra pass over the inputs.
"""
from __future__ import annotations

import numpy as np
import torch

from galleria.extract.effects import strongest
from galleria.extract.probe import LayerInfo
from galleria.records import EffectsTable
from galleria.sources.dictionaries import dictionary_at

SHOWN = 4  # related units shown per kind
ROWS = 1024  # units compared with all others at once: units x units would not fit a wide layer
CORRELATED = "units whose peaks over the {inputs} inputs correlate most with its own"
NEIGHBOURS = "latents whose decoder rows point most nearly its way (cosine)"
LOADINGS = "units its decoder row loads on most, and most negatively"


def layer_related(module: torch.nn.Module, layer: LayerInfo, peaks: np.ndarray,
                  shown: dict[str, tuple[int, ...]]) -> tuple[EffectsTable, ...]:
    """Per related kind that applies to ``layer``, a table of each shown unit's related units (as unit
    numbers, ``layer`` of the table naming their layer). ``peaks`` is [inputs, units]; ``shown`` the
    units each chosen layer of the model shows, so that every unit named has a page."""
    dictionary = dictionary_at(module, layer.name)
    if dictionary is None or dictionary.W_dec is None:
        return (_nearest(_centred(peaks), layer, CORRELATED.format(inputs=len(peaks))),)
    rows = dictionary.W_dec.detach().float().cpu()[list(layer.units)]  # [units, d_in]
    found = [_nearest(rows, layer, NEIGHBOURS)]
    host = layer.name.rpartition(".")[0]
    if host in shown:
        units = shown[host]
        loads = strongest(rows[:, list(units)].numpy(), LOADINGS, SHOWN, SHOWN // 2)
        found.append(_numbered(loads, units, host))
    return tuple(found)


def _centred(peaks: np.ndarray) -> torch.Tensor:
    """Each unit's peaks over the inputs, less their mean [units, inputs]: cosines of these are correlations.
    Inputs that could not be read (NaN) count as 0."""
    values = torch.from_numpy(np.nan_to_num(np.asarray(peaks, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0))
    return (values - values.mean(0)).T


def _nearest(vectors: torch.Tensor, layer: LayerInfo, method: str) -> EffectsTable:
    """Per row of ``vectors`` (one per shown unit), the other rows of highest cosine (a unit with a zero
    vector, dead or constant, is related to none and none to it)."""
    norms = vectors.norm(dim=1, keepdim=True)
    unit = torch.where(norms > 1e-12, vectors / norms.clamp(min=1e-12), 0.0)
    count = len(unit)
    index = torch.full((count, SHOWN), -1, dtype=torch.int64)
    value = torch.zeros((count, SHOWN), dtype=torch.float64)
    k = min(SHOWN, count - 1)
    for start in range(0, count, ROWS):
        block = unit[start:start + ROWS] @ unit.T  # [rows, units]
        block[torch.arange(len(block)), torch.arange(start, start + len(block))] = -2  # not itself
        best = block.topk(k, dim=1) if k > 0 else None
        if best is not None:
            keep = best.values > 1e-6
            index[start:start + len(block), :k] = torch.where(keep, best.indices, -1)
            value[start:start + len(block), :k] = torch.where(keep, best.values, 0.0).double()
    empty = np.full((count, 0), -1)
    return _numbered(EffectsTable(method, index.numpy(), value.numpy(), empty, empty.astype(np.float64)),
                     layer.units, layer.name)


def _numbered(table: EffectsTable, units: tuple[int, ...], layer: str) -> EffectsTable:
    """``table`` with its column positions turned into the unit numbers of ``layer`` (-1 stays -1)."""
    numbers = np.asarray(units + (-1,))
    return EffectsTable(table.method, numbers[table.up], table.up_values, numbers[table.down], table.down_values,
                        layer)
