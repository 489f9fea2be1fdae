"""A model's probe as the page loads it: ``<model>/probe.js``, a script (fetch() is refused from
file://, scripts are not) that hands probe.js the graph and what feeding it takes."""
from __future__ import annotations

import base64
import gzip
import json

from galleria.records import ProbeModel


def packed(data: bytes) -> str:
    """gzip (no timestamp: the same bytes give the same site), then base64; the page reverses it
    with DecompressionStream."""
    return base64.b64encode(gzip.compress(data, compresslevel=6, mtime=0)).decode("ascii")


def probe_script(model_id: str, probe: ProbeModel, layers: list[dict]) -> str:
    """``layers``: per output of the graph, its site folder ("url"), its units' highest peaks on the
    inputs ("max", for ranking units by their response relative to it) and its units' labels."""
    meta = {"model": model_id, "feed": probe.feed, "precision": probe.precision,
            "layers": [{**extra, "name": layer.name, "units": list(layer.units), "grid": layer.grid,
                        "prefix": layer.prefix} for layer, extra in zip(probe.layers, layers)]}
    return (f"galleriaProbeModel({json.dumps(meta, separators=(',', ':'), ensure_ascii=False)}, "
            f'"{packed(probe.onnx.read_bytes())}");\n')
