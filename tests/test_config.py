"""site.yaml validation: every mistake gets one message naming file, line and key."""
from __future__ import annotations

import textwrap

import pytest

from galleria.config import load_config
from galleria.errors import ConfigError

BASE = """\
site:
  title: Test
inputs:
  - path: images
models:
  - id: tiny
    source: torchvision:resnet18
    layers: [layer1]
"""


TYPO = BASE.replace("  title: Test", "  titel: Test")
NESTED_TYPO = BASE + "    preprocesing: {size: 32}\n"
UNKNOWN_KEYS = [  # (site.yaml, the key named, the message): tests/test_schema.py checks the schema refuses each too
    (TYPO, "site.titel", "did you mean 'title'?"),
    (NESTED_TYPO, "models[0].preprocesing", "did you mean 'preprocessing'?"),
    (BASE + "inputs2: []\n", "inputs2", "unknown key 'inputs2' (did you mean 'inputs'?)"),
    (BASE + "featureviz: {step: 10}\n", "featureviz.step", "did you mean 'steps'?"),
    (BASE + "    featureviz: {negativ: true}\n", "models[0].featureviz.negativ", "did you mean 'negative'?"),
    (BASE.replace("layers: [layer1]", "layers: [{name: layer1, unit: 3}]"), "models[0].layers[0].unit",
     "did you mean 'units'?"),
    (BASE.replace("layers: [layer1]", "layers: [{name: layer1, featureviz: {sed: 1}}]"),
     "models[0].layers[0].featureviz.sed", "did you mean 'seed'?"),
    (BASE + "    weights: {path: w.pth, trsut: true}\n", "models[0].weights.trsut", "did you mean 'trust'?"),
    (BASE + "    probe: {precison: int8}\n", "models[0].probe.precison", "did you mean 'precision'?"),
    (BASE.replace("  - path: images", "  - {path: images, exclud: [a.png]}"), "inputs[0].exclud",
     "did you mean 'exclude'?"),
    (BASE.replace("  - path: images", "  - {path: images, crops: {scale: [1]}}"), "inputs[0].crops.scale",
     "did you mean 'scales'?"),
    (BASE + "examples: {intervals: 3}\n", "examples.intervals", "'intervals' is now called 'bands'"),
    (BASE + "examples: {per_interval: 3}\n", "examples.per_interval", "'per_interval' is now called 'per_band'"),
    (BASE + "extract: {batchsize: 8}\n", "extract.batchsize", "did you mean 'batch_size'?"),
    (BASE + "attribution: {input: 8}\n", "attribution.input", "did you mean 'inputs'?"),
    (BASE + "probe: {size: 8}\n", "probe.size", "known keys: precision, max_megabytes"),
]


def write(tmp_path, text: str):
    (tmp_path / "images").mkdir(exist_ok=True)
    path = tmp_path / "site.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def error_of(tmp_path, text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    return info.value


def test_valid_config_gets_defaults(tmp_path):
    config = load_config(write(tmp_path, BASE))
    model = config.models[0]
    assert model.preprocessing.size == (224, 224)
    assert model.layers[0].pattern == "layer1" and model.layers[0].units is None
    assert config.examples.top == 9 and config.site.output_dir == tmp_path / "site"
    assert config.inputs[0].root == tmp_path / "images"


def test_unknown_key_suggests_the_closest(tmp_path):
    err = error_of(tmp_path, TYPO)
    assert str(err) == f"{tmp_path / 'site.yaml'}:2: site.titel: unknown key 'titel' (did you mean 'title'?)"
    assert err.exit_code == 2


def test_unknown_nested_key_names_its_path_and_line(tmp_path):
    err = error_of(tmp_path, NESTED_TYPO)
    assert err.line == 9 and err.key == "models[0].preprocesing" and "did you mean 'preprocessing'" in str(err)


def test_wrong_type(tmp_path):
    err = error_of(tmp_path, BASE + "examples:\n  top: many\n")
    assert err.line == 10 and err.key == "examples.top"
    assert "expected an integer, got a string ('many')" in str(err)


@pytest.mark.parametrize("text, key, message", UNKNOWN_KEYS)
def test_unknown_keys_are_named_in_every_section(tmp_path, text, key, message):
    err = error_of(tmp_path, text)
    assert err.key == key and message in str(err)


def test_missing_required_field(tmp_path):
    err = error_of(tmp_path, BASE.replace("    source: torchvision:resnet18\n", ""))
    assert "missing required key 'source'" in str(err) and err.key == "models[0]" and err.line == 6


def test_invalid_yaml_reports_line(tmp_path):
    err = error_of(tmp_path, BASE + "examples: [unclosed\n")
    assert "invalid YAML" in str(err) and err.line is not None and err.line >= 9


def test_duplicate_key(tmp_path):
    err = error_of(tmp_path, BASE + "seed: 1\nseed: 2\n")
    assert "duplicate key" in str(err) and err.line == 10


def test_missing_file():
    with pytest.raises(ConfigError, match="config file not found"):
        load_config("/nonexistent/site.yaml")


@pytest.mark.parametrize("snippet, message", [
    ("    units: lots\n", "cannot read unit selection 'lots'"),
    ("    units: '5-2'\n", "range '5-2' is empty"),
    ("    weights: missing.pth\n", "weights file 'missing.pth' not found"),
    ("    weights: {path: w.pth, remap: by-positon}\n", "did you mean 'by-position'?"),
    ("    weights: {file: x.pth}\n", "give either 'path' or 'package' and 'file'"),
    ("    weights: {package: surely_not_installed_pkg, file: x.pth}\n", "is not installed"),
    ("    preprocessing: {size: [1, 2, 3]}\n", "expected a positive integer or [height, width]"),
    ("    preprocessing: {mean: [0.5, 0.5]}\n", "expected 3 numbers, one per channel"),
    ("    preprocessing: {std: 0}\n", "every std must be above zero"),
    ("    labels: torchvision:imagenett\n", "did you mean 'torchvision:imagenet'?"),
    ("    labels: classes.txt\n", "labels file 'classes.txt' not found"),
])
def test_model_mistakes(tmp_path, snippet, message):
    (tmp_path / "w.pth").write_bytes(b"")
    err = error_of(tmp_path, BASE + snippet)
    assert message in str(err) and err.line == 9


@pytest.mark.parametrize("text, message", [
    (BASE.replace("torchvision:resnet18", "resnet18"), "cannot read model source 'resnet18'"),
    (BASE.replace("id: tiny", "id: my model"), "cannot be part of a url"),
    (BASE.replace("id: tiny", "id: search"), "'search' is a folder of the site itself"),
    (BASE.replace("layers: [layer1]", "layers: []"), "must list at least one layer"),
    (BASE.replace("  - path: images", "  - path: nowhere"), "does not exist"),
    (BASE.replace("  title: Test", "  url: example.com"), "is not an absolute http(s) url"),
    (BASE + "extract: {device: gpu}\n", "unknown device 'gpu'"),
    (BASE.replace("  - path: images", "  - path: images\n    crops: {scales: [0]}"), "positive integers"),
    (BASE.replace("  - path: images", "  - path: images\n    crops: {overlap: 1.5}"), "below 1"),
])
def test_other_mistakes(tmp_path, text, message):
    assert message in str(error_of(tmp_path, text))


def test_duplicate_model_ids(tmp_path):
    err = error_of(tmp_path, BASE + "  - id: tiny\n    source: torchvision:resnet18\n    layers: [fc]\n")
    assert "model id 'tiny' is used twice" in str(err) and err.line == 9


def test_units_and_layer_mappings(tmp_path):
    config = load_config(write(tmp_path, BASE.replace(
        "layers: [layer1]", "units: '0-3, 7'\n    layers:\n      - layer1\n      - {name: 'layer2.*', units: all}")))
    first, second = config.models[0].layers
    assert first.units == (0, 1, 2, 3, 7) and second.units is None and second.line == 11


def test_glob_input_path(tmp_path):
    config = load_config(write(tmp_path, BASE.replace("- path: images", "- path: 'images/*.jpg'")))
    assert config.inputs[0].root == tmp_path / "images" and config.inputs[0].include == ("*.jpg",)


def test_package_inputs(tmp_path):
    config = load_config(write(tmp_path, BASE.replace("- path: images", "- {package: skimage, path: data}")))
    assert (config.inputs[0].root / "chelsea.png").is_file()


def test_featureviz_settings_cascade_from_site_to_model_to_layer(tmp_path):
    config = load_config(write(tmp_path, BASE.replace("    layers: [layer1]\n", """\
    featureviz: {steps: 64}
    layers:
      - layer1
      - {name: layer2, featureviz: {units: '0-3', diversity: 4}}
      - {name: fc, featureviz: false}
featureviz: {units: 5, size: 96}
""")))
    model = config.models[0]
    assert (model.featureviz.first, model.featureviz.steps, model.featureviz.size) == (5, 64, 96)
    layer2 = model.layers[1].featureviz
    assert layer2.first is None and layer2.units == (0, 1, 2, 3) and layer2.diversity == 4 and layer2.steps == 64
    assert layer2.chosen((0, 2, 9)) == {0, 2}
    assert model.layers[2].featureviz.chosen((0, 1)) == set()
    assert model.layers[0].featureviz is None  # the model's settings apply


@pytest.mark.parametrize("snippet, message", [
    ("featureviz: {diversity: 1}", "a diverse set needs 2 or more images"),
    ("featureviz: {size: 8}", "too small"),
    ("featureviz: {units: -2}", "must be 0 or more"),
])
def test_featureviz_mistakes(tmp_path, snippet, message):
    error = error_of(tmp_path, BASE + snippet + "\n")
    assert message in str(error) and "featureviz" in str(error)


def test_a_layer_layout_is_one_of_three_and_a_typo_is_named(tmp_path):
    config = load_config(write(tmp_path, BASE.replace("layers: [layer1]",
                                                      "layers: [{name: layer1, layout: channels-last}]")))
    assert config.models[0].layers[0].layout == "channels-last"
    err = error_of(tmp_path, BASE.replace("layers: [layer1]", "layers: [{name: layer1, layout: channel-last}]"))
    assert err.key == "models[0].layers[0].layout" and "did you mean 'channels-last'?" in str(err)
