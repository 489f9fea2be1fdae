"""site.yaml's JSON Schema: made from config.py's declarations, so it accepts what galleria reads
and refuses the keys galleria refuses; shipped in the package, printed by ``galleria schema``."""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from test_config import BASE, UNKNOWN_KEYS

from galleria.cli import main
from galleria.schema import SHIPPED, schema_text, site_schema

REPO = Path(__file__).resolve().parents[1]
VALIDATOR = jsonschema.Draft202012Validator(site_schema())
MODELINE = "# yaml-language-server: $schema="


def errors(text: str) -> list[str]:
    """Every message the schema gives, those of anyOf's branches included."""
    found, stack = [], list(VALIDATOR.iter_errors(yaml.safe_load(text)))
    while stack:
        error = stack.pop()
        found.append(error.message)
        stack.extend(error.context or ())
    return found


def points_at(site_yaml: Path) -> Path:
    """The schema file named by site.yaml's first line, as an editor resolves it (beside the file)."""
    first = site_yaml.read_text().splitlines()[0]
    assert first.startswith(MODELINE), first
    return site_yaml.parent / first[len(MODELINE):]


def test_the_shipped_schema_is_the_generated_one():
    assert SHIPPED.read_text() == schema_text(), "regenerate it: galleria schema -o galleria/site.schema.json"


def test_it_is_a_valid_draft_2020_12_schema_whose_defaults_fit_their_keys():
    jsonschema.Draft202012Validator.check_schema(site_schema())
    stack = [site_schema()]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if "default" in node:
                rule = {k: v for k, v in node.items() if k != "default"}
                jsonschema.Draft202012Validator(rule).validate(node["default"])
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def test_the_default_gallery_validates_and_points_editors_at_the_shipped_schema():
    VALIDATOR.validate(yaml.safe_load((REPO / "site.yaml").read_text()))
    assert points_at(REPO / "site.yaml").resolve() == SHIPPED


def test_the_starter_validates_and_carries_its_schema(tmp_path):
    folder = tmp_path / "gallery"
    assert main(["new", str(folder)]) == 0
    VALIDATOR.validate(yaml.safe_load((folder / "site.yaml").read_text()))
    assert points_at(folder / "site.yaml").read_text() == SHIPPED.read_text()


@pytest.mark.parametrize("text, key, message", UNKNOWN_KEYS)
def test_every_unknown_key_galleria_refuses_the_schema_refuses(text, key, message):
    assert errors(BASE) == []
    unknown = key.rsplit(".", 1)[-1]
    assert any(f"'{unknown}' was unexpected" in m for m in errors(text)), errors(text)


@pytest.mark.parametrize("text", [
    BASE + "examples: {top: many}\n",
    BASE + "examples: {bands: 17}\n",
    BASE + "seed: true\n",
    BASE + "featureviz: {diversity: 1}\n",
    BASE + "featureviz: {units: -2}\n",
    BASE + "probe: {precision: float8}\n",
    BASE + "extract: {device: gpu}\n",
    BASE + "    preprocessing: {size: [1, 2, 3]}\n",
    BASE + "    units: lots\n",
    BASE.replace("id: tiny", "id: my model"),
    BASE.replace("id: tiny", "id: search"),
    BASE.replace("layers: [layer1]", "layers: []"),
    BASE.replace("layers: [layer1]", "layers: [{name: layer1, layout: channel-last}]"),
    BASE.replace("  title: Test", "  url: example.com"),
    BASE.replace("  - path: images", "  - {path: images, crops: {overlap: 1.5}}"),
    BASE.replace("    source: torchvision:resnet18\n", ""),
])
def test_wrong_values_are_refused(text):
    assert errors(text)


def test_galleria_schema_prints_it_and_writes_it(tmp_path, capsys):
    assert main(["schema"]) == 0
    printed = capsys.readouterr().out
    jsonschema.Draft202012Validator.check_schema(json.loads(printed))
    assert printed == SHIPPED.read_text()
    assert main(["schema", "-o", str(tmp_path / "site.schema.json")]) == 0
    assert (tmp_path / "site.schema.json").read_text() == printed
    assert main(["schema", "-o", str(tmp_path / "missing" / "site.schema.json")]) == 2
    assert "cannot write" in capsys.readouterr().err
