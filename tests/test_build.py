"""End to end: a tiny real model defined in the user's own code, built into a site and checked
the way a visitor would see it: pages, links, images, values, unit.json."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import textwrap
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
import torch
from PIL import Image

from galleria.cli import main

MODEL_CODE = '''
import torch
from torch import nn


def tiny():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
        nn.Conv2d(4, 6, 3, stride=2, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3),
    )
    with torch.no_grad():
        net[2].bias[5] = -100.0  # unit 5 of layer 2 never fires: a dead unit
    return net
'''

SITE = """\
site:
  title: Tiny <gallery>
  description: A test gallery
  output_dir: out
inputs:
  - path: photos
    crops: {scales: [1, 2]}
models:
  - id: tiny
    source: tinymodel_e2e:tiny
    preprocessing: {size: 32, mean: 0.5, std: 0.25}
    labels: [cat, dog, eel]
    layers: ['0', '2', '5', {name: '6', featureviz: false}]
examples: {top: 3, bottom: 2, tile_size: 48}
featureviz: {units: 'all', steps: 48, size: 32, batch: 8, diversity: 2, neuron: true}
extract: {batch_size: 4}
"""


def make_project(root: Path, photos: int = 4) -> Path:
    """The tiny model, its site.yaml, and ``photos`` photos beside one broken file, in ``root``."""
    (root / "tinymodel_e2e.py").write_text(MODEL_CODE)
    (root / "site.yaml").write_text(SITE)
    folder = root / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(photos):
        pixels = rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)
        pixels[:, : 128 * (i + 1) // photos] = (60 * i % 256, 255 - 60 * i % 256, 128)
        Image.fromarray(pixels).save(folder / f"photo{i}.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    return root


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = make_project(tmp_path_factory.mktemp("project"))
    notes = root / "content" / "tiny" / "2"
    notes.mkdir(parents=True)
    (notes / "1.md").write_text("---\nlabel: stripes <b>detector</b>\ntags: [texture]\n---\nFires on **stripes**.\n")
    return root


@pytest.fixture(scope="module")
def built(project):
    code = main(["build", "-q", "-f", str(project / "site.yaml")])
    assert code == 0
    return project / "out"


class Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("href", "src") and value is not None:
                self.links.append(value)

    def handle_data(self, data):
        self.text.append(data)


def parse(path: Path) -> Links:
    parser = Links()
    parser.feed(path.read_text())
    return parser


def test_every_page_exists(built):
    for page in ["index.html", "404.html", ".nojekyll", "tiny/index.html", "tiny/0/index.html",
                 "tiny/2/5/index.html", "tiny/6/2/index.html", "tiny/inputs/index.html",
                 "tiny/inputs/photo0/index.html", "tiny/inputs/photo3-s2-1-2/index.html",
                 "assets/galleria.css", "assets/galleria.js"]:
        assert (built / page).is_file(), page
    assert not (built / "sitemap.xml").exists()  # no public url configured


def test_every_link_and_image_resolves(built):
    pages = list(built.rglob("*.html"))
    assert len(pages) > 20
    for page in pages:
        if page.name == "404.html":
            continue
        for link in parse(page).links:
            url = urlparse(link)
            assert not url.scheme and not link.startswith("/"), f"{page}: absolute link {link}"
            if not url.path:
                continue
            target = (page.parent / url.path).resolve()
            if target.is_dir():
                target = target / "index.html"
            assert target.is_file(), f"{page.relative_to(built)} links to missing {link}"


def test_images_are_stored_once_and_tiles_show_each_examples_crop(project, built):
    """No image per example: each photo is stored once, and a tile is a window onto it whose
    placement says which part of the input the unit looked at."""
    from galleria.config import load_config
    from galleria.sources.images import discover

    stored = sorted((built / "images").iterdir())
    assert len(stored) == 4  # the four readable photos, whatever the number of units and examples
    for path in stored:
        with Image.open(path) as img:
            img.load()
    assert not list((built / "tiny").rglob("*.jpg"))  # no tiles, no thumbnails
    record = json.loads((built / "tiny" / "2" / "1" / "unit.json").read_text())
    page = (built / "tiny" / "2" / "1" / "index.html").read_text()
    items = {i.id: i for i in discover(load_config(project / "site.yaml").inputs).items}
    example = record["top"][0]
    tile = re.search(r'<li id="example-1"><a class="tile" href="([^"]+)"[^>]*>(?:<span class="win"[^>]*>)?'
                     r'<img src="([^"]+)" alt=""(?: style="([^"]*)")?>', page)
    assert tile.group(1) == f"../../inputs/{example['input']}/index.html"
    with Image.open(built / "tiny" / "2" / "1" / tile.group(2)) as img:
        stored_width = img.size[0]
    style = dict(part.split(":") for part in (tile.group(3) or "").split(";") if part)
    width = float(style.get("width", "100%")[:-1]) / 100
    left, top = (float(style.get(k, "0%")[:-1]) / 100 for k in ("left", "top"))
    item = items[example["input"]]
    with Image.open(item.source) as photo:
        scale = stored_width / photo.size[0]
    box = example["box"] or [0, 0, 32, 32]  # the input is 32 px: its crop maps onto the photo
    window_width = stored_width / width  # the stored image's pixels the tile shows across
    crop = item.box[2] - item.box[0]
    assert window_width == pytest.approx((box[2] - box[0]) / 32 * crop * scale, rel=1e-3)
    assert -left * window_width == pytest.approx((item.box[0] + box[0] / 32 * crop) * scale, abs=0.05)
    assert -top * window_width == pytest.approx((item.box[1] + box[1] / 32 * crop) * scale, abs=0.05)
    cols, rows, levels = example["heat"]
    assert f'data-h="{cols} {rows} {levels}"' in page  # the unit's map over the tile, drawn by the page's script


def test_unit_json_matches_a_direct_forward_pass(project, built):
    import sys

    sys.path.insert(0, str(project))
    from tinymodel_e2e import tiny

    net = tiny().eval()
    record = json.loads((built / "tiny" / "2" / "1" / "unit.json").read_text())
    assert record["model"] == "tiny" and record["layer"] == "2" and record["unit"] == 1
    assert record["label"] == "stripes <b>detector</b>" and record["tags"] == ["texture"]
    assert len(record["top"]) == 3 and len(record["bottom"]) == 2
    values = [e["value"] for e in record["top"]]
    assert values == sorted(values, reverse=True)
    page = (built / "tiny" / "2" / "1" / "index.html").read_text()
    for example in record["top"]:
        from galleria.config import load_config
        from galleria.sources.images import ImageLoader, discover

        config = load_config(project / "site.yaml")
        items = {i.id: i for i in discover(config.inputs).items}
        x, _ = ImageLoader(config.models[0].preprocessing).batch([items[example["input"]]])
        with torch.no_grad():
            fmap = net[:4](x)[0, 1]
        assert example["value"] == pytest.approx(fmap.max().item(), rel=1e-5)
        row, col = example["position"]
        assert fmap[row, col].item() == pytest.approx(fmap.max().item(), rel=1e-6)
    captions = re.findall(r'<p><b>([^<]+)</b> <span>(\w+)</span></p>', page)  # value, and the class predicted
    assert captions[0][0] == f"{record['top'][0]['value']:.3g}" and captions[0][1] in {"cat", "dog", "eel"}
    assert record["stats"]["count"] == len(items) * 16 * 16  # every input × every position
    assert sum(record["histogram"]["counts"]) == record["stats"]["count"]


def test_unit_json_is_the_unit_record_serialized(project, built):
    """unit.json holds the record the unit's page was drawn from, nothing more or less: made again
    from the stages' outputs (from the cache), each layer's records serialize to its files exactly."""
    from galleria.commands.build import gather
    from galleria.config import load_config
    from galleria.records import BuildReport, UnitRecord
    from galleria.site.assemble import LayerRecords

    config = load_config(project / "site.yaml")
    gathered = gather(config, BuildReport(), quiet=True)
    build = gathered.builds[0]
    checked = 0
    for index, layer in enumerate(build.layout.layers):
        for span in build.acts.spans(index):
            records = LayerRecords(build, index, gathered.notes, config.examples, span)
            for position in span:
                record = records.unit(position)
                assert isinstance(record, UnitRecord) and record.url == f"tiny/{layer.name}/{layer.units[position]}/"
                assert (built / record.url / "unit.json").read_text() == record.to_json()
                checked += 1
    assert checked == 4 + 6 + 6 + 3


def test_layers_read_in_runs_of_units_write_the_same_site(project, built, tmp_path, monkeypatch):
    """Wide layers are read a bounded run of units at a time (memory does not grow with a layer's
    width); runs of 2 units write every page and unit.json byte for byte as one run does."""
    from galleria.commands.build import gather, write_site
    from galleria.config import load_config
    from galleria.extract import run
    from galleria.records import BuildReport
    from galleria.site import writer

    config = load_config(project / "site.yaml")
    gathered = gather(config, BuildReport(), quiet=True)
    monkeypatch.setattr(run, "UNITS_PER_READ", 2)
    assert [len(s) for s in gathered.builds[0].acts.spans(1)] == [2, 2, 2]
    assert [len(s) for s in gathered.builds[0].acts.spans(1, writer.PAGES_PER_TASK)] == [2, 2, 2]
    write_site(config, gathered, tmp_path / "runs", "runs", BuildReport(), quiet=True)
    files = sorted(p.relative_to(built) for p in built.rglob("*") if p.is_file() and p.name != ".galleria")
    assert files == sorted(p.relative_to(tmp_path / "runs") for p in (tmp_path / "runs").rglob("*")
                           if p.is_file() and p.name != ".galleria")
    assert len(files) > 40
    for rel in files:
        assert (tmp_path / "runs" / rel).read_bytes() == (built / rel).read_bytes(), rel


def test_unit_page_shows_values_label_and_escapes(built):
    page = (built / "tiny" / "2" / "1" / "index.html").read_text()
    record = json.loads((built / "tiny" / "2" / "1" / "unit.json").read_text())
    assert "stripes &lt;b&gt;detector&lt;/b&gt;" in page
    assert "<strong>stripes</strong>" in page  # the note's Markdown is rendered
    assert f"{record['top'][0]['value']:.3g}" in page
    assert "Tiny &lt;gallery&gt;" in page
    links = parse(built / "tiny" / "2" / "1" / "index.html").links
    assert "../0/index.html" in links and "../2/index.html" in links and "unit.json" in links


def test_dead_unit_is_flagged(built):
    record = json.loads((built / "tiny" / "2" / "5" / "unit.json").read_text())
    assert record["stats"]["max"] <= 0 and "dead" in record["flags"]
    assert "dead" in (built / "tiny" / "2" / "index.html").read_text()


def test_layer_grid_lists_every_unit_with_label(built):
    links = parse(built / "tiny" / "2" / "index.html").links
    for unit in range(6):
        assert f"{unit}/index.html" in links
    assert "stripes &lt;b&gt;detector&lt;/b&gt;" in (built / "tiny" / "2" / "index.html").read_text()


def test_classifier_layer_has_no_spatial_position(built):
    record = json.loads((built / "tiny" / "6" / "0" / "unit.json").read_text())
    assert record["receptive_field"] is None and record["top"][0]["position"] is None
    assert record["label"] == "cat"  # output units of a classifier are named by their class
    assert json.loads((built / "tiny" / "2" / "0" / "unit.json").read_text())["label"] == ""


def test_pooled_features_show_their_exact_votes(project, built):
    import sys

    sys.path.insert(0, str(project))
    from tinymodel_e2e import tiny

    weight = tiny()[6].weight.detach()  # [classes, features]: the final layer the pooled units feed
    for unit in range(6):
        effects = json.loads((built / "tiny" / "5" / str(unit) / "unit.json").read_text())["effects"]
        column = weight[:, unit].tolist()
        expected_up = sorted(((v, c) for c, v in enumerate(column) if v > 0), reverse=True)
        assert [e["index"] for e in effects["up"]] == [c for _, c in expected_up]
        assert [e["value"] for e in effects["up"]] == pytest.approx([v for v, _ in expected_up])
        assert all(e["value"] < 0 for e in effects["down"]) and effects["method"].startswith("exact")
        assert [e["label"] for e in effects["up"]] == [["cat", "dog", "eel"][c] for _, c in expected_up]
    page = (built / "tiny" / "5" / "0" / "index.html").read_text()
    assert "pushes up" in page and "exact:" in page


def test_earlier_layers_show_gradient_effects_and_what_builds_them(built):
    """The numbers themselves are checked against finite differences in tests/extract."""
    for unit in range(6):
        record = json.loads((built / "tiny" / "2" / str(unit) / "unit.json").read_text())
        effects = record["effects"]
        assert effects["method"].startswith("activation × gradient of the predicted class's logit")
        for e in effects["up"] + effects["down"]:
            assert e["label"] == ["cat", "dog", "eel"][e["index"]]
        built_from = record["built_from"]
        assert built_from["layer"] == "0" and "strongest sampled inputs" in built_from["method"]
        for side, sign in (("up", 1), ("down", -1)):
            assert all(e["value"] * sign > 0 and 0 <= e["index"] < 4 for e in built_from[side])
    record = json.loads((built / "tiny" / "2" / "1" / "unit.json").read_text())
    page = built / "tiny" / "2" / "1" / "index.html"
    assert "built from" in page.read_text()
    links = parse(page).links
    for e in record["built_from"]["up"] + record["built_from"]["down"]:
        assert f"../../0/{e['index']}/index.html" in links
    assert json.loads((built / "tiny" / "0" / "0" / "unit.json").read_text())["built_from"] is None
    classifier = json.loads((built / "tiny" / "6" / "0" / "unit.json").read_text())
    assert classifier["effects"] is None and classifier["built_from"]["layer"] == "5"


def test_examples_across_the_whole_range(built):
    record = json.loads((built / "tiny" / "2" / "1" / "unit.json").read_text())
    bands = record["bands"]
    assert 1 <= len(bands) <= 4
    inputs = len(list((built / "tiny" / "inputs").iterdir())) - 1  # the listing page itself
    assert sum(b["count"] for b in bands) + record["inactive"] == inputs  # inactive: its peak is 0, in no band
    assert sum(b["fraction"] for b in bands) == pytest.approx(1.0)
    for band, lower in zip(bands, bands[1:]):
        assert band["lo"] == lower["hi"]
    page = (built / "tiny" / "2" / "1" / "index.html").read_text()
    shaded = re.findall(r'<path class="hist-band[^"]*" d="([^"]*)"', page)
    assert "Bands across the range" in page and sum(d.count("M") for d in shaded) == len(bands)
    for number, band in enumerate(bands, start=1):
        assert 1 <= len(band["examples"]) <= 3
        for rank, example in enumerate(band["examples"], start=1):
            assert band["lo"] <= example["value"] < band["hi"]
            assert f'<li id="band{number}-{rank}"><a class="tile" href="../../inputs/{example["input"]}/index.html"' \
                in page


def test_input_page_lists_responsive_units(built):
    page = built / "tiny" / "inputs" / "photo0" / "index.html"
    links = parse(page).links
    assert any(link.startswith("../../2/") for link in links)
    assert "cat" in page.read_text() or "dog" in page.read_text() or "eel" in page.read_text()


def test_rebuild_with_nothing_changed_is_skipped(project, built, capsys):
    assert main(["build", "-f", str(project / "site.yaml")]) == 0
    assert "is up to date" in capsys.readouterr().out


def test_note_edit_rebuilds_pages_from_the_cache(project, built, capsys):
    note = project / "content" / "tiny" / "2" / "1.md"
    note.write_text(note.read_text().replace("Fires on", "Often fires on"))
    assert main(["build", "-f", str(project / "site.yaml")]) == 0
    out = capsys.readouterr()
    assert "0 images drawn" in out.out and "(1 skipped)" in out.out
    assert "skipped input" in out.err and "broken.png" in out.err
    assert "Often fires on" in (built / "tiny" / "2" / "1" / "index.html").read_text()


def test_strict_fails_on_warnings_and_keeps_the_old_site(project, built, capsys):
    before = (built / "index.html").read_text()
    assert main(["build", "--strict", "-q", "-f", str(project / "site.yaml")]) == 1
    assert "--strict" in capsys.readouterr().err
    assert (built / "index.html").read_text() == before


def test_over_github_pages_limits_warns_and_strict_keeps_the_old_site(project, built, capsys, monkeypatch):
    """Measured on the finished site: over a limit (set low here) the build warns naming the largest
    parts; under --strict it fails and the site already published stays."""
    from galleria.site import footprint

    fits = project / "fits.yaml"
    fits.write_text(SITE.replace("output_dir: out", "output_dir: fits").replace(
        "path: photos", "path: photos\n    include: ['photo*.png']"))
    monkeypatch.setattr(footprint, "SITE_LIMIT", 50_000)
    monkeypatch.setattr(footprint, "FILE_LIMIT", 20_000)
    assert main(["build", "-f", str(fits)]) == 0
    out = capsys.readouterr()
    assert re.search(r"over GitHub Pages' 1 GB per site \(largest parts: [^)]*tiny/", out.err)
    assert "over GitHub Pages' 100 MB per file" in out.err
    assert "GitHub Pages publishes up to 1 GB" in out.out
    before = (project / "fits" / "index.html").read_text()
    (project / "content" / "tiny" / "2" / "2.md").write_text("A second note, so that the site is built again.\n")
    try:
        assert main(["build", "--strict", "-q", "-f", str(fits)]) == 1
    finally:
        (project / "content" / "tiny" / "2" / "2.md").unlink()
    err = capsys.readouterr().err
    assert "--strict: the site is" in err and "Traceback" not in err
    assert (project / "fits" / "index.html").read_text() == before
    assert not [p for p in project.iterdir() if p.name.startswith(".fits.tmp")]


def test_bad_layer_names_the_closest(project, built, capsys):
    bad = project / "bad.yaml"
    bad.write_text(SITE.replace("layers: ['0', '2', '5', {name: '6', featureviz: false}]", "layers: ['0', '22']"))
    assert main(["build", "-f", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml:13: models.tiny.layers" in err and "has no layer '22'" in err and "closest: 2" in err
    assert "Traceback" not in err


def test_a_model_module_written_as_its_file_is_told_how_python_names_it(project, capsys):
    bad = project / "bad.yaml"
    bad.write_text(SITE.replace("source: tinymodel_e2e:tiny", "source: tinymodel_e2e.py:tiny"))
    assert main(["build", "-f", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "cannot import 'tinymodel_e2e.py'" in err
    assert "(name the module as Python imports it: 'tinymodel_e2e:tiny')" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_refuses_to_replace_a_folder_it_did_not_create(project, capsys):
    foreign = project / "mine"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    assert main(["build", "--clean", "-q", "-f", str(project / "site.yaml"), "-d", str(foreign)]) == 1
    assert "not created by galleria" in capsys.readouterr().err
    assert (foreign / "thesis.tex").read_text() == "precious"


def test_public_url_adds_sitemap_and_canonical(project, tmp_path):
    config = project / "public.yaml"
    config.write_text(SITE.replace("  output_dir: out", "  output_dir: public\n  url: https://me.github.io/g"))
    assert main(["build", "-q", "-f", str(config)]) == 0
    sitemap = (project / "public" / "sitemap.xml").read_text()
    assert "<loc>https://me.github.io/g/tiny/2/1/</loc>" in sitemap
    page = (project / "public" / "tiny" / "2" / "1" / "index.html").read_text()
    assert 'rel="canonical" href="https://me.github.io/g/tiny/2/1/"' in page
    # link previews: each unit, layer and model page has its own 1200 x 630 card, by absolute url
    for folder in ("tiny/2/1", "tiny/2", "tiny"):
        html = (project / "public" / folder / "index.html").read_text()
        assert f'<meta property="og:image" content="https://me.github.io/g/{folder}/card.jpg">' in html
        assert '<meta name="twitter:card" content="summary_large_image">' in html
        with Image.open(project / "public" / folder / "card.jpg") as card:
            assert card.size == (1200, 630)
    assert "stripes &lt;b&gt;detector&lt;/b&gt; · Unit 1 of 2 in tiny" in page  # the description names the label
    # a unit with no note and no feature visualization previews with its layer's card
    plain = (project / "public" / "tiny" / "6" / "0" / "index.html").read_text()
    assert '<meta property="og:image" content="https://me.github.io/g/tiny/6/card.jpg">' in plain
    assert not list((project / "public" / "tiny" / "6" / "0").glob("card.*"))


def test_site_url_from_the_command_line(project, capsys):
    out = project / "from-cli"
    assert main(["build", "-q", "-f", str(project / "site.yaml"), "-d", str(out),
                 "--site-url", "https://ci.example.org/g"]) == 0
    page = (out / "tiny" / "2" / "1" / "index.html").read_text()
    assert 'rel="canonical" href="https://ci.example.org/g/tiny/2/1/"' in page and (out / "tiny" / "2" / "1" / "card.jpg").is_file()
    assert main(["build", "-q", "-f", str(project / "site.yaml"), "-d", str(out), "--site-url", "ci.example.org"]) == 2
    assert "--site-url ci.example.org: not an absolute http(s) url" in capsys.readouterr().err


def test_without_a_public_url_no_preview_images_and_one_notice(built, project, capsys):
    unit = (built / "tiny" / "2" / "1" / "index.html").read_text()
    assert "og:image" not in unit and '<meta name="twitter:card" content="summary">' in unit
    assert not list(built.rglob("card.*"))
    (project / "content" / "tiny" / "index.md").write_text("A tiny model.\n")  # so that the build runs
    try:
        assert main(["build", "-f", str(project / "site.yaml")]) == 0
    finally:
        (project / "content" / "tiny" / "index.md").unlink()
    out = capsys.readouterr().out
    assert out.count("no site.url") == 1 and "search index" in out


def test_layers_command(project, capsys):
    assert main(["layers", "-f", str(project / "site.yaml"), "tiny"]) == 0
    out = capsys.readouterr().out
    assert "6×16×16" in out and "Conv2d" in out and "Linear" in out


def test_weights_file_shape_mismatch(project, capsys):
    torch.save({"0.weight": torch.zeros(2, 2)}, project / "bad.pth")
    config = project / "weights.yaml"
    config.write_text(SITE.replace("    labels:", "    weights: bad.pth\n    labels:"))
    assert main(["build", "-q", "-f", str(config)]) == 1
    err = capsys.readouterr().err
    assert "bad.pth: shape mismatch" in err and "Traceback" not in err


def test_untrusted_pickle_is_refused_unless_trusted(project, capsys):
    torch.save(torch.nn.Linear(2, 2), project / "whole.pth")  # a pickled module: loading runs its class code
    config = project / "evil.yaml"
    config.write_text(SITE.replace("    labels:", "    weights: whole.pth\n    labels:"))
    assert main(["build", "-q", "-f", str(config)]) == 1
    assert "refusing to unpickle" in capsys.readouterr().err
    config.write_text(SITE.replace("    labels:", "    weights: {path: whole.pth, trust: true}\n    labels:"))
    assert main(["build", "-q", "-f", str(config)]) == 1
    err = capsys.readouterr().err
    assert "keys do not match the model" in err and "refusing" not in err


def test_empty_input_set(project, capsys):
    (project / "empty").mkdir(exist_ok=True)
    config = project / "empty.yaml"
    config.write_text(SITE.replace("  - path: photos", "  - path: empty"))
    assert main(["build", "-q", "-f", str(config)]) == 1
    assert "no usable input images" in capsys.readouterr().err


def test_no_half_written_output_after_failure(project):
    config = project / "fail.yaml"
    config.write_text(textwrap.dedent(SITE).replace("output_dir: out", "output_dir: never")
                      .replace("  - path: photos", "  - path: empty"))
    (project / "empty").mkdir(exist_ok=True)
    assert main(["build", "-q", "-f", str(config)]) == 1
    assert not (project / "never").exists()
    assert not [p for p in project.iterdir() if p.name.startswith(".never")]


def test_feature_visualizations_on_unit_pages_and_grids(built):
    record = json.loads((built / "tiny" / "2" / "1" / "unit.json").read_text())
    viz = record["featureviz"]
    assert viz["channel"]["file"] == "featureviz.png" and viz["negative"]["file"] == "featureviz-negative.png"
    assert [d["file"] for d in viz["diverse"]] == ["featureviz-diverse-1.png", "featureviz-diverse-2.png"]
    assert viz["channel"]["mean"] > viz["negative"]["mean"] and viz["neuron"]["file"] == "featureviz-neuron.png"
    for name in ["featureviz.png", "featureviz-negative.png", "featureviz-diverse-1.png"]:
        with Image.open(built / "tiny" / "2" / "1" / name) as img:
            assert img.size == (32, 32)
    page = (built / "tiny" / "2" / "1" / "index.html").read_text()
    assert "Feature visualization" in page and 'src="featureviz.png"' in page
    assert "data-viz-toggle" in (built / "tiny" / "2" / "index.html").read_text()
    dead = json.loads((built / "tiny" / "2" / "5" / "unit.json").read_text())["featureviz"]
    assert dead["never_active"] and dead["channel"]  # marked, not an error
    assert "never activated on the inputs" in (built / "tiny" / "2" / "5" / "index.html").read_text()
    # turned off for the classifier layer, without touching the rest of its pages
    assert json.loads((built / "tiny" / "6" / "0" / "unit.json").read_text())["featureviz"] is None
    assert not (built / "tiny" / "6" / "0" / "featureviz.png").exists()
    assert "data-viz-toggle" not in (built / "tiny" / "6" / "index.html").read_text()


def test_a_layer_page_of_all_its_feature_visualizations(built):
    page = built / "tiny" / "2" / "featureviz" / "index.html"
    links = parse(page).links
    for unit in range(6):
        assert f"../{unit}/index.html" in links and f"../{unit}/featureviz.png" in links
    assert 'href="featureviz/index.html"' in (built / "tiny" / "2" / "index.html").read_text()
    assert not (built / "tiny" / "6" / "featureviz").exists()


def _script_payload(path: Path):
    """The JSON data of a search index script: ``galleriaSearch.meta({...})`` or ``.shard(N, [...])``."""
    text = path.read_text(encoding="utf-8")
    arguments = text[text.index("(") + 1:text.rindex(")")]
    return json.loads(arguments.split(",", 1)[1] if text.startswith("galleriaSearch.shard") else arguments)


def test_search_index_rows_open_existing_pages(built):
    meta = _script_payload(built / "search" / "index.js")
    rows = [row for name in meta["shards"] for row in _script_payload(built / "search" / name)]
    assert len(rows) == meta["units"] == sum(1 for _ in built.glob("tiny/*/*/unit.json"))
    for layer_index, unit, label, words, flags in rows:
        assert (built / meta["layers"][layer_index][2] / str(unit) / "index.html").is_file()
    labelled = next(row for row in rows if row[2])
    assert labelled[2] == "stripes <b>detector</b>" and "texture" in labelled[3] and "stripes" in labelled[3]
    dead = next(row for row in rows if meta["layers"][row[0]][1] == "2" and row[1] == 5)
    assert meta["flags"][dead[4].bit_length() - 1] == "dead"
    assert all("</" not in path.read_text() for path in (built / "search").glob("*.js"))  # cannot end a script
    assert (built / "search" / "index.html").is_file()


def test_a_killed_builds_unfinished_site_is_removed_by_the_next(project, built):
    """A build killed while writing pages (out of memory, say) leaves its temporary site beside the
    output; the next build removes it, and leaves alone one whose process still runs."""
    from galleria.commands.build import _owner

    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()  # its pid now belongs to no process
    dead = project / f".swept.tmp-{_owner().rpartition('.')[0]}.{ended.pid}-abc123"
    alive = project / f".swept.tmp-{_owner()}-def456"
    for folder in (dead, alive):
        (folder / "tiny").mkdir(parents=True)
        (folder / "tiny" / "index.html").write_text("half a site")
    assert main(["build", "-q", "-f", str(project / "site.yaml"), "-d", str(project / "swept")]) == 0
    for _ in range(100):  # removed by a detached process
        if not dead.exists():
            break
        time.sleep(0.1)
    assert list(project.glob(".swept.tmp-*")) == [alive]  # and the build's own became the site
    shutil.rmtree(alive)


def test_a_model_without_gradients_is_built_without_the_views_that_need_them(tmp_path, capsys):
    """An operator with no derivative (torch.special.zeta) after a chosen layer: receptive fields,
    attribution and feature visualization cannot be measured, so the build says so for the model,
    one line each, and writes every page without them."""
    (tmp_path / "zetamodel.py").write_text(
        "import torch\nfrom torch import nn\n\n\n"
        "class Zeta(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.conv = nn.Conv2d(3, 4, 3, padding=1)\n"
        "        self.out = nn.Identity()\n\n"
        "    def forward(self, x):\n"
        "        return self.out(torch.special.zeta(self.conv(x).abs() + 2, torch.tensor(2.0)))\n\n\n"
        "def zeta():\n    torch.manual_seed(0)\n    return Zeta()\n")
    (tmp_path / "photos").mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(tmp_path / "photos" / f"p{i}.png")
    (tmp_path / "site.yaml").write_text(
        "site: {title: zeta}\ninputs: [{path: photos}]\n"
        "models:\n  - {id: z, source: 'zetamodel:zeta', preprocessing: {size: 32}, layers: [conv, out]}\n"
        "featureviz: {units: 2, steps: 8, size: 32}\nattribution: {inputs: 3}\n")
    assert main(["build", "-f", str(tmp_path / "site.yaml")]) == 0
    err = capsys.readouterr().err
    said = [line for line in err.splitlines() if line.startswith("warning: model 'z': no ")]
    assert [view in " ".join(said) for view in ("receptive fields", "class effects", "feature visualizations")] \
        == [True, True, True]
    assert all("the derivative for 'zeta' is not implemented" in line for line in said) and "Traceback" not in err
    assert (tmp_path / "site" / "z" / "out" / "1" / "index.html").is_file()
