"""What the chosen layers really are: names resolved from patterns, output shapes from one dry-run forward pass."""
from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, replace
from typing import NamedTuple

import torch

from galleria.config import ModelConfig, layer_matches
from galleria.errors import BuildError, ConfigError, in_user_model
from galleria.extract.hooks import capture, first_tensor
from galleria.extract.layout import Ambiguous, Layout, infer_layout, is_grid, prefix_names
from galleria.sources.dictionaries import host_of
from galleria.sources.models import LoadedModel, hookable_names, module_kind


@dataclass(frozen=True)
class LayerInfo:
    """A chosen layer as the model really produces it."""

    name: str
    module: str  # class name, e.g. "Conv2d"
    shape: tuple[int, ...]  # units first, without the batch dimension: (C,), (C, H, W), (C, tokens)
    units: tuple[int, ...]  # the unit (channel) numbers shown
    is_output: bool = False  # its output is the model's output: units are classes when labelled
    feeds_head: bool = False  # its output is exactly the input of the final linear layer
    layout: Layout | None = None  # how the output is laid out (None only for layers made by hand in tests)
    writer: str | None = None  # the projection that reads this output (a dictionary's: its host's) and writes
    #   vectors of the head's width


@dataclass(frozen=True)
class ModelLayout:
    layers: tuple[LayerInfo, ...]
    output_shape: tuple[int, ...]
    classifier: bool  # one score per class label
    head: str | None = None  # the linear layer that produces the model's output, if one does
    lm_head: bool = False  # text: the head gives one logit per vocabulary token at each position
    residual_to_head: tuple[str, ...] | None = None  # between the residual stream and the head: () or (norm,)

    @property
    def labelled_output(self) -> bool:
        """The model's output units have names: classes, or the tokens of a language model head."""
        return self.classifier or self.lm_head


PROBE_BATCH = 2  # more than one input, so that a layer that folds the batch into another dimension shows


def inspect_model(model: LoadedModel, config_file: str = "site.yaml", sample: torch.Tensor | None = None,
                content: int | None = None) -> ModelLayout:
    """Resolve layer patterns, learn shapes and layouts before any heavy work, so errors come early.

    Text models are run with ``sample`` (one window of token ids, special tokens included)
    whose ``content`` tokens are the ones shown; their layers must give [batch, tokens, units].
    """
    cfg = model.config
    text = sample is not None
    names = hookable_names(model.module)
    chosen = resolve_layers(cfg, names, config_file)
    seen = _dry_run(model, [name for name, _ in chosen], sample)
    missing = [name for name, _ in chosen if name not in seen.shapes]
    if missing:
        raise BuildError(f"model '{cfg.id}': layer '{missing[0]}' produced no output "
                         "(it is never called in forward, or returns no tensor)")
    lines = dict(zip((name for name, _ in chosen), _lines(cfg, chosen)))
    layouts = {}
    for name, _ in chosen:
        raw = seen.shapes[name]
        where = (config_file, lines[name], f"models.{cfg.id}.layers")
        if raw[0] != PROBE_BATCH:
            raise ConfigError(f"layer '{name}' gives {raw[0]} rows for a batch of {PROBE_BATCH} inputs: it folds "
                              "the batch into another dimension (a Swin block's windows, attention heads)",
                              *where, "choose the block's output, or a module after the batch is restored")
        raw = raw[1:]
        if text:
            if len(raw) != 2 or raw[0] != sample.shape[1]:
                raise ConfigError(f"layer '{name}' gives {list(raw)} per window, not [tokens, units]", *where,
                                  "choose a module whose output has one vector per token")
            layouts[name] = Layout("tokens", (content, raw[1]))  # the tokens shown: special tokens are cut
        else:
            try:
                layouts[name] = _layout(model, name, raw, seen)
            except Ambiguous as exc:
                raise ConfigError(f"layer '{name}': cannot tell its units from its positions: {exc}", *where,
                                  f"give the layer entry a layout: {{name: {name}, layout: channels-last}} "
                                  "(or channels-first, tokens)") from None
            except ValueError as exc:
                raise ConfigError(f"layer '{name}': {exc}", *where, "leave layout out to let galleria decide") from None
    layers = []
    for name, units in chosen:
        layout = layouts[name]
        count = layout.units
        shape = (count, content) if text else (count, *layout.positions)
        if units and max(units) >= count:
            raise ConfigError(f"layer '{name}' has {count} units (0-{count - 1}), asked for unit {max(units)}",
                              config_file, lines[name], f"models.{cfg.id}.layers")
        feeds = name in seen.feeding and count == seen.head_width and (text or math.prod(layout.positions) == 1)
        layers.append(LayerInfo(name, module_kind(model.module.get_submodule(name)), shape,
                                tuple(range(count)) if units is None else units, name in seen.outputs, feeds,
                                layout, seen.writers.get(host_of(model.module, name))))
    labels, output_shape, head = model.labels, seen.output_shape, seen.head
    if text:
        lm_head = head is not None and labels is not None and output_shape[-1] == len(labels)
        return ModelLayout(tuple(layers), output_shape, False, head, lm_head, seen.residual_to_head)
    if labels is not None and len(output_shape) == 1 and len(labels) != output_shape[0]:
        raise BuildError(f"model '{cfg.id}': {len(labels)} labels for {output_shape[0]} outputs; "
                         "check the model's labels")
    return ModelLayout(tuple(layers), output_shape, labels is not None and len(output_shape) == 1, head,
                       residual_to_head=seen.residual_to_head)


def _layout(model: LoadedModel, name: str, raw: tuple[int, ...], seen: "_DryRun") -> Layout:
    """An image model's layer layout: the config's, else decided from the model (see layout.py). A
    dictionary's units sit where its host's features are, so it is laid out as its host is: its own
    shape alone could be read either way (64 latents on a ViT's 197 tokens would fit an 8×8 grid).

    Raises Ambiguous or ValueError (a layout the config gives does not fit)."""
    cfg = model.config
    spec = cfg.spec_for(name)
    given = spec.layout if spec is not None else None
    host = host_of(model.module, name)
    if host != name:
        return replace(_inferred(model, host, seen.shapes[host][1:], seen, given), raw=raw)
    return _inferred(model, name, raw, seen, given)


def _inferred(model: LoadedModel, name: str, raw: tuple[int, ...], seen: "_DryRun", given: str | None) -> Layout:
    """The layout of ``name``'s output ``raw``: ``given``, or decided from the shape, or else from how it
    changes with a larger input."""
    image = model.config.preprocessing.size
    try:
        return infer_layout(raw, image, seen.grids, seen.prefix, given)
    except Ambiguous:
        larger = _larger_shapes(model, name)
        if larger is None:
            raise
        changed = {i for i, (a, b) in enumerate(zip(raw, larger)) if a != b}
        return infer_layout(raw, image, seen.grids, seen.prefix, given, changed)


def _larger_shapes(model: LoadedModel, name: str) -> tuple[int, ...] | None:
    """The layer's output shape (no batch) for an input half as large again; None if the model refuses it."""
    pre = model.config.preprocessing
    size = [-(-side * 3 // 2 // 32) * 32 for side in pre.size]  # a multiple of 32 suits any stride
    try:
        with capture(model.module, [name]) as seen, torch.inference_mode():
            model.module(torch.zeros(PROBE_BATCH, pre.channels, *size))
    except Exception:  # a model of one input size: the caller says the shape is ambiguous
        return None
    return tuple(seen[name].shape[1:]) if name in seen else None


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
            matches = [n for n in names if layer_matches(n, spec.pattern)]
        if not matches:
            close = difflib.get_close_matches(spec.pattern, names, n=3, cutoff=0.5)
            listing = "model.named_modules() lists its names" if cfg.source.startswith("object:") \
                else f"run 'galleria layers {cfg.id}'"  # a model in memory (galleria.Gallery) has no site.yaml
            hint = ("closest: " + ", ".join(close) + "; " if close else "") + listing
            raise ConfigError(f"model '{cfg.id}' has no layer '{spec.pattern}'", config_file, spec.line,
                              f"models.{cfg.id}.layers", hint)
        for match in matches:
            chosen.setdefault(match, spec.units)
    return list(chosen.items())


@dataclass
class _DryRun:
    shapes: dict[str, tuple[int, ...]]  # chosen layers' output shapes, batch included
    output_shape: tuple[int, ...]  # the model's output, without the batch
    outputs: set[str]  # chosen layers whose output is the model's output
    head: str | None  # the final linear layer, if the output comes from one
    head_width: int | None  # its number of input features
    feeding: set[str]  # chosen layers whose output is exactly the head's input
    grids: set[tuple[int, int]]  # feature-map grids seen anywhere in the model (image models)
    prefix: tuple[str, ...]  # the model's prefix tokens by name (CLS, registers), if it has any
    writers: dict[str, str]  # chosen layer -> the projection reading its output and writing head-width vectors
    residual_to_head: tuple[str, ...] | None  # see _residual_to_head


def _projection(module: torch.nn.Module) -> bool:
    """A linear map of the last dimension: nn.Linear, or Hugging Face's Conv1D (GPT-2's, weight transposed)."""
    return isinstance(module, torch.nn.Linear) or type(module).__name__ == "Conv1D"


def _dry_run(model: LoadedModel, names: list[str], sample: torch.Tensor | None) -> _DryRun:
    """One forward pass with every module watched: shapes, the head and what feeds it, the grids, and
    which projection reads each chosen layer."""
    module, cfg = model.module, model.config
    pre = cfg.preprocessing
    x = _dry_run_input(cfg, sample)
    hookable = hookable_names(module)
    projections = [n for n in hookable if _projection(module.get_submodule(n))]
    inputs: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # projection -> (its input, its output)
    calls: list[_Call] = []  # every module's call, in order
    handles = [module.get_submodule(n).register_forward_hook(
        lambda m, args, out, n=n: inputs.__setitem__(n, (args[0], out)) if args else None) for n in projections]
    handles += [module.get_submodule(n).register_forward_hook(lambda m, args, out, n=n: _record(calls, n, args, out))
                for n in hookable]
    hint = ("does it take token ids [batch, tokens], and does its vocabulary match the tokenizer?" if sample is not None
            else f"it was given {pre.channels}×{pre.size[0]}×{pre.size[1]} inputs: check preprocessing.size and channels")
    watched = list(dict.fromkeys(names + [host_of(module, n) for n in names]))  # a dictionary's writer is its host's
    try:
        with in_user_model(cfg.id, module, "a dry run reading its layers' shapes", hint), capture(module, watched) as seen, \
                torch.inference_mode():
            output = module(x)
    finally:
        for handle in handles:
            handle.remove()
    output = first_tensor(output)
    if output is None:
        raise BuildError(f"model '{cfg.id}' returned no tensor")
    outputs = {n for n, t in seen.items() if t is output}  # the very tensor the model returned
    head = next((n for n, (_, out) in inputs.items() if out is output and n in projections
                 and isinstance(module.get_submodule(n), torch.nn.Linear)), None)
    feeding: set[str] = set()
    width, writers, to_head = None, {}, None
    if head is not None:
        features = inputs[head][0]
        width = features.shape[-1]
        # the same memory, seen whole (a flatten between them is only a view)
        feeding = {n for n, t in seen.items() if _same(t, features)}
        writers = {n: p for n, t in seen.items() for p, (given, made) in inputs.items()
                   if p != head and _same(t, given) and made.shape[-1] == width}
        to_head = _residual_to_head(module, calls, features)
    grids = {dims for call in calls if len(call.shape) == 4 for dims in (call.shape[2:], call.shape[1:3])
             if is_grid(dims, pre.size)} if sample is None else set()
    return _DryRun({n: tuple(t.shape) for n, t in seen.items()}, tuple(output.shape[1:]), outputs, head, width,
                  feeding, grids, prefix_names(module) if sample is None else (), writers, to_head)


class _Call(NamedTuple):
    """One module call seen by the dry run: where its output and its first input live."""

    name: str
    output: tuple[int, int]  # (address, size) of its output
    shape: tuple[int, ...]
    given: tuple[int, int] | None  # (address, size) of its first input, if a tensor


def _record(calls: list[_Call], name: str, args: tuple, out) -> None:
    out = first_tensor(out)
    if out is None:
        return
    given = args[0] if args and isinstance(args[0], torch.Tensor) else None
    calls.append(_Call(name, (out.data_ptr(), out.numel()), tuple(out.shape),
                       (given.data_ptr(), given.numel()) if given is not None else None))


def _residual_to_head(module: torch.nn.Module, calls: list[_Call], features: torch.Tensor) -> tuple[str, ...] | None:
    """What lies between the residual stream and the head: () when the head reads a block's output,
    (norm,) when it reads a norm of one, as in pre-norm decoders (GPT-2's ln_f, Llama's norm); None
    when anything else does (BERT's masked-LM head puts a dense layer and an activation between).

    A block is a module with modules of its own. The norm is the last module to produce the head's
    input whose class says it normalizes (eval-mode dropout passes the same tensor on).
    """
    def producer(address: tuple[int, int] | None, before: int) -> int | None:
        return next((j for j in range(before - 1, -1, -1) if calls[j].output == address), None)

    def block(index: int | None) -> bool:
        return index is not None and any(True for _ in module.get_submodule(calls[index].name).children())

    target = (features.data_ptr(), features.numel())
    norms = [j for j in range(len(calls)) if calls[j].output == target
             and "norm" in type(module.get_submodule(calls[j].name)).__name__.lower()]
    if norms:
        return (calls[norms[-1]].name,) if block(producer(calls[norms[-1]].given, norms[-1])) else None
    return () if block(producer(target, len(calls))) else None


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """The same memory seen whole (a flatten or view between two modules is not a copy)."""
    return a.data_ptr() == b.data_ptr() and a.numel() == b.numel()


def _dry_run_input(cfg: ModelConfig, sample: torch.Tensor | None) -> torch.Tensor:
    """What the dry run feeds the model: the text window given, or a blank image of the model's size."""
    pre = cfg.preprocessing
    return torch.zeros(PROBE_BATCH, pre.channels, *pre.size) if sample is None else sample.expand(PROBE_BATCH, -1)


@dataclass(frozen=True)
class TreeRow:
    """One module of ``galleria layers``: its output and how galleria reads it."""

    name: str
    module: str
    shape: tuple[int, ...] | None  # output without the batch; None when not called or no tensor
    units: int | None  # None when its output cannot be a layer of units
    layout: str  # the layout in words, or why it cannot be a layer


def module_tree(model: LoadedModel, sample: torch.Tensor | None = None) -> list[TreeRow]:
    """Every named module with its output shape and, where it can be a layer, its units and layout."""
    names = hookable_names(model.module)
    seen = _dry_run(model, names, sample)
    rows = []
    for name in names:
        kind = module_kind(model.module.get_submodule(name))
        if name not in seen.shapes:
            rows.append(TreeRow(name, kind, None, None, "not called, or returns no tensor"))
            continue
        raw = seen.shapes[name]
        if raw[0] != PROBE_BATCH:
            rows.append(TreeRow(name, kind, raw[1:], None, f"folds the batch into its {raw[0]} rows"))
            continue
        raw = raw[1:]
        try:
            if sample is not None:
                if len(raw) != 2:
                    raise ValueError("not one vector per token")
                layout = Layout("tokens", raw)
            else:
                layout = _layout(model, name, raw, seen)
        except Ambiguous as exc:
            rows.append(TreeRow(name, kind, raw, None, f"{str(exc).split('?')[0]}? set layout: to choose"))
        except ValueError as exc:
            rows.append(TreeRow(name, kind, raw, None, str(exc)))
        else:
            rows.append(TreeRow(name, kind, raw, layout.units, layout.describe()))
    return rows
