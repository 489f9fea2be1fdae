"""What a unit does to the output, and which units of the layer before build it, as pages show them.

The method is chosen here, once per layer (layer_effects): for units that feed the final linear
layer directly (pooled features, a language model's last hidden state) the effect on each class
or next token is exact, the weight from the unit to it; for units a projection writes into a
language model's residual stream (MLP neurons) it is their direct effect through the final norm
and the unembedding; for other layers of a classifier it comes from gradient attribution
(attribution.py). Results are tables of each unit's strongest entries, not objects per unit.
"""
from __future__ import annotations

import numpy as np
import torch

from galleria.extract.architecture import LayerInfo, ModelLayout
from galleria.records import EffectsTable
from galleria.sources.dictionaries import dictionary_at

TOP_UP = 10
TOP_DOWN = 5
TOP_SOURCES = 6
BOTTOM_SOURCES = 3
EXACT = "exact: the final layer's weight from this unit to each class logit (its vote per unit of activation)"
DIRECT_TOKENS = ("direct: {vector}{centred}{scaled}, through the unembedding ({head}): the change in each "
                 "next-token logit per unit of activation via the residual stream (the norm's division by the "
                 "residual's size is left out)")
EXACT_TOKENS = ("exact: the language model head's weight from this unit to each next-token logit "
                "(its vote per unit of activation, at the same position)")
GRADIENT = ("activation × gradient of the predicted class's logit, summed over the unit's positions, "
            "averaged over {sample} sampled inputs: about how much each logit would drop without the unit")
BUILT_FROM = ("activation × gradient of this unit's peak, summed over each {layer} unit's positions, "
              "averaged over its {examples} strongest sampled inputs: about how much the peak would drop "
              "without that unit")


def layer_effects(module: torch.nn.Module, layout: ModelLayout, layer: LayerInfo,
                  gradient: np.ndarray | None = None, sample: int = 0) -> EffectsTable | None:
    """What each unit of a layer pushes up and down in the output, by the best method that applies:
    exact weights, direct logit effects, or the gradient table [units, classes] over ``sample`` inputs.
    A dictionary's units (an SAE's latents) have direct effects only, through what their decoder
    writes: they are read off the model, so no gradient flows from the output to them."""
    if dictionary_at(module, layer.name) is not None:
        return direct_effects(module, layout, layer)
    return (exact_effects(module, layout, layer) or direct_effects(module, layout, layer)
            or (strongest(gradient, GRADIENT.format(sample=sample), TOP_UP, TOP_DOWN) if gradient is not None
                else None))


def exact_effects(module: torch.nn.Module, layout: ModelLayout, layer: LayerInfo) -> EffectsTable | None:
    """Per shown unit of a layer that feeds the final linear layer, its weights to every class."""
    if not layer.feeds_head or layout.head is None or not layout.labelled_output:
        return None
    weight = module.get_submodule(layout.head).weight.detach().float().cpu()  # [classes, features]
    return strongest(weight[:, list(layer.units)].T.numpy(), EXACT_TOKENS if layout.lm_head else EXACT,
                     TOP_UP, TOP_DOWN)


def direct_effects(module: torch.nn.Module, layout: ModelLayout, layer: LayerInfo,
                   chunk: int = 256) -> EffectsTable | None:
    """Per shown unit of a layer whose output vectors reach a language model's residual stream (MLP
    neurons and attention outputs through the projection that writes them; an SAE's latents through
    their decoder rows), its direct effect on every next-token logit: the unit's output vector through
    the final norm's scale and the unembedding.

    A final LayerNorm also removes the vector's mean (checked numerically: shifting its input changes
    nothing); its division by the residual stream's size depends on the input and is left out.
    """
    if not layout.lm_head or layout.head is None or layout.residual_to_head is None:
        return None
    norm = layout.residual_to_head[0] if layout.residual_to_head else None
    unembed = module.get_submodule(layout.head).weight.detach().float().cpu()  # [vocab, width]
    found = _output_vectors(module, layer, unembed.shape[1])
    if found is None:
        return None
    vectors, vector = found
    scale, centred = _final_norm(module, norm, unembed.shape[1])
    if centred:
        vectors = vectors - vectors.mean(1, keepdim=True)
    vectors = vectors * scale
    method = DIRECT_TOKENS.format(vector=vector, head=layout.head,
                                  scaled=f", scaled by {norm}'s weight" if norm else "",
                                  centred=" less its mean (the final LayerNorm removes it)" if centred else "")
    parts = [strongest((vectors[start:start + chunk] @ unembed.T).numpy(), method, TOP_UP, TOP_DOWN)
             for start in range(0, len(vectors), chunk)]  # [units, vocab] at once would not fit a large vocabulary
    return EffectsTable(method, *(np.concatenate([getattr(p, f) for p in parts])
                                  for f in ("up", "up_values", "down", "down_values")))


def _output_vectors(module: torch.nn.Module, layer: LayerInfo, width: int) -> tuple[torch.Tensor, str] | None:
    """What each shown unit writes into the residual stream per unit of activation [units, width], and
    those words for the method; None where nothing says.

    A neuron's vector is read off the projection that writes it (its response to the unit alone, less
    its bias), so nn.Linear, GPT-2's transposed Conv1D and any other linear map work alike. A latent's is
    its decoder row, through its host's projection when the host is an MLP's hidden layer, as it is when
    the host already has the residual stream's width."""
    units = torch.tensor(layer.units)
    dictionary = dictionary_at(module, layer.name)
    if dictionary is not None:
        if dictionary.W_dec is None:
            return None
        rows = dictionary.W_dec.detach()[units.to(dictionary.W_dec.device)]
        vector = ("the latent's decoder row (W_dec)" if dictionary.kind == "sae"
                  else "the direction itself (as a steering vector adds it)")
    elif layer.writer is not None:
        rows = torch.zeros(len(units), layer.shape[0])
        rows[torch.arange(len(units)), units] = 1
        vector = f"the unit's output vector (its row of {layer.writer})"
    else:
        return None
    if layer.writer is not None:
        writer = module.get_submodule(layer.writer)
        param = next(writer.parameters(), None)
        device, dtype = (param.device, param.dtype) if param is not None else (torch.device("cpu"), torch.float32)
        with torch.inference_mode():
            rows = rows.to(device, dtype)
            rows = writer(rows) - writer(torch.zeros_like(rows[:1]))
        if dictionary is not None:
            vector += f" through {layer.writer}"
    if rows.shape[1] != width:
        return None
    return rows.float().cpu(), vector


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


def layer_built_from(table: np.ndarray, source: LayerInfo, examples: int) -> EffectsTable:
    """Per unit, the units of ``source`` (the chosen layer run just before) that add most to and take
    most from its peaks, from the attribution table [units, source units]."""
    found = strongest(table, BUILT_FROM.format(layer=source.name, examples=examples), TOP_SOURCES, BOTTOM_SOURCES)
    units = np.asarray(source.units + (-1,))  # column -1 (no entry) stays -1
    return EffectsTable(found.method, units[found.up], found.up_values, units[found.down], found.down_values,
                        source.name)


def strongest(table: np.ndarray, method: str, up: int, down: int) -> EffectsTable:
    """Per row of ``table``, its ``up`` largest positive and ``down`` most negative columns, strongest
    first (-1 where a row has fewer)."""
    table = np.nan_to_num(np.asarray(table, dtype=np.float64))
    order = np.argsort(-table, axis=1, kind="stable")
    rows = np.arange(len(table))[:, None]
    ups, downs = order[:, :up], order[:, ::-1][:, :down]
    up_values, down_values = table[rows, ups], table[rows, downs]
    return EffectsTable(method, np.where(up_values > 0, ups, -1), up_values, np.where(down_values < 0, downs, -1),
                        down_values)
