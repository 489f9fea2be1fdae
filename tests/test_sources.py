"""Model sources and weights as a user would name them in site.yaml, each built into a site."""
from __future__ import annotations

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
    assert "fails on a 3×32×32 input" in err and "preprocessing.size" in err
