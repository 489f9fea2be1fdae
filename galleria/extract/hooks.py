"""Forward hooks as a context manager, so they are removed even when the forward pass fails."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import torch


def first_tensor(output) -> torch.Tensor | None:
    """A layer's activation tensor; recurrent layers return tuples whose first item is it."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    return None


@contextmanager
def capture(module: torch.nn.Module, names: list[str],
            transform: Callable[[str, torch.Tensor], torch.Tensor] | None = None,
            ) -> Iterator[dict[str, torch.Tensor]]:
    """Yield a dict that each forward pass fills with the named layers' outputs.

    ``transform(name, tensor)`` runs inside the hook (e.g. to keep only the chosen units) so
    that full activations of large layers need not outlive the forward pass.
    """
    seen: dict[str, torch.Tensor] = {}

    def hook_for(name: str):
        def hook(_module, _inputs, output):
            tensor = first_tensor(output)
            if tensor is not None:
                seen[name] = transform(name, tensor) if transform else tensor
        return hook

    with _hooks(module, names, hook_for):
        yield seen


@contextmanager
def perturbable(module: torch.nn.Module, names: list[str]) -> Iterator[dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """Yield a dict that each forward pass fills with name -> (output, delta), in call order.

    Each named layer passes ``output + delta`` on, where ``delta`` is a zero tensor that
    requires grad: the gradient of anything downstream with respect to ``delta`` is its
    gradient with respect to the layer's output, through every path. ``output`` itself is
    what the layer computed, never touched by in-place operations further on.
    """
    seen: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def hook_for(name: str):
        def hook(_module, _inputs, output):
            tensor = first_tensor(output)
            if tensor is None or name in seen or not tensor.is_floating_point():
                return None
            delta = torch.zeros_like(tensor, requires_grad=True)
            seen[name] = (tensor, delta)
            moved = tensor + delta
            if isinstance(output, torch.Tensor):
                return moved
            if hasattr(output, "_fields"):  # a namedtuple takes its fields one by one
                return output._replace(**{output._fields[0]: moved})
            return type(output)((moved, *output[1:]))
        return hook

    with _hooks(module, names, hook_for):
        yield seen


@contextmanager
def _hooks(module: torch.nn.Module, names: list[str], hook_for: Callable[[str], Callable]) -> Iterator[None]:
    handles = []
    try:
        for name in names:
            handles.append(module.get_submodule(name).register_forward_hook(hook_for(name)))
        yield
    finally:
        for handle in handles:
            handle.remove()
