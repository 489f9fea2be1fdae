"""Each model exported to ONNX with its chosen layers as outputs, checked against PyTorch.

The graph's outputs are what extraction's reducers read (``layer_units``: special tokens dropped,
units first, only the units shown), one ``[1, units, positions]`` tensor per layer, so the page
needs no layout logic of its own. Export is tried with a free text length first; a model whose
trace fixes the length (an unrolled recurrence) is exported at its window length instead, which
the page fills with padding after the visitor's text: right for models that only look back
(checked, not assumed). The export is verified with onnxruntime on the model's own inputs, and
a model that does not export or does not match is left out of the probe with the reason.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from galleria.cache import Cache, content_key
from galleria.config import ProbeConfig
from galleria.distributed import ranks
from galleria.extract.architecture import ModelLayout
from galleria.extract.hooks import capture
from galleria.extract.run import layer_units
from galleria.probe.precision import store_weights
from galleria.probe.script import packed
from galleria.probe.tokenizer import page_tokenizer
from galleria.records import ProbeModel

EXPORT_VERSION = 1  # bump when the graph's outputs change meaning
MATCH = 1e-3  # a float32 export agrees with PyTorch to this share of each layer's largest value
INPUT = "input"
GRAPH_TEXT = "graph.txt"  # the graph as <model>/probe.js carries it (probe/script.py: packed)


class ProbeLeftOut(Exception):
    """Why a model has no probe in the page, in one line."""


class LayerOutputs(torch.nn.Module):
    """The model, returning each chosen layer's units as extraction reads them."""

    def __init__(self, module: torch.nn.Module, layout: ModelLayout, lead: int, trail: int):
        super().__init__()
        self.module = module
        self.layers = layout.layers
        self.lead, self.trail = lead, trail
        for i, layer in enumerate(self.layers):
            all_units = layer.units == tuple(range(layer.shape[0]))
            self.register_buffer(f"units{i}", None if all_units else torch.tensor(layer.units), persistent=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        names = [layer.name for layer in self.layers]
        with capture(self.module, names, lambda name, t: t.clone()) as seen:
            self.module(x)
        out = []
        for i, layer in enumerate(self.layers):
            units = layer_units(seen[layer.name], layer.layout, getattr(self, f"units{i}"), self.lead, self.trail)
            out.append(units.flatten(2).float() if units.dim() > 2 else units.unsqueeze(2).float())
        return tuple(out)


@dataclass(frozen=True)
class _Exported:
    onnx: bytes
    length: int | None  # text: the fixed length the page pads to (None: any length)


def model_probe(model, layout: ModelLayout, inputs, settings: ProbeConfig, cache: Cache) -> ProbeModel:
    """The model's probe, from the cache or exported now; ProbeLeftOut says why there is none (the
    verdict is cached too: a model that does not export is not exported again on every build)."""
    text = inputs.text
    lead, trail = (len(text.lead), len(text.trail)) if text else (0, 0)
    tokenizer = page_tokenizer(model.tokenizer) if text else None
    if text and tokenizer is None:
        raise ProbeLeftOut("the page cannot run its tokenizer (it runs character vocabularies, BERT's WordPiece and "
                           "GPT-2's byte-level BPE); galleria serve answers its probe with PyTorch")
    layers = [(layer.name, layer.units, layer.layout) for layer in layout.layers]
    key = content_key("probe", EXPORT_VERSION, model.key, layers, settings, lead, trail, torch.__version__,
                      text.window if text else None)  # model.key covers an image's size
    ranks().wait()  # every rank finds the same in the cache: none exports before all have looked
    folder = cache.entry("probe", key)
    ranks().wait()
    if folder is None:
        if ranks().first:  # one export, however many ranks: the others wait for it
            _export_into(model, layout, inputs, settings, cache, key, text, lead, trail)
        ranks().wait()
        folder = cache.entry("probe", key)
    meta = json.loads((folder / "meta.json").read_text())
    if "left_out" in meta:
        raise ProbeLeftOut(meta["left_out"])
    return ProbeModel(folder / GRAPH_TEXT, settings.precision, meta["fidelity"],
                      model_feed(model, inputs, tokenizer, meta["length"]))


def _export_into(model, layout: ModelLayout, inputs, settings: ProbeConfig, cache: Cache, key: str, text, lead: int,
                 trail: int) -> None:
    """The probe exported into the cache entry ``key``, or the reason it is left out."""
    with cache.writing("probe", key) as tmp:
        try:
            meta = _exported(LayerOutputs(model.module, layout, lead, trail).eval(), _samples(model, inputs),
                             text is not None, settings, tmp)
        except ProbeLeftOut as exc:
            meta = {"left_out": str(exc)}
        (tmp / "meta.json").write_text(json.dumps(meta))


def _exported(wrapper: "LayerOutputs", samples: list, text: bool, settings: ProbeConfig, folder) -> dict:
    """Export, store the weights in their precision, measure, and write the graph as the page carries it."""
    exported = _export(wrapper, samples, text)
    stored = store_weights(exported.onnx, settings.precision)
    carried = packed(stored)
    if len(carried) > settings.max_megabytes * 1e6:
        raise ProbeLeftOut(f"its graph would be a {len(carried) / 1e6:.3g} MB download at {settings.precision}, over "
                           f"probe.max_megabytes ({settings.max_megabytes:g}); a smaller precision or a higher limit "
                           "puts it in (GitHub Pages takes files of up to 100 MB)")
    fidelity = _difference(stored, wrapper, samples, exported.length)
    (folder / GRAPH_TEXT).write_text(carried, encoding="ascii")
    return {"length": exported.length, "fidelity": fidelity}


def model_feed(model, inputs, tokenizer: dict | None = None, length: int | None = None) -> dict:
    """How the page turns a visitor's input into the model's: an image's size and normalization, or
    text's tokenizer (None: only galleria serve tokenizes it), special tokens and length."""
    text, pre = inputs.text, model.config.preprocessing
    if text:
        return {"kind": "text", "tokenizer": tokenizer, "lead": list(text.lead), "trail": list(text.trail),
                "length": length, "window": text.window}
    return {"kind": "image", "size": list(pre.size), "channels": pre.channels, "mean": list(pre.mean),
            "std": list(pre.std)}


def _samples(model, inputs, count: int = 2) -> list[torch.Tensor]:
    """The first inputs of the model's own set, one per batch: what the export is checked on."""
    from galleria.sources.images import ImageLoader
    from galleria.sources.text import TokenLoader

    loader = TokenLoader(inputs.text) if inputs.text else ImageLoader(model.config.preprocessing)
    return [loader.batch([item])[0] for item in inputs.usable[:count]]


def _export(wrapper: LayerOutputs, samples: list, text: bool) -> _Exported:
    names = [f"layer{i}" for i in range(len(wrapper.layers))]
    first = samples[0]

    def export(dynamic: bool) -> bytes:
        buffer = io.BytesIO()
        axes = {INPUT: {1: "tokens"}, **{n: {2: "positions"} for n in names}} if dynamic else None
        with warnings.catch_warnings(), torch.no_grad(), _exporting():
            warnings.simplefilter("ignore")
            try:
                torch.onnx.export(wrapper, (first,), buffer, dynamo=False, input_names=[INPUT], output_names=names,
                                  dynamic_axes=axes, opset_version=17, do_constant_folding=True)
            except Exception as exc:  # the exporter raises many kinds; every one means "no probe"
                raise ProbeLeftOut(f"it does not export to ONNX ({type(exc).__name__}: "
                                   f"{_first_line(exc)})") from None
        return buffer.getvalue()

    if not text:
        onnx = export(False)
        _check(onnx, wrapper, samples, None)
        return _Exported(onnx, None)
    shorter = [_shortened(x, wrapper.lead, wrapper.trail) for x in samples]
    onnx = export(True)
    try:
        _check(onnx, wrapper, samples + shorter, None)
        return _Exported(onnx, None)
    except ProbeLeftOut:
        pass
    onnx = export(False)  # the trace fixed the length: pad the visitor's text up to it
    length = first.shape[1]
    _check(onnx, wrapper, samples, None)
    try:
        _check(onnx, wrapper, shorter, length)
    except ProbeLeftOut:
        raise ProbeLeftOut("its values at a token depend on the tokens after it, and its ONNX graph has a "
                           "fixed length, so a visitor's text cannot be padded; galleria serve answers "
                           "its probe with PyTorch") from None
    return _Exported(onnx, length)


@contextlib.contextmanager
def _exporting():
    """nn.MultiheadAttention's fused inference kernel (torchvision's ViT uses it) has no ONNX
    translation: its plain path computes the same with operators that have one. And the exporter's
    log, which writes a whole graph to the process's stdout when an operator fails, goes nowhere:
    the reason is one line."""
    fast = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    sys.stdout.flush()
    saved = os.dup(1)
    with open(os.devnull, "w") as nowhere:
        os.dup2(nowhere.fileno(), 1)
    try:
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        torch.backends.mha.set_fastpath_enabled(fast)


def _shortened(x: torch.Tensor, lead: int, trail: int) -> torch.Tensor:
    """A third of a window's text, between the same special tokens."""
    keep = max(1, (x.shape[1] - lead - trail) // 3)
    return torch.cat([x[:, :lead + keep], x[:, x.shape[1] - trail:]], 1)


def _run_both(onnx: bytes, wrapper, samples: list, length: int | None):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 4  # a failed check is reported as ProbeLeftOut, not as log lines
    session = onnxruntime.InferenceSession(onnx, options, providers=["CPUExecutionProvider"])
    for x in samples:
        with torch.no_grad():
            want = [t.numpy() for t in wrapper(x)]
        fed = x.numpy()
        if length is not None and fed.shape[1] < length:  # padded after the text, as the page does
            fed = np.concatenate([fed, np.zeros((1, length - fed.shape[1]), fed.dtype)], 1)
        got = session.run(None, {INPUT: fed})
        if length is not None:
            got = [g[:, :, : w.shape[2]] for g, w in zip(got, want)]
        yield want, got


def _difference(onnx: bytes, wrapper, samples: list, length: int | None) -> float:
    """The largest difference between ONNX and PyTorch, as a share of each layer's largest |value|."""
    worst = 0.0
    for want, got in _run_both(onnx, wrapper, samples, length):
        for w, g in zip(want, got):
            if g.shape != w.shape:
                return float("inf")
            scale = float(np.abs(w).max()) or 1.0
            worst = max(worst, float(np.abs(g - w).max()) / scale)
    return worst


def _check(onnx: bytes, wrapper, samples: list, length: int | None) -> None:
    try:
        difference = _difference(onnx, wrapper, samples, length)
    except Exception as exc:  # onnxruntime's own errors: an operator it lacks, a shape it rejects
        raise ProbeLeftOut(f"onnxruntime cannot run its export ({type(exc).__name__}: {_first_line(exc)})") from None
    if not difference <= MATCH:
        raise ProbeLeftOut(f"its ONNX export differs from PyTorch by {difference:.1%} of a layer's largest value")


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else "no message"
