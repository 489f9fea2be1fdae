"""Automatic labels, each with a score: what a unit detects, offline, from the gallery's own data.

A label is a predicate (a text's structure or token classes, text_features.py; a token, a set of
tokens, the token before; the class the model predicts for an image) chosen for how well it picks
out where the unit is high, and scored by detection, as Delphi scores an explanation but without
the language model: the AUC with which "the predicate holds here" ranks the unit's values, on data
the predicate was not chosen on. The data are split in two halves, by stretches of the text (or by
source image, so that crops of one photo are never on both sides): one half chooses, the other
scores. A unit no predicate explains scores near 0.5; one that fires exactly where the predicate
holds, near 1.

A text unit is read on the windows its page shows (its top, bottom and bands' examples: tokens where
it is high and, across its range, where it is not); an image unit on its peak over every input.
"""
from __future__ import annotations

import json
import zlib

import numpy as np

from galleria.cache import content_key
from galleria.distributed import ranks
from galleria.extract.image_features import NAMES as DESCRIPTORS, describe
from galleria.extract.text_features import TokenFeatures, token_features
from galleria.forking import fork_map
from galleria.records import AutoLabel

SHOWN = 0.85  # a label scoring below this is kept in unit.json but not shown
KEPT = 2  # labels kept per unit, best first
MIN_TOKENS = 5  # a text predicate must hold, and fail, at this many tokens of each half
MIN_EXAMPLES = 3  # a patch descriptor must hold, and fail, on this many examples of each half
MIN_INPUTS = 2  # an image class must be predicted for inputs of this many source images in each half
SET_SIZE = 3  # tokens a "set of tokens" label may name
STRETCH = 64  # tokens of text on the same side of the split
PATCH_COST = 200  # an image unit whose patches are described costs about this many times one whose are not
# (measured on EfficientNet-Lite0: 40 ms and 0.2 ms a unit)
TEXT_UNITS_PER_TASK = 128  # text units labelled in one task: enough tasks to keep every core busy to the end
CHOSEN_FROM = 8  # candidates (the best on the choosing half) scored on the other half
TEXT_METHOD = ("detection: how well the label picks out the tokens where the unit is high (AUC), "
               "on text held out from choosing it")
DESCRIPTOR_METHOD = ("detection: how well the look of the patch the unit saw ranks its examples' values (AUC), "
                     "on images held out from choosing it")
OWN_CLASS_METHOD = ("detection: how well the inputs' own class (their folder) ranks the unit's peak over them "
                    "(AUC), on images held out from choosing it")
IMAGE_METHOD = ("detection: how well the model's prediction ranks the unit's peak over the inputs (AUC), "
                "on images held out from choosing it")


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks from 1, ties sharing their average rank (as the Mann-Whitney statistic needs)."""
    order = np.argsort(values, kind="stable")
    ranked = values[order]
    starts = np.flatnonzero(np.concatenate([[True], ranked[1:] != ranked[:-1]]))
    ends = np.concatenate([starts[1:], [len(values)]])
    ranks = np.empty(len(values), np.float64)
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return ranks


def _auc(rank_sums: np.ndarray, positives: np.ndarray, total: int) -> np.ndarray:
    """AUC of each candidate from the rank sum of the values where it holds (Mann-Whitney)."""
    negatives = total - positives
    with np.errstate(divide="ignore", invalid="ignore"):
        return (rank_sums - positives * (positives + 1) / 2.0) / (positives * negatives)


def _lower_bound(auc: np.ndarray, positives: np.ndarray, total: int) -> np.ndarray:
    """An AUC less one standard error (Hanley and McNeil's): what a candidate is chosen by, so that
    a token seen five times does not win over a structure seen five hundred times by luck."""
    negatives = total - positives
    q1, q2 = auc / (2 - auc), 2 * auc ** 2 / (1 + auc)
    with np.errstate(divide="ignore", invalid="ignore"):
        variance = (auc * (1 - auc) + (positives - 1) * (q1 - auc ** 2) + (negatives - 1) * (q2 - auc ** 2)) \
            / (positives * negatives)
    return auc - np.sqrt(np.clip(variance, 0, None))


class _Half:
    """One half of a unit's data: its values' ranks, and every candidate's rank sum and count."""

    def __init__(self, values: np.ndarray, holds: np.ndarray, tokens: np.ndarray, previous: np.ndarray):
        self.total = len(values)
        ranks = average_ranks(values)
        self.holds = (ranks @ holds, holds.sum(0).astype(np.float64))
        size = int(max(tokens.max(initial=-1), previous.max(initial=-1))) + 2
        self.tokens = (np.bincount(tokens, ranks, size), np.bincount(tokens, minlength=size).astype(np.float64))
        known = previous >= 0
        self.previous = (np.bincount(previous[known], ranks[known], size),
                         np.bincount(previous[known], minlength=size).astype(np.float64))

    def score(self, kind: str, keys: tuple[int, ...]) -> tuple[float, int]:
        """A candidate's AUC here, and at how many tokens it holds."""
        sums, counts = getattr(self, kind)
        keys = [k for k in keys if k < len(sums)]
        held = float(counts[keys].sum()) if keys else 0.0
        if not held or held >= self.total:
            return 0.5, int(held)
        return float(_auc(np.float64(sums[keys].sum()), np.float64(held), self.total)), int(held)

    def bound(self, kind: str, keys: tuple[int, ...]) -> float:
        """What a candidate is chosen by here: its AUC less a standard error."""
        auc, held = self.score(kind, keys)
        return float(_lower_bound(np.float64(auc), np.float64(held), self.total)) if 0 < held < self.total else 0.0


def text_unit_labels(values: np.ndarray, positions: np.ndarray, features: TokenFeatures, ids: np.ndarray,
                     shown) -> tuple[AutoLabel, ...]:
    """A text unit's labels from its values at ``positions`` of the corpus' token stream (each once);
    ``shown(token id)`` is how a token is written on its pages."""
    choose = (positions // STRETCH) % 2 == 0
    halves = [_Half(values[side], features.holds[positions[side]], ids[positions[side]],
                    features.previous[positions[side]]) for side in (choose, ~choose)]
    first, second = halves
    if min(first.total, second.total) < 2 * MIN_TOKENS:
        return ()
    candidates = []  # (AUC less a standard error on the choosing half, kind, keys)
    for kind in ("holds", "tokens", "previous"):
        sums, counts = getattr(first, kind)
        bounds = _lower_bound(_auc(sums, counts, first.total), counts, first.total)
        usable = (counts >= MIN_TOKENS) & (first.total - counts >= MIN_TOKENS)
        for key in np.flatnonzero(usable)[np.argsort(-bounds[usable], kind="stable")][:CHOSEN_FROM]:
            candidates.append((float(bounds[key]), kind, (int(key),)))
    candidates.append(_token_set(first, [c for c in candidates if c[1] == "tokens"]))
    candidates.sort(key=lambda c: -c[0])
    labels = []
    for _, kind, keys in candidates:
        score, held = second.score(kind, keys)
        if held < MIN_TOKENS or second.total - held < MIN_TOKENS:
            continue
        text = _describe(kind, keys, features, shown)
        if text not in (label.label for label in labels):
            labels.append(AutoLabel(text, round(score, 4), TEXT_METHOD))
        if len(labels) == KEPT:
            break
    return tuple(labels)


def _token_set(half: _Half, singles: list[tuple[float, str, tuple[int, ...]]]) -> tuple[float, str, tuple[int, ...]]:
    """The best token, with the next best tokens added while each makes the set a better label."""
    if not singles:
        return (0.0, "tokens", ())
    best, _, keys = singles[0]
    for _, _, (key,) in singles[1:]:
        if len(keys) == SET_SIZE:
            break
        bound = half.bound("tokens", keys + (key,))
        if bound > best + 0.01:
            best, keys = bound, keys + (key,)
    return (best, "tokens", keys)


def _describe(kind: str, keys: tuple[int, ...], features: TokenFeatures, shown) -> str:
    if kind == "holds":
        return features.names[keys[0]]
    names = " or ".join(f"'{shown(key)}'" for key in keys)
    return names if kind == "tokens" else f"after {names}"


def image_layer_labels(peaks: np.ndarray, predicted: np.ndarray, classes, sources: list[str],
                       method: str = IMAGE_METHOD) -> list[tuple[AutoLabel, ...]]:
    """Every unit's class labels in an image layer: ``peaks`` [inputs, units] (NaN where an input was
    not read), ``predicted`` each input's class (index into ``classes``: the model's top class, or
    the input's own), ``sources`` the file each input was cut from."""
    return [_best(found) for found in _class_candidates(peaks, predicted, classes, sources, method)]


def _class_candidates(peaks: np.ndarray, predicted: np.ndarray, classes, sources: list[str],
                      method: str) -> list[list]:
    """Per unit, its best classes as (AUC less a standard error on the choosing half, label)."""
    readable = ~np.isnan(peaks).any(1)
    peaks, predicted = peaks[readable], predicted[readable]
    kept = [s for s, ok in zip(sources, readable) if ok]
    side = np.array([_first_half(s) for s in kept], dtype=bool)
    _, image = np.unique(kept, return_inverse=True)
    found = np.unique(predicted)
    onehot = predicted[:, None] == found[None, :]  # [inputs, classes]
    usable = np.ones(len(found), bool)
    for half in (side, ~side):  # crops of one photo are one piece of evidence, not many
        images = [len(np.unique(image[half & onehot[:, c]])) for c in range(len(found))]
        usable &= np.array(images) >= MIN_INPUTS
    units = peaks.shape[1]
    if not usable.any() or side.sum() < 2 * MIN_INPUTS or (~side).sum() < 2 * MIN_INPUTS:
        return [[] for _ in range(units)]
    onehot = onehot[:, usable]
    found = found[usable]
    aucs = []
    for half in (side, ~side):
        ranks = np.stack([average_ranks(peaks[half, u]) for u in range(units)], axis=1)  # [inputs, units]
        counts = onehot[half].sum(0).astype(np.float64)[:, None]
        aucs.append(_auc(onehot[half].T.astype(np.float64) @ ranks, counts, int(half.sum())))  # [classes, units]
    counts = onehot[side].sum(0).astype(np.float64)[:, None]
    bounds = _lower_bound(aucs[0], counts, int(side.sum()))
    chosen = np.argsort(-bounds, axis=0, kind="stable")[:KEPT]  # [KEPT, units]
    return [[(float(bounds[c, u]), AutoLabel(str(classes[found[c]]), round(float(aucs[1][c, u]), 4), method))
             for c in chosen[:, u]] for u in range(units)]


def _first_half(source: str) -> bool:
    """Which half an input's source file is in: every crop of a photograph on the same side."""
    return zlib.crc32(source.encode()) % 2 == 0


class _Patches:
    """How the patches of one input look (image_features.describe), from the pixels the model read
    (ImageLoader); asked for input by input, each input's pixels are made once."""

    def __init__(self, inputs, preprocessing):
        from galleria.sources.images import ImageLoader

        self.items, self.loader = inputs.items, ImageLoader(preprocessing)
        self.index, self.pixels = None, None

    def describe(self, index: int, box: tuple[int, int, int, int]) -> np.ndarray:
        if index != self.index:
            self.index, self.pixels = index, self.loader.pixels(self.items[index])
        left, top, right, bottom = box
        patch = self.pixels[top:bottom, left:right].astype(np.float32) / 255
        return describe(np.repeat(patch, 3, 2) if patch.shape[2] == 1 else patch[:, :, :3])


def _descriptor_candidates(summaries, rf, layout, patches: _Patches, sources: list[str]) -> list[list]:
    """Per unit, its best descriptors of the patch it saw at its peak on each example its page shows
    (top, bottom, bands), as (AUC less a standard error on the choosing half, label). The patches of
    all the units are described input by input."""
    wanted = []  # per unit: (input, box, value) of each example
    for summary in summaries:
        rows, seen = [], set()
        for example in (*summary.top, *summary.bottom, *(e for band in summary.bands for e in band.examples)):
            cell = layout.cell(example.position)
            if cell is None or (example.input_index, cell) in seen or not np.isfinite(example.value):
                continue
            seen.add((example.input_index, cell))
            box = rf.box(cell)
            if box[2] - box[0] >= 2 and box[3] - box[1] >= 2:
                rows.append((example.input_index, box, example.value))
        wanted.append(rows)
    looks = {key: patches.describe(*key) for key in sorted({(i, box) for rows in wanted for i, box, _ in rows})}
    return [_scored_descriptors(rows, looks, sources) for rows in wanted]


def _scored_descriptors(rows: list, looks: dict, sources: list[str]) -> list:
    side = np.array([_first_half(sources[i]) for i, _, _ in rows], dtype=bool)
    if min(side.sum(), (~side).sum()) < 2 * MIN_EXAMPLES:
        return []
    holds = np.array([looks[(i, box)] for i, box, _ in rows])
    values = np.array([value for _, _, value in rows], dtype=np.float64)
    scored = []
    for half in (side, ~side):
        ranks = average_ranks(values[half])
        counts = holds[half].sum(0).astype(np.float64)
        scored.append((_auc(ranks @ holds[half], counts, int(half.sum())), counts, int(half.sum())))
    (aucs, counts, total), (held_out, other, other_total) = scored
    usable = (counts >= MIN_EXAMPLES) & (total - counts >= MIN_EXAMPLES) & (other > 0) & (other < other_total)
    bounds = _lower_bound(aucs, counts, total)
    return [(float(bounds[k]), AutoLabel(DESCRIPTORS[k], round(float(held_out[k]), 4), DESCRIPTOR_METHOD))
            for k in np.flatnonzero(usable)[np.argsort(-bounds[usable], kind="stable")][:KEPT]]


def _best(candidates: list) -> tuple[AutoLabel, ...]:
    """The labels kept: the best KEPT by how they did on the choosing half."""
    return tuple(label for _, label in sorted(candidates, key=lambda c: -c[0])[:KEPT])


def shown_labels(labels: tuple[AutoLabel, ...]) -> tuple[AutoLabel, ...]:
    """The labels a unit's pages (and search) show: none unless its best scores at least SHOWN; then
    each that does."""
    if not labels or labels[0].score < SHOWN:
        return ()
    return tuple(label for label in labels if label.score >= SHOWN)


LABELS_FORMAT = 3  # bump when what labels are made of changes


def model_labels(acts, layout, inputs, class_names, cache, receptive: dict, preprocessing
                 ) -> dict[str, tuple[tuple[AutoLabel, ...], ...]]:
    """Every unit's labels, per layer name and unit position, from cache when the activations are
    (``receptive``: image layers' fields, whose patches early layers' labels describe)."""
    own = [item.label for item in inputs.items] if inputs.text is None else None  # images' own classes
    key = content_key(LABELS_FORMAT, acts.key, own, SHOWN, KEPT, MIN_TOKENS, MIN_INPUTS, MIN_EXAMPLES, SET_SIZE, STRETCH,
                      CHOSEN_FROM, DESCRIPTORS)
    path = cache.file("labels", key, ".json")
    if path.is_file():
        stored = json.loads(path.read_text(encoding="utf-8"))
        return {name: tuple(tuple(AutoLabel(*label) for label in unit) for unit in units)
                for name, units in stored.items()}
    found = _labelled_by_ranks(acts, layout, inputs, class_names, receptive, preprocessing)
    if ranks().first:
        cache.put_file("labels", key, ".json", json.dumps(
            {name: [[[l.label, l.score, l.method] for l in unit] for unit in units] for name, units in found.items()},
            ensure_ascii=False).encode("utf-8"))
    return found


def _labelled_by_ranks(acts, layout, inputs, class_names, receptive: dict, preprocessing
                       ) -> dict[str, tuple[tuple[AutoLabel, ...], ...]]:
    """Every layer's labels, on every core (a task per image layer, per run of a text layer's units).
    Each rank of a torchrun build labels its share of the layers (dealt by their cost: an image layer
    whose units see patches costs some 200 times one whose units see the whole image), every rank
    then holding them all."""
    layers = list(range(len(layout.layers)))
    costs = [len(layer.units) * (PATCH_COST if _sees_patches(receptive.get(layer.name)) else 1)
             for layer in layout.layers]
    mine = sorted(ranks().mine(layers, costs), key=lambda index: -costs[index])  # the costliest started first
    if inputs.text is not None:  # a task per run of a layer's units
        corpus = inputs.text
        ids = np.asarray(corpus.ids, dtype=np.int64)
        features = token_features(corpus.pieces, ids, corpus.kind == "chars")  # made once, before forking
        tasks = [(index, span) for index in mine for span in acts.spans(index, TEXT_UNITS_PER_TASK)]

        def label(task: tuple[int, range]) -> tuple:
            return task, _text_labels(acts, inputs, class_names, ids, features, *task)
    else:  # a task per layer: its classes are scored over all its units at once
        kinds = _class_kinds(acts, inputs, class_names)  # made once, before forking
        tasks = [(index, range(len(layout.layers[index].units))) for index in mine]

        def label(task: tuple[int, range]) -> tuple:
            return task, _image_labels(acts, layout, inputs, kinds, receptive, preprocessing, task[0])
    runs: dict[int, dict[int, tuple]] = {index: {} for index in mine}
    for (index, span), units in fork_map(label, tasks):  # on every core
        runs[index][span.start] = units
    found = {layout.layers[index].name: tuple(unit for start in sorted(runs[index]) for unit in runs[index][start])
             for index in mine}
    for share in ranks().gather(found):
        found.update(share)
    return {layer.name: found[layer.name] for layer in layout.layers}


def _sees_patches(rf) -> bool:
    """Whether a layer's units see a part of the image (their patches are described), not all of it."""
    return rf is not None and (rf.size[0] < rf.input_size[0] or rf.size[1] < rf.input_size[1])


def _text_labels(acts, inputs, vocabulary, ids: np.ndarray, features: TokenFeatures, index: int, span: range
                 ) -> tuple[tuple[AutoLabel, ...], ...]:
    """The labels of a run of the units of the layer at ``index`` (``ids``: the corpus' tokens,
    ``features`` what they are)."""
    from galleria.visualize.tokens import shown_label

    def shown(token: int) -> str:
        return shown_label(vocabulary[token]) if vocabulary is not None and token < len(vocabulary) else str(token)

    data, units = acts.layer(index, maps=True, units=span), []
    for local, summary in enumerate(data.summaries):
        windows = [(e, data.top_maps[local, slot]) for slot, e in enumerate(summary.top)]
        windows += [(e, data.bottom_maps[local, slot]) for slot, e in enumerate(summary.bottom)]
        for band, maps in zip(summary.bands, data.band_maps[local] if data.band_maps else ()):
            if maps is not None:
                windows += list(zip(band.examples, maps))
        units.append(_unit_text_labels(windows, inputs, features, ids, shown))
    return tuple(units)


def _unit_text_labels(windows, inputs, features: TokenFeatures, ids: np.ndarray, shown) -> tuple[AutoLabel, ...]:
    """A text unit's labels from the windows its page shows (example, its values), each token once."""
    positions, values = [], []
    for example, window in windows:
        start = inputs.items[example.input_index].span[0]
        positions.append(start + np.arange(len(window)))
        values.append(np.asarray(window, dtype=np.float64))
    if not positions:
        return ()
    positions, first = np.unique(np.concatenate(positions), return_index=True)
    values = np.concatenate(values)[first]
    finite = np.isfinite(values)
    return text_unit_labels(values[finite], positions[finite], features, ids, shown)


def _class_kinds(acts, inputs, class_names) -> list[tuple[np.ndarray, object, str]]:
    """The classes image units are scored against: (each input's class, the classes' names, how it
    is scored), for the model's predictions and for the inputs' own classes (labels: folders)."""
    kinds = []
    if acts.predictions is not None and class_names is not None:
        kinds.append((np.asarray(acts.predictions[:, 0], dtype=np.int64), class_names, IMAGE_METHOD))
    if any(item.label is not None for item in inputs.items):
        names, own = np.unique([item.label or "" for item in inputs.items], return_inverse=True)
        kinds.append((np.where([item.label is None for item in inputs.items], -1, own), names, OWN_CLASS_METHOD))
    return kinds


def _image_labels(acts, layout, inputs, kinds, receptive, preprocessing, index: int
                  ) -> tuple[tuple[AutoLabel, ...], ...]:
    """Image units' labels in the layer at ``index``: the classes it is scored against (``kinds``,
    _class_kinds), and, for units that see a part of the image (early layers), what the patches they
    peak on look like."""
    sources = [item.source for item in inputs.items]
    patches = _Patches(inputs, preprocessing)
    layer = layout.layers[index]
    units = len(layer.units)
    classes = [[] for _ in range(units)]
    for predicted, names, method in kinds:
        peaks = np.asarray(acts.peaks(index), dtype=np.float64)
        peaks[predicted < 0] = np.nan  # an input without a class takes no part
        classes = [a + b for a, b in zip(classes, _class_candidates(peaks, predicted, names, sources, method))]
    rf = receptive.get(layer.name)
    described = [[] for _ in range(units)]
    if _sees_patches(rf):
        described = [unit for span in acts.spans(index) for unit in _descriptor_candidates(
            acts.layer(index, maps=False, units=span).summaries, rf, layer.layout, patches, sources)]
    return tuple(_best(c + d) for c, d in zip(classes, described))
