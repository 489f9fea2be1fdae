"""Streaming, exactly mergeable summaries of one layer's activations.

A reducer sees every input once, in batches, and keeps only what the gallery needs per
unit: the extreme examples (with their maps, so heatmaps need no second model run),
moments, and a histogram. Its state is fixed in size, and every choice it makes depends
only on the values seen, never on how they were batched or ordered, so reducers built
on shards of the input set merge into exactly what one pass over the whole set gives.
"""
from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, NamedTuple

import numpy as np
import torch

from galleria.extract.binning import (E_MIN, EXPONENT_BIAS, MANTISSA_BITS, SAME_WIDTH_INT, bin_index,
                                     fit_exponent, pow2, rebin)
from galleria.records import Example, Histogram, UnitStats, UnitSummary

NO_INPUT = torch.iinfo(torch.int64).max  # input index of an empty slot: sorts after any real one
_F16_MAX = float(torch.finfo(torch.float16).max)
_STAT_FIELDS = ("count", "mean", "m2", "min", "max", "positive", "nonfinite", "exp", "lo", "counts")


_local = threading.local()
_pool: ThreadPoolExecutor | None = None


def _scratch(like: torch.Tensor) -> torch.Tensor:
    """An uninitialized tensor shaped like `like`, reused between calls on CPU.

    A fresh batch-sized CPU buffer is mapped anew each call, and faulting its pages in
    costs more than the arithmetic done in it. One buffer per thread and dtype, so
    reducers updated from different threads never share one.
    """
    if like.device.type != "cpu":
        return torch.empty_like(like)
    if not hasattr(_local, "buffers"):
        _local.buffers = {}
    buffers = _local.buffers
    buffer = buffers.get(like.dtype)
    if buffer is None or buffer.numel() < like.numel():
        buffer = buffers[like.dtype] = torch.empty(like.numel(), dtype=like.dtype)
    return buffer[:like.numel()].view(like.shape)


def _bincount(slots: torch.Tensor, length: int) -> torch.Tensor:
    """torch.bincount over a flat tensor, split across torch's threads on CPU.

    bincount is serial on CPU and would otherwise be the slowest step of an update; it
    frees the GIL, so Python threads run the pieces in parallel.
    """
    global _pool
    parts = min(torch.get_num_threads(), os.cpu_count() or 1, slots.numel() // 2**20)
    if parts < 2 or slots.device.type != "cpu":
        return torch.bincount(slots, minlength=length)
    if _pool is None:  # threads start only when needed, up to one per core; see release_threads
        _pool = ThreadPoolExecutor(os.cpu_count(), thread_name_prefix="galleria-bincount")
    first, *rest = slots.chunk(parts)
    pending = [_pool.submit(torch.bincount, chunk, minlength=length) for chunk in rest]
    counts = torch.bincount(first, minlength=length)
    for future in pending:
        counts += future.result()
    return counts


def release_threads() -> None:
    """Stop the threads _bincount started. Idle, they still halved the speed of later autograd
    work in the same process (measured: gradient attribution took 22 s instead of 12 s)."""
    global _pool
    if _pool is not None:
        _pool.shutdown()
        _pool = None


class _Slots(NamedTuple):
    """The k best examples of every unit, best first; empty slots last."""

    values: torch.Tensor  # [C, k] float64, -inf (top) or +inf (bottom) where empty
    index: torch.Tensor  # [C, k] int64 input indices, NO_INPUT where empty
    position: torch.Tensor  # [C, k] int64 flat index into the map, 0 where empty
    maps: torch.Tensor  # [C, k, S] float16 maps, or [C, k, 0] when maps are not kept


def _empty_slots(units: int, k: int, fill: float, map_size: int) -> _Slots:
    return _Slots(torch.full((units, k), fill, dtype=torch.float64),
                  torch.full((units, k), NO_INPUT, dtype=torch.int64),
                  torch.zeros((units, k), dtype=torch.int64),
                  torch.zeros((units, k, map_size), dtype=torch.float16))


_Fetch = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def _select(a: _Slots, values: torch.Tensor, index: torch.Tensor, largest: bool, fetch: _Fetch,
            inplace: bool) -> _Slots:
    """a's examples updated with new candidates (values, index: [C, n]), best first.

    Candidates are ordered by value and then by input index: a total order, so the result
    does not depend on how candidates were split or batched. Non-finite values are
    exclusions. Positions and maps are asked of fetch(unit, j) -> (positions [m], maps
    [m, S]) only for the m candidates chosen; with inplace, a's map storage is reused and
    only slots whose example changed are written.
    """
    k = a.values.shape[1]
    values = torch.cat([a.values, values], 1)
    index = torch.cat([a.index, index], 1).masked_fill(~torch.isfinite(values), NO_INPUT)
    by_index = torch.argsort(index, dim=1, stable=True)
    by_value = torch.argsort(values.gather(1, by_index), dim=1, descending=largest, stable=True)
    order = by_index.gather(1, by_value)[:, :k]
    values = values.gather(1, order)
    empty = ~torch.isfinite(values)  # never more empty slots than a had, so their maps are already zero
    position = a.position.gather(1, order.clamp(max=k - 1))
    maps = a.maps if inplace else a.maps.clone()
    unit, slot = torch.nonzero((order != torch.arange(k)) & ~empty, as_tuple=True)
    source = order[unit, slot]
    rows = maps[unit, source.clamp(max=k - 1)]  # a copy, taken before any slot is overwritten
    new = source >= k
    if bool(new.any()):
        found, found_rows = fetch(unit[new], source[new] - k)
        position[unit[new], slot[new]] = found
        rows[new] = found_rows
    maps[unit, slot] = rows
    return _Slots(values, index.gather(1, order), position.masked_fill(empty, 0), maps)


def _contenders(slots: _Slots, values: torch.Tensor, index: torch.Tensor,
                largest: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """The new candidates [C, n] that would displace slots' last example, narrowed to [C, m].

    Returns their values, input indices and columns in the input, or None if none would:
    after the first batches most units admit nobody, and sorting only the few that
    could enter keeps selection cheap for wide layers.
    """
    if not slots.values.shape[1]:
        return None
    last_value, last_index = slots.values[:, -1:], slots.index[:, -1:]
    better = values > last_value if largest else values < last_value
    enters = (better | ((values == last_value) & (index < last_index))) & torch.isfinite(values)
    m = int(enters.sum(1).max())
    if m == 0:
        return None
    values = values.masked_fill(~enters, -math.inf if largest else math.inf)
    columns = values.topk(m, dim=1, largest=largest).indices  # all of a unit's entrants, then excluded filler
    return values.gather(1, columns), index.gather(1, columns), columns


def _to_map_storage(rows: torch.Tensor) -> torch.Tensor:
    """float16 on CPU, saturated so a huge activation is drawn as huge, not as missing."""
    return rows.clamp(-_F16_MAX, _F16_MAX).to("cpu", torch.float16)


def _bin(x: torch.Tensor, e: torch.Tensor, lo: torch.Tensor, bins: int, out: torch.Tensor) -> torch.Tensor:
    """Counts [C, bins] of every value of x [B, C, S] in its unit's window, using out as scratch.

    Exact: scaling by 2**-e cannot round unless it underflows, which only coarse units
    (e > 0) risk; for those floor(x / 2**e) == floor(floor(x) / 2**e), and an integer
    cannot underflow. Adding 2**mantissa_bits to an integer-valued float puts that integer
    in its low bits, so the bin index is read from the bits instead of converting, which
    would cost another batch-sized buffer.
    """
    units, dtype, device = x.shape[1], x.dtype, x.device
    e = e.to(device)
    y = torch.mul(x, pow2(-e.clamp(max=0), dtype).view(1, units, 1), out=out).floor_()
    if bool((e > 0).any()):
        y.mul_(pow2(-e.clamp(min=0), dtype).view(1, units, 1)).floor_()
    magic = 2 ** MANTISSA_BITS[dtype]
    offset = torch.arange(units, device=device) * bins - lo.to(device) + magic
    y.add_(offset.to(dtype).view(1, units, 1))
    slot = y.view(SAME_WIDTH_INT[dtype]).sub_((EXPONENT_BIAS[dtype] + MANTISSA_BITS[dtype]) << MANTISSA_BITS[dtype])
    return _bincount(slot.view(-1), units * bins).view(units, bins).cpu()


def _row_moments(x: torch.Tensor, finite: torch.Tensor | None):
    """Count, mean, M2 and sum of signs of every (input, unit) map of x [B, C, S].

    M2 sums squared deviations from the map's rounded mean, which stays accurate when the
    mean dwarfs the spread (a plain sum of squares would cancel catastrophically).
    Returns the batch-sized scratch buffer too, for reuse.
    """
    buffer = _scratch(x)
    if finite is None:
        n = torch.full(x.shape[:2], x.shape[2], dtype=torch.int64, device=x.device)
    else:
        n = finite.sum(-1)
    signs = torch.sign(x, out=buffer).sum(-1)
    total = x.sum(-1)
    shift = total / n.clamp(min=1)
    deviation = torch.sub(x, shift.unsqueeze(-1), out=buffer)
    if finite is not None:
        deviation.masked_fill_(~finite, 0)
    squares = deviation.square_().sum(-1).double()
    nf = n.double().clamp(min=1)
    mean = total.double() / nf
    # sum((x - shift)**2) == M2 + n * (mean - shift)**2
    return n, mean, (squares - nf * (mean - shift.double()) ** 2).clamp(min=0), signs, buffer


def _combine_moments(na, mean_a, m2a, nb, mean_b, m2b):
    """Chan et al.'s parallel update of (count, mean, M2)."""
    n = na + nb
    weight_b = nb.double() / n.double().clamp(min=1)
    delta = mean_b - mean_a
    mean = torch.where(na == 0, mean_b, torch.where(nb == 0, mean_a, mean_a + delta * weight_b))
    return n, mean, m2a + m2b + delta * delta * na.double() * weight_b


class LayerReducer:
    """Streaming, mergeable summary of all units of one layer."""

    def __init__(self, num_units: int, top_k: int, bottom_k: int, hist_bins: int = 64, keep_maps: bool = True):
        if num_units < 1 or top_k < 0 or bottom_k < 0:
            raise ValueError(f"need num_units >= 1 and top_k, bottom_k >= 0, got {num_units}, {top_k}, {bottom_k}")
        if hist_bins < 2:  # one bin cannot hold values on both sides of zero at any width
            raise ValueError(f"need hist_bins >= 2, got {hist_bins}")
        self.num_units = num_units
        self.top_k = top_k
        self.bottom_k = bottom_k
        self.hist_bins = hist_bins
        self.keep_maps = keep_maps
        self._spatial: tuple[int, ...] | None = None  # () for vector layers; None until known
        c = num_units
        self._top = _empty_slots(c, top_k, -math.inf, 0)
        self._bottom = _empty_slots(c, bottom_k, math.inf, 0)
        self._count = torch.zeros(c, dtype=torch.int64)
        self._mean = torch.zeros(c, dtype=torch.float64)
        self._m2 = torch.zeros(c, dtype=torch.float64)
        self._min = torch.full((c,), math.inf, dtype=torch.float64)
        self._max = torch.full((c,), -math.inf, dtype=torch.float64)
        self._positive = torch.zeros(c, dtype=torch.int64)
        self._nonfinite = torch.zeros(c, dtype=torch.int64)
        self._exp = torch.full((c,), E_MIN, dtype=torch.int64)
        self._lo = torch.zeros(c, dtype=torch.int64)
        self._counts = torch.zeros((c, hist_bins), dtype=torch.int64)

    @property
    def spatial_shape(self) -> tuple[int, ...] | None:
        return self._spatial or None

    def _map_size(self) -> int:
        return math.prod(self._spatial) if self.keep_maps and self._spatial else 0

    def _set_spatial(self, spatial: tuple[int, ...]) -> None:
        self._spatial = spatial
        size = self._map_size()
        if size:
            self._top = self._top._replace(maps=torch.zeros((self.num_units, self.top_k, size), dtype=torch.float16))
            self._bottom = self._bottom._replace(
                maps=torch.zeros((self.num_units, self.bottom_k, size), dtype=torch.float16))

    def update(self, acts: torch.Tensor, input_index: torch.Tensor) -> None:
        """Fold in one batch: acts [B, C, *spatial] (or [B, C]); input_index int64 [B], unique over the stream."""
        acts = acts.detach()
        if acts.dim() < 2 or acts.shape[1] != self.num_units:
            raise ValueError(f"expected activations [B, {self.num_units}, ...], got {tuple(acts.shape)}")
        if not acts.is_floating_point():
            raise TypeError(f"expected floating-point activations, got {acts.dtype}")
        batch = acts.shape[0]
        index = input_index.detach().to("cpu", torch.int64)
        if index.shape != (batch,):
            raise ValueError(f"expected input_index of shape [{batch}], got {tuple(index.shape)}")
        spatial = tuple(acts.shape[2:])
        if self._spatial is None:
            self._set_spatial(spatial)
        elif spatial != self._spatial:
            raise ValueError(f"spatial shape changed from {self._spatial} to {spatial}")
        if batch == 0:
            return
        x = acts.reshape(batch, self.num_units, -1)
        top, bottom = x.amax(-1), x.amin(-1)  # NaN and inf propagate: finite extremes mean finite data
        finite = None
        searched = (x, x)
        if not (bool(torch.isfinite(top).all()) and bool(torch.isfinite(bottom).all())):
            finite = torch.isfinite(x)
            searched = (x.masked_fill(~finite, -math.inf), x.masked_fill(~finite, math.inf))
            top, bottom = searched[0].amax(-1), searched[1].amin(-1)
        top = top.to("cpu", torch.float64).T
        bottom = bottom.to("cpu", torch.float64).T
        inputs = index.unsqueeze(0).expand(self.num_units, batch)
        for name, search, pooled, largest in (("_top", searched[0], top, True),
                                              ("_bottom", searched[1], bottom, False)):
            contenders = _contenders(getattr(self, name), pooled, inputs, largest)
            if contenders is not None:
                values, indices, columns = contenders
                fetch = self._fetcher(x, search, finite, columns, largest)
                setattr(self, name, _select(getattr(self, name), values, indices, largest, fetch, inplace=True))
        self._accumulate(x, finite, bottom.amin(1), top.amax(1))

    def _fetcher(self, x: torch.Tensor, search: torch.Tensor, finite: torch.Tensor | None, columns: torch.Tensor,
                 largest: bool) -> _Fetch:
        """Positions and stored maps of chosen candidates, given as (unit, column of `columns`)."""
        keep_maps = self._map_size() > 0

        def fetch(unit: torch.Tensor, column: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            item = columns[unit, column].to(x.device)
            unit = unit.to(x.device)
            found = search[item, unit]
            position = (found.argmax(-1) if largest else found.argmin(-1)).cpu()  # first occurrence
            if not keep_maps:
                found = found[:, :0]
            elif finite is not None:
                found = x[item, unit]  # the real values, not those searched
            return position, _to_map_storage(found)

        return fetch

    def _accumulate(self, x: torch.Tensor, finite: torch.Tensor | None,
                    batch_min: torch.Tensor, batch_max: torch.Tensor) -> None:
        """Moments, counts and histogram of a batch x [B, C, S] whose per-unit finite range is known."""
        units, bins = self.num_units, self.hist_bins
        vmin = torch.minimum(self._min, batch_min)
        vmax = torch.maximum(self._max, batch_max)
        e, lo = fit_exponent(vmin, vmax, self._exp, bins)
        counts = rebin(self._counts, self._exp, self._lo, e, lo)
        magnitude = torch.maximum(batch_min.abs(), batch_max.abs()).nan_to_num(0, 0, 0).max()
        # float32 is exact for binning within these limits, and its squares cannot overflow.
        exact_in_float32 = (x.dtype != torch.float64 and x.shape[2] < 2**24 and units * bins <= 2**22
                            and int(e.max()) <= 100 and float(magnitude) < 2.0**60)
        xc = x.to(torch.float32 if exact_in_float32 else torch.float64)
        if finite is not None:
            xc = xc.masked_fill(~finite, 0)
        n, mean, m2, signs, buffer = _row_moments(xc, finite)
        if finite is not None:
            # Park non-finite values at the bottom edge of the window (bin 0), then uncount them.
            edge = (lo.double() * pow2(e, torch.float64)).to(xc.dtype).to(xc.device)
            xc = torch.where(finite, xc, edge.view(1, units, 1))
        batch_counts = _bin(xc, e, lo, bins, out=buffer)
        nonfinite = torch.zeros(units, dtype=torch.int64)
        if finite is not None:
            nonfinite = (~finite).sum((0, 2)).cpu()
            batch_counts[:, 0] -= nonfinite
        negative = (batch_counts * ((lo.unsqueeze(1) + torch.arange(bins)) < 0)).sum(1)
        positive = signs.double().sum(0).round().to("cpu", torch.int64) + negative  # signs sum to pos - neg
        batch_n = n.sum(0)
        batch_mean = (n * mean).sum(0) / batch_n.clamp(min=1)
        batch_m2 = (m2 + n * (mean - batch_mean) ** 2).sum(0)
        self._count, self._mean, self._m2 = _combine_moments(
            self._count, self._mean, self._m2, batch_n.cpu(), batch_mean.cpu(), batch_m2.cpu())
        self._min, self._max = vmin, vmax
        self._positive = self._positive + positive
        self._nonfinite = self._nonfinite + nonfinite
        self._exp, self._lo, self._counts = e, lo, counts + batch_counts

    def merge(self, other: LayerReducer) -> LayerReducer:
        """A reducer equal to one that saw both streams; neither input is modified."""
        params = (self.num_units, self.top_k, self.bottom_k, self.hist_bins, self.keep_maps)
        if params != (other.num_units, other.top_k, other.bottom_k, other.hist_bins, other.keep_maps):
            raise ValueError("cannot merge reducers built with different parameters")
        if None not in (self._spatial, other._spatial) and self._spatial != other._spatial:
            raise ValueError(f"cannot merge spatial shapes {self._spatial} and {other._spatial}")
        out = LayerReducer(*params)
        spatial = self._spatial if self._spatial is not None else other._spatial
        if spatial is not None:
            out._set_spatial(spatial)
        size = out._map_size()

        def merged(mine: _Slots, theirs: _Slots, largest: bool) -> _Slots:
            if mine.maps.shape[2] != size:  # a reducer that saw nothing yet has no map storage
                mine = mine._replace(maps=torch.zeros((*mine.index.shape, size), dtype=torch.float16))
            return _select(mine, theirs.values, theirs.index, largest,
                           lambda unit, j: (theirs.position[unit, j], theirs.maps[unit, j]), inplace=False)

        out._top = merged(self._top, other._top, True)
        out._bottom = merged(self._bottom, other._bottom, False)
        out._count, out._mean, out._m2 = _combine_moments(self._count, self._mean, self._m2,
                                                          other._count, other._mean, other._m2)
        out._min = torch.minimum(self._min, other._min)
        out._max = torch.maximum(self._max, other._max)
        out._positive = self._positive + other._positive
        out._nonfinite = self._nonfinite + other._nonfinite
        out._exp, out._lo = fit_exponent(out._min, out._max, torch.maximum(self._exp, other._exp), self.hist_bins)
        out._counts = (rebin(self._counts, self._exp, self._lo, out._exp, out._lo)
                       + rebin(other._counts, other._exp, other._lo, out._exp, out._lo))
        return out

    def state_dict(self) -> dict:
        """Plain tensors and numbers only, so it loads with torch.load(weights_only=True).

        Tensors are copies: updates write map storage in place.
        """
        state = {"num_units": self.num_units, "top_k": self.top_k, "bottom_k": self.bottom_k,
                 "hist_bins": self.hist_bins, "keep_maps": self.keep_maps,
                 "spatial_known": self._spatial is not None, "spatial_shape": list(self._spatial or ())}
        for name, slots in (("top", self._top), ("bottom", self._bottom)):
            for field, tensor in zip(_Slots._fields, slots):
                state[f"{name}_{field}"] = tensor.clone()
        for name in _STAT_FIELDS:
            state[name] = getattr(self, f"_{name}").clone()
        return state

    @classmethod
    def from_state_dict(cls, state: dict) -> LayerReducer:
        reducer = cls(state["num_units"], state["top_k"], state["bottom_k"], state["hist_bins"], state["keep_maps"])
        if state["spatial_known"]:
            reducer._set_spatial(tuple(int(s) for s in state["spatial_shape"]))
        for name in ("top", "bottom"):
            expected = getattr(reducer, f"_{name}")
            loaded = _Slots(*(state[f"{name}_{field}"] for field in _Slots._fields))
            for field, want, got in zip(_Slots._fields, expected, loaded):
                if got.shape != want.shape or got.dtype != want.dtype:
                    raise ValueError(f"{name}_{field}: expected {want.dtype}{list(want.shape)}, "
                                     f"got {got.dtype}{list(got.shape)}")
            setattr(reducer, f"_{name}", _Slots(*(t.clone() for t in loaded)))
        for name in _STAT_FIELDS:
            want, got = getattr(reducer, f"_{name}"), state[name]
            if got.shape != want.shape or got.dtype != want.dtype:
                raise ValueError(f"{name}: expected {want.dtype}{list(want.shape)}, got {got.dtype}{list(got.shape)}")
            setattr(reducer, f"_{name}", got.clone())
        return reducer

    def _examples(self, slots: _Slots) -> list[tuple[Example, ...]]:
        values, index = slots.values.tolist(), slots.index.tolist()
        spatial = self._spatial
        if spatial:  # every flat position unravelled at once: per example, numpy's call would dominate
            flat = slots.position.numpy().clip(0, int(np.prod(spatial)) - 1)
            position = np.stack(np.unravel_index(flat, spatial), axis=-1).tolist()
            position = [[tuple(p) for p in ps] for ps in position]
        else:
            position = [[None] * len(vs) for vs in values]
        return [tuple(Example(i, v, p) for v, i, p in zip(vs, ix, ps) if i != NO_INPUT)
                for vs, ix, ps in zip(values, index, position)]

    def summaries(self) -> list[UnitSummary]:
        """One summary per unit; a unit with no finite value reports zeros and an empty histogram."""
        seen = self._count > 0
        hi = torch.where(seen, bin_index(self._max.nan_to_num(0, 0, 0), self._exp), 0).to(torch.int64)
        widths = pow2(self._exp, torch.float64).tolist()
        lengths = torch.where(seen, hi - self._lo + 1, 0).tolist()
        std = (self._m2 / self._count.clamp(min=1)).sqrt()
        frac = self._positive.double() / self._count.clamp(min=1)
        columns = zip(self._count.tolist(), self._mean.tolist(), std.tolist(), self._min.tolist(),
                      self._max.tolist(), frac.tolist(), self._nonfinite.tolist(), widths, self._lo.tolist(),
                      self._counts.tolist(), lengths, self._examples(self._top), self._examples(self._bottom))
        out = []
        for unit, (n, mean, sd, vmin, vmax, fa, nf, width, lo, counts, length, top, bottom) in enumerate(columns):
            histogram = Histogram(width=width, lo=lo, counts=tuple(counts[:length]))
            if not n:
                mean = sd = vmin = vmax = fa = 0.0
            stats = UnitStats(count=n, mean=mean, std=sd, min=vmin, max=vmax, frac_active=fa, nonfinite=nf,
                              histogram=histogram)
            out.append(UnitSummary(unit=unit, stats=stats, top=top, bottom=bottom))
        return out

    def _maps(self, slots: _Slots, unit: int) -> np.ndarray | None:
        if not self._map_size():
            return None
        kept = int((slots.index[unit] != NO_INPUT).sum())
        return slots.maps[unit, :kept].float().numpy().reshape(kept, *self._spatial)

    def maps(self, kind: str) -> np.ndarray | None:
        """Every unit's stored maps [units, slots, *spatial] (float16; slots past a unit's examples are
        zero) of its "top" or "bottom" examples, in their order; None without maps."""
        if not self._map_size():
            return None
        slots = self._top if kind == "top" else self._bottom
        return slots.maps.numpy().reshape(self.num_units, slots.maps.shape[1], *self._spatial)

    def top_maps(self, unit: int) -> np.ndarray | None:
        """Maps [len(top), *spatial] of the unit's top examples, in the same order; None without maps."""
        return self._maps(self._top, unit)

    def bottom_maps(self, unit: int) -> np.ndarray | None:
        """Maps [len(bottom), *spatial] of the unit's bottom examples, in the same order; None without maps."""
        return self._maps(self._bottom, unit)
