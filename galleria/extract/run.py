"""One streaming pass of every input through a model, feeding the layers' reducers.

Memory stays flat in the number of inputs: reducers keep fixed-size state, and the per-input
tables (each unit's peak per input, the model's top predictions) go to memory-mapped files on
disk. Results are cached under a key of the weights, the inputs and the settings. Under torchrun
each rank makes the pass over its own share of the inputs, and rank 0 merges the shares.
"""
from __future__ import annotations

import json
import queue
import shutil
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from galleria.cache import Cache, content_key
from galleria.config import Config
from galleria.distributed import Ranks, ranks
from galleria.errors import BuildError, in_user_model
from galleria.extract.hooks import capture, first_tensor
from galleria.extract.bands import BandSampler
from galleria.extract.architecture import LayerInfo, ModelLayout
from galleria.extract.reducers import LayerReducer, release_threads
from galleria.extract.token_means import TokenMeans
from galleria.records import InputItem, LayerData
from galleria.sources.images import ImageLoader, InputSet
from galleria.sources.models import LoadedModel
from galleria.sources.text import TokenLoader

FORMAT = 5  # bump when what is stored changes meaning
HIST_BINS = 64
TOP_PREDICTIONS = 5
CANDIDATES = 3  # examples kept per example shown, so repeats of one spot can be skipped
ROWS_PER_COPY = 4096  # rows of a per-input table copied at once when shares are merged
UNITS_PER_READ = 1024  # units of a layer later stages hold at once: their memory grows with this, not the layer


@dataclass(frozen=True)
class ModelActivations:
    """Where one model's extraction results are, read layer by layer so that later stages hold one
    layer in memory at a time. Each unit's peak on every input is memory-mapped."""

    key: str
    folder: Path  # the cache entry
    layers: tuple[LayerInfo, ...]
    bands: int  # bands each unit's range is cut into (0: none)
    predictions: np.ndarray | None  # [inputs, TOP_PREDICTIONS] class indices, best first
    probabilities: np.ndarray | None  # [inputs, TOP_PREDICTIONS]
    cached: bool
    unreadable: dict[int, str]  # inputs whose file failed to decode: index -> reason (their peaks are NaN)

    def peaks(self, index: int) -> np.ndarray:
        """[inputs, units]: each unit's highest value on each input (NaN for unreadable inputs)."""
        return np.load(self.folder / f"peaks-{index}.npy", mmap_mode="r")

    def spans(self, index: int, most: int | None = None) -> list[range]:
        """Layer ``index``'s units (as positions) in the runs later stages read them (see layer()):
        of UNITS_PER_READ units, or of ``most`` if fewer."""
        count, size = len(self.layers[index].units), min(UNITS_PER_READ, most or UNITS_PER_READ)
        return [range(start, min(start + size, count)) for start in range(0, count, size)]

    def layer(self, index: int, maps: bool = True, units: range | None = None) -> LayerData:
        """Layer ``index``'s summaries and example maps for a run of its units (positions; every unit
        by default, ``spans`` for runs of a bounded size), read from the cache: the stored state is
        memory-mapped and only that run's part is read. Without ``maps``, only the top and bottom
        examples' maps (no bands' maps, no text's token means)."""
        span = units if units is not None else range(len(self.layers[index].units))
        reducer = LayerReducer.from_state_dict(_narrowed(_read(self.folder / f"reducer-{index}.pt"), span))
        summaries = reducer.summaries()
        spatial = reducer.spatial_shape
        band_maps: tuple = ()
        if self.bands:
            sampler = BandSampler.from_state_dict(_narrowed(_read(self.folder / f"bands-{index}.pt"), span))
            cut = sampler.bands(self.bands, spatial)
            summaries = [replace(s, bands=tuple(b), inactive=z) for s, b, z in zip(summaries, cut, sampler.inactive())]
            if maps:
                band_maps = tuple(sampler.unit_band_maps(unit, s.bands, spatial)
                                  for unit, s in enumerate(summaries))
        means_file = self.folder / f"token-means-{index}.pt"
        tokens = None
        if maps and means_file.is_file():
            counted = np.load(self.folder / "counted.npy")
            state = _read(means_file)  # sums [vocabulary, units]
            state["sums"] = state["sums"][:, span.start:span.stop]
            tokens = tuple(map(tuple, TokenMeans.from_state_dict(state).strongest(counted)))
        return LayerData(tuple(summaries), reducer.maps("top"), reducer.maps("bottom"), band_maps, tokens)


def _read(path: Path) -> dict:
    """A saved state, memory-mapped: its tensors are read from disk only where they are used."""
    return torch.load(path, weights_only=True, mmap=True)


def _narrowed(state: dict, span: range) -> dict:
    """A reducer's or sampler's state for the units in ``span``: each per-unit tensor (units first)
    sliced; from_state_dict copies only that slice."""
    count = state["num_units"]
    out = {name: value[span.start:span.stop] if isinstance(value, torch.Tensor) and value.dim()
           and value.shape[0] == count else value for name, value in state.items()}
    out["num_units"] = len(span)
    return out


class RowFile:
    """A float32 .npy table written row block by row block through a plain file.

    Writing through a memory map would keep every written page resident, so peak memory
    would grow with the number of inputs; a file handle lets the page cache write them out.
    """

    def __init__(self, path: Path, shape: tuple[int, int]):
        np.lib.format.open_memmap(path, "w+", np.float32, shape).flush()  # header and size, all zeros
        self.row_bytes = shape[1] * 4
        self.offset = path.stat().st_size - shape[0] * self.row_bytes
        self.file = open(path, "r+b")

    def write(self, index: np.ndarray, rows: np.ndarray) -> None:
        """Write rows at the given row numbers (ascending; one seek when they follow each other)."""
        rows = np.ascontiguousarray(rows, dtype=np.float32)
        runs = np.flatnonzero(np.diff(index) != 1) + 1
        for run in np.split(np.arange(len(index)), runs):
            if len(run):
                self.file.seek(self.offset + int(index[run[0]]) * self.row_bytes)
                self.file.write(rows[run[0]:run[-1] + 1].tobytes())

    def close(self) -> None:
        self.file.close()


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def extract(model: LoadedModel, layout: ModelLayout, inputs: InputSet, config: Config,
            cache: Cache, progress=None) -> ModelActivations:
    """Reducer results for every chosen layer, from cache when nothing they depend on changed."""
    ex = config.examples
    key = content_key(FORMAT, model.key, inputs.key, [(l.name, l.units, l.layout) for l in layout.layers],
                      ex.top, ex.bottom, ex.bands and ex.per_band, CANDIDATES, HIST_BINS, layout.classifier)
    entry = cache.entry("activations", key)
    cached = entry is not None
    if not cached and ranks().world > 1:
        _run_shared(model, layout, inputs, config, cache, key, ranks(), progress)
        entry = cache.entry("activations", key)
    elif not cached:
        with cache.writing("activations", key) as folder:
            _run(model, layout, inputs, config, folder, progress)
            _check_readable(model, inputs, folder)
        entry = cache.entry("activations", key)
    elif progress is not None:
        progress.update(len(inputs.items))
    return _load(entry, key, layout, ex.bands, cached)


def _run_shared(model: LoadedModel, layout: ModelLayout, inputs: InputSet, config: Config, cache: Cache,
                key: str, ranks: Ranks, progress) -> None:
    """The pass over this rank's share of the inputs (whole batches, so that every input meets the
    same batch as in one process), kept beside the entry until every rank has its own; then rank 0
    merges them into the entry. A share finished before is not made again: a failed build resumes."""
    parts = f"activations/.{key}.parts"
    shares = [ranks.share(len(inputs.items), config.extract.batch_size, rank) for rank in range(ranks.world)]
    name = f"{shares[ranks.rank].start}-{shares[ranks.rank].stop}"
    if cache.entry(parts, name) is None:
        with cache.writing(parts, name) as folder:
            _run(model, layout, inputs, config, folder, progress, shares[ranks.rank])
    elif progress is not None:
        progress.update(len(shares[ranks.rank]))
    ranks.wait()
    if ranks.first:
        with cache.writing("activations", key) as folder:
            _merge([(share, cache.entry(parts, f"{share.start}-{share.stop}")) for share in shares], layout,
                   len(inputs.items), folder)
            _check_readable(model, inputs, folder)
        shutil.rmtree(cache.root / parts, ignore_errors=True)
    ranks.wait()


def _merge(parts: list[tuple[range, Path]], layout: ModelLayout, n: int, folder: Path) -> None:
    """One entry from the ranks' passes over their shares (``parts``: each share and its folder):
    the reducers merged exactly, in rank order; each share's rows of the per-input tables copied."""
    first = parts[0][1]
    for i, layer in enumerate(layout.layers):
        for name, kind in (("reducer", LayerReducer), ("bands", BandSampler), ("token-means", TokenMeans)):
            if (first / f"{name}-{i}.pt").is_file():
                merged = None
                for _, part in parts:
                    state = kind.from_state_dict(torch.load(part / f"{name}-{i}.pt", weights_only=True))
                    merged = state if merged is None else merged.merge(state)
                torch.save(merged.state_dict(), folder / f"{name}-{i}.pt")
        table = RowFile(folder / f"peaks-{i}.npy", (n, len(layer.units)))
        try:
            for share, part in parts:
                rows = np.load(part / f"peaks-{i}.npy", mmap_mode="r")
                for start in range(share.start, share.stop, ROWS_PER_COPY):
                    stop = min(start + ROWS_PER_COPY, share.stop)
                    table.write(np.arange(start, stop), rows[start:stop])
        finally:
            table.close()
    for name in ("predictions", "probabilities"):
        if (first / f"{name}.npy").is_file():
            table = np.lib.format.open_memmap(folder / f"{name}.npy", "w+", *_dtype_shape(first / f"{name}.npy"))
            for share, part in parts:
                table[share.start:share.stop] = np.load(part / f"{name}.npy", mmap_mode="r")[share.start:share.stop]
            table.flush()
            del table
    if (first / "counted.npy").is_file():
        shutil.copyfile(first / "counted.npy", folder / "counted.npy")
    unreadable = {}
    for _, part in parts:
        unreadable.update(json.loads((part / "unreadable.json").read_text()))
    ordered = sorted(unreadable.items(), key=lambda kv: int(kv[0]))
    (folder / "unreadable.json").write_text(json.dumps(dict(ordered)))


def _dtype_shape(path: Path) -> tuple:
    table = np.load(path, mmap_mode="r")
    return table.dtype, table.shape


def _check_readable(model: LoadedModel, inputs: InputSet, folder: Path) -> None:
    """Fail the build when not one input could be decoded: there would be nothing to show."""
    unreadable = json.loads((folder / "unreadable.json").read_text())
    if inputs.items and len(unreadable) == len(inputs.items):
        raise BuildError(f"model '{model.config.id}': no input could be decoded "
                         f"({inputs.items[0].source}: {next(iter(unreadable.values()))})")


def _run(model: LoadedModel, layout: ModelLayout, inputs: InputSet, config: Config, folder: Path,
         progress, share: range | None = None) -> None:
    """The pass over every input, or over a ``share`` of them (positions in the input set): the
    per-input tables keep a row for every input either way, those of other shares left empty."""
    device = pick_device(config.extract.device)
    module = model.module.to(device)
    n = len(inputs.items)
    items = inputs.items if share is None else inputs.items[share.start:share.stop]
    names = [layer.name for layer in layout.layers]
    ex = config.examples
    reducers = {l.name: LayerReducer(len(l.units), ex.top * CANDIDATES, ex.bottom * CANDIDATES, HIST_BINS)
                for l in layout.layers}
    samplers = {l.name: BandSampler(len(l.units), ex.per_band) for l in layout.layers if ex.bands}
    corpus = inputs.text
    means = {l.name: TokenMeans(len(corpus.counted), len(l.units)) for l in layout.layers} if corpus else {}
    lead, trail = (len(corpus.lead), len(corpus.trail)) if corpus else (0, 0)
    index = {l.name: torch.tensor(l.units, device=device) for l in layout.layers}
    all_units = {l.name: l.units == tuple(range(l.shape[0])) for l in layout.layers}
    layouts = {l.name: l.layout for l in layout.layers}
    peaks = {l.name: RowFile(folder / f"peaks-{i}.npy", (n, len(l.units))) for i, l in enumerate(layout.layers)}
    if layout.classifier:
        predictions = np.lib.format.open_memmap(folder / "predictions.npy", "w+", np.int32, (n, TOP_PREDICTIONS))
        probabilities = np.lib.format.open_memmap(folder / "probabilities.npy", "w+", np.float32,
                                                  (n, TOP_PREDICTIONS))

    batch = {"index": None, "tokens": None}
    unreadable: dict[int, str] = {}  # input index -> why its file failed to decode
    in_flight: list[Future] = []  # reductions of the batch before: at most two batches held at once

    def reduce(name: str, acts: torch.Tensor, inputs_index: torch.Tensor, tokens) -> None:
        with torch.inference_mode():
            reducers[name].update(acts, inputs_index)
            if tokens is not None:
                means[name].update(acts, tokens)
            maps = acts.flatten(2) if acts.dim() > 2 else acts.unsqueeze(2)
            peak = maps.amax(2)
            peaks[name].write(inputs_index.numpy(), peak.cpu().numpy())
            if samplers:
                samplers[name].update(peak, maps, inputs_index)

    def consume(name: str, tensor: torch.Tensor) -> None:
        """Hand a layer's output to the reducing thread, which overlaps with the next forward pass.

        The hook keeps a copy: later in-place ops (ReLU(inplace=True), ``out += identity``) would
        otherwise rewrite the tensor before it is reduced. A module called twice in one forward
        pass counts once, at its first call.
        """
        if name in seen:
            return None
        acts = layer_units(tensor, layouts[name], None if all_units[name] else index[name], lead, trail).float()
        if acts.data_ptr() == tensor.data_ptr():
            acts = acts.clone(memory_format=torch.contiguous_format)
        batch["futures"].append(worker.submit(reduce, name, acts, batch["index"], batch["tokens"]))
        return None

    loader = TokenLoader(corpus) if corpus else ImageLoader(model.config.preprocessing)
    worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="galleria-reduce")
    try:
        with in_user_model(model.config.id, module, "extraction"), capture(module, names, consume) as seen, \
                torch.inference_mode():
            for decoded, x, failed, size in _prefetch(items, config.extract.batch_size, loader):
                unreadable.update(failed)
                if decoded:
                    rows = np.array([item.index for item in decoded])
                    batch["index"] = torch.from_numpy(rows)
                    batch["futures"] = []
                    if corpus:
                        batch["tokens"] = torch.from_numpy(np.stack([corpus.compact[i.span[0]:i.span[1]]
                                                                     for i in decoded]))
                    output = first_tensor(module(x.to(device)))
                    missing = [name for name in names if name not in seen]
                    if missing:
                        raise BuildError(f"model '{model.config.id}': layer '{missing[0]}' produced no output "
                                         "on an input")
                    seen.clear()
                    if layout.classifier:
                        k = min(TOP_PREDICTIONS, output.shape[1])
                        top = output.float().softmax(1).topk(k, dim=1)
                        predictions[rows, :k] = top.indices.cpu().numpy()
                        probabilities[rows, :k] = top.values.cpu().numpy()
                    for future in in_flight:
                        future.result()  # re-raises a reducer's error here
                    in_flight[:] = batch["futures"]
                if progress is not None:
                    progress.update(size)
            for future in in_flight:
                future.result()
        failed_rows = np.array(sorted(unreadable))
        for table in peaks.values():  # an input the model never read has no peak
            table.write(failed_rows, np.full((len(failed_rows), table.row_bytes // 4), np.nan, np.float32))
    finally:
        worker.shutdown(wait=True, cancel_futures=True)
        release_threads()
        for table in peaks.values():
            table.close()
    module.to("cpu")
    for i, layer in enumerate(layout.layers):
        torch.save(reducers[layer.name].state_dict(), folder / f"reducer-{i}.pt")
        if samplers:
            torch.save(samplers[layer.name].state_dict(), folder / f"bands-{i}.pt")
        if means:
            torch.save(means[layer.name].state_dict(), folder / f"token-means-{i}.pt")
    if corpus:
        np.save(folder / "counted.npy", corpus.counted)
    (folder / "unreadable.json").write_text(json.dumps({str(k): v for k, v in sorted(unreadable.items())}))


def layer_units(tensor: torch.Tensor, layout, index: torch.Tensor | None, lead: int = 0, trail: int = 0) -> torch.Tensor:
    """A layer's output as its reducers read it: [B, units shown, *positions], without the special
    tokens a transformer adds around a text ([CLS], [SEP]: ``lead`` and ``trail`` of them). The live
    probe's ONNX graph returns the same, so the page's values are the gallery's."""
    if lead or trail:
        tensor = tensor[:, lead:tensor.shape[1] - trail]
    tensor = layout.units_first(tensor)
    return tensor if index is None else tensor.index_select(1, index)


def _prefetch(items: tuple[InputItem, ...], batch_size: int, loader: ImageLoader):
    """Decode the next batch in a thread while the model runs on this one (PIL frees the GIL).

    Yields (items that decoded, their tensor, {index: reason} of those that did not, batch size)."""
    batches: queue.Queue = queue.Queue(maxsize=2)
    stop = threading.Event()

    def produce():
        try:
            for i in range(0, len(items), batch_size):
                if stop.is_set():
                    return
                chunk = list(items[i:i + batch_size])
                batches.put((*loader.readable(chunk), len(chunk)))
            batches.put(None)
        except BaseException as exc:  # re-raised in the consumer, which owns error reporting
            batches.put(exc)

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    try:
        while (got := batches.get()) is not None:
            if isinstance(got, BaseException):
                raise got
            yield got
    finally:
        stop.set()
        while thread.is_alive():  # drain so the producer is never stuck on a full queue
            try:
                batches.get(timeout=0.1)
            except queue.Empty:
                pass


def _load(folder: Path, key: str, layout: ModelLayout, bands: int, cached: bool) -> ModelActivations:
    predictions = probabilities = None
    if layout.classifier:
        predictions = np.load(folder / "predictions.npy", mmap_mode="r")
        probabilities = np.load(folder / "probabilities.npy", mmap_mode="r")
    unreadable = {int(k): v for k, v in json.loads((folder / "unreadable.json").read_text()).items()}
    return ModelActivations(key, folder, layout.layers, bands, predictions, probabilities, cached, unreadable)
