"""A module's input as a layer of its own: ``NAME.input``.

Some units live only between two modules. In a gated MLP (Llama, Mistral, Gemma) a neuron is
act(gate) × up, a product no module returns: it is only ever the input of ``down_proj``. A tap
is an identity module added as the child ``input`` of the module it watches and called on that
module's input just before it runs, so hooks, layouts, attribution and feature visualization
treat it like any other layer. It holds no parameters: the state dict and the model key are
unchanged.
"""
from __future__ import annotations

import torch

from galleria.config import layer_matches

SUFFIX = ".input"


class InputTap(torch.nn.Identity):
    """Passes its parent module's input through, where a forward hook can see it."""


def add_input_taps(module: torch.nn.Module, patterns: list[str]) -> None:
    """Give every module named by a ``NAME.input`` pattern (globs allowed) an input tap."""
    wanted = [p[: -len(SUFFIX)] for p in patterns if p.endswith(SUFFIX)]
    if not wanted:
        return
    for name, child in list(module.named_modules()):
        if not name or isinstance(child, InputTap) or not any(layer_matches(name, p) for p in wanted):
            continue
        if hasattr(child, "input"):  # the module already has a child or attribute of that name
            continue
        child.add_module("input", InputTap())
        child.register_forward_pre_hook(_through_tap)


def _through_tap(parent: torch.nn.Module, args: tuple):
    if not args or not isinstance(args[0], torch.Tensor):
        return None
    return (parent.input(args[0]), *args[1:])
