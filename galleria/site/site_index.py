"""``galleria.json`` at the site's root: its models and their layers in the models' order, each with
its folder and units, so that ``galleria.open`` and ``galleria export`` read a built site's records
(the units' ``unit.json``) without parsing pages or guessing order from folder names."""
from __future__ import annotations

import json
from pathlib import Path

from galleria import __version__
from galleria.records import ModelRecord

SITE_INDEX = "galleria.json"
SCHEMA_VERSION = 1  # bump when the index's shape changes


def write_site_index(out: Path, models: list[ModelRecord]) -> None:
    index = {"generator": f"galleria {__version__}", "version": SCHEMA_VERSION, "models": [
        {"id": model.id, "title": model.title, "folder": model.url, "layers": [
            {"name": layer.name, "folder": layer.url, "units": list(layer.units)} for layer in model.layers]}
        for model in models]}
    (out / SITE_INDEX).write_text(json.dumps(index, separators=(",", ":")) + "\n", encoding="utf-8")
