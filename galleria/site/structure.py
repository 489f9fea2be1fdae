"""Where every page lives, and links between pages that work from file:// and any sub-path.

Permalinks are folders (``<model>/<layer>/<unit>/``); links point at their ``index.html``
explicitly, because browsers opening files from disk do not resolve a folder to its index.
"""
from __future__ import annotations

import posixpath
import re

RESERVED = {"inputs", "assets"}  # folders a model page already uses


def slug(name: str) -> str:
    """A url-safe folder name for a layer: module names keep their dots (``blocks.4``)."""
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


def input_dir(model: str, input_id: str) -> str:
    return f"{inputs_dir(model)}/{input_id}"


def page_file(folder: str) -> str:
    return f"{folder}/index.html" if folder else "index.html"


def href(from_folder: str, target: str) -> str:
    """Relative link from a page in ``from_folder`` to a site path (a file, not a folder)."""
    return posixpath.relpath(target, from_folder or ".")


def root(from_folder: str) -> str:
    """Prefix from a page's folder back to the site root: '' or '../../'."""
    depth = len([p for p in from_folder.split("/") if p]) if from_folder else 0
    return "../" * depth
