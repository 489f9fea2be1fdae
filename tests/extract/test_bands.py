"""The interval sampler: a fair, exact sample per band of each unit's per-input peaks."""
import math

import numpy as np
import pytest
import torch

from galleria.extract.bands import BandSampler, priorities


def _acts(n=300, units=5, side=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, units, side, side, generator=g) * torch.linspace(0.5, 40, units).view(1, units, 1, 1)
    x[:, 0] = x[:, 0].relu()  # a ReLU-like unit with many inputs at zero
    return x


def _feed(sampler, acts, start, batch):
    for i in range(0, acts.shape[0], batch):
        chunk = acts[i:i + batch]
        flat = chunk.flatten(2)
        sampler.update(flat.amax(2), flat, torch.arange(start + i, start + i + chunk.shape[0]))
    return sampler


def _state(sampler):
    return {k: v for k, v in sampler.state_dict().items() if isinstance(v, torch.Tensor)}


def _same(a, b):
    sa, sb = _state(a), _state(b)
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def test_batching_and_merging_give_the_same_sample():
    acts = _acts()
    whole = _feed(BandSampler(5, 3), acts, 0, 300)
    small = _feed(BandSampler(5, 3), acts, 0, 7)
    _same(whole, small)
    a = _feed(BandSampler(5, 3), acts[:110], 0, 16)
    b = _feed(BandSampler(5, 3), acts[110:200], 110, 32)
    c = _feed(BandSampler(5, 3), acts[200:], 200, 5)
    _same(whole, a.merge(b).merge(c))
    _same(whole, c.merge(a.merge(b)))
    _same(whole, b.merge(BandSampler(5, 3)).merge(c).merge(a))


def test_state_round_trips():
    sampler = _feed(BandSampler(5, 2), _acts(), 0, 64)
    _same(sampler, BandSampler.from_state_dict(sampler.state_dict()))


def test_intervals_hold_a_fair_sample_of_their_band():
    acts = _acts()
    per = 3
    sampler = _feed(BandSampler(5, per), acts, 0, 50)
    peaks = acts.flatten(2).amax(2)  # [inputs, units]
    prio = priorities(torch.arange(acts.shape[0]), 5)  # [units, inputs]
    for unit in range(5):
        bands = sampler.bands(4, (4, 4))[unit]
        assert 1 <= len(bands) <= 4
        assert sum(b.count for b in bands) == acts.shape[0] and all(b.total == acts.shape[0] for b in bands)
        assert bands[0].hi > float(peaks[:, unit].max()) and bands[-1].lo <= float(peaks[:, unit].min())
        for band, lower in zip(bands, bands[1:]):
            assert band.lo == lower.hi  # contiguous, highest first
        maps_ok = 0
        for band in bands:
            inside = [(int(prio[unit, i]), i) for i in range(acts.shape[0])
                      if band.lo <= float(peaks[i, unit]) < band.hi]
            assert len(inside) == band.count
            expected = {i for _, i in sorted(inside)[:per]}
            assert {e.input_index for e in band.examples} == expected
            values = [e.value for e in band.examples]
            assert values == sorted(values, reverse=True)
            maps = sampler.unit_band_maps(unit, (band,), (4, 4))[0]
            for example, m in zip(band.examples, maps if maps is not None else []):
                full = acts[example.input_index, unit]
                assert example.value == pytest.approx(float(full.max()))
                assert full[example.position] == full.max()
                assert np.allclose(m, full.numpy(), atol=0.05 * max(1.0, float(full.abs().max())))
                maps_ok += 1
        assert maps_ok > 0


def test_non_finite_peaks_are_left_out():
    acts = _acts(n=40)
    acts[3, 1, 0, 0] = math.nan
    acts[5, 1, 1, 1] = math.inf
    sampler = _feed(BandSampler(5, 2), acts, 0, 16)
    bands = sampler.bands(3, (4, 4))[1]
    assert sum(b.count for b in bands) == 38
    assert not {3, 5} & {e.input_index for b in bands for e in b.examples}


def test_vector_layers_have_no_maps():
    x = torch.randn(64, 3)
    sampler = BandSampler(3, 2)
    sampler.update(x, x.unsqueeze(2), torch.arange(64))
    band = sampler.bands(4, None)[2][0]
    assert band.examples and sampler.unit_band_maps(2, (band,), None) == (None,)
    assert all(e.position is None for e in band.examples)


def test_a_unit_that_never_varies_gets_one_band_and_one_never_above_zero_none():
    x = torch.zeros(20, 2, 3, 3)
    x[:, 1] = 1.5
    sampler = _feed(BandSampler(2, 2), x, 0, 8)
    dead, constant = sampler.bands(4, (3, 3))
    assert dead == [] and sampler.inactive() == [20, 0]
    assert len(constant) == 1 and constant[0].count == 20 and len(constant[0].examples) == 2


def test_inputs_where_a_sparse_unit_is_zero_are_counted_apart_and_never_sampled():
    """A latent that is 0 on most inputs: its bands cover the inputs where it fired, every band's
    total counts all inputs, and batching and merging still give one answer."""
    g = torch.Generator().manual_seed(3)
    x = torch.rand(400, 3, 2, 2, generator=g) * 4
    fired = torch.rand(400, generator=g) < 0.1
    x[~fired, :2] = 0  # units 0 and 1 fire on a tenth of the inputs; unit 2 on all
    x[:, 1] *= -1  # unit 1 only ever below zero where it fires
    whole = _feed(BandSampler(3, 3), x, 0, 400)
    _same(whole, _feed(BandSampler(3, 3), x[:150], 0, 16).merge(_feed(BandSampler(3, 3), x[150:], 150, 9)))
    assert whole.inactive() == [int((~fired).sum())] * 2 + [0]
    for unit, bands in enumerate(whole.bands(4, (2, 2))):
        assert sum(b.count for b in bands) + whole.inactive()[unit] == 400 and all(b.total == 400 for b in bands)
        examples = [e for b in bands for e in b.examples]
        assert examples and all(e.value != 0 and fired[e.input_index] for e in examples if unit < 2)
