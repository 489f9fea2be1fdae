"""Examples from across each unit's whole range, not only its extremes.

Each input's peak (the unit's highest value on it) falls into one of a unit's fine
power-of-two bins. Every bin keeps the few inputs with the lowest hash priority: a
reservoir sample whose choice depends only on which inputs fell into the bin, never on
order or batching, so shards merge into exactly what one pass gives. Pages group the fine
bins into a handful of equal-width bands ("0.5-1.0 holds 18% of inputs") whose samples
are the lowest-priority members of their bins, which is again a fair sample of the band.

Inputs on which a unit's peak is exactly 0 (a ReLU unit, an SAE latent that never fired on
them) are counted apart and never sampled: for a sparse unit they are most inputs, and a band
of them would show nothing. The bands cover the inputs on which the unit was ever non-zero.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch

from galleria.extract.binning import E_MIN, bin_index, fit_exponent, pow2, rebin
from galleria.records import Band, Example

FINE_BINS = 32
PENDING_INPUTS = 128  # batches are held until this many inputs wait, then sampled together: far cheaper
PENDING_BYTES = 64 * 2**20  # ...or until their maps take this much memory
EMPTY = (1 << 56) - 1  # priority of an empty slot: above every real one (priorities use 56 bits)
_F16_MAX = float(torch.finfo(torch.float16).max)
_STATE = ("min", "max", "exp", "lo", "counts", "inactive", "priority", "index", "value", "position", "maps")
_PER_UNIT = 6  # the fields of _STATE before the samples


def priorities(index: torch.Tensor, units: int) -> torch.Tensor:
    """A pseudo-random 56-bit priority per (input, unit): [units, len(index)].

    The splitmix64 finaliser of input and unit numbers, so an input's chance of being
    sampled is independent between units and the same in every build.
    """
    x = (index.numpy().astype(np.uint64)[None, :] * np.uint64(0x9E3779B97F4A7C15)
         + np.arange(units, dtype=np.uint64)[:, None] * np.uint64(0xD1B54A32D192ED03))
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    x = x ^ (x >> np.uint64(31))
    return torch.from_numpy((x >> np.uint64(8)).astype(np.int64))


class _Entries(NamedTuple):
    """Sampled inputs of every unit, [C, M] each (maps [C, M, S]); bin b holds slots b*k to b*k + k - 1."""

    priority: torch.Tensor
    index: torch.Tensor
    value: torch.Tensor  # the input's peak, float64
    position: torch.Tensor  # flat index of the peak in the unit's map
    maps: torch.Tensor  # float16


class BandSampler:
    """Streaming, mergeable reservoir samples of inputs per bin of each unit's per-input peak."""

    def __init__(self, num_units: int, per_bin: int, map_size: int | None = None):
        if num_units < 1 or per_bin < 1:
            raise ValueError(f"need num_units >= 1 and per_bin >= 1, got {num_units}, {per_bin}")
        self.num_units, self.per_bin = num_units, per_bin
        self.map_size = map_size  # None until the first batch says
        c, slots = num_units, FINE_BINS * per_bin
        self._min = torch.full((c,), math.inf, dtype=torch.float64)
        self._max = torch.full((c,), -math.inf, dtype=torch.float64)
        self._exp = torch.full((c,), E_MIN, dtype=torch.int64)
        self._lo = torch.zeros(c, dtype=torch.int64)
        self._counts = torch.zeros((c, FINE_BINS), dtype=torch.int64)
        self._inactive = torch.zeros(c, dtype=torch.int64)  # inputs whose peak is exactly 0
        self._slots = _Entries(torch.full((c, slots), EMPTY, dtype=torch.int64),
                               torch.full((c, slots), -1, dtype=torch.int64),
                               torch.zeros((c, slots), dtype=torch.float64),
                               torch.zeros((c, slots), dtype=torch.int64),
                               torch.zeros((c, slots, map_size or 0), dtype=torch.float16))
        self._pending: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def update(self, peaks: torch.Tensor, acts: torch.Tensor, input_index: torch.Tensor) -> None:
        """Fold in a batch: peaks [B, C] (each map's maximum), acts [B, C, S] the maps, input_index [B].

        The tensors are kept, not copied, until sampled: the caller must not write to them.
        """
        acts = acts.detach().reshape(acts.shape[0], self.num_units, -1)
        if self.map_size is None:
            self.map_size = acts.shape[2]
            self._slots = self._slots._replace(
                maps=torch.zeros((*self._slots.index.shape, self.map_size), dtype=torch.float16))
        elif acts.shape[2] != self.map_size:
            raise ValueError(f"map size changed from {self.map_size} to {acts.shape[2]}")
        self._pending.append((peaks.detach(), acts, input_index.detach()))
        held = sum(p[1].numel() * p[1].element_size() for p in self._pending)
        if acts.is_cuda or held >= PENDING_BYTES or sum(len(p[2]) for p in self._pending) >= PENDING_INPUTS:
            self._flush()  # on a GPU, device memory is too dear to hold batches

    @torch.inference_mode()
    def _flush(self) -> None:
        """Sample the batches held so far (in inference mode, as the tensors held were made)."""
        if not self._pending:
            return
        held, self._pending = self._pending, []
        peaks = torch.cat([p[0].to("cpu", torch.float64) for p in held]).T  # [C, B]
        offsets = torch.tensor([0] + [len(p[2]) for p in held]).cumsum(0)
        finite = torch.isfinite(peaks)
        before = (self._exp, self._lo)
        self._fit(torch.where(finite, peaks, math.inf).amin(1), torch.where(finite, peaks, -math.inf).amax(1))
        index = torch.cat([p[2].to("cpu", torch.int64) for p in held]).expand(self.num_units, -1)
        zero = peaks == 0
        self._inactive += zero.sum(1)
        bins = self._bins(peaks).masked_fill(zero, FINE_BINS)
        self._counts += torch.zeros_like(self._counts).scatter_add_(
            1, bins.clamp(max=FINE_BINS - 1), (finite & ~zero).to(torch.int64))
        priority = priorities(index[0], self.num_units)
        # Most candidates cannot enter: only those that beat the last sample kept in their bin
        # are sorted in, for the units that have one or whose bins moved.
        last = bins.clamp(max=FINE_BINS - 1) * self.per_bin + self.per_bin - 1
        last_priority, last_index = self._slots.priority.gather(1, last), self._slots.index.gather(1, last)
        moved = ((self._exp != before[0]) | (self._lo != before[1])).unsqueeze(1)
        enters = (bins < FINE_BINS) & (moved | (priority < last_priority)
                                       | ((priority == last_priority) & (index < last_index)))
        units = enters.any(1).nonzero().flatten()
        if not len(units):
            return
        enters = enters[units]
        width = int(enters.sum(1).max())
        columns = enters.to(torch.int8).topk(width, dim=1, sorted=False).indices  # [units, width]
        taken = enters.gather(1, columns)

        def pick(table: torch.Tensor) -> torch.Tensor:
            return table[units].gather(1, columns)

        def fetch(local: torch.Tensor, j: torch.Tensor):
            column, unit = columns[local, j], units[local]
            batch = torch.searchsorted(offsets, column, right=True) - 1
            rows = torch.empty((len(column), self.map_size), dtype=torch.float32)
            for b in batch.unique().tolist():
                mine = batch == b
                acts = held[b][1]
                rows[mine] = acts[(column[mine] - offsets[b]).to(acts.device), unit[mine].to(acts.device)].float().cpu()
            return rows.argmax(-1), rows.clamp(-_F16_MAX, _F16_MAX).to(torch.float16)

        self._slots = self._select(self._slots, units, pick(priority), pick(index), pick(peaks),
                                   pick(bins).masked_fill(~taken, FINE_BINS), fetch, inplace=True)

    def _fit(self, batch_min: torch.Tensor, batch_max: torch.Tensor) -> None:
        """Widen the bins to the new range, re-binning counts; the samples are re-binned in _select."""
        vmin, vmax = torch.minimum(self._min, batch_min), torch.maximum(self._max, batch_max)
        e, lo = fit_exponent(vmin, vmax, self._exp, FINE_BINS)
        self._counts = rebin(self._counts, self._exp, self._lo, e, lo)
        self._min, self._max, self._exp, self._lo = vmin, vmax, e, lo

    def _bins(self, values: torch.Tensor, units: torch.Tensor | None = None) -> torch.Tensor:
        """Fine bin of each value [C, n] (of ``units``' rows) under the current exponent;
        FINE_BINS where not finite."""
        finite = torch.isfinite(values)
        exp, lo = (self._exp, self._lo) if units is None else (self._exp[units], self._lo[units])
        b = bin_index(values.nan_to_num(0, 0, 0), exp.unsqueeze(1)) - lo.unsqueeze(1)
        return b.to(torch.int64).masked_fill(~finite, FINE_BINS)

    def _select(self, old: _Entries, units: torch.Tensor, priority: torch.Tensor, index: torch.Tensor,
                value: torch.Tensor, bins: torch.Tensor, fetch, inplace: bool) -> _Entries:
        """old with the samples of ``units`` redrawn: the per_bin lowest priorities of every bin
        among their old entries and the new candidates [len(units), m] given.

        Ties in priority fall to the lower input index, so the order entries arrive in never
        matters. Kept candidates get their position and map from fetch(row, column). With
        inplace, old's map storage is reused.
        """
        k, slots, old_slots = self.per_bin, FINE_BINS * self.per_bin, old.priority.shape[1]
        sub = _Entries(*(t[units] for t in old[:4]), None)
        bins = torch.cat([self._bins(sub.value, units).masked_fill(sub.priority == EMPTY, FINE_BINS), bins], 1)
        priority = torch.cat([sub.priority, priority], 1)
        index = torch.cat([sub.index, index], 1)
        value = torch.cat([sub.value, value], 1)
        by_index = torch.argsort(index, dim=1, stable=True)
        key = (bins.clamp(max=FINE_BINS) << 56 | priority).gather(1, by_index)
        order = by_index.gather(1, torch.argsort(key, dim=1, stable=True))
        sorted_bins = bins.gather(1, order)
        rank = torch.arange(order.shape[1]) - torch.searchsorted(sorted_bins, sorted_bins)
        keep = (rank < k) & (sorted_bins < FINE_BINS)
        local, column = torch.nonzero(keep, as_tuple=True)
        source = order[local, column]
        slot = sorted_bins[local, column] * k + rank[local, column]
        flat = local * slots + slot  # into the redrawn rows
        drawn = [torch.full((len(units), slots), fill, dtype=t.dtype).view(-1).index_put_((flat,), t[local, source])
                 .view(len(units), slots) for t, fill in ((priority, EMPTY), (index, -1), (value, 0.0))]
        position = torch.zeros(len(units) * slots, dtype=torch.int64)
        from_old = source < old_slots
        position[flat[from_old]] = sub.position[local[from_old], source[from_old]]
        out = _Entries(old.priority.clone(), old.index.clone(), old.value.clone(), old.position.clone(),
                       old.maps if inplace else old.maps.clone())
        unit = units[local]
        # Maps move only where a slot's entry changed: read every moving row before writing any.
        shifted = from_old & (source != slot)
        rows = out.maps[unit[shifted], source[shifted]]
        fresh = ~from_old
        if bool(fresh.any()):
            found, fetched = fetch(local[fresh], source[fresh] - old_slots)
            position[flat[fresh]] = found
        out.maps[unit[shifted], slot[shifted]] = rows
        if bool(fresh.any()):
            out.maps[unit[fresh], slot[fresh]] = fetched
        emptied = (drawn[0] == EMPTY) & (sub.priority != EMPTY)  # bins merged as the range grew
        if bool(emptied.any()):
            where, which = emptied.nonzero(as_tuple=True)
            out.maps[units[where], which] = 0
        out.priority[units], out.index[units], out.value[units] = drawn
        out.position[units] = position.view(len(units), slots)
        return out

    def merge(self, other: BandSampler) -> BandSampler:
        """A sampler equal to one that saw both streams; neither input is modified."""
        self._flush()
        other._flush()
        if (self.num_units, self.per_bin) != (other.num_units, other.per_bin):
            raise ValueError("cannot merge samplers built with different parameters")
        sizes = {s for s in (self.map_size, other.map_size) if s is not None}
        if len(sizes) > 1:
            raise ValueError(f"cannot merge map sizes {sorted(sizes)}")
        out = BandSampler(self.num_units, self.per_bin, next(iter(sizes), None))
        out._min, out._max = torch.minimum(self._min, other._min), torch.maximum(self._max, other._max)
        out._exp, out._lo = fit_exponent(out._min, out._max, torch.maximum(self._exp, other._exp), FINE_BINS)
        out._counts = (rebin(self._counts, self._exp, self._lo, out._exp, out._lo)
                       + rebin(other._counts, other._exp, other._lo, out._exp, out._lo))
        out._inactive = self._inactive + other._inactive
        mine, theirs = out._sized(self._slots), out._sized(other._slots)
        bins = out._bins(theirs.value).masked_fill(theirs.priority == EMPTY, FINE_BINS)
        out._slots = out._select(mine, torch.arange(self.num_units), theirs.priority, theirs.index, theirs.value,
                                 bins, lambda unit, j: (theirs.position[unit, j], theirs.maps[unit, j]),
                                 inplace=False)
        return out

    def _sized(self, entries: _Entries) -> _Entries:
        """Entries whose map storage matches this sampler's (a sampler that saw nothing has none)."""
        size = self.map_size or 0
        if entries.maps.shape[2] == size:
            return entries
        return entries._replace(maps=torch.zeros((*entries.index.shape, size), dtype=torch.float16))

    def inactive(self) -> list[int]:
        """Per unit, the inputs on which its peak was exactly 0: in no band, but in every band's total."""
        self._flush()
        return self._inactive.tolist()

    def bands(self, count: int, spatial: tuple[int, ...] | None) -> list[list[Band]]:
        """Per unit, its range of peaks cut into up to ``count`` equal runs of fine bins, highest first;
        none for a unit that was 0 on every input."""
        self._flush()
        k = self.per_bin
        columns = zip(self._max.tolist(), pow2(self._exp, torch.float64).tolist(), self._lo.tolist(),
                      bin_index(self._max.nan_to_num(0, 0, 0), self._exp).tolist(), self._counts.tolist(),
                      self._slots.priority.tolist(), self._slots.index.tolist(), self._slots.value.tolist(),
                      self._slots.position.tolist(), self._inactive.tolist())
        out = []
        for vmax, width, lo, hi, counts, priority, index, value, position, inactive in columns:
            if not math.isfinite(vmax) or not any(counts):
                out.append([])
                continue
            used = int(hi) - lo + 1
            cuts = sorted({round(j * used / count) for j in range(count + 1)})
            bands = []
            for a, b in zip(cuts, cuts[1:]):
                filled = sorted((priority[s], index[s], s) for s in range(a * k, b * k) if priority[s] != EMPTY)
                examples = [Example(i, value[s], _where(position[s], spatial)) for _, i, s in filled[:k]]
                bands.append(Band((lo + a) * width, (lo + b) * width, sum(counts[a:b]), sum(counts) + inactive,
                                  tuple(sorted(examples, key=lambda e: -e.value))))
            out.append(bands[::-1])
        return out

    def unit_band_maps(self, unit: int, bands, spatial: tuple[int, ...] | None) -> tuple[np.ndarray | None, ...]:
        """Per band of the unit, the maps [len(band.examples), *spatial] of its examples, in their order
        (None for a band without examples, or every band of a layer without positions)."""
        if not spatial or not any(band.examples for band in bands):
            return tuple(None for _ in bands)
        self._flush()
        slot_of: dict[int, int] = {}
        for slot, index in enumerate(self._slots.index[unit].tolist()):
            slot_of.setdefault(index, slot)
        maps = self._slots.maps[unit]
        return tuple(maps[[slot_of[e.input_index] for e in band.examples]].float().numpy()
                     .reshape(len(band.examples), *spatial) if band.examples else None for band in bands)

    def state_dict(self) -> dict:
        """Plain tensors and numbers, loadable with torch.load(weights_only=True)."""
        self._flush()
        state = {"num_units": self.num_units, "per_bin": self.per_bin, "map_size": self.map_size}
        tensors = (self._min, self._max, self._exp, self._lo, self._counts, self._inactive, *self._slots)
        state.update({name: t.clone() for name, t in zip(_STATE, tensors)})
        return state

    @classmethod
    def from_state_dict(cls, state: dict) -> BandSampler:
        sampler = cls(state["num_units"], state["per_bin"], state["map_size"])
        expected = (sampler._min, sampler._max, sampler._exp, sampler._lo, sampler._counts, sampler._inactive,
                    *sampler._slots)
        for name, want in zip(_STATE, expected):
            got = state[name]
            if got.shape != want.shape or got.dtype != want.dtype:
                raise ValueError(f"{name}: expected {want.dtype}{list(want.shape)}, got {got.dtype}{list(got.shape)}")
        sampler._min, sampler._max, sampler._exp, sampler._lo, sampler._counts, sampler._inactive = (
            state[n].clone() for n in _STATE[:_PER_UNIT])
        sampler._slots = _Entries(*(state[n].clone() for n in _STATE[_PER_UNIT:]))
        return sampler


def _where(position: int, spatial: tuple[int, ...] | None) -> tuple[int, ...] | None:
    """A flat map position as its index in ``spatial`` (numpy's unravel_index, without its cost per call)."""
    if not spatial:
        return None
    found = []
    for size in reversed(spatial):
        position, rest = divmod(position, size)
        found.append(rest)
    return tuple(reversed(found))
