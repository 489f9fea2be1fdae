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
DIRECT_TOKENS = ("direct: the unit's output vector (its row of {writer}){centred}{scaled}, through the unembedding "
                 "({head}): the change in each next-token logit per unit of activation via the residual stream "
                 "(the norm's division by the residual's size is left out)")
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


def direct_effects(module: torch.nn.Module, layout: ModelLayout, layer: LayerInfo,
                   chunk: int = 256) -> list[UnitEffects] | None:
    """Per shown unit of a layer whose output a projection writes into a language model's residual
    stream (MLP neurons, attention outputs, dictionary latents), its direct effect on every
    next-token logit: the unit's output vector through the final norm's scale and the unembedding.

    The output vector is read off the projection itself (its response to the unit alone, less its
    bias), so nn.Linear, GPT-2's transposed Conv1D and any other linear map work alike. A final
    LayerNorm also removes the vector's mean (checked numerically: shifting its input changes nothing);
    its division by the residual stream's size depends on the input and is left out.
    """
    if layer.writer is None or not layout.lm_head or layout.head is None or layout.residual_to_head is None:
        return None
    norm = layout.residual_to_head[0] if layout.residual_to_head else None
    writer = module.get_submodule(layer.writer)
    unembed = module.get_submodule(layout.head).weight.detach().float().cpu()  # [vocab, width]
    param = next(writer.parameters(), None)
    device, dtype = (param.device, param.dtype) if param is not None else (torch.device("cpu"), torch.float32)
    units = torch.tensor(layer.units)
    scale, centred = _final_norm(module, norm, unembed.shape[1])
    with torch.inference_mode():
        basis = torch.zeros(len(units), layer.shape[0], device=device, dtype=dtype)
        basis[torch.arange(len(units)), units.to(device)] = 1
        vectors = (writer(basis) - writer(torch.zeros_like(basis[:1]))).float().cpu()  # [units, width]
    if centred:
        vectors = vectors - vectors.mean(1, keepdim=True)
    vectors = vectors * scale
    method = DIRECT_TOKENS.format(writer=layer.writer, head=layout.head,
                                  scaled=f", scaled by {norm}'s weight" if norm else "",
                                  centred=" less its mean (the final LayerNorm removes it)" if centred else "")
    out = []
    for start in range(0, len(vectors), chunk):  # [units, vocab] at once would not fit for a large vocabulary
        table = vectors[start:start + chunk] @ unembed.T
        up, down = table.topk(min(TOP_UP, table.shape[1]), dim=1), table.topk(min(TOP_DOWN, table.shape[1]), dim=1,
                                                                             largest=False)
        for values, index, low, low_index in zip(up.values.tolist(), up.indices.tolist(), down.values.tolist(),
                                                 down.indices.tolist()):
            out.append(UnitEffects(method, tuple(Effect(c, v) for c, v in zip(index, values) if v > 0),
                                   tuple(Effect(c, v) for c, v in zip(low_index, low) if v < 0)))
    return out


def _final_norm(module: torch.nn.Module, name: str | None, width: int) -> tuple[torch.Tensor, bool]:
    """The final norm's per-feature scale and whether it removes the mean (a LayerNorm, not an RMSNorm)."""
    if name is None:
        return torch.ones(width), False
    norm = module.get_submodule(name)
    weight = getattr(norm, "weight", None)
    scale = weight.detach().float().cpu() if isinstance(weight, torch.Tensor) and weight.shape == (width,) \
        else torch.ones(width)
    param = next(norm.parameters(), None)
    device, dtype = (param.device, param.dtype) if param is not None else (torch.device("cpu"), torch.float32)
    x = torch.randn(2, width, generator=torch.Generator().manual_seed(0)).to(device, dtype)
    with torch.inference_mode():
        centred = bool(torch.allclose(norm(x), norm(x + 3.0), rtol=1e-3, atol=1e-3))
    return scale, centred


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
