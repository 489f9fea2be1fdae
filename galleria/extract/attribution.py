"""Gradient attribution: what each unit does to the classes, and which earlier units build it.

Both numbers are activation × gradient summed over a unit's positions: the first-order
estimate of how much a quantity would drop if the unit were switched off. One pass over a
sample of the inputs, each input on its own, serves every layer:

- classes: the gradient of the logit of the class the model predicts for the input, so each
  input tells what the unit does to the class it is about. Averaged over the sample.
- sources: for each unit, the gradient of its peak on each of its strongest sampled inputs,
  taken with respect to the chosen layer that runs before it. Averaged over those inputs.

Results are cached under the activations' key and the sample settings. Sums run over blocks of
the sample that are then added in order, so that under torchrun, where each rank takes its own
blocks, they come out the same, bit for bit, as in one process.
"""
from __future__ import annotations

import hashlib
import shutil
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import torch

from galleria.cache import Cache, content_key
from galleria.config import Config
from galleria.distributed import ranks
from galleria.errors import in_user_model
from galleria.extract.hooks import first_tensor, perturbable
from galleria.extract.architecture import ModelLayout
from galleria.extract.run import ModelActivations, pick_device
from galleria.sources.images import ImageLoader, InputSet
from galleria.sources.models import LoadedModel

FORMAT = 2
BLOCK = 32  # sampled inputs summed together before the blocks' sums are added up, in sample order
ROWS_PER_CALL = 256  # gradients taken at once for one input: bounds the memory of a batched backward


@dataclass
class LayerAttribution:
    classes: np.ndarray | None  # [units, classes]: mean effect on each class logit; None if not computed
    source: str | None  # the chosen layer that runs just before this one
    sources: np.ndarray | None  # [units, source units]: mean contribution of each to the unit's peak


@dataclass
class ModelAttribution:
    layers: dict[str, LayerAttribution]
    sample: int  # inputs the averages run over
    examples: int  # strongest sampled inputs per unit, for sources
    cached: bool


def sample_inputs(inputs: InputSet, size: int) -> list[int]:
    """The ``size`` inputs with the lowest hash of their id, in input order.

    Stable: adding inputs to a set changes the sample only where a new one hashes lower.
    """
    ranked = sorted(inputs.usable, key=lambda item: hashlib.blake2b(item.id.encode(), digest_size=8).digest())
    return sorted(item.index for item in ranked[:size])


def attribute(model: LoadedModel, layout: ModelLayout, inputs: InputSet, acts: ModelActivations, config: Config,
              cache: Cache, progress=None) -> ModelAttribution | None:
    """Class effects and sources of every chosen layer, from cache when nothing changed; None when off."""
    settings = config.attribution
    if not settings.inputs or not inputs.usable:
        return None
    sample = sample_inputs(inputs, settings.inputs)
    key = content_key(FORMAT, acts.key, sample, settings.examples)
    entry = cache.entry("attribution", key)
    cached = entry is not None
    if not cached:
        _run(model, layout, inputs, acts, sample, settings.examples, config, cache, key, progress)
        entry = cache.entry("attribution", key)
    elif progress is not None:
        progress.update(len(sample))
    state = torch.load(entry / "attribution.pt", weights_only=True)
    layers = {}
    for layer in layout.layers:
        got = state["layers"].get(layer.name, {})
        classes = got.get("classes")
        sources = got.get("sources")
        layers[layer.name] = LayerAttribution(None if classes is None else classes.numpy(), got.get("source"),
                                              None if sources is None else sources.numpy())
    return ModelAttribution(layers, len(sample), settings.examples, cached)


def _run(model: LoadedModel, layout: ModelLayout, inputs: InputSet, acts: ModelActivations, sample: list[int],
         examples: int, config: Config, cache: Cache, key: str, progress) -> None:
    """The entry: every block's sums added in order. Under torchrun each rank sums its own share of
    the blocks and keeps them beside the entry until rank 0 adds them all up."""
    blocks = [sample[start:start + BLOCK] for start in range(0, len(sample), BLOCK)]
    rows = _rows(acts, sample, examples) if examples else {}
    share = ranks().share(len(blocks))
    parts = f"attribution/.{key}.parts"
    total = None
    device = pick_device(config.extract.device)
    module = model.module.to(device)
    try:
        for number in share:
            if ranks().world > 1 and cache.entry(parts, str(number)) is not None:
                continue  # summed by a rank of a build that failed later
            sums = _block_sums(model, module, device, layout, inputs, blocks[number], rows, progress)
            if ranks().world == 1:
                total = sums if total is None else _added(total, sums)
            else:
                with cache.writing(parts, str(number)) as folder:
                    torch.save(sums, folder / "sums.pt")
    finally:
        module.to("cpu")
    ranks().wait()
    if ranks().first:
        if total is None:
            for number in range(len(blocks)):
                sums = torch.load(cache.entry(parts, str(number)) / "sums.pt", weights_only=True)
                total = sums if total is None else _added(total, sums)
        with cache.writing("attribution", key) as folder:
            torch.save(_averaged(total, len(sample), min(examples, len(sample))), folder / "attribution.pt")
        shutil.rmtree(cache.root / parts, ignore_errors=True)
    ranks().wait()


def _added(total: dict, sums: dict) -> dict:
    """Two blocks' sums as one."""
    return {"order": total["order"] or sums["order"],
            "classes": {name: total["classes"][name] + sums["classes"][name] for name in total["classes"]},
            "sources": {name: _plus(total["sources"].get(name), sums["sources"].get(name))
                        for name in sorted({*total["sources"], *sums["sources"]})}}


def _plus(a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor:
    return b if a is None else a if b is None else a + b


def _averaged(total: dict, sample: int, examples: int) -> dict:
    """The stored entry: per layer the mean class effects and source contributions."""
    order = total["order"]
    state = {"layers": {}}
    for name, previous in zip(order, [None, *order[:-1]]):
        entry = {}
        if name in total["classes"]:
            entry["classes"] = (total["classes"][name] / sample).float()
        if name in total["sources"]:
            entry["sources"] = (total["sources"][name] / examples).float()
            entry["source"] = previous
        state["layers"][name] = entry
    return state


def _block_sums(model: LoadedModel, module: torch.nn.Module, device: torch.device, layout: ModelLayout,
                inputs: InputSet, block: list[int], rows: dict, progress) -> dict:
    """One block of the sample, each input on its own: the sums of its class effects (per class
    layer) and source contributions (per layer with a chosen layer before it)."""
    names = [layer.name for layer in layout.layers]
    units = {layer.name: torch.tensor(layer.units, device=device) for layer in layout.layers}
    layouts = {layer.name: layer.layout for layer in layout.layers}
    class_layers = {l.name for l in layout.layers if layout.classifier and not l.is_output and not l.feeds_head}
    classes = {name: torch.zeros(len(units[name]), layout.output_shape[0], dtype=torch.float64)
               for name in class_layers}
    sources: dict[str, torch.Tensor] = {}
    order: list[str] = []  # chosen layers in the order the model runs them
    loader = ImageLoader(model.config.preprocessing)
    with in_user_model(model.config.id, module, "gradient attribution"), perturbable(module, names) as seen, \
            torch.enable_grad():
        for n in block:
            x = loader.batch([inputs.items[n]])[0].to(device)
            seen.clear()
            output = first_tensor(module(x))
            for name, (act, delta) in list(seen.items()):  # the outputs as [1, units, *positions]
                seen[name] = (layouts[name].units_first(act), delta, layouts[name])
            if not order:
                order = list(seen)
            if class_layers:
                _add_class_effects(output, seen, units, classes)
            for name, previous in zip(order[1:], order):
                wanted = rows.get(name, {}).get(n)
                if wanted:
                    got = _source_effects(seen, units, name, previous, wanted)
                    if got is not None:
                        if name not in sources:
                            sources[name] = torch.zeros(len(units[name]), len(units[previous]),
                                                        dtype=torch.float64)
                        sources[name][torch.tensor(wanted)] += got
            if progress is not None:
                progress.update(1)
    return {"order": order, "classes": classes, "sources": sources}


def _rows(acts: ModelActivations, sample: list[int], examples: int) -> dict[str, dict[int, list[int]]]:
    """Per layer and sampled input, the units (positions in the layer) for which that input is
    one of their ``examples`` strongest in the sample."""
    out: dict[str, dict[int, list[int]]] = {}
    chosen = np.asarray(sample)
    for index, layer in enumerate(acts.layers):
        peaks = np.nan_to_num(np.asarray(acts.peaks(index)[chosen], dtype=np.float64), nan=-np.inf)  # [sample, units]
        best = np.argsort(-peaks, axis=0, kind="stable")[:examples]  # [examples, units]
        by_input: dict[int, list[int]] = defaultdict(list)
        for unit in range(peaks.shape[1]):
            for row in best[:, unit]:
                by_input[int(chosen[row])].append(unit)
        out[layer.name] = by_input
    return out


def _per_unit(grad: torch.Tensor, act: torch.Tensor, units: torch.Tensor) -> torch.Tensor:
    """Activation × gradient summed over each unit's positions: [..., units] from [..., C, *spatial]."""
    lead = grad.dim() - act.dim()  # dimensions of grad in front of act's
    product = (grad * act).index_select(lead, units)
    return product.flatten(lead + 1).sum(-1) if product.dim() > lead + 1 else product


def _add_class_effects(output: torch.Tensor, seen: dict, units: dict, classes: dict) -> None:
    """Add one input's activation × gradient of its predicted class's logit to each layer's table."""
    names = [name for name in classes if name in seen]
    predicted = int(output[0].argmax())
    grads = torch.autograd.grad(output[0, predicted], [seen[name][1] for name in names], retain_graph=True,
                                allow_unused=True)
    for name, grad in zip(names, grads):
        if grad is not None:
            act, _, layout = seen[name]
            classes[name][:, predicted] += _per_unit(layout.units_first(grad)[0], act.detach()[0],
                                                     units[name]).double().cpu()


def _source_effects(seen: dict, units: dict, name: str, previous: str, wanted: list[int]) -> torch.Tensor | None:
    """[len(wanted), source units]: each wanted unit's peak on this input, attributed to the
    chosen units of the previous layer. None when this layer does not depend on that one."""
    output = seen[name][0]
    source_act, source_delta, source_layout = seen[previous]
    picked = units[name][torch.tensor(wanted, device=output.device)]
    flat = output.detach()[0].reshape(output.shape[1], -1)[picked]  # [rows, positions]
    peak = flat.argmax(1)
    parts = []
    for start in range(0, len(wanted), ROWS_PER_CALL):
        chunk = slice(start, start + ROWS_PER_CALL)
        cotangent = torch.zeros(len(picked[chunk]), *output.shape, device=output.device, dtype=output.dtype)
        rows = torch.arange(cotangent.shape[0], device=output.device)
        cotangent.view(cotangent.shape[0], output.shape[1], -1)[rows, picked[chunk], peak[chunk]] = 1
        (grad,) = torch.autograd.grad(output, source_delta, cotangent, retain_graph=True, allow_unused=True,
                                      is_grads_batched=True)
        if grad is None:
            return None
        parts.append(_per_unit(source_layout.units_first(grad)[:, 0], source_act.detach()[0],
                               units[previous]).double().cpu())
    return torch.cat(parts)
