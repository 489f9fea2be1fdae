"""A model's probe as the page loads it: ``<model>/probe.js``, a script (fetch() is refused from
file://, scripts are not) that hands galleria-probe.js the graph and what feeding it takes."""
from __future__ import annotations

import base64
import gzip
import json
import shutil
from pathlib import Path

from galleria.records import ProbeModel


def packed(data: bytes) -> str:
    """gzip (no timestamp: the same bytes give the same site), then base64; the page reverses it
    with DecompressionStream."""
    return base64.b64encode(gzip.compress(data, compresslevel=6, mtime=0)).decode("ascii")


def probe_meta(model_id: str, layout, feed: dict, maxima: dict, minima: dict, label_of) -> dict:
    """What the page needs besides the graph: how to feed the model, and per layer (an output of
    the graph) its site folder, units, map layout, the units' highest values on the inputs (to rank
    units by their response relative to them, and an image unit's colour scale), a text unit's
    colour scale (±its largest magnitude, as its page colours its examples) and the units' labels
    (``label_of(layer, unit)``)."""
    from galleria.site import structure as S

    layers = []
    for layer in layout.layers:
        grid, prefix = _on_image(layer.layout)
        layers.append({"name": layer.name, "url": S.layer_dir(model_id, layer.name) + "/", "units": list(layer.units),
                       "grid": grid, "prefix": prefix,
                       "max": [round(float(m), 6) for m in maxima[layer.name]],
                       **({"scale": [round(max(abs(float(a)), abs(float(b)), 1e-6), 6)
                                     for a, b in zip(maxima[layer.name], minima[layer.name])]}
                          if feed["kind"] == "text" else {}),
                       "labels": {u: label for u in layer.units if (label := label_of(layer.name, u))}})
    return {"model": model_id, "feed": feed, "layers": layers}


def _on_image(layout) -> tuple[tuple[int, int] | None, int]:
    """Where a layer's map lies on the image: its grid (rows, columns), or None when it has none, and
    the positions before the grid (a ViT's CLS token)."""
    if layout.kind == "tokens":
        return layout.grid, len(layout.prefix) if layout.grid else 0
    return (layout.positions if len(layout.positions) == 2 else None), 0


def write_probe_script(path: Path, meta: dict, probe: ProbeModel) -> None:
    """<model>/probe.js: ``meta`` and the graph, handed to the page's galleria-probe.js; the graph's
    text is copied from the cache in pieces, so a large one is never held whole."""
    with path.open("w", encoding="utf-8") as out, probe.carried.open(encoding="ascii") as graph:
        out.write(f"galleriaProbeModel({json.dumps(meta, separators=(',', ':'), ensure_ascii=False)}, \"")
        shutil.copyfileobj(graph, out, 1 << 20)
        out.write('");\n')
