"""A built site's records, read back for analysis: ``galleria.open(folder)``.

Every unit's record is its ``unit.json`` (records.UnitRecord, serialized), found through the
site's ``galleria.json`` index; records are read one at a time, so a site of any size can be walked.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from galleria.errors import UsageError
from galleria.site.site_index import SCHEMA_VERSION, SITE_INDEX


@dataclass(frozen=True)
class BuiltLayer:
    model: str
    name: str
    folder: str  # relative to the site's root, e.g. "efficientnet-lite0/blocks.4/"
    units: tuple[int, ...]


class BuiltSite:
    """The models, layers and unit records of a site ``galleria build`` wrote."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        index = self.folder / SITE_INDEX
        try:
            data = json.loads(index.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UsageError(f"{self.folder} is not a site galleria built ({SITE_INDEX}: "
                             f"{getattr(exc, 'strerror', None) or exc}); build it with 'galleria build' first") from None
        if data.get("version") != SCHEMA_VERSION:
            raise UsageError(f"{index} was written by another galleria ({data.get('generator')}); build the site again")
        self._layers = [BuiltLayer(model["id"], layer["name"], layer["folder"], tuple(layer["units"]))
                        for model in data["models"] for layer in model["layers"]]
        self.models = tuple(dict.fromkeys(layer.model for layer in self._layers))

    def layers(self, model: str | None = None) -> list[BuiltLayer]:
        """The layers of one model (or of all), in the model's order."""
        if model is not None and model not in self.models:
            raise UsageError(f"no model '{model}' in {self.folder}; it holds {', '.join(self.models)}")
        return [layer for layer in self._layers if model is None or layer.model == model]

    def layer(self, model: str, name: str) -> BuiltLayer:
        found = [layer for layer in self.layers(model) if layer.name == name]
        if not found:
            raise UsageError(f"no layer '{name}' in model '{model}'; it has "
                             + ", ".join(layer.name for layer in self.layers(model)))
        return found[0]

    def units(self, model: str, layer: str) -> Iterator[dict]:
        """Every unit record of a layer (its unit.json, as a dict), in unit order."""
        for path in self.unit_files(self.layer(model, layer)):
            yield json.loads(path.read_text(encoding="utf-8"))

    def unit(self, model: str, layer: str, unit: int) -> dict:
        """One unit's record (its unit.json, as a dict)."""
        found = self.layer(model, layer)
        if unit not in found.units:
            raise UsageError(f"unit {unit} is not shown in {model}/{layer}")
        return json.loads(self._unit_file(found, unit).read_text(encoding="utf-8"))

    def unit_files(self, layer: BuiltLayer) -> Iterator[Path]:
        for unit in layer.units:
            yield self._unit_file(layer, unit)

    def _unit_file(self, layer: BuiltLayer, unit: int) -> Path:
        return self.folder / layer.folder / str(unit) / "unit.json"

    def __repr__(self) -> str:
        return f"<galleria site {self.folder}: {len(self.models)} models, {len(self._layers)} layers>"
