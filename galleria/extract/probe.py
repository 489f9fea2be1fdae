"""What the chosen layers really are: names resolved from patterns, output shapes from a probe."""
from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass

import torch

from galleria.config import ModelConfig
from galleria.errors import BuildError, ConfigError
from galleria.extract.hooks import capture, first_tensor
from galleria.sources.models import LoadedModel, hookable_names, module_kind


@dataclass(frozen=True)
class LayerInfo:
    """A chosen layer as the model really produces it."""

    name: str
    module: str  # class name, e.g. "Conv2d"
    shape: tuple[int, ...]  # output shape without the batch dimension: (C,), (C, H, W), ...
    units: tuple[int, ...]  # the unit (channel) numbers shown
    is_output: bool = False  # its output is the model's output: units are classes when labelled
    feeds_head: bool = False  # its output is exactly the input of the final linear layer


@dataclass(frozen=True)
class ModelLayout:
    layers: tuple[LayerInfo, ...]
    output_shape: tuple[int, ...]
    classifier: bool  # one score per class label
    head: str | None = None  # the linear layer that produces the model's output, if one does
    lm_head: bool = False  # text: the head gives one logit per vocabulary token at each position

    @property
    def labelled_output(self) -> bool:
        """The model's output units have names: classes, or the tokens of a language model head."""
        return self.classifier or self.lm_head


def probe_model(model: LoadedModel, config_file: str = "site.yaml", sample: torch.Tensor | None = None,
                content: int | None = None) -> ModelLayout:
    """Resolve layer patterns and learn shapes before any heavy work, so errors come early.

    Text models are probed with ``sample`` (one window of token ids, special tokens included)
    whose ``content`` tokens are the ones shown; their layers must give [batch, tokens, units].
    """
    cfg = model.config
    text = sample is not None
    names = hookable_names(model.module)
    chosen = resolve_layers(cfg, names, config_file)
    shapes, output_shape, outputs, head, feeding = _probe_shapes(model.module, [name for name, _ in chosen], cfg,
                                                                 sample)
    layers = []
    for (name, units), spec_line in zip(chosen, _lines(cfg, chosen)):
        if text:
            if len(shapes[name]) != 2 or shapes[name][0] != sample.shape[1]:
                raise ConfigError(f"layer '{name}' gives {list(shapes[name])} per window, not [tokens, units]",
                                  config_file, spec_line, f"models.{cfg.id}.layers",
                                  "choose a module whose output has one vector per token")
            shapes[name] = (shapes[name][1], content)
        count = shapes[name][0]
        if units and max(units) >= count:
            raise ConfigError(f"layer '{name}' has {count} units (0-{count - 1}), asked for unit {max(units)}",
                              config_file, spec_line, f"models.{cfg.id}.layers")
        layers.append(LayerInfo(name, module_kind(model.module.get_submodule(name)), shapes[name],
                                tuple(range(count)) if units is None else units, name in outputs,
                                name in feeding))
    labels = model.labels
    if text:
        lm_head = head is not None and labels is not None and output_shape[-1] == len(labels)
        return ModelLayout(tuple(layers), output_shape, False, head, lm_head)
    if labels is not None and len(output_shape) == 1 and len(labels) != output_shape[0]:
        raise BuildError(f"model '{cfg.id}': {len(labels)} labels for {output_shape[0]} outputs; "
                         "check the model's labels")
    return ModelLayout(tuple(layers), output_shape, labels is not None and len(output_shape) == 1, head)


def _lines(cfg: ModelConfig, chosen):
    for name, _ in chosen:
        spec = cfg.spec_for(name)
        yield spec.line if spec is not None else None


def resolve_layers(cfg: ModelConfig, names: list[str], config_file: str):
    """Expand exact names and globs, in the order given; a miss names the closest real layers."""
    chosen: dict[str, tuple[int, ...] | None] = {}
    for spec in cfg.layers:
        if spec.pattern in names:
            matches = [spec.pattern]
        else:
            matches = [n for n in names if fnmatch.fnmatchcase(n, spec.pattern)]
        if not matches:
            close = difflib.get_close_matches(spec.pattern, names, n=3, cutoff=0.5)
            hint = ("closest: " + ", ".join(close) + "; " if close else "") + f"run 'galleria layers {cfg.id}'"
            raise ConfigError(f"model '{cfg.id}' has no layer '{spec.pattern}'", config_file, spec.line,
                              f"models.{cfg.id}.layers", hint)
        for match in matches:
            chosen.setdefault(match, spec.units)
    return list(chosen.items())


def _probe_shapes(module: torch.nn.Module, names: list[str], cfg: ModelConfig, sample: torch.Tensor | None):
    """Output shapes of the named layers, the model's output shape, which layers' outputs are the
    model's output, the final linear layer (if the output comes from one) and which layers feed it."""
    pre = cfg.preprocessing
    x = _probe_input(cfg, sample)
    linears = [n for n, m in module.named_modules() if n and isinstance(m, torch.nn.Linear)]
    linear_inputs: dict[str, torch.Tensor] = {}
    handles = [module.get_submodule(n).register_forward_hook(
        lambda m, args, out, n=n: linear_inputs.__setitem__(n, (args[0], out)) if args else None)
        for n in linears]
    try:
        with capture(module, names) as seen, torch.inference_mode():
            output = module(x)
    except (RuntimeError, IndexError, TypeError) as exc:
        if sample is not None:
            raise BuildError(f"model '{cfg.id}' fails on a window of {sample.shape[1]} token ids: "
                             f"{str(exc).strip().splitlines()[0]} (does it take token ids [batch, tokens], and "
                             "does its vocabulary match the tokenizer?)") from None
        raise BuildError(f"model '{cfg.id}' fails on a {pre.channels}×{pre.size[0]}×{pre.size[1]} input: "
                         f"{str(exc).strip().splitlines()[0]} (check preprocessing.size and channels)") from None
    finally:
        for handle in handles:
            handle.remove()
    missing = [n for n in names if n not in seen]
    if missing:
        raise BuildError(f"model '{cfg.id}': layer '{missing[0]}' produced no output "
                         "(it is never called in forward, or returns no tensor)")
    output = first_tensor(output)
    if output is None:
        raise BuildError(f"model '{cfg.id}' returned no tensor")
    outputs = {n for n, t in seen.items() if t is output}  # the very tensor the model returned
    head = next((n for n, (_, out) in linear_inputs.items() if out is output), None)
    feeding: set[str] = set()
    if head is not None:
        features = linear_inputs[head][0]
        # the same memory, seen whole (a flatten between them is only a view)
        feeding = {n for n, t in seen.items() if t.data_ptr() == features.data_ptr()
                   and t.numel() == features.numel() and t.shape[-1 if sample is not None else 1] == features.shape[-1]}
    return ({n: tuple(t.shape[1:]) for n, t in seen.items()}, tuple(output.shape[1:]), outputs, head, feeding)


def _probe_input(cfg: ModelConfig, sample: torch.Tensor | None) -> torch.Tensor:
    """What a probe feeds the model: the text window given, or a blank image of the model's size."""
    pre = cfg.preprocessing
    return torch.zeros(1, pre.channels, *pre.size) if sample is None else sample


def module_tree(model: LoadedModel, sample: torch.Tensor | None = None) -> list[tuple[str, str, tuple[int, ...] | None]]:
    """Every named module with its output shape (None when it is not called or returns no tensor)."""
    names = hookable_names(model.module)
    with capture(model.module, names) as seen, torch.inference_mode():
        model.module(_probe_input(model.config, sample))
    return [(n, module_kind(model.module.get_submodule(n)),
             tuple(seen[n].shape[1:]) if n in seen else None) for n in names]
