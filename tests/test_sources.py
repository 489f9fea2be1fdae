"""Model sources and weights as a user would name them in site.yaml, each built into a site."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from galleria.cli import main

SITE = """\
site: {{title: Sources, output_dir: out}}
inputs: [{{path: photos}}]
models:
  - id: m
    source: {source}
{extra}    preprocessing: {{size: {size}}}
    layers: {layers}
examples: {{top: 2, bottom: 1, tile_size: 32}}
"""


@pytest.fixture
def project(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(1)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(photos / f"p{i}.png")
    return tmp_path


def build(project, source, layers, extra="", size=32):
    (project / "site.yaml").write_text(SITE.format(source=source, layers=layers, extra=extra, size=size))
    return main(["build", "-q", "-f", str(project / "site.yaml")])


def unit(project, layer, index):
    return json.loads((project / "out" / "m" / layer / str(index) / "unit.json").read_text())


def test_torchvision_with_safetensors_weights_and_prefix_remap(project, capsys):
    from safetensors.torch import save_file

    torch.manual_seed(0)
    reference = __import__("torchvision").models.get_model("resnet18", weights=None, num_classes=4).eval()
    # a checkpoint saved from a DataParallel wrapper: every key starts with "module."
    save_file({f"module.{k}": v.contiguous() for k, v in reference.state_dict().items()},
              str(project / "r18.safetensors"))
    extra = ("    kwargs: {num_classes: 4}\n"
             "    weights: {path: r18.safetensors, remap: {'module.': ''}}\n"
             "    labels: [a, b, c, d]\n")
    assert build(project, "torchvision:resnet18", "[layer1, fc]", extra, size=64) == 0, capsys.readouterr().err
    fc = unit(project, "fc", 2)
    assert fc["label"] == "c"
    from galleria.config import load_config
    from galleria.sources.images import ImageLoader, discover

    config = load_config(project / "site.yaml")
    items = {i.id: i for i in discover(config.inputs).items}
    x, _ = ImageLoader(config.models[0].preprocessing).batch([items[fc["top"][0]["input"]]])
    with torch.no_grad():
        assert fc["top"][0]["value"] == pytest.approx(reference(x)[0, 2].item(), rel=1e-4)


def test_in_place_activations_do_not_rewrite_captured_outputs(project, tmp_path):
    (project / "inplace_model.py").write_text(
        "import torch\nfrom torch import nn\n\n"
        "def build():\n"
        "    torch.manual_seed(0)\n"
        "    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(inplace=True), nn.Conv2d(4, 2, 3))\n")
    assert build(project, "inplace_model:build", "['0', '1']") == 0
    conv, relu = unit(project, "0", 0), unit(project, "1", 0)
    assert conv["stats"]["min"] < 0 <= relu["stats"]["min"]  # the conv's own values, before the ReLU
    assert conv["stats"]["max"] == pytest.approx(relu["stats"]["max"])


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch deprecates TorchScript; users still have .pt files
def test_torchscript_chain(project):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 3)).eval()
    torch.jit.save(torch.jit.script(net), str(project / "net.pt"))
    assert build(project, "torchscript:net.pt", "['0', '2']") == 0
    assert unit(project, "2", 1)["stats"]["count"] == 3 * 28 * 28
    assert "Conv2d" in (project / "out" / "m" / "index.html").read_text()


class Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 2, 1)
        self.b = nn.Conv2d(3, 2, 1)

    def forward(self, x):
        return self.a(x) + self.b(x)  # not a chain: a naive child-by-child run would be wrong


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_torchscript_that_is_not_a_chain_is_refused(project, capsys):
    torch.jit.save(torch.jit.script(Branchy().eval()), str(project / "branchy.pt"))
    assert build(project, "torchscript:branchy.pt", "[a]") == 1
    assert "not a plain chain" in capsys.readouterr().err


def test_unknown_timm_model_suggests_a_name(project, capsys):
    assert build(project, "timm:efficientnet_lite", "[conv_stem]") == 1
    assert "timm has no model 'efficientnet_lite'" in capsys.readouterr().err


def test_wrong_input_size_is_explained(project, capsys):
    (project / "fixed.py").write_text("from torch import nn\n\ndef build():\n"
                                      "    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 2))\n")
    assert build(project, "fixed:build", "['1']", size=32) == 1
    err = capsys.readouterr().err
    assert "layer '1' during a dry run reading its layers' shapes" in err and "3×32×32 inputs" in err and "preprocessing.size" in err


FRAGILE = '''
import torch
from torch import nn


class Fragile(nn.Module):
    """Fails the way a user's own code does, at the stage named in its constructor."""

    def __init__(self, stage):
        super().__init__()
        self.stage = stage

    def forward(self, x):
        if self.stage == "extraction" and x.shape[0] > 2:  # the probe runs 2 inputs, extraction 3
            raise RuntimeError("batch too large for my custom kernel")
        if self.stage == "gradients" and torch.is_grad_enabled():
            raise ValueError("this block was never meant to be differentiated")
        if self.stage == "single" and torch.is_grad_enabled() and x.shape[0] == 1:  # one image or input at a time
            raise ValueError("no gradients for single images")
        return x


def build(stage):
    return nn.Sequential(nn.Conv2d(3, 4, 3), Fragile(stage), nn.ReLU())
'''


@pytest.mark.parametrize("stage, extra, expected", [
    ("extraction", "", "during extraction: RuntimeError: batch too large for my custom kernel"),
    ("gradients", "", "during receptive field measurement: ValueError: this block was never meant to be differentiated"),
    ("single", "", "during gradient attribution: ValueError: no gradients for single images"),
    ("single", "featureviz: {units: 1, steps: 2, size: 32, negative: false}\nattribution: {inputs: 0}\n",
     "during feature visualization: ValueError: no gradients for single images"),
])
def test_an_exception_inside_the_users_model_names_model_layer_and_stage(project, capsys, stage, extra, expected):
    (project / "fragile.py").write_text(FRAGILE)
    extra_model = f"    kwargs: {{stage: {stage}}}\n"
    (project / "site.yaml").write_text(SITE.format(source="fragile:build", layers="['2']", extra=extra_model, size=32)
                                       + "extract: {batch_size: 3}\n" + extra)
    assert main(["build", "-q", "-f", str(project / "site.yaml")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error" not in err
    assert f"model 'm' raised in layer '1' {expected}" in err
    assert not (project / "out").exists()


def test_images_that_fail_to_decode_only_when_read_are_skipped_and_counted(project, capsys):
    buffer = io.BytesIO()
    Image.open(project / "photos" / "p0.png").save(buffer, format="JPEG")
    (project / "photos" / "truncated.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    (project / "photos" / "empty.jpg").write_bytes(b"")
    (project / "site.yaml").write_text(SITE.format(source="torchvision:resnet18", layers="[layer1]", extra="", size=32)
                                       + "featureviz: false\n")
    for attempt in ("fresh", "from the cache"):
        assert main(["build", "-f", str(project / "site.yaml")]) == 0
        captured = capsys.readouterr()
        assert "truncated.jpg: image file is truncated" in captured.err, attempt
        assert "empty.jpg" in captured.err and "3 inputs (2 skipped)" in captured.out
        inputs = project / "out" / "m" / "inputs"
        assert sorted(p.name for p in inputs.iterdir() if p.is_dir()) == ["p0", "p1", "p2"]
        assert "truncated" not in (inputs / "index.html").read_text()
        tops = [unit(project, "layer1", u)["top"] for u in range(64)]
        assert all(e["input"] != "truncated" for top in tops for e in top)
        with open(project / "site.yaml", "a") as config:  # past the up-to-date check: the next build reads the cache
            config.write("# again\n")


def test_a_python_text_set_is_fingerprinted_by_its_module_not_the_folder(tmp_path, capsys):
    (tmp_path / "mytext.py").write_text("DOCS = ['def f(x):\\n    return x + 1\\n' * 40]\n")
    vocab = sorted(set("def f(x):\n    return x + 1\n") | {"?"})
    (tmp_path / "vocab.json").write_text(json.dumps({"tokens": vocab, "unknown": "?"}))
    (tmp_path / "charmodel.py").write_text(
        "import torch\nfrom torch import nn\n\nclass M(nn.Module):\n    def __init__(self):\n"
        f"        super().__init__()\n        self.embed = nn.Embedding({len(vocab)}, 8)\n"
        "        self.lstm = nn.LSTM(8, 8, batch_first=True)\n"
        "    def forward(self, ids):\n        return self.lstm(self.embed(ids))[0]\n")
    (tmp_path / "site.yaml").write_text(
        "site: {title: T, output_dir: out}\ninputs: [{id: t, python: 'mytext:DOCS', window: 32, overlap: 0}]\n"
        "models: [{id: c, source: 'charmodel:M', tokenizer: 'chars:vocab.json', layers: [lstm.hidden.0]}]\n")
    assert main(["build", "-q", "-f", str(tmp_path / "site.yaml")]) == 0
    (tmp_path / "build.log").write_text("a log the user keeps beside site.yaml\n")
    capsys.readouterr()
    assert main(["build", "-f", str(tmp_path / "site.yaml")]) == 0
    assert "is up to date" in capsys.readouterr().out
    (tmp_path / "mytext.py").write_text("DOCS = ['def f(x):\\n    return x\\n' * 40]\n")
    assert main(["build", "-f", str(tmp_path / "site.yaml")]) == 0
    assert "is up to date" not in capsys.readouterr().out
