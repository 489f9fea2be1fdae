"""Hooks never outlive their block, even when the forward pass fails."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from galleria.extract.hooks import capture


class Fails(nn.Module):
    def forward(self, x):
        raise RuntimeError("boom")


def test_hooks_are_removed_after_an_error():
    model = nn.Sequential(nn.Conv2d(3, 2, 1), Fails())
    with pytest.raises(RuntimeError, match="boom"):
        with capture(model, ["0"]) as seen:
            model(torch.zeros(1, 3, 4, 4))
    assert "0" in seen  # the layer before the failure was seen
    assert not model[0]._forward_hooks


def test_recurrent_layers_give_their_output_sequence():
    lstm = nn.LSTM(3, 5, batch_first=True)
    model = nn.Sequential(lstm)
    with capture(model, ["0"]) as seen:
        model(torch.zeros(2, 7, 3))
    assert seen["0"].shape == (2, 7, 5)  # the first item of (output, (h, c))
    assert not lstm._forward_hooks


def test_perturbable_keeps_namedtuple_outputs_whole():
    from collections import namedtuple

    from galleria.extract.hooks import perturbable

    Pair = namedtuple("Pair", "main extra")

    class Two(nn.Module):
        def forward(self, x):
            return Pair(x * 2, x)

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.two = Two()

        def forward(self, x):
            return self.two(x).main.sum()

    model = Model()
    with perturbable(model, ["two"]) as seen:
        out = model(torch.ones(1, 3))
    (grad,) = torch.autograd.grad(out, seen["two"][1])
    assert torch.equal(grad, torch.ones(1, 3))
