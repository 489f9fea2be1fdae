"""Gradient attribution agrees with finite differences on a tiny real model."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from galleria.cache import Cache
from galleria.config import load_config
from galleria.extract.attribution import attribute, sample_inputs
from galleria.extract.architecture import inspect_model
from galleria.extract.run import extract
from galleria.sources.images import ImageLoader, discover
from galleria.sources.models import load_model

MODEL_CODE = '''
import torch
from torch import nn


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.a = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Tanh())
        self.b = nn.Sequential(nn.Conv2d(4, 5, 3, stride=2, padding=1), nn.Softplus())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(5, 3)

    def forward(self, x):
        return self.head(self.pool(self.b(self.a(x))).flatten(1))


def tiny():
    return Tiny()
'''

SITE = """\
inputs:
  - path: photos
models:
  - id: tiny
    source: attribmodel:tiny
    preprocessing: {size: 16, mean: 0.5, std: 0.25}
    labels: [cat, dog, eel]
    layers: [a, b, pool, head]
examples: {top: 2, bottom: 1, tile_size: 32}
attribution: {inputs: 6, examples: 2}
"""


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    root = tmp_path_factory.mktemp("attribution")
    (root / "attribmodel.py").write_text(MODEL_CODE)
    (root / "site.yaml").write_text(SITE)
    (root / "photos").mkdir()
    rng = np.random.default_rng(1)
    for i in range(8):
        Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(root / "photos" / f"p{i}.png")
    config = load_config(root / "site.yaml")
    model = load_model(config.models[0], config.root)
    layout = inspect_model(model)
    inputs = discover(config.inputs)
    cache = Cache(root / ".cache")
    acts = extract(model, layout, inputs, config, cache)
    result = attribute(model, layout, inputs, acts, config, cache)
    again = attribute(model, layout, inputs, acts, config, cache)
    x = ImageLoader(model.config.preprocessing).batch(list(inputs.items))[0].double()
    return model.module.double(), inputs, acts, result, x, again


def _scaled(module, name, unit, factor, x):
    """The model's output with one unit of one layer multiplied by ``factor``."""
    def hook(_m, _i, out):
        out = out.clone()
        out[:, unit] *= factor
        return out

    handle = module.get_submodule(name).register_forward_hook(hook)
    try:
        with torch.no_grad():
            return module(x)
    finally:
        handle.remove()


def test_class_effects_match_finite_differences(pipeline):
    module, inputs, _, result, x, _ = pipeline
    sample = sample_inputs(inputs, 6)
    assert result.sample == 6 and len(sample) == 6
    with torch.no_grad():
        predicted = module(x).argmax(1)
    effects = result.layers["a"].classes
    assert effects.shape == (4, 3)
    eps = 1e-4
    expected = np.zeros((4, 3))
    for unit in range(4):
        up = _scaled(module, "a", unit, 1 + eps, x)
        down = _scaled(module, "a", unit, 1 - eps, x)
        for n in sample:
            k = int(predicted[n])
            expected[unit, k] += float(up[n, k] - down[n, k]) / (2 * eps) / len(sample)
    assert np.abs(expected).max() > 1e-3  # the check is not vacuous
    np.testing.assert_allclose(effects, expected, rtol=1e-3, atol=1e-5)


def test_layers_that_feed_the_head_or_are_the_output_get_no_gradient_view(pipeline):
    _, _, _, result, _, _ = pipeline
    assert result.layers["pool"].classes is None  # its exact weights are used instead
    assert result.layers["head"].classes is None
    assert result.layers["a"].sources is None and result.layers["a"].source is None


def test_sources_match_finite_differences(pipeline):
    module, inputs, acts, result, x, _ = pipeline
    sample = np.asarray(sample_inputs(inputs, 6))
    layer_b = acts.peaks(next(i for i, l in enumerate(acts.layers) if l.name == "b"))
    got = result.layers["b"]
    assert got.source == "a" and got.sources.shape == (5, 4)
    with torch.no_grad():
        b_out = module.b(module.a(x))
    eps = 1e-4
    for unit in range(5):
        peaks = np.asarray(layer_b[sample, unit])
        strongest = sample[np.argsort(-peaks, kind="stable")[:2]]
        expected = np.zeros(4)
        for n in strongest:
            peak = int(b_out[n, unit].flatten().argmax())
            for source in range(4):
                def value(factor):
                    with torch.no_grad():
                        a = module.a(x[n:n + 1]).clone()
                        a[:, source] *= factor
                        return float(module.b(a)[0, unit].flatten()[peak])
                expected[source] += (value(1 + eps) - value(1 - eps)) / (2 * eps) / 2
        np.testing.assert_allclose(got.sources[unit], expected, rtol=1e-3, atol=1e-5)


def test_sources_are_exact_through_a_linear_layer(pipeline):
    """head = W pool + b, so the contribution of pooled unit j to class k at an input is W[k, j] * pool[j]."""
    module, inputs, acts, result, x, _ = pipeline
    sample = np.asarray(sample_inputs(inputs, 6))
    head = acts.peaks(next(i for i, l in enumerate(acts.layers) if l.name == "head"))
    with torch.no_grad():
        pooled = module.pool(module.b(module.a(x))).flatten(1)
    weight = module.head.weight.detach()
    for k in range(3):
        strongest = sample[np.argsort(-np.asarray(head[sample, k]), kind="stable")[:2]]
        expected = sum(weight[k] * pooled[n] for n in strongest) / 2
        np.testing.assert_allclose(result.layers["head"].sources[k], expected.numpy(), rtol=1e-4, atol=1e-6)


def test_a_second_run_comes_from_the_cache(pipeline):
    _, _, _, result, _, again = pipeline
    assert not result.cached and again.cached
    for name, layer in result.layers.items():
        for field in ("classes", "sources"):
            first, second = getattr(layer, field), getattr(again.layers[name], field)
            assert (first is None and second is None) or np.array_equal(first, second)
