"""Where every page lives, and links between pages that work from file:// and any sub-path.

Permalinks are folders (``<model>/<layer>/<unit>/``); links point at their ``index.html``
explicitly, because browsers opening files from disk do not resolve a folder to its index.
"""
from __future__ import annotations

import functools
import re
from pathlib import PurePath

RESERVED = {"inputs", "assets", "health", "probe", "probe.js"}  # what a model's folder already holds
PROBE_RUNTIME = "assets/onnxruntime-web/runtime.js"  # the live probe's WebAssembly runtime, once per site


@functools.lru_cache(maxsize=4096)
def slug(name: str) -> str:
    """A url-safe folder name for a layer: module names keep their dots (``blocks.4``). Remembered:
    every link to a unit spells its layer's folder."""
    text = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "layer"
    return f"layer-{text}" if text in RESERVED else text


def model_dir(model: str) -> str:
    return model


def layer_dir(model: str, layer: str) -> str:
    return f"{model}/{slug(layer)}"


def unit_dir(model: str, layer: str, unit: int) -> str:
    return f"{layer_dir(model, layer)}/{unit}"


def inputs_dir(model: str) -> str:
    return f"{model}/inputs"


def featureviz_dir(model: str, layer: str) -> str:
    """A layer's feature visualizations, all on one page (Microscope's op view)."""
    return f"{layer_dir(model, layer)}/featureviz"


def health_dir(model: str, layer: str | None = None) -> str:
    """The health page of a whole model, or of one layer."""
    return f"{layer_dir(model, layer) if layer else model}/health"


def probe_dir(model: str) -> str:
    """A model's probe page: the units of every layer that respond most to a visitor's input."""
    return f"{model}/probe"


def probe_script(model: str) -> str:
    """A model's live probe: its ONNX graph and what the page needs to feed it."""
    return f"{model}/probe.js"


def source_file(source: str, stored: PurePath) -> str:
    """The site path of a stored source image: the photo's own name, and the stored file's content key
    (unique, and shared by every model that shows it)."""
    return f"images/{slug(PurePath(source).stem)[:24]}-{stored.stem[:8]}.jpg"


def input_dir(model: str, input_id: str) -> str:
    return f"{inputs_dir(model)}/{input_id}"


def page_file(folder: str) -> str:
    return f"{folder}/index.html" if folder else "index.html"


def href(from_folder: str, target: str) -> str:
    """Relative link from a page in ``from_folder`` to a site path (a file, not a folder).

    Both are site paths without '..', so plain string work suffices; posixpath.relpath
    would consult the working directory on each of the ~100,000 calls of a build.
    """
    if not from_folder:
        return target
    head = target.partition("/")[0]
    if not from_folder.startswith(head) or from_folder[len(head):len(head) + 1] not in ("", "/"):
        return "../" * (from_folder.count("/") + 1) + target  # nothing in common (images, assets, ...)
    source = from_folder.split("/")
    dest = target.split("/")
    common = 0
    while common < min(len(source), len(dest) - 1) and source[common] == dest[common]:
        common += 1
    return "../" * (len(source) - common) + "/".join(dest[common:])


def root(from_folder: str) -> str:
    """Prefix from a page's folder back to the site root: '' or '../../'."""
    depth = len([p for p in from_folder.split("/") if p]) if from_folder else 0
    return "../" * depth
