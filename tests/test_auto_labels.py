"""Automatic labels in a built site: in unit.json, on the unit page and the layer's grid, in search;
a person's label wins. The model has a planted unit that fires on digits."""
from __future__ import annotations

import json
import re

import pytest
import torch

import galleria

TEXTS = [f"total = {n} + count * {n * 7}\nname = 'item{n}'\n" * 4 for n in range(40)]


class Planted(torch.nn.Module):
    """Characters to 3 features: unit 0 is 1 on a digit and 0 elsewhere; units 1 and 2 are random."""

    def __init__(self, vocab: list[str]):
        super().__init__()
        self.embed = torch.nn.Embedding(len(vocab), 3)
        with torch.no_grad():
            self.embed.weight[:, 0] = torch.tensor([1.0 if c.isdigit() else 0.0 for c in vocab])
        self.features = torch.nn.Identity()

    def forward(self, ids):
        return self.features(self.embed(ids))


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    folder = tmp_path_factory.mktemp("auto-labels")
    vocab = sorted(set("".join(TEXTS))) + ["?"]
    (folder / "vocab.json").write_text(json.dumps({"tokens": vocab, "unknown": "?"}))
    (folder / "notes" / "model" / "features").mkdir(parents=True)
    (folder / "notes" / "model" / "features" / "1.md").write_text("---\nlabel: my own name\n---\nA person's note.\n")
    torch.manual_seed(0)
    gallery = galleria.Gallery(Planted(vocab), TEXTS, ["features"], tokenizer=f"chars:{folder / 'vocab.json'}",
                               window=64, overlap=16, cache=folder / "cache", notes=folder / "notes", quiet=True,
                               probe=False)
    return gallery.save(folder / "site")


def test_the_digit_unit_is_labelled_digits_in_its_record_page_grid_and_search(site):
    record = json.loads((site / "model" / "features" / "0" / "unit.json").read_text())
    best = record["auto_labels"][0]
    assert best["label"] == "a digit" and best["score"] > 0.95 and best["method"].startswith("detection")
    assert record["label"] == ""  # the automatic label is not a person's
    page = (site / "model" / "features" / "0" / "index.html").read_text()
    assert re.search(r'<span class="label auto-label"[^>]*>a digit <span class="auto-tag">auto 1', page)
    assert "automatic label" in page and "0.5 is chance" in page
    grid = (site / "model" / "features" / "index.html").read_text()
    assert 'data-score="' in grid and '<span class="auto-label"' in grid and "a digit" in grid
    assert 'value="-score"' in grid  # the grid sorts by it
    assert any("a digit" in path.read_text() for path in (site / "search").iterdir())


def test_a_persons_label_wins_over_the_automatic_one(site):
    page = (site / "model" / "features" / "1" / "index.html").read_text()
    assert '<span class="label">my own name</span>' in page and "auto-tag" not in page


def test_an_early_image_unit_that_fires_on_red_is_labelled_by_the_colour_of_its_patches(tmp_path):
    """A convolution whose unit 0 is red less green and blue: its label says what its peaks look like."""
    import numpy as np

    rng = np.random.default_rng(0)
    palette = {"red": (0.85, 0.1, 0.1), "green": (0.1, 0.7, 0.2), "blue": (0.1, 0.2, 0.8), "grey": (0.5, 0.5, 0.5),
               "yellow": (0.9, 0.85, 0.1)}
    images = {}
    for i in range(60):
        name = list(palette)[i % len(palette)]
        image = np.clip(np.array(palette[name]) + rng.normal(0, 0.05, (32, 32, 3)), 0, 1)
        image[rng.integers(0, 16):, rng.integers(0, 16):] = 0.5  # a grey corner, so that patches differ
        images[f"{name}-{i}"] = image
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.ReLU())
    with torch.no_grad():
        model[0].weight.zero_()
        model[0].bias.zero_()
        model[0].weight[0, 0] = 1 / 9
        model[0].weight[0, 1:] = -0.5 / 9
        model[0].weight[1] = torch.randn(3, 3, 3)
    gallery = galleria.Gallery(model, images, ["1"], preprocessing={"size": 32}, cache=tmp_path / "cache", quiet=True,
                               probe=False, attribution={"inputs": 0})
    labels = gallery.unit("1", 0).auto_labels
    assert labels[0].label == "mostly red" and labels[0].score > 0.9
    assert labels[0].method.startswith("detection: how well the look of the patch")


PLANTED_CONV = '''
import torch


def planted():
    """Unit 0 of the pooled features is the image's redness; units 1 to 3 are random."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 4, 3)
    with torch.no_grad():
        conv.bias.zero_()
        conv.weight[0].zero_()
        conv.weight[0, 0] = 1 / 9
        conv.weight[0, 1:] = -0.5 / 9
    return torch.nn.Sequential(conv, torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
'''


def test_an_image_sets_own_classes_in_folders_label_the_units_that_follow_them(tmp_path):
    """labels: folders: a unit that fires on red images is labelled by their folder's name."""
    import numpy as np
    from PIL import Image

    from galleria.commands.build import build

    rng = np.random.default_rng(0)
    colours = {"red": (0.85, 0.1, 0.1), "sea": (0.1, 0.3, 0.8), "grass": (0.2, 0.7, 0.2)}
    for name, colour in colours.items():
        (tmp_path / "photos" / name).mkdir(parents=True)
        for i in range(12):
            pixels = np.clip(np.array(colour) + rng.normal(0, 0.1, (32, 32, 3)), 0, 1)
            Image.fromarray((pixels * 255).astype(np.uint8)).save(tmp_path / "photos" / name / f"{i}.png")
    (tmp_path / "redness_model.py").write_text(PLANTED_CONV)  # a module name no other test uses
    (tmp_path / "site.yaml").write_text(
        "site: {title: folders}\n"
        "inputs: [{path: photos, labels: folders}]\n"
        "models:\n  - {id: planted, source: 'redness_model:planted', preprocessing: {size: 32}, layers: ['3'], probe: false}\n"
        "attribution: {inputs: 0}\nfeatureviz: false\n")
    report = build(tmp_path / "site.yaml", quiet=True)
    record = json.loads((tmp_path / "site" / "planted" / "3" / "0" / "unit.json").read_text())
    best = record["auto_labels"][0]
    assert best["label"] == "red" and best["score"] > 0.95 and "their folder" in best["method"]
    assert report.labelled >= 1
