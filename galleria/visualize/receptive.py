"""Receptive fields measured on the actual network, so a unit's examples can be cropped to what it sees.

Guessing from layer names or kernel sizes breaks on residual branches, dilation, odd padding and
custom blocks; following gradients back from a unit to the input works for any differentiable model.
"""
from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch

from galleria.cache import Cache, content_key
from galleria.errors import in_user_model

if TYPE_CHECKING:
    from galleria.extract.architecture import LayerInfo
    from galleria.sources.models import LoadedModel

_SAMPLES = 2  # random inputs; a pixel counts if it passes gradient to the unit in any of them
_MORE_SAMPLES = 8  # for layers whose edges came out ragged (max-pools pass gradient to one pixel per window)
_SEED = 0  # fixed so that builds are reproducible
_NARROW = 32  # short side of the strips used to re-measure fields too large for the input: one cell at stride 32
_ALIGN = 64  # strips are longer by a multiple of this, so size-dependent ("SAME") padding falls as before


@dataclass(frozen=True)
class ReceptiveField:
    """Maps a position in a layer's spatial map to the input region that can influence it."""

    size: tuple[int, int]  # (height, width) of the box in input pixels, unclipped
    stride: tuple[int, int]  # input pixels between neighbouring positions
    offset: tuple[int, int]  # input (row, col) of the box's top-left for position (0, 0); may be negative
    input_size: tuple[int, int]

    def box(self, position: tuple[int, int]) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) in input pixels, clipped to the input, right/bottom exclusive."""
        top = self.offset[0] + position[0] * self.stride[0]
        left = self.offset[1] + position[1] * self.stride[1]
        height, width = self.input_size
        return (
            min(max(left, 0), width),
            min(max(top, 0), height),
            min(max(left + self.size[1], 0), width),
            min(max(top + self.size[0], 0), height),
        )


def receptive_fields(
    model: torch.nn.Module, layer_names: list[str], input_shape: tuple[int, int, int],
    grid_views: dict[str, Callable[[torch.Tensor], torch.Tensor | None]] | None = None,
) -> dict[str, ReceptiveField | None]:
    """Receptive field of each named layer, measured from input gradients of its units.

    None for a layer whose output has no 2-D map over the input (e.g. a Linear layer's [B, C]
    output): that unit sees the whole input. ``grid_views`` turns a layer's output into its
    [B, C, rows, cols] map (channels-last maps, a transformer's patch tokens); without one, a 4-D
    output is read as channels first. input_shape is (channels, height, width). The model runs in
    eval mode on random inputs and is left with its parameters and train/eval modes as they were.

    Layers whose edges come out ragged are measured again with more random inputs. A field too
    large to pin down at this size is measured again, one axis at a time, on a strip about four
    times longer along that axis (cheaper than a larger square); if that fails too, every
    position is taken to see the whole input.
    """
    names = list(dict.fromkeys(layer_names))
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        # Callers may sit inside no_grad or inference_mode; measuring needs gradients.
        with torch.inference_mode(False), torch.enable_grad():
            views = grid_views or {}
            first = _measure(model, names, input_shape, _SAMPLES, views)
            ragged = [name for name, axes in first.items() if axes is not None and any(map(_ragged, axes))]
            if ragged:
                first.update(_measure(model, ragged, input_shape, _MORE_SAMPLES, views))
            fits = {name: [_fit(axis) for axis in axes] for name, axes in first.items() if axes is not None}
            for i in (0, 1):
                pending = [name for name, fit in fits.items() if fit[i] is None]
                strips = _measure_strip(model, pending, input_shape, i, views) if pending else {}
                for name in pending:
                    axis = first[name][i]
                    fit = _fit(strips[name][i]) if strips.get(name) is not None else None
                    fits[name][i] = fit if fit is not None and _covers(fit, axis) else _whole(axis)
    finally:
        for module, training in modes.items():
            module.training = training
    fields: dict[str, ReceptiveField | None] = {}
    for name in names:
        if name not in fits:
            fields[name] = None
            continue
        (height, row_stride, top), (width, col_stride, left) = fits[name]
        fields[name] = ReceptiveField(
            size=(height, width),
            stride=(row_stride, col_stride),
            offset=(top, left),
            input_size=(input_shape[1], input_shape[2]),
        )
    return fields


@dataclass(frozen=True)
class _Axis:
    """Measured extents along one axis: the unit at positions[i] sees input pixels [starts[i], ends[i])."""

    length: int  # input pixels
    cells: int  # map positions
    positions: tuple[int, ...]
    starts: tuple[int, ...]
    ends: tuple[int, ...]


class _Stop(Exception):
    """Raised once every hooked layer has run, to skip the rest of the model (its head may reject other sizes)."""


def _measure_strip(
    model: torch.nn.Module, names: list[str], input_shape: tuple[int, int, int], axis: int, views: dict
) -> dict[str, tuple[_Axis, _Axis] | None]:
    """_measure on an input about four times longer along axis and narrow across it; {} if the model refuses it.

    Rows do not depend on the input's width (nor columns on its height), so the strip is as
    narrow as the model accepts: _NARROW pixels, doubled until the model runs, at most the
    original size.
    """
    shape = list(input_shape)
    length, original = shape[1 + axis], shape[2 - axis]
    shape[1 + axis] = length + _ALIGN * -(-3 * length // _ALIGN)
    across = min(_NARROW, original)
    while True:
        shape[2 - axis] = across
        try:
            return _measure(model, names, (shape[0], shape[1], shape[2]), _SAMPLES, views, along=(axis,))
        except Exception:  # too small for the model, or a model of one input size (whatever it raises)
            if across == original:
                return {}
            across = min(2 * across, original)


def _measure(
    model: torch.nn.Module,
    names: list[str],
    input_shape: tuple[int, int, int],
    samples: int,
    views: dict,
    along: tuple[int, ...] = (0, 1),
) -> dict[str, tuple[_Axis, _Axis] | None]:
    """Row and column extents of the fields of each named layer; None for outputs without a 2-D map.

    samples: random inputs per probe; along: the axes (0 rows, 1 columns) that must fit before
    probing a layer stops.
    """
    param = next((p for p in model.parameters() if p.is_floating_point()), None)
    device, dtype = (param.device, param.dtype) if param is not None else (torch.device("cpu"), torch.float32)
    generator = torch.Generator().manual_seed(_SEED)
    x = torch.randn((samples, *input_shape), generator=generator).to(device, dtype).requires_grad_()
    outputs = _run(model, names, x)
    maps = {name: _grid(y, views.get(name)) for name, y in outputs.items()}
    return {name: _probe(y, x, generator, along) if y is not None else None for name, y in maps.items()}


def _grid(output: object, view) -> torch.Tensor | None:
    """A layer's output as its [B, C, rows, cols] map over the input, or None if it has none."""
    if not isinstance(output, torch.Tensor):
        return None
    if view is not None:
        return view(output)
    return output if output.dim() == 4 else None


def _probe(
    y: torch.Tensor, x: torch.Tensor, generator: torch.Generator, along: tuple[int, ...]
) -> tuple[_Axis, _Axis]:
    """Extents of the input gradient of units of y at a few positions, probing only as far as needed.

    Probes go to both ends of the map first (where a large field's far edge stays inside the
    input), then to the centre, then one step in from each end. Each probe is a backward pass,
    so probing stops once the axes in `along` are settled, or after the two ends if both see the
    whole input (boxes move monotonically with position, so every other probe would too).
    """
    height, width = y.shape[2:]
    order = dict.fromkeys(
        (min(max(row, 0), height - 1), min(max(col, 0), width - 1))
        for row, col in ((0, 0), (height - 1, width - 1), (height // 2, width // 2), (1, 1), (height - 2, width - 2))
    )
    # Random channel weights rather than a plain sum, so that channels cannot cancel each other out,
    # scaled to the square root of the dtype's largest value, which leaves as much room below for
    # gradients that shrink along long paths (underflow would hide a field's far edges) as above
    # for gradients that grow.
    scale = torch.finfo(y.dtype).max ** 0.5
    weights = torch.randn((len(y), y.shape[1]), generator=generator).to(y.device, y.dtype) * scale
    probes: list[tuple[int, int]] = []
    seen_rows: list[np.ndarray] = []
    seen_cols: list[np.ndarray] = []
    for row, col in order:
        grad = None
        if y.requires_grad:
            unit = (y[:, :, row, col] * weights).sum()
            (grad,) = torch.autograd.grad(unit, x, retain_graph=True, allow_unused=True)
        seen = np.zeros(x.shape[2:], dtype=bool) if grad is None else (grad.abs().sum((0, 1)) > 0).cpu().numpy()
        probes.append((row, col))
        seen_rows.append(seen.any(axis=1))
        seen_cols.append(seen.any(axis=0))
        axes = (
            _axis(np.stack(seen_rows), [p[0] for p in probes], height),
            _axis(np.stack(seen_cols), [p[1] for p in probes], width),
        )
        if len(probes) == 2 and all(_sees_all(axis) for axis in axes):
            break
        if len(probes) >= 3 and all(_settled(axes[i]) for i in along):
            break
    return axes


def _run(model: torch.nn.Module, names: list[str], x: torch.Tensor) -> dict[str, object]:
    """Outputs of the named modules (first call of each) for input x; hooks are always removed."""
    outputs: dict[str, object] = {}

    def hook_for(name: str):
        def hook(module, args, output):
            if name in outputs:
                return None
            outputs[name] = output
            if len(outputs) == len(names):
                raise _Stop
            # The model carries on with a copy: later in-place ops (ReLU(inplace), `out += identity`)
            # would otherwise rewrite the captured tensor into a different layer's output.
            return output.clone() if isinstance(output, torch.Tensor) else None

        return hook

    modules = [model.get_submodule(name) for name in names]  # unknown names fail before any hook is placed
    handles = [module.register_forward_hook(hook_for(name)) for module, name in zip(modules, names)]
    try:
        model(x)
    except _Stop:
        pass
    finally:
        for handle in handles:
            handle.remove()
    missing = [name for name in names if name not in outputs]
    if missing:
        raise ValueError(f"layers never ran in the forward pass: {', '.join(missing)}")
    return outputs


def _axis(seen: np.ndarray, probes: list[int], cells: int) -> _Axis:
    """Extents from a [probes, pixels] mask; probes whose unit saw nothing are dropped."""
    length = seen.shape[1]
    kept = seen.any(axis=1)
    starts = seen.argmax(axis=1)
    ends = length - seen[:, ::-1].argmax(axis=1)
    return _Axis(
        length=length,
        cells=int(cells),
        positions=tuple(int(p) for p, k in zip(probes, kept) if k),
        starts=tuple(int(s) for s, k in zip(starts, kept) if k),
        ends=tuple(int(e) for e, k in zip(ends, kept) if k),
    )


def _sees_all(axis: _Axis) -> bool:
    """Whether every probe saw the whole input along this axis."""
    return bool(axis.positions) and all(s == 0 and e == axis.length for s, e in zip(axis.starts, axis.ends))


def _fit(axis: _Axis) -> tuple[int, int, int] | None:
    """(size, stride, offset) along one axis, or None if the measured extents do not pin them down.

    A box edge only says where the field ends if it is not cut off at the input's border, so
    edges are read from the probes where they are free: starts after the first seen pixel, ends
    before the last. A measured edge can fall short of the true one (a ReLU zero, or a max-pool
    that passed no gradient to the edge in any sample) but never overshoot, so each candidate
    stride takes the outermost edges; the field must contain every measured box, and the one
    that matches the most edges exactly wins.
    """
    free_starts, free_ends = _free(axis)
    if not free_starts or not free_ends:
        return None
    scored = []
    for stride in _strides(free_starts) | _strides(free_ends):
        offset = min(s - p * stride for p, s in free_starts)
        size = max(e - p * stride for p, e in free_ends) - offset
        matched = _matched((size, stride, offset), axis) if size > 0 else None
        if matched is not None:
            scored.append((matched, -size, (size, stride, offset)))
    return max(scored)[2] if scored else None


def _free(axis: _Axis) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(position, edge) of the starts after the first seen pixel and of the ends before the last."""
    if not axis.positions:
        return [], []
    first, last = min(axis.starts), max(axis.ends)
    return (
        [(p, s) for p, s in zip(axis.positions, axis.starts) if s > first],
        [(p, e) for p, e in zip(axis.positions, axis.ends) if e < last],
    )


def _strides(points: list[tuple[int, int]]) -> set[int]:
    """Positive whole numbers of pixels per map step between pairs of probes."""
    return {
        (v1 - v0) // (p1 - p0)
        for (p0, v0), (p1, v1) in itertools.combinations(sorted(set(points)), 2)
        if p1 > p0 and v1 > v0 and (v1 - v0) % (p1 - p0) == 0
    }


def _settled(axis: _Axis) -> bool:
    """Whether further probes would add nothing: a field fits every edge exactly, and there are
    more free edges (at least four) than the three numbers they determine, so the fit was checked."""
    free_starts, free_ends = _free(axis)
    return len(free_starts) + len(free_ends) >= 4 and _fit(axis) is not None and not _ragged(axis)


def _ragged(axis: _Axis) -> bool:
    """Whether a field fits but some measured edges fall short of it, so more samples would sharpen them."""
    fit = _fit(axis)
    return fit is not None and _matched(fit, axis) < 2 * len(axis.positions)


def _covers(fit: tuple[int, int, int], axis: _Axis) -> bool:
    """Whether the fitted boxes contain every measured one."""
    return _matched(fit, axis) is not None


def _matched(fit: tuple[int, int, int], axis: _Axis) -> int | None:
    """How many measured edges the fit predicts exactly; None if a measured box sticks out of its fitted one."""
    if not axis.positions:
        return None
    size, stride, offset = fit
    first, last = min(axis.starts), max(axis.ends)
    matched = 0
    for p, start, end in zip(axis.positions, axis.starts, axis.ends):
        # Fitted edges are cut to the pixels any probe saw.
        fitted_start, fitted_end = max(offset + p * stride, first), min(offset + p * stride + size, last)
        if start < fitted_start or end > fitted_end:
            return None
        matched += (start == fitted_start) + (end == fitted_end)
    return matched


def _whole(axis: _Axis) -> tuple[int, int, int]:
    """The smallest field in which every position sees the whole input, spaced at the map's nominal stride."""
    stride = max(1, round(axis.length / axis.cells))
    return axis.length + (axis.cells - 1) * stride, stride, -(axis.cells - 1) * stride


RECEPTIVE_FORMAT = 3  # bump when what is measured changes


def model_receptive_fields(model: LoadedModel, layers: list[LayerInfo],
                           cache: Cache) -> dict[str, ReceptiveField | None]:
    """Each chosen layer's receptive field in a model, measured once and cached by its weights and layouts."""
    pre = model.config.preprocessing
    names = [layer.name for layer in layers]
    key = content_key(RECEPTIVE_FORMAT, model.key, [(layer.name, layer.layout) for layer in layers])
    path = cache.file("receptive", key, ".json")
    if path.is_file():
        data = json.loads(path.read_text())
        return {n: None if d is None else ReceptiveField(**{k: tuple(v) for k, v in d.items()})
                for n, d in data.items()}
    with in_user_model(model.config.id, model.module, "receptive field measurement"):
        fields = receptive_fields(model.module, names, (pre.channels, *pre.size),
                                  {layer.name: layer.layout.grid_view for layer in layers})
    cache.put_file("receptive", key, ".json", json.dumps(
        {n: None if f is None else {"size": f.size, "stride": f.stride, "offset": f.offset,
                                    "input_size": f.input_size} for n, f in fields.items()}).encode())
    return fields
