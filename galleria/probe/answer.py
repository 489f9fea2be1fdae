"""The live probe answered by PyTorch in ``galleria serve``: for models the page cannot run (no
ONNX export, a tokenizer the page lacks), and for every model while the site is served.

The model is loaded on a model's first probe and kept; the input goes through the build's own
code (the image's centre square through ImageLoader, the text through the model's tokenizer), and
the outputs are the export's (LayerOutputs), so the values are the gallery's.
"""
from __future__ import annotations

import tempfile
import threading
from pathlib import Path

import numpy as np
import torch

from galleria.errors import UsageError, in_user_model
from galleria.probe.export import LayerOutputs, model_feed
from galleria.probe.script import probe_meta
from galleria.records import InputItem


class ProbeError(UsageError):
    """A visitor's input that cannot be probed (unreadable image, unknown model), in one line: a
    bad request to galleria serve, a usage error to galleria.Gallery.probe."""


class ProbeAnswers:
    """Every model of a gathered site, answering probes; ``label_of(build, layer, unit)`` names units,
    ``objects`` the models given in memory (galleria.Gallery) by id."""

    def __init__(self, root: Path, builds: list, label_of, objects: dict | None = None):
        self.root, self.label_of = root, label_of
        self.objects = objects or {}  # models given in memory (galleria.Gallery), by id
        self.builds = {build.model.config.id: build for build in builds}
        self._loaded: dict[str, torch.nn.Module] = {}
        self._lock = threading.Lock()

    def meta(self, model_id: str) -> dict:
        """What galleria-probe.js needs to draw a model's answers (as <model>/probe.js holds it)."""
        build = self._build(model_id)
        feed = build.probe.feed if build.probe is not None else model_feed(build.model, build.inputs)
        return probe_meta(model_id, build.layout, feed, build.maxima, build.minima,
                          lambda layer, unit: self.label_of(build, layer, unit))

    def answer(self, model_id: str, body: bytes) -> dict:
        """The model's chosen layers on a visitor's input: per layer its values [units x positions]."""
        build = self._build(model_id)
        text = build.inputs.text
        with self._lock:  # one forward pass at a time: a served gallery is one person's
            module = self._module(build)
            if text is not None:
                x, pieces, truncated = self._tokens(build, body)
            else:
                x, pieces, truncated = self._image(build, body), None, False
            wrapper = LayerOutputs(module, build.layout, len(text.lead) if text else 0,
                                   len(text.trail) if text else 0).eval()
            with in_user_model(model_id, module, "the live probe"), torch.no_grad():
                outputs = wrapper(x)
        layers = [{"values": np.round(out[0].numpy().ravel(), 6).tolist(), "positions": out.shape[2]} for out in outputs]
        return {"layers": layers, "pieces": pieces, "count": len(pieces) if pieces else None, "truncated": truncated}

    def _build(self, model_id: str):
        build = self.builds.get(model_id)
        if build is None or not (build.model.config.probe.enabled or model_id in self.objects):  # a notebook's always answers
            raise ProbeError(f"no model '{model_id}' with a probe in this site")
        return build

    def _module(self, build) -> torch.nn.Module:
        from galleria.sources.models import load_model

        cfg = build.model.config
        if cfg.id not in self._loaded:
            self._loaded[cfg.id] = load_model(cfg, self.root, self.objects.get(cfg.id)).module.eval()
        return self._loaded[cfg.id]

    def _tokens(self, build, body: bytes):
        text, corpus = body.decode("utf-8", errors="replace"), build.inputs.text
        ids, pieces = build.model.tokenizer.encode(text)
        if not len(ids):
            raise ProbeError("the text has no tokens")
        kept = min(len(ids), corpus.window)  # a window at most, as the gallery's inputs
        row = np.concatenate([corpus.lead, ids[:kept], corpus.trail]).astype(np.int64)
        return torch.from_numpy(row)[None], list(pieces[:kept]), kept < len(ids)

    def _image(self, build, body: bytes) -> torch.Tensor:
        from galleria.sources.images import ImageLoader, UnreadableInput, centre_square, open_image

        pre = build.model.config.preprocessing
        with tempfile.NamedTemporaryFile(suffix=".upload") as file:
            file.write(body)
            file.flush()
            try:
                box = centre_square(open_image(file.name, pre.channels).size)
                return ImageLoader(pre).batch([InputItem(0, "probe", file.name, "your image", box)])[0]
            except UnreadableInput as exc:
                raise ProbeError(f"cannot read the image: {exc.reason}") from None
