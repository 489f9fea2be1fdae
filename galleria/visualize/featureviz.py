"""Feature visualization: for each unit, images optimized to excite it (or to suppress it).

Each image of a batch is its own unit, so one forward and backward pass advances many units at
once: the main speed lever on CPU and GPU. The forward pass stops at the layer being
visualized. Every image depends only on its own seed, the shared random transformations and
its unit, never on its batch-mates (diversity sets aside, which share a batch on purpose), so
results are cached per image under (weights, layer, unit, objective, settings, seed).
"""
from __future__ import annotations

import json
import math
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from galleria.cache import Cache, content_key
from galleria.config import FeatureVizConfig, ModelConfig, Preprocessing
from galleria.distributed import ranks
from galleria.errors import in_user_model
from galleria.extract.hooks import first_tensor
from galleria.extract.layout import Layout
from galleria.visualize.image_param import FourierImages, colour_basis
from galleria.visualize.robustness import random_affine
from galleria.visualize.tiles import as_image, encode

FORMAT = 2
LEARNING_RATE = 0.05
REDIRECT_SHARE = 4  # ReLU gradients are redirected for the first 1/REDIRECT_SHARE of the steps
DIVERSITY_WEIGHT = 0.5  # penalty for similar images, relative to the objective's own size


@dataclass(frozen=True)
class VizJob:
    layer: str
    position: int  # index among the layer's shown units
    unit: int  # channel number
    kind: str  # "channel", "negative", "neuron" (the centre position only) or "diverse"
    copy: int = 0  # which image of a diversity set


@dataclass(frozen=True)
class VizImage:
    path: Path
    mean: float  # the unit's mean over positions on the image: the objective, sign aside
    peak: float  # its highest value on the image


@dataclass
class UnitViz:
    channel: VizImage | None = None
    negative: VizImage | None = None
    neuron: VizImage | None = None
    diverse: list[VizImage] | None = None


class _Stop(Exception):
    """Raised in a hook once the visualized layer has run: the rest of the model is not needed."""


def settings_for(cfg: ModelConfig, layer: str) -> FeatureVizConfig:
    """The settings of the first layer entry that names this layer, else the model's."""
    spec = cfg.spec_for(layer)
    return spec.featureviz if spec is not None and spec.featureviz else cfg.featureviz


def jobs_for(layer: str, units: tuple[int, ...], settings: FeatureVizConfig) -> list[VizJob]:
    chosen = settings.chosen(units)
    jobs = []
    for position, unit in enumerate(units):
        if unit not in chosen:
            continue
        jobs.append(VizJob(layer, position, unit, "channel"))
        if settings.negative:
            jobs.append(VizJob(layer, position, unit, "negative"))
        if settings.neuron:
            jobs.append(VizJob(layer, position, unit, "neuron"))
        jobs.extend(VizJob(layer, position, unit, "diverse", c) for c in range(settings.diversity))
    return jobs


def visualize_units(module: torch.nn.Module, model_key: str, pre: Preprocessing, basis: torch.Tensor,
                    jobs: list[VizJob], settings: dict[str, FeatureVizConfig], layouts: dict[str, Layout],
                    cache: Cache, device: torch.device, progress=None) -> dict[str, dict[int, UnitViz]]:
    """Every job's image, from cache where it was made before; results per layer and unit."""
    deepest = max({job.layer for job in jobs}, key=_depth(module))
    sizes = {size: _working_size(module, deepest, pre, size) for size in {settings[job.layer].size for job in jobs}}

    def drawing(layer: str) -> tuple:  # what an image depends on: not which units or how many share a batch
        c = settings[layer]
        return (c.steps, c.size, c.seed) + ((sizes[c.size],) if sizes[c.size] != (c.size, c.size) else ())

    keys = {job: content_key(FORMAT, model_key, job.layer, job.unit, job.kind, job.copy,
                             job.kind == "diverse" and settings[job.layer].diversity, drawing(job.layer),
                             basis.numpy().tobytes(), pre.mean, pre.std)
            for job in jobs}
    ranks().wait()  # every rank sees the same jobs pending (none writes before all have looked),
    pending = [job for job in jobs if not cache.file("featureviz", keys[job], ".json").is_file()]
    ranks().wait()  # and so takes its own share of them
    by_layer: dict[str, list[VizJob]] = defaultdict(list)
    for job in pending:
        by_layer[job.layer].append(job)
    # batches made as one process makes them, then dealt to the ranks: an image does not depend on their number.
    # A batch costs about its images x steps x pixels x how far into the model its layer is
    batches = [(layer, batch) for layer, layer_jobs in by_layer.items()
               for batch in _batches(layer_jobs, settings[layer].batch)]
    depth = _depth(module)
    mine = ranks().mine(batches, [len(batch) * settings[layer].steps * math.prod(sizes[settings[layer].size])
                                  * (2 + depth(layer)) for layer, batch in batches])
    if progress is not None:
        progress.reset(total=max(len(jobs) - len(pending) + sum(len(batch) for _, batch in mine), 1))
        progress.update(len(jobs) - len(pending))
    module = module.to(device)
    try:
        for layer, batch in mine:
            images, means, peaks = optimize(module, layer, layouts[layer], batch, pre, basis, settings[layer],
                                            sizes[settings[layer].size], device)
            for job, image, mean, peak in zip(batch, images, means, peaks):
                cache.put_file("featureviz", keys[job], ".png", encode(as_image(image), "png"))
                cache.put_file("featureviz", keys[job], ".json", json.dumps({"mean": mean, "peak": peak}).encode())
            if progress is not None:
                progress.update(len(batch))
    finally:
        module.to("cpu")
    ranks().wait()  # the other ranks' images too
    out: dict[str, dict[int, UnitViz]] = defaultdict(dict)
    for job in jobs:
        numbers = json.loads(cache.file("featureviz", keys[job], ".json").read_text())
        image = VizImage(cache.file("featureviz", keys[job], ".png"), numbers["mean"], numbers["peak"])
        viz = out[job.layer].setdefault(job.unit, UnitViz())
        if job.kind == "diverse":
            viz.diverse = (viz.diverse or []) + [image]
        else:
            setattr(viz, job.kind, image)
    return dict(out)


def _batches(jobs: list[VizJob], size: int):
    """Batches of at most ``size`` jobs (a diversity set may make one larger), sets kept whole."""
    groups: dict[object, list[VizJob]] = defaultdict(list)
    for job in jobs:
        groups[(job.unit, "diverse") if job.kind == "diverse" else job].append(job)
    batch: list[VizJob] = []
    for group in groups.values():
        if batch and len(batch) + len(group) > size:
            yield batch
            batch = []
        batch.extend(group)
    if batch:
        yield batch


def optimize(module: torch.nn.Module, layer: str, layout: Layout, jobs: list[VizJob], pre: Preprocessing,
             basis: torch.Tensor, settings: FeatureVizConfig, size: tuple[int, int],
             device: torch.device) -> tuple[np.ndarray, list[float], list[float]]:
    """Optimize one image per job at ``size`` (height, width); returns uint8 images [B, H, W, C] and each
    unit's mean and peak on them."""
    seeds = [int(content_key(settings.seed, job.layer, job.unit, job.kind, job.copy)[:8], 16) for job in jobs]
    height, width = size
    images = FourierImages(seeds, pre.channels, height, width, basis).to(device)
    optimizer = torch.optim.Adam(images.parameters(), lr=LEARNING_RATE)
    mean = torch.tensor(pre.mean, device=device).view(1, -1, 1, 1)
    std = torch.tensor(pre.std, device=device).view(1, -1, 1, 1)
    units = torch.tensor([job.unit for job in jobs], device=device)
    signs = torch.tensor([-1.0 if job.kind == "negative" else 1.0 for job in jobs], device=device)
    centre = torch.tensor([job.kind == "neuron" for job in jobs], device=device)
    sets: dict[int, list[int]] = defaultdict(list)  # unit -> its diversity set's rows
    for i, job in enumerate(jobs):
        if job.kind == "diverse":
            sets[job.unit].append(i)
    generator = torch.Generator().manual_seed(settings.seed)
    redirect = max(1, settings.steps // REDIRECT_SHARE)
    with redirected_relus(module) as redirecting, _layer_output(module, layer, layout) as run, _fast_mode(module):
        for step in range(settings.steps):  # the ReLU hooks redirect before the layer's hook reads
            redirecting[0] = step < redirect
            moved = random_affine(images(), generator).contiguous(memory_format=torch.channels_last)
            acts = run((moved - mean) / std)
            chosen = acts[torch.arange(len(jobs), device=device), units]
            value = _objective(chosen, centre, layout)
            loss = -(signs * value).sum()
            for rows in sets.values():
                if len(rows) > 1:
                    loss = loss + DIVERSITY_WEIGHT * value[rows].detach().abs().mean() * _similarity(acts[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        redirecting[0] = False
        with torch.no_grad():
            final = images()
            chosen = run((final - mean) / std)[torch.arange(len(jobs), device=device), units]
    flat = chosen.flatten(1) if chosen.dim() > 1 else chosen.unsqueeze(1)
    pixels = (final.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return pixels, flat.mean(1).tolist(), flat.amax(1).tolist()


def _working_size(module: torch.nn.Module, layer: str, pre: Preprocessing, size: int) -> tuple[int, int]:
    """size x size if the model runs on it as far as ``layer``; else the model's own input size.

    Models that flatten a fixed-size map into a linear layer, and vision transformers whose
    position embeddings fit one grid, accept nothing else; they say so with whatever exception
    their code raises (timm asserts), so any failure here means "not this size"."""
    if (size, size) == tuple(pre.size):
        return size, size
    try:
        with torch.no_grad(), _layer_output(module, layer, None) as run:
            run(torch.zeros(1, pre.channels, size, size))  # before the model moves to its device
        return size, size
    except Exception:
        return tuple(pre.size)


def _depth(module: torch.nn.Module):
    """A key that orders layer names by when the model first runs them (unseen ones first)."""
    order = {name: i for i, (name, _) in enumerate(module.named_modules())}
    return lambda name: order.get(name, -1)


@contextmanager
def _fast_mode(module: torch.nn.Module):
    """No gradients for the weights (only the images learn: that skips a third of the backward
    pass) and convolutions in channels-last layout (about 15% faster on CPU here); both undone after."""
    frozen = [p for p in module.parameters() if p.requires_grad]
    four_d = all(t.dim() <= 4 for t in [*module.parameters(), *module.buffers()])
    try:
        for p in frozen:
            p.requires_grad_(False)
        if four_d:  # channels-last exists only for 4-D tensors (a Conv3d has 5-D weights)
            module.to(memory_format=torch.channels_last)
        yield
    finally:
        if four_d:
            module.to(memory_format=torch.contiguous_format)
        for p in frozen:
            p.requires_grad_(True)


def _objective(chosen: torch.Tensor, centre: torch.Tensor, layout: Layout) -> torch.Tensor:
    """Per image, its unit's mean over positions, or its value at the centre position (the centre
    patch of a token grid) for neuron jobs (Lucid's channel and neuron objectives); a vector layer
    has one position."""
    if chosen.dim() == 1:
        return chosen
    flat = chosen.flatten(1)
    return torch.where(centre, flat[:, layout.centre(tuple(chosen.shape[1:]))], flat.mean(1))


def _similarity(acts: torch.Tensor) -> torch.Tensor:
    """Mean cosine similarity between the images' Gram matrices (style) of a layer's activations."""
    flat = acts.flatten(2) if acts.dim() > 2 else acts.unsqueeze(2)
    gram = torch.einsum("bcs,bds->bcd", flat, flat).flatten(1)
    gram = F.normalize(gram, dim=1)
    sims = gram @ gram.T
    n = sims.shape[0]
    return (sims.sum() - sims.diagonal().sum()) / (n * (n - 1))


@contextmanager
def _layer_output(module: torch.nn.Module, layer: str, layout: Layout | None):
    """A function that runs the model only as far as ``layer`` and returns that layer's output,
    as [B, units, *positions] when its layout is given."""
    box: dict[str, torch.Tensor] = {}

    def hook(_module, _inputs, output):
        out = first_tensor(output)
        box["out"] = layout.units_first(out) if layout is not None else out
        raise _Stop

    handle = module.get_submodule(layer).register_forward_hook(hook)

    def run(x: torch.Tensor) -> torch.Tensor:
        try:
            module(x)
        except _Stop:
            pass
        return box.pop("out")

    try:
        yield run
    finally:
        handle.remove()


class _Redirected(torch.autograd.Function):
    """A clipping activation whose gradient, for an image where none of it gets through, also
    reaches the clipped inputs that it would move back into range (Lucid's redirected ReLU):
    a unit that never fires still tells the optimizer which way to go."""

    @staticmethod
    def forward(ctx, x, out, lo, hi):
        ctx.save_for_backward(x)
        ctx.bounds = (lo, hi)
        return out.clone()

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        lo, hi = ctx.bounds
        inside = (x > lo) & (x < hi)
        plain = grad * inside
        redirected = grad * (inside | ((x <= lo) & (grad < 0)) | ((x >= hi) & (grad > 0)))
        blocked = plain.flatten(1).abs().amax(1) == 0  # per image: nothing got through
        shape = (-1,) + (1,) * (grad.dim() - 1)
        return torch.where(blocked.view(shape), redirected, plain), None, None, None


_CLIPPING = {torch.nn.ReLU: (0.0, float("inf")), torch.nn.ReLU6: (0.0, 6.0)}


@contextmanager
def redirected_relus(module: torch.nn.Module):
    """Redirect the gradients of the model's ReLU and ReLU6 modules while the yielded flag is true."""
    flag = [False]
    handles, inplace = [], []

    def hook_for(lo: float, hi: float):
        def hook(_module, inputs, output):
            if flag[0] and torch.is_grad_enabled():
                return _Redirected.apply(inputs[0], output, lo, hi)
            return None
        return hook

    for child in module.modules():
        bounds = _CLIPPING.get(type(child))
        if bounds is None:
            continue
        if getattr(child, "inplace", False):  # the hook needs the input as it was
            child.inplace = False
            inplace.append(child)
        handles.append(child.register_forward_hook(hook_for(*bounds)))
    try:
        yield flag
    finally:
        for handle in handles:
            handle.remove()
        for child in inplace:
            child.inplace = True



def input_colours(inputs, pre: Preprocessing, count: int = 64) -> np.ndarray | None:
    """Pixels [N, channels] in [0, 1] from up to ``count`` inputs spread over the set, for the colour basis."""
    from galleria.sources.images import ImageLoader

    usable = inputs.usable
    items = usable[::max(1, len(usable) // count)][:count]
    if not items:
        return None
    loader = ImageLoader(pre)
    pixels = np.concatenate([loader.pixels(item)[::4, ::4].reshape(-1, pre.channels) for item in items])
    return pixels.astype(np.float32) / 255


def model_feature_visualizations(model, layout, inputs, cache: Cache, device: torch.device,
                                 progress=None) -> dict[str, dict[int, UnitViz]]:
    """Feature visualizations of the units each layer's settings choose, for one model."""
    cfg, pre = model.config, model.config.preprocessing
    settings = {layer.name: settings_for(cfg, layer.name) for layer in layout.layers}
    jobs = [job for layer in layout.layers for job in jobs_for(layer.name, layer.units, settings[layer.name])]
    if not jobs:
        return {}
    layouts = {layer.name: layer.layout for layer in layout.layers}
    basis_key = content_key(FORMAT, "colour basis", inputs.key, pre)
    basis_file = cache.file("featureviz", basis_key, ".json")
    if not basis_file.is_file():
        found = colour_basis(input_colours(inputs, pre), pre.channels)
        cache.put_file("featureviz", basis_key, ".json", json.dumps(found.tolist()).encode())
    basis = torch.tensor(json.loads(basis_file.read_text()), dtype=torch.float32)
    with in_user_model(cfg.id, model.module, "feature visualization"):
        return visualize_units(model.module, model.key, pre, basis, jobs, settings, layouts, cache, device, progress)
