"""site.yaml's JSON Schema, made from the options galleria/config.py declares, so that what an
editor completes and explains is what galleria reads. A copy ships beside this file
(site.schema.json): site.yaml files point editors at it, offline."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from galleria.config import TOP, Option

SHIPPED = Path(__file__).with_name("site.schema.json")


def site_schema() -> dict:
    """The JSON Schema (draft 2020-12) of a site.yaml file."""
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "galleria site.yaml",
            "description": "A gallery's models, layers and inputs, read by galleria build.", **_mapping(TOP)}


def schema_text() -> str:
    """The schema as written to site.schema.json and printed by ``galleria schema``."""
    return json.dumps(site_schema(), indent=2, ensure_ascii=False) + "\n"


def _mapping(options: dict[str, Option]) -> dict:
    """A section: its declared keys and no others (a typo is flagged as galleria would flag it)."""
    properties = {}
    for key, option in options.items():
        properties[key] = {"description": option.doc, **_schema(option.value)}
        if option.default is not None:
            properties[key]["default"] = option.default
    required = [key for key, option in options.items() if option.required]
    return {"type": "object", "properties": properties, **({"required": required} if required else {}),
            "additionalProperties": False}


def _schema(value: Any) -> Any:
    """A declared value's schema, with each section inside it (in anyOf, items, ...) spelled out."""
    if isinstance(value, dict):
        if value and isinstance(next(iter(value.values())), Option):
            return _mapping(value)
        return {key: _schema(v) for key, v in value.items()}
    if isinstance(value, list):
        return [_schema(v) for v in value]
    return value
