"""Feature visualization finds images that excite their own unit far more than any input, or any other
unit's image, does."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from galleria.config import FeatureVizConfig, Preprocessing
from galleria.extract.layout import Layout
from galleria.visualize.featureviz import VizJob, _working_size
from galleria.visualize.featureviz import optimize as optimize_at
from galleria.visualize.image_param import colour_basis

PRE = Preprocessing(size=(32, 32), channels=3, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
SETTINGS = FeatureVizConfig(steps=192, size=32, batch=8)


def _model():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 6, 3, stride=2, padding=1),
                        nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3)).eval()
    with torch.no_grad():
        net[2].bias[5] = -50.0  # never fires on any input
    return net


def optimize(net, layer, jobs, pre, basis, settings, device):
    """optimize() at the size the build would choose, for a channels-first layer."""
    size = _working_size(net, layer, pre, settings.size)
    return optimize_at(net, layer, Layout("channels-first", (1, 1, 1)), jobs, pre, basis, settings, size, device)


def _jobs(units, kind="channel"):
    return [VizJob("3", i, u, kind) for i, u in enumerate(units)]


def test_images_excite_their_unit_beyond_any_input_and_beyond_other_units():
    net = _model()
    pixels, means, peaks = optimize(net, "3", _jobs(range(5)), PRE, torch.eye(3), SETTINGS, torch.device("cpu"))
    inputs = (torch.rand(256, 3, 32, 32, generator=torch.Generator().manual_seed(1)) - 0.5) / 0.25
    with torch.no_grad():
        dataset = net[:4](inputs)  # [inputs, units, h, w]
        images = net[:4]((torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.25)
    for row, unit in enumerate(range(5)):
        best_mean = float(dataset[:, unit].mean((1, 2)).max())
        assert means[row] > 2 * best_mean, (unit, means[row], best_mean)
        on_each = images[:, unit].mean((1, 2))  # this unit's mean on every unit's image
        assert int(on_each.argmax()) == row
        assert peaks[row] >= means[row]
    assert pixels.shape == (5, 32, 32, 3) and pixels.dtype == np.uint8


def test_a_dead_unit_gets_an_image_not_an_error():
    net = _model()
    pixels, means, _ = optimize(net, "3", _jobs([5, 5], "channel")[:1] + _jobs([0], "negative"), PRE,
                                torch.eye(3), SETTINGS, torch.device("cpu"))
    assert pixels.shape[0] == 2 and np.isfinite(means).all()
    assert net[3].inplace and all(p.requires_grad for p in net.parameters())  # the model is left as it was


def test_results_do_not_depend_on_batch_mates_and_repeat_exactly():
    net = _model()
    alone, _, _ = optimize(net, "3", _jobs([2]), PRE, torch.eye(3), SETTINGS, torch.device("cpu"))
    again, _, _ = optimize(net, "3", _jobs([2]), PRE, torch.eye(3), SETTINGS, torch.device("cpu"))
    assert np.array_equal(alone, again)
    batched, _, _ = optimize(net, "3", [VizJob("3", 0, 0, "channel"), VizJob("3", 2, 2, "channel")], PRE,
                             torch.eye(3), SETTINGS, torch.device("cpu"))
    assert np.abs(batched[1].astype(int) - alone[0].astype(int)).max() <= 2  # float rounding of batched kernels


def test_colour_basis_is_the_inputs_own_colour_structure():
    rng = np.random.default_rng(0)
    grey = rng.random((500, 1)).repeat(3, axis=1)  # perfectly correlated channels
    basis = colour_basis(grey, 3).numpy()
    assert np.linalg.norm(basis, axis=0).max() == pytest.approx(1.0)
    assert np.allclose(np.abs(basis[:, 0]), 1 / np.sqrt(3), atol=1e-3)  # one direction: luminance
    assert np.allclose(colour_basis(None, 3).numpy(), np.eye(3))
    assert np.allclose(colour_basis(grey[:, :1], 1).numpy(), np.eye(1))


def test_grayscale_models_that_accept_only_their_own_size():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 18 * 18, 5)).eval()
    pre = Preprocessing(size=(20, 20), channels=1, mean=(0.1,), std=(0.3,))
    pixels, means, _ = optimize(net, "3", [VizJob("3", 0, 2, "channel")], pre, torch.eye(1),
                                FeatureVizConfig(steps=32, size=64), torch.device("cpu"))
    assert pixels.shape == (1, 20, 20, 1) and means[0] > 0  # the linear layer forced the model's 20 px


def test_the_neuron_objective_drives_the_centre_position():
    net = _model()
    jobs = [VizJob("3", 1, 1, "neuron"), VizJob("3", 1, 1, "channel")]
    pixels, _, _ = optimize(net, "3", jobs, PRE, torch.eye(3), SETTINGS, torch.device("cpu"))
    with torch.no_grad():
        maps = net[:4]((torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.25)[:, 1]
    centre = maps[:, 8, 8]  # the 16 x 16 map's centre
    assert centre[0] > centre[1]  # the neuron image wins at the centre...
    assert maps[1].mean() > maps[0].mean()  # ...the channel image over the whole map


def test_a_failure_inside_leaves_the_weights_trainable():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()).eval()
    with pytest.raises(Exception):
        optimize(net, "1", [VizJob("1", 0, 9, "channel")], PRE, torch.eye(3), FeatureVizConfig(steps=2, size=32),
                 torch.device("cpu"))  # unit 9 does not exist
    assert all(p.requires_grad for p in net.parameters())
    assert net[0].weight.is_contiguous()
