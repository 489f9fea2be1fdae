"""Power-of-two histogram bins that streams and their merges agree on exactly.

Shared by the layer reducer (every activation value) and the band sampler (each input's
peak): both must coarsen their bins the same way whether they saw one stream or shards of it.
"""
from __future__ import annotations

import math

import torch

MANTISSA_BITS = {torch.float32: 23, torch.float64: 52}
EXPONENT_BIAS = {torch.float32: 127, torch.float64: 1023}
SAME_WIDTH_INT = {torch.float32: torch.int32, torch.float64: torch.int64}

# Histogram bins are [k * 2**e, (k + 1) * 2**e). The exponent e of a unit is the smallest
# one, not below E_MIN, at which all its values fit in the bin window and no absolute bin
# index exceeds INDEX_LIMIT in magnitude: a function of the unit's min and max alone, so
# streaming and merging agree. INDEX_LIMIT also keeps float32 binning exact (see
# the reducers' _bin); it only bites when bins would be narrower than about two float32 ulps of the values.
E_MIN = -24
INDEX_LIMIT = 2**22


def pow2(e: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """2**e assembled from its bit pattern, hence exact (pow/exp2 may round)."""
    bits = (e.to(torch.int64) + EXPONENT_BIAS[dtype]) << MANTISSA_BITS[dtype]
    return bits.to(SAME_WIDTH_INT[dtype]).view(dtype)


def bin_index(v: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    """floor(v / 2**e) in float64; 'floor' division stays exact where v / 2**e underflows."""
    return torch.div(v, pow2(e, torch.float64), rounding_mode="floor")


def fit_exponent(vmin: torch.Tensor, vmax: torch.Tensor, start: torch.Tensor,
                  bins: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Smallest e >= start at which [vmin, vmax] fits, per unit, with its window start lo.

    Fitting is monotone in e, so for any start at or below the answer this is the smallest
    e >= E_MIN that fits: the same for a stream, its shards and their merge. Units with
    no data keep e = start and get lo = 0.
    """
    seen = vmin <= vmax
    lo_v = torch.where(seen, vmin, 0.0)
    hi_v = torch.where(seen, vmax, 0.0)
    # Lower bounds on the answer (a little low, for rounding in log2), to skip ahead.
    span_bound = torch.floor(torch.log2(hi_v * 0.5 - lo_v * 0.5)) - math.ceil(math.log2(bins)) - 1
    size_bound = torch.floor(torch.log2(torch.maximum(lo_v.abs(), hi_v.abs()))) - 24
    bound = torch.maximum(span_bound, size_bound).clamp(E_MIN, 1000).to(torch.int64)
    e = torch.where(seen, torch.maximum(start, bound), start)
    while True:
        lo = bin_index(lo_v, e)
        hi = bin_index(hi_v, e)
        fits = (hi - lo < bins) & (torch.maximum(lo.abs(), hi.abs()) <= INDEX_LIMIT)
        if bool(fits.all()):
            return e, lo.to(torch.int64)
        e = e + (~fits).to(torch.int64)


def rebin(counts: torch.Tensor, e: torch.Tensor, lo: torch.Tensor,
           new_e: torch.Tensor, new_lo: torch.Tensor) -> torch.Tensor:
    """Counts moved to a coarser (or equal) exponent and a new window start.

    floor(v / 2**(e + d)) == floor(floor(v / 2**e) / 2**d), so absolute bin i becomes
    i >> d exactly; shifts past 62 give the same 0 or -1 as an unbounded shift would.
    """
    bins = counts.shape[1]
    shift = (new_e - e).clamp(max=62).unsqueeze(1)
    target = ((lo.unsqueeze(1) + torch.arange(bins)) >> shift) - new_lo.unsqueeze(1)
    # Bins outside the new window are empty; clamping only keeps their index legal.
    return torch.zeros_like(counts).scatter_add_(1, target.clamp_(0, bins - 1), counts)
