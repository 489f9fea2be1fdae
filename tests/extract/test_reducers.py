"""LayerReducer against brute force, and its exactness under splitting and merging."""
import math
import random

import numpy as np
import pytest
import torch

from galleria.extract.binning import E_MIN, INDEX_LIMIT
from galleria.extract.reducers import LayerReducer
from galleria.records import Example

SHAPES = {"vector": (), "image": (5, 6), "sequence": (9,)}


def make_stream(seed, batches, batch_size, units, spatial, dtype=torch.float32):
    """Random batches with planted extremes, as [(acts, input_index)], indices 0..N-1 shuffled."""
    g = torch.Generator().manual_seed(seed)
    n = batches * batch_size
    acts = torch.randn((n, units, *spatial), generator=g, dtype=torch.float64)
    flat = acts.view(n, units, -1)
    for unit in range(units):  # a clear winner and loser per unit, at a random spot
        winner, loser = torch.randperm(n, generator=g)[:2].tolist()
        where = torch.randint(flat.shape[2], (2,), generator=g).tolist()
        flat[winner, unit, where[0]] = 10.0 + unit
        flat[loser, unit, where[1]] = -10.0 - unit
    order = torch.randperm(n, generator=g)
    return [(acts[i * batch_size:(i + 1) * batch_size].to(dtype), order[i * batch_size:(i + 1) * batch_size])
            for i in range(batches)]


def feed(stream, *args, **kwargs):
    units = stream[0][0].shape[1]
    reducer = LayerReducer(units, *args, **kwargs)
    for acts, index in stream:
        reducer.update(acts, index)
    return reducer


def brute_force(stream, top_k, bottom_k):
    """Per unit: (stats dict, top, bottom, finite values), straight from the definitions."""
    acts = np.concatenate([a.double().numpy() for a, _ in stream])
    index = np.concatenate([i.numpy() for _, i in stream])
    spatial = acts.shape[2:]
    out = []
    for unit in range(acts.shape[1]):
        maps = acts[:, unit].reshape(len(acts), -1)
        finite = np.isfinite(maps)
        values = maps[finite]
        stats = {"count": values.size, "nonfinite": int((~finite).sum())}
        if values.size:
            stats.update(mean=values.mean(), std=values.std(), min=values.min(), max=values.max(),
                         frac_active=(values > 0).sum() / values.size)
        examples = []
        for fill, pick, k, sign in ((-np.inf, np.argmax, top_k, -1), (np.inf, np.argmin, bottom_k, 1)):
            masked = np.where(finite, maps, fill)
            where = pick(masked, axis=1)  # first occurrence, as the reducer promises
            value = masked[np.arange(len(maps)), where]
            rows = sorted((sign * v, i, w) for v, i, w in zip(value, index, where) if np.isfinite(v))[:k]
            examples.append(tuple(Example(int(i), float(sign * v),
                                          tuple(int(p) for p in np.unravel_index(w, spatial)) if spatial else None)
                                  for v, i, w in rows))
        out.append((stats, examples[0], examples[1], values))
    return out


def check_histogram(histogram, values, bins):
    """Counts match the values bin by bin, and the width is the finest the rule allows."""
    if values.size == 0:
        assert histogram.counts == ()
        return
    w, lo, counts = histogram.width, histogram.lo, histogram.counts
    assert math.log2(w) == int(math.log2(w)) and w >= 2.0**E_MIN
    assert 0 < len(counts) <= bins and counts[0] > 0 and counts[-1] > 0
    assert sum(counts) == values.size
    index = np.floor_divide(values, w).astype(np.int64)  # exact even where values / w underflows
    assert index.min() == lo
    assert np.array_equal(np.bincount(index - lo, minlength=len(counts)), counts)
    if w > 2.0**E_MIN:  # half the width would not fit
        lo2, hi2 = np.floor_divide(values.min(), w / 2), np.floor_divide(values.max(), w / 2)
        assert hi2 - lo2 >= bins or max(abs(lo2), abs(hi2)) > INDEX_LIMIT


def check_against_brute_force(reducer, stream, top_k, bottom_k, bins, rel=1e-6):
    for summary, (stats, top, bottom, values) in zip(reducer.summaries(), brute_force(stream, top_k, bottom_k),
                                                      strict=True):
        assert summary.top == top
        assert summary.bottom == bottom
        s = summary.stats
        assert (s.count, s.nonfinite) == (stats["count"], stats["nonfinite"])
        if s.count:
            assert (s.min, s.max, s.frac_active) == (stats["min"], stats["max"], stats["frac_active"])
            scale = stats["std"] + abs(stats["mean"])
            assert abs(s.mean - stats["mean"]) <= rel * scale
            assert abs(s.std - stats["std"]) <= rel * scale
        check_histogram(s.histogram, values, bins)


def assert_same(a, b):
    """Equal summaries (mean and std up to rounding), maps and exact state."""
    for x, y in zip(a.summaries(), b.summaries(), strict=True):
        assert (x.unit, x.top, x.bottom) == (y.unit, y.top, y.bottom)
        sx, sy = x.stats, y.stats
        assert (sx.count, sx.min, sx.max, sx.frac_active, sx.nonfinite, sx.histogram) == \
               (sy.count, sy.min, sy.max, sy.frac_active, sy.nonfinite, sy.histogram)
        assert sx.mean == pytest.approx(sy.mean, rel=1e-9, abs=1e-12)
        assert sx.std == pytest.approx(sy.std, rel=1e-9, abs=1e-12)
        for maps in ("top_maps", "bottom_maps"):
            ma, mb = getattr(a, maps)(x.unit), getattr(b, maps)(x.unit)
            assert (ma is None and mb is None) or np.array_equal(ma, mb, equal_nan=True)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa.keys() - {"mean", "m2"}:
        if isinstance(sa[key], torch.Tensor):
            x, y = sa[key], sb[key]
            if x.is_floating_point():  # maps may hold NaN, which torch.equal never matches
                assert torch.equal(x.isnan(), y.isnan()), key
                x, y = x.nan_to_num(0.0), y.nan_to_num(0.0)
            assert torch.equal(x, y), key
        else:
            assert sa[key] == sb[key], key


@pytest.mark.parametrize("kind", SHAPES)
def test_matches_brute_force(kind):
    stream = make_stream(0, batches=6, batch_size=7, units=5, spatial=SHAPES[kind])
    reducer = feed(stream, 4, 3, 16)
    check_against_brute_force(reducer, stream, 4, 3, 16)
    assert reducer.spatial_shape == (SHAPES[kind] or None)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_other_float_dtypes_match_brute_force(dtype):
    stream = make_stream(1, batches=4, batch_size=5, units=3, spatial=(4, 4), dtype=dtype)
    check_against_brute_force(feed(stream, 3, 3, 12), stream, 3, 3, 12)


def test_maps_are_the_examples_maps():
    stream = make_stream(2, batches=3, batch_size=6, units=4, spatial=(3, 5))
    reducer = feed(stream, 3, 2)
    acts = torch.cat([a for a, _ in stream])
    where = {int(i): n for n, i in enumerate(torch.cat([i for _, i in stream]))}
    for summary in reducer.summaries():
        for examples, maps in ((summary.top, reducer.top_maps(summary.unit)),
                               (summary.bottom, reducer.bottom_maps(summary.unit))):
            assert maps.dtype == np.float32 and maps.shape == (len(examples), 3, 5)
            for example, m in zip(examples, maps):
                expected = acts[where[example.input_index], summary.unit].half().float().numpy()
                assert np.array_equal(m, expected)
                assert m[example.position] == np.float16(example.value)


def test_no_maps_for_vectors_or_when_not_kept():
    vectors = feed(make_stream(3, 2, 4, 3, ()), 2, 2)
    stream = make_stream(3, 2, 4, 3, (4, 4))
    unkept = feed(stream, 2, 2, keep_maps=False)
    for reducer in (vectors, unkept, LayerReducer(3, 2, 2)):
        assert reducer.top_maps(0) is None and reducer.bottom_maps(1) is None
    check_against_brute_force(unkept, stream, 2, 2, 64)
    assert_same(feed(stream[:1], 2, 2, keep_maps=False).merge(feed(stream[1:], 2, 2, keep_maps=False)), unkept)


def test_zero_examples_requested():
    stream = make_stream(13, batches=3, batch_size=4, units=3, spatial=(2, 3))
    reducer = feed(stream, 0, 2)
    check_against_brute_force(reducer, stream, 0, 2, 64)
    assert all(s.top == () for s in reducer.summaries()) and reducer.top_maps(0).shape == (0, 2, 3)
    assert_same(feed(stream[:1], 0, 2).merge(feed(stream[1:], 0, 2)), reducer)


@pytest.mark.parametrize("kind", SHAPES)
def test_merge_of_halves_equals_whole(kind):
    stream = make_stream(4, batches=8, batch_size=5, units=4, spatial=SHAPES[kind])
    whole = feed(stream, 3, 3, 16)
    first, second = feed(stream[:3], 3, 3, 16), feed(stream[3:], 3, 3, 16)
    assert_same(first.merge(second), whole)
    assert_same(second.merge(first), whole)


def test_split_batching_and_merge_order_do_not_matter():
    stream = make_stream(5, batches=9, batch_size=4, units=3, spatial=(4, 5))
    whole = feed(stream, 4, 4, 10)
    # Same inputs, rebatched into different sizes, dealt into three shards in shuffled order.
    acts, index = torch.cat([a for a, _ in stream]), torch.cat([i for _, i in stream])
    rng = random.Random(0)
    shards = [LayerReducer(3, 4, 4, 10) for _ in range(3)]
    start = 0
    while start < len(acts):
        size = rng.randint(1, 7)
        rng.choice(shards).update(acts[start:start + size], index[start:start + size])
        start += size
    a, b, c = shards
    assert_same(b.merge(c).merge(a), whole)
    assert_same(a.merge(b.merge(c)), a.merge(b).merge(c))
    assert_same(a.merge(b.merge(c)), whole)


def test_merge_leaves_inputs_unchanged_and_accepts_empty():
    stream = make_stream(6, batches=4, batch_size=3, units=2, spatial=(3, 3))
    a, b = feed(stream[:2], 2, 2), feed(stream[2:], 2, 2)
    before = (a.summaries(), b.summaries(), a.top_maps(0).copy())
    a.merge(b)
    assert (a.summaries(), b.summaries()) == before[:2] and np.array_equal(a.top_maps(0), before[2])
    empty = LayerReducer(2, 2, 2)
    assert_same(empty.merge(a), a)
    assert_same(a.merge(empty), a)


def test_ties_go_to_the_smaller_input_index():
    acts = torch.ones(12, 2, 3, 3)  # every map of unit 0 is constant: all inputs tie
    acts[:, 1] = torch.arange(12.0).view(12, 1, 1) % 3  # unit 1: three groups of four tied inputs
    index = torch.arange(100, 112)
    descending = LayerReducer(2, 5, 5)
    for start in (9, 6, 3, 0):  # larger indices first
        descending.update(acts[start:start + 3], index[start:start + 3])
    top, bottom = descending.summaries()[0].top, descending.summaries()[0].bottom
    assert [e.input_index for e in top] == [e.input_index for e in bottom] == [100, 101, 102, 103, 104]
    assert all(e.position == (0, 0) and e.value == 1.0 for e in top + bottom)  # first occurrence in the map
    unit1 = descending.summaries()[1]
    assert [e.input_index for e in unit1.top] == [102, 105, 108, 111, 101]
    assert [e.input_index for e in unit1.bottom] == [100, 103, 106, 109, 101]
    halves = LayerReducer(2, 5, 5), LayerReducer(2, 5, 5)
    halves[0].update(acts[1::2], index[1::2])
    halves[1].update(acts[::2], index[::2])
    assert_same(halves[1].merge(halves[0]), descending)


def test_nonfinite_values_are_excluded_and_counted():
    stream = make_stream(7, batches=3, batch_size=6, units=4, spatial=(4, 4))
    acts = stream[1][0]
    acts[0, 0] = float("nan")  # a whole map of NaN: not an example of unit 0
    acts[1, 0, 0, 0] = float("inf")
    acts[2, 0, 1, 1] = -float("inf")
    acts[3, 0, 2] = float("nan")
    acts[:, 1, 0, 0] = float("inf")  # a big "value" that must never be chosen
    acts[:, 2] = float("nan")  # unit 2 has finite values only in other batches
    for batch, _ in stream:
        batch[:, 3] = float("nan")  # unit 3 never has a finite value
    reducer = feed(stream, 3, 3, 16)
    check_against_brute_force(reducer, stream, 3, 3, 16)
    summaries = reducer.summaries()
    assert summaries[0].stats.nonfinite == 16 + 1 + 1 + 4
    assert stream[1][1][0].item() not in {e.input_index for e in summaries[0].top + summaries[0].bottom}
    assert all(math.isfinite(e.value) for s in summaries for e in s.top + s.bottom)
    never = summaries[3]
    assert never.top == never.bottom == () and never.stats.count == 0 and never.stats.histogram.counts == ()
    assert never.stats.nonfinite == 18 * 16
    assert reducer.top_maps(3).shape == (0, 4, 4)
    assert_same(feed(stream[:1], 3, 3, 16).merge(feed(stream[1:], 3, 3, 16)), reducer)


def test_all_negative_and_all_zero_units():
    g = torch.Generator().manual_seed(8)
    stream = []
    for b in range(4):
        acts = torch.zeros(5, 2, 3, 3)
        acts[:, 0] = -torch.rand((5, 3, 3), generator=g) - 0.5
        stream.append((acts, torch.arange(5 * b, 5 * b + 5)))
    reducer = feed(stream, 3, 3, 8)
    check_against_brute_force(reducer, stream, 3, 3, 8)
    negative, zero = reducer.summaries()
    assert negative.stats.frac_active == zero.stats.frac_active == 0.0
    assert negative.stats.max < 0 and negative.stats.histogram.lo < 0
    assert zero.stats.histogram.counts == (20 * 9,) and zero.stats.histogram.lo == 0
    assert [e.input_index for e in zero.top] == [0, 1, 2] and zero.top[0].position == (0, 0)
    assert zero.stats.std == 0.0 and zero.stats.mean == 0.0


@pytest.mark.parametrize("scales", [(1e-6, 1e-2, 1e2, 1e6), (1e-30, 1e-3, 1e10, 1e30)])
def test_histogram_stays_exact_while_range_grows(scales):
    """Coarsening across many orders of magnitude, with subnormals that a careless scaling would misbin."""
    g = torch.Generator().manual_seed(9)
    tiny = torch.tensor([-1e-45, 1e-45, -1e-40, -0.0, 0.0])  # float32 subnormals and signed zeros
    stream = []
    for b, scale in enumerate(scales):
        acts = torch.randn((6, 3, 4, 4), generator=g) * scale
        acts[:, 1] = acts[:, 1].abs()
        acts.view(6, 3, -1)[0, :, :len(tiny)] = tiny
        stream.append((acts, torch.arange(6 * b, 6 * b + 6)))
    reducer = feed(stream, 2, 2, 16)
    check_against_brute_force(reducer, stream, 2, 2, 16)
    for summary in reducer.summaries():
        assert sum(summary.stats.histogram.counts) == summary.stats.count == 4 * 6 * 16
    assert_same(feed(stream[::2], 2, 2, 16).merge(feed(stream[1::2], 2, 2, 16)), reducer)


def test_state_dict_round_trip(tmp_path):
    stream = make_stream(10, batches=5, batch_size=4, units=3, spatial=(3, 4))
    stream[2][0][0, 1] = float("nan")
    reducer = feed(stream[:4], 3, 2)
    torch.save(reducer.state_dict(), tmp_path / "reducer.pt")
    loaded = LayerReducer.from_state_dict(torch.load(tmp_path / "reducer.pt", weights_only=True))
    assert loaded.spatial_shape == (3, 4)
    assert_same(loaded, reducer)
    for r in (reducer, loaded):
        r.update(*stream[4])
    assert_same(loaded, reducer)
    assert_same(loaded, feed(stream, 3, 2))


def test_state_dict_round_trip_before_any_input(tmp_path):
    torch.save(LayerReducer(2, 1, 1).state_dict(), tmp_path / "empty.pt")
    loaded = LayerReducer.from_state_dict(torch.load(tmp_path / "empty.pt", weights_only=True))
    stream = make_stream(11, 2, 3, 2, ())
    for acts, index in stream:
        loaded.update(acts, index)
    assert_same(loaded, feed(stream, 1, 1))
    assert loaded.spatial_shape is None


def test_state_size_does_not_grow_with_inputs():
    stream = make_stream(12, batches=100, batch_size=4, units=3, spatial=(5, 5))

    def size(reducer):
        return sum(v.numel() for v in reducer.state_dict().values() if isinstance(v, torch.Tensor))

    assert size(feed(stream[:10], 3, 3)) == size(feed(stream, 3, 3))


def test_rejects_mismatched_input():
    reducer = LayerReducer(3, 2, 2)
    reducer.update(torch.zeros(2, 3, 4), torch.arange(2))
    with pytest.raises(ValueError):
        reducer.update(torch.zeros(2, 4, 4), torch.arange(2, 4))
    with pytest.raises(ValueError):
        reducer.update(torch.zeros(2, 3, 5), torch.arange(2, 4))
    with pytest.raises(ValueError):
        reducer.update(torch.zeros(2, 3, 4), torch.arange(3))
    with pytest.raises(ValueError):
        reducer.merge(LayerReducer(3, 2, 1))
