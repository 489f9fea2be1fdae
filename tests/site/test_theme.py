"""Page builders and the default theme: each kind of page, built from records made by hand and
rendered, shows what the records say, escapes user text, links only relatively, and can be
overridden from a site's custom theme dir."""
from __future__ import annotations

import json
import re
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from markupsafe import Markup

from galleria.config import SiteConfig
from galleria.errors import BuildError
from galleria.extract.health import Duplicate, LayerHealth
from galleria.extract.layout import Layout
from galleria.records import (BandRecord, EffectRecord, EffectsRecord, EffectsTable, ExampleRecord, FeatureVizRecord, Heat,
                              Histogram, ImageShown, InputRecord, LayerRecord, ModelRecord, Response, TextShown,
                              UnitEntry, UnitRecord, UnitStats, VizRecord)
from galleria.site import theme as theme_mod
from galleria.site import views as V
from galleria.site.content import Note
from galleria.site.theme import Theme, builtin_theme_dir
from galleria.sources.text import TextCorpus
from galleria.visualize.receptive import ReceptiveField

EVIL = "<script>alert(1)</script>"
EVIL_ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
SITE = SiteConfig("Gallery", "Activation galleries of small models.", "https://example.org/gallery/", Path("out"),
                  None, Path("content"), Path(".cache"))
KINDS = ["index", "model", "layer", "unit", "text-unit", "featureviz", "health", "input", "inputs", "search", "404"]


# --------------------------------------------------------------------------- records made by hand

STATS = UnitStats(count=123456, mean=0.423, std=1.02, min=-2.0, max=7.91, frac_active=0.123, nonfinite=2,
                  histogram=Histogram(0.5, -4, (1, 3, 10, 200, 900, 50, 20, 5, 2, 0, 1, 1)))
GRID_STATS = (STATS.max, STATS.mean, STATS.frac_active)
CONV = Layout("channels-first", (8, 4, 4))
FIELD = ReceptiveField((5, 5), (4, 4), (-2, -2), (16, 16))
CAT = InputRecord(0, "cat-s1-0-0", "cat.png · scale 1 " + EVIL, "images/cat-0123abcd.jpg", (0.0, 0.0, 32.0, 32.0),
                  (64, 48), None, (("tabby " + EVIL, 0.81), ("lynx", 0.05)))
DOG = InputRecord(1, "dog", "dog.png", "images/dog-4567abcd.jpg", (8.0, 0.0, 40.0, 32.0), (48, 32), None, ())
NOTE = Note(EVIL, ("curve",), Markup("<p>Looks at <strong>edges</strong>.</p>"), "Looks at **edges**.", "u.md")


def _example(value: float, input_id: str, position) -> ExampleRecord:
    heat = Heat(2, 2, "Az_9", (0.0, 0.0, 1.25, 1.25))
    return ExampleRecord(value, input_id, position, None, ImageShown((0, 0, 8, 8), heat, (4, 4, 8, 8)))


def _layer(name: str, layout: Layout, units: tuple[int, ...], **kw) -> LayerRecord:
    return LayerRecord(**{"model": "lenet", "name": name, "url": f"lenet/{name}/", "module": "Conv2d",
                          "layout": layout, "units": units, "receptive": None, "text": False, "label": "",
                          "flagged": 0, "dead": 0, "related": False, "featureviz": (), "thumb": None, **kw})


CONV1 = _layer("conv1", CONV, (6, 7, 8), receptive=FIELD, label=EVIL, flagged=1, dead=1, related=True, featureviz=((7, 9.5),),
               thumb=(0, ImageShown((0, 0, 8, 8), None)))
FC = _layer("fc", Layout("vector", (10,)), tuple(range(10)), module="Linear")
MODEL = ModelRecord("lenet", "LeNet " + EVIL, "A tiny convnet. " + EVIL, "lenet:build", "lenet/", 61_700,
                    (16, 16, 3), None, 10, "", 2, 1, (CONV1, FC))
UNIT = UnitRecord(
    model="lenet", layer="conv1", unit=7, url="lenet/conv1/7/", label=EVIL, tags=("curve", EVIL), note=NOTE.text,
    flags=("non-finite",), saturation=None, duplicates=((6, 0.97),), duplicate_count=3, stats=STATS, scale=(0.0, 7.91),
    effects=EffectsRecord("activation × gradient, averaged", (EffectRecord(281, "tabby " + EVIL, 0.5),),
                          (EffectRecord(3, "lynx", -0.25),)),
    built_from=EffectsRecord("activation × gradient of its peak", (EffectRecord(4, "", 0.3),), (), "stem"),
    receptive_field=((5, 5), (4, 4), (-2, -2)),
    top=(_example(7.91, "cat-s1-0-0", (1, 1)), _example(6.5, "dog", (0, 2)), _example(5.25, "cat-s1-0-0", (3, 0))),
    bottom=(_example(-2.0, "dog", (2, 2)),),
    bands=(BandRecord(1.0, 2.0, 40, 0.25, (_example(1.5, "dog", (1, 0)),)),), inactive=1,
    featureviz=FeatureVizRecord(VizRecord("featureviz.png", 8.0, 9.5), None, None, (), False), top_tokens=None)


def _model(**kw) -> V.ModelPages:
    return V.ModelPages(MODEL, {0: CAT, 1: DOG}, **kw)


CORPUS_TEXT = ["def", " f", "(", "x", "):", "\n", "    ", "return", " x", " <", "b", ">"]
CORPUS = TextCorpus(np.arange(12), tuple(CORPUS_TEXT), tuple(CORPUS_TEXT), "subwords", (), (),
                    np.arange(12), np.arange(12), 6)
LINES = InputRecord(0, "code-0", "code.py · tokens 0–5", None, None, None, (0, 6), ())
TAIL = InputRecord(1, "code-6", "code.py · tokens 6–11 " + EVIL, None, None, None, (6, 12), ())
TEXT_MODEL = ModelRecord("lm", "LM", "", "transformers:lm", "lm/", 1000, None, 6, None, "", 2, 0,
                         (LayerRecord("lm", "h.0", "lm/h.0/", "Linear", Layout("tokens", (6, 4)), (0, 1, 2, 3), None,
                                      True, "", 0, 0, False, (), None),))
TEXT_UNIT = UnitRecord(
    model="lm", layer="h.0", unit=2, url="lm/h.0/2/", label="", tags=(), note="", flags=(), saturation=None,
    duplicates=(), duplicate_count=0, stats=STATS, scale=(-7.91, 7.91), effects=None, built_from=None, receptive_field=None,
    top=(ExampleRecord(7.91, "code-6", (3,), " <", TextShown(6, 1, 5, "iiqm", 6, "i~1qmi")),),
    bottom=(ExampleRecord(-2.0, "code-0", (1,), " f", TextShown(0, 0, 4, "ecii", 6, "ecii~1")),), bands=(), inactive=0,
    featureviz=None, top_tokens=((" <", 9, 3.5, 4),))


def page_of(kind: str) -> V.Page:
    """A page of each kind, built from the records above."""
    model = _model()
    if kind == "index":
        return V.index_page(SITE, [model])
    if kind == "model":
        return V.model_page(model, None)
    if kind == "layer":
        entries = [UnitEntry(6, "", *GRID_STATS, (), (1, ImageShown((0, 0, 8, 8), None)), None, None),
                   UnitEntry(7, EVIL, *GRID_STATS, ("dead",), (0, ImageShown((8, 8, 16, 16), None)), None, "featureviz.png"),
                   UnitEntry(8, "curves", *GRID_STATS, (), None, None, None)]
        return V.layer_page(model, CONV1, NOTE, entries, 112)
    if kind == "unit":
        facts = V.layer_facts(CONV1, "lenet/conv1/0", None, 112)
        return V.unit_page(UNIT, model, facts, NOTE, {4: "edges " + EVIL}, 6, 8)
    if kind == "text-unit":
        text = V.ModelPages(TEXT_MODEL, {0: LINES, 1: TAIL}, corpus=CORPUS, shards="text/abc")
        facts = V.layer_facts(TEXT_MODEL.layers[0], "lm/h.0/0", None, 112)
        return V.unit_page(TEXT_UNIT, text, facts, None, {}, 1, 3)
    if kind == "featureviz":
        return V.featureviz_page(model, CONV1, {7: EVIL}, "featureviz.png")
    if kind == "health":
        health = LayerHealth()
        health.units["dead"].append(6)
        health.units["saturated"].append(8)
        health.saturation[8] = 0.42
        health.duplicates.append(Duplicate(6, 7, 0.97))
        health.units["duplicate"] = [6, 7]
        health.by_unit = {6: ["dead", "duplicate"], 7: ["duplicate"], 8: ["saturated"]}
        return V.health_page(model, None, [(CONV1, health, {6: EVIL})])
    if kind == "input":
        found = [("conv1", [Response(7, 4.2, 0.93), Response(6, 0.5, 1.4)])]
        return V.input_page(model, CAT, found, {("conv1", 7): EVIL}, None, "dog", "cat.png (0, 0, 32, 32)")
    if kind == "inputs":
        return V.inputs_page(model)
    if kind == "search":
        return V.search_page(SITE)
    if kind == "404":
        return V.not_found_page()
    raise KeyError(kind)


def render(theme: Theme, page: V.Page, card: str | None = None) -> str:
    return theme.render(page.template, **V.common(SITE, page, card), **page.context)


# --------------------------------------------------------------------------- helpers


class LinkCollector(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.links: list[tuple[str, str, dict]] = []  # (tag, attr, attrs)
        self.ids: list[str] = []
        self.scripts_inline: list[int] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        d = dict(attrs)
        for attr in ("href", "src", "srcset", "action", "poster"):
            if attr in d and d[attr] is not None:
                self.links.append((tag, attr, d))
        if "id" in d:
            self.ids.append(d["id"])
        if tag == "script":
            self._in_script = "src" not in d

    def handle_data(self, data):
        if self._in_script and data.strip():
            self.scripts_inline.append(len(data))

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False


def collect(html: str) -> LinkCollector:
    p = LinkCollector()
    p.feed(html)
    p.close()
    return p


@pytest.fixture(scope="module")
def theme() -> Theme:
    return Theme()


@pytest.fixture(scope="module")
def rendered(theme) -> dict[str, str]:
    return {kind: render(theme, page_of(kind), "lenet/conv1/7/card.jpg" if kind == "unit" else None)
            for kind in KINDS}


def _visible(html: str) -> str:
    """The page's text as a reader sees it (tags dropped, entities kept)."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", re.sub(r"<(script|style)\b.*?</\1>", "", html, flags=re.S)))


# --------------------------------------------------------------------------- every page


def test_builtin_theme_dir_has_every_template():
    d = builtin_theme_dir()
    for name in {page_of(kind).template for kind in KINDS} | {"base.html"}:
        assert (d / name).is_file(), name
    assert (d / "assets" / "galleria.css").is_file()
    assert (d / "assets" / "galleria.js").is_file()


def test_builtin_theme_dir_missing_raises(monkeypatch, tmp_path):
    fake = tmp_path / "pkg" / "galleria" / "site" / "theme.py"
    fake.parent.mkdir(parents=True)
    fake.write_text("")
    monkeypatch.setattr(theme_mod, "__file__", str(fake))
    with pytest.raises(RuntimeError, match="built-in theme"):
        builtin_theme_dir()


@pytest.mark.parametrize("kind", KINDS)
def test_renders_a_full_page(rendered, kind):
    html = rendered[kind]
    assert html.startswith("<!doctype html>")
    assert html.rstrip().endswith("</html>")
    assert '<meta name="viewport"' in html
    assert "assets/galleria.css" in html and "assets/galleria.js" in html
    assert ('<meta name="generator"' in html) == (kind == "index")  # said once, on the home page


@pytest.mark.parametrize("kind", KINDS)
def test_user_text_is_escaped(rendered, kind):
    html = rendered[kind]
    assert EVIL not in html
    assert "<script>alert" not in html
    if kind not in ("404", "search"):
        assert EVIL_ESCAPED in html


@pytest.mark.parametrize("kind", KINDS)
def test_every_link_is_relative(rendered, kind):
    parser = collect(rendered[kind])
    assert parser.links
    for tag, attr, attrs in parser.links:
        url = attrs[attr]
        if tag == "link" and attrs.get("rel") in ("canonical", "bookmark") or tag == "a" and attrs.get("rel") == "bookmark":
            assert url.startswith("https://example.org/gallery/")
            continue
        assert not url.startswith("/"), (tag, attr, url)
        assert not re.match(r"^[a-z][a-z0-9+.-]*:", url, re.I), (tag, attr, url)  # no http:, https:, data:, javascript:
        assert not url.startswith("//"), url


@pytest.mark.parametrize("kind", KINDS)
def test_no_external_requests_and_no_inline_script(rendered, kind):
    html = rendered[kind]
    parser = collect(html)
    assert parser.scripts_inline == []
    without_meta = re.sub(r'<(link rel="canonical"|meta property="og:[a-z_:]+"|meta name="twitter:[a-z]+")[^>]*>',
                          "", html)
    without_meta = re.sub(r'<a href="https://example.org/gallery/[^"]*" rel="bookmark">', "", without_meta)
    # only the SVG namespace may mention http
    assert re.findall(r"https?://(?!www\.w3\.org/2000/svg)", without_meta) == []


def test_assets_home_and_canonical_follow_the_folder(rendered):
    unit = rendered["unit"]
    assert 'href="../../../assets/galleria.css"' in unit and 'src="../../../assets/galleria.js"' in unit
    assert '<a href="../../../index.html">Gallery</a>' in unit  # the home crumb, once
    assert '<link rel="canonical" href="https://example.org/gallery/lenet/conv1/7/">' in unit
    index = rendered["index"]
    assert 'href="assets/galleria.css"' in index
    assert '<link rel="canonical" href="https://example.org/gallery/">' in index
    page = page_of("unit")
    without_url = V.common(SiteConfig("G", "", None, Path("o"), None, Path("c"), Path("k")), page)
    assert without_url["page"]["canonical"] is None and without_url["page"]["image"] is None


# --------------------------------------------------------------------------- each kind of page


def test_unit_page_shows_its_record(rendered):
    html = rendered["unit"]
    text = _visible(html)
    parser = collect(html)
    for anchor in ("example-1", "example-2", "example-3", "bottom-1", "band1-1"):
        assert anchor in parser.ids
    assert "Unit 7" in text and EVIL_ESCAPED in text and "curve" in text
    assert "7.91" in text and "0.423" in text and "12.3%" in text and "123,456" in text  # stats
    assert "non-finite" in text and "near-duplicate of unit 6 (0.97) and 2 more" in text  # the rest: health page
    assert "pushes up tabby" in text and "0.5" in text and "down lynx -0.25" in text  # effects
    assert "built from stem" in text and 'title="edges ' in html  # chips of the units it is built from
    assert '<div class="related" data-unit="7" data-thumbs>' in html  # drawn from its layer's related.js
    assert "<strong>edges</strong>" in html  # the note's html
    assert "<svg" in html and "hist" in html  # the histogram, unescaped
    assert "1 – 2" in text and "holds 25.0% of inputs (40)" in text  # its band
    assert "Inactive on 50.0% of inputs (1): its peak is 0 on them" in text  # in no band
    assert "Activations (log count)" in text  # it goes below 0: every value drawn
    assert 'src="featureviz.png"' in html and "peak 9.5" in text
    assert "5 × 5 px" in text  # the layer's receptive field
    # the tiles: windows onto the stored source images, the map laid over them, the peak outlined
    assert html.count('src="../../../images/cat-0123abcd.jpg"') == 2 and html.count('data-h="2 2 Az_9"') == 5
    assert html.count('class="mark"') == 5
    assert 'href="../../inputs/cat-s1-0-0/index.html"' in html
    assert "tabby" in html.split('id="example-1"', 1)[1].split("</li>", 1)[0]  # the model's prediction
    assert "<span>" not in html.split('id="example-2"', 1)[1].split("</li>", 1)[0].split("</a>", 1)[1]  # none: nothing
    assert '<a rel="prev" href="../6/index.html">' in html and '<a rel="next" href="../8/index.html">' in html
    assert '<a rel="up" href="../index.html">' in html and 'href="unit.json"' in html
    assert '<meta property="og:image" content="https://example.org/gallery/lenet/conv1/7/card.jpg">' in html
    assert '<meta name="twitter:card" content="summary_large_image">' in html
    assert 'rel="bookmark"' in html


def test_a_layers_related_units_are_one_script_its_unit_pages_draw():
    table = EffectsTable("peaks correlate", np.array([[7, -1], [6, 8], [-1, -1]]), np.array([[0.91234, 0], [0.5, 0.25], [0, 0]]),
                         np.array([[2], [-1], [-1]]), np.array([[-0.4], [0], [0]]), "conv1")
    labels = {6: "edges " + EVIL, 7: "", 8: ""}
    script = V.related_script(_model(), "lenet/conv1", (6, 7, 8), (table,), lambda layer, unit: labels.get(unit, ""))
    kinds, units, named = json.loads("[" + script.removeprefix("galleriaRelated(").removesuffix(");\n") + "]")
    assert kinds == [{"layer": "conv1", "href": "../conv1/", "method": "peaks correlate"}]  # from the script's folder
    assert units == {"6": [[[7, 0.912], [2, -0.4]]], "7": [[[6, 0.5], [8, 0.25]]]}  # unit 8 has none
    assert named == {"conv1/6": "edges " + EVIL}  # text, set as text by the page's script


def test_a_sparse_units_histogram_is_drawn_by_its_non_zero_values(theme):
    """A unit exactly 0 on most values and never below (a ReLU, an SAE latent) is drawn without its zeros,
    which the caption counts; the record keeps the full histogram."""
    sparse = UnitStats(count=1000, mean=0.01, std=0.1, min=0.0, max=1.5, frac_active=0.02, nonfinite=0,
                       histogram=Histogram(width=0.5, lo=0, counts=(990, 6, 4)))
    drawn, left_out = V.drawn_histogram(sparse)
    assert drawn.counts == (10, 6, 4) and left_out == pytest.approx(0.98)
    facts = V.layer_facts(CONV1, "lenet/conv1/7", None, 112)
    page = V.unit_page(replace(UNIT, stats=sparse), _model(), facts, None, {}, 6, 8)
    text = _visible(render(theme, page))
    assert "Non-zero activations (log count); 0 on 98.0% of values, not drawn" in text
    assert replace(UNIT, stats=sparse).to_dict()["histogram"]["counts"] == [990, 6, 4]
    dead = replace(sparse, max=0.0, frac_active=0.0, histogram=Histogram(width=0.5, lo=0, counts=(1000,)))
    assert V.drawn_histogram(dead) == (dead.histogram, 0.0)  # 0 everywhere: its one bar stays


def test_text_unit_page_shows_readable_text_that_its_script_colours(rendered):
    html = rendered["text-unit"]
    top = html.split('id="example-1"', 1)[1].split("</li>", 1)[0]
    # the levels of the whole window, of which the shown tokens start at data-lo; lengths of subwords
    assert '<pre class="tx-ctx" data-n="' in top and "data-l=" not in top and 'data-lo="1"' in top
    assert "return x &lt;b" in _visible(top).replace("·", " ")  # tokens 7-10 of the stream, escaped
    assert 'data-at="2"' in top and 'data-w="i~1qmi"' in top and 'data-s="6"' in top
    assert "data-window" in top  # the whole window, loaded from the shards when asked for
    assert 'data-shards="../../../text/abc/"' in html and 'data-scale="7.91"' in html
    assert "highest mean on" in _visible(html) and "3.5" in _visible(html)


def test_layer_page_lists_its_units(rendered):
    html = rendered["layer"]
    assert html.count('class="unit-tile') == 3
    assert 'data-max="7.91"' in html and 'data-density="0.123"' in html and 'data-id="8"' in html
    assert "data-filter" in html and "data-sort" in html and 'value="-max"' in html
    assert 'src="7/featureviz.png"' in html and "show feature visualizations" in html
    assert 'class="placeholder"' in html  # unit 8 has no thumbnail
    assert 'src="../../images/dog-4567abcd.jpg"' in html and "flag-dead" in html
    assert "5 × 5 px" in _visible(html) and "<strong>edges</strong>" in html  # its facts and note
    assert "dead 1 (33.3%)" in _visible(html)
    assert '<a rel="next" href="../fc/index.html">' in html
    assert 'aria-label="Activation density of 3 units, from 1e-1 to 1 (log scale)"' in html  # each at 0.123


def test_model_page_lists_its_layers(rendered):
    html = rendered["model"]
    text = _visible(html)
    assert "LeNet" in text and "A tiny convnet." in text and "61.7 k" in text and "16 × 16 × 3" in text
    assert 'href="conv1/index.html"' in html and 'href="fc/index.html"' in html
    assert "8×4×4" not in text and "4×4 × 8 (channels first)" in text and "10 (a vector)" in text
    assert 'href="conv1/featureviz/index.html"' in html and 'href="inputs/index.html"' in html
    assert "2 inputs" in text and "1 flagged" in text and "classes 10" in text


def test_index_page_has_a_card_per_model(rendered):
    html = rendered["index"]
    assert 'href="lenet/index.html"' in html and "2 layers" in _visible(html) and "13 units" in _visible(html)
    assert 'src="images/cat-0123abcd.jpg"' in html  # the first layer's thumbnail


def test_input_page_shows_the_input_and_the_units_that_respond(rendered):
    html = rendered["input"]
    text = _visible(html)
    assert 'src="../../../images/cat-0123abcd.jpg"' in html and "cat.png (0, 0, 32, 32)" in text
    assert "81.0%" in text and "lynx" in text
    assert 'href="../../conv1/7/index.html" title="4.2: 93.0% of its max"' in html
    assert "width:93%" in html and "width:100%" in html  # relative strength, clamped to 1
    assert '<a rel="next" href="../dog/index.html">' in html


def test_inputs_page_lists_every_input(rendered):
    html = rendered["inputs"]
    assert 'href="cat-s1-0-0/index.html"' in html and 'href="dog/index.html"' in html
    assert html.count('src="../../images/') == 2


def test_featureviz_and_health_pages(rendered):
    viz = rendered["featureviz"]
    assert 'src="../7/featureviz.png"' in viz and 'href="../7/index.html"' in viz and "9.5" in viz
    health = rendered["health"]
    text = _visible(health)
    assert "1 of 3 units flagged" not in text and "3 of 3 units flagged" in text
    assert 'href="../conv1/6/index.html"' in health and "42% of inputs" in text
    assert 'href="../conv1/7/index.html"' in health and "0.97" in text


def test_model_health_page_lists_a_few_units_per_flag_and_links_the_rest(theme):
    """Half a random layer can be dead: the model's health page lists MODEL_HEALTH_SHOWN of them
    and links the layer's own page, which lists them all."""
    health = LayerHealth()
    health.units["dead"] = list(range(250))
    health.by_unit = {u: ["dead"] for u in range(250)}
    model = _model()
    whole = render(theme, V.health_page(model, None, [(CONV1, health, {})]))
    assert len(re.findall(r'href="../conv1/\d+/index.html"', whole)) == V.MODEL_HEALTH_SHOWN
    assert "150 more" in _visible(whole) and 'href="../conv1/health/index.html">150 more' in whole
    layer = render(theme, V.health_page(model, CONV1, [(CONV1, health, {})]))
    assert len(re.findall(r'href="../\d+/index.html"', layer)) == 250 and " more<" not in layer


def test_404_links_home(theme, rendered):
    assert 'href="index.html"' in rendered["404"]
    context = V.common(SITE, page_of("404"))
    context["root"] = "/gallery/"  # served at any depth: rooted at the site's path
    assert 'href="/gallery/index.html"' in theme.render("404.html", **context)


def test_strict_undefined(theme):
    page = page_of("unit")
    del page.context["unit"]["stats"]
    with pytest.raises(BuildError, match="template unit.html: UndefinedError: .*stats"):
        render(theme, page)
    page = page_of("layer")
    with pytest.raises(BuildError, match="UndefinedError: 'nav' is undefined"):
        theme.render("layer.html", **{k: v for k, v in V.common(SITE, page).items() if k != "nav"}, **page.context)


def test_template_syntax_error_is_one_line_naming_file_and_line(tmp_path):
    (tmp_path / "unit.html").write_text('{% extends "default/unit.html" %}\n{% block content %}{% if %}{% endblock %}\n')
    with pytest.raises(BuildError, match=r"unit\.html:2: template error: "):
        render(Theme(tmp_path), page_of("unit"))


def test_autoescape_is_on(theme):
    assert theme.env.from_string("{{ x }}").render(x="<b>&") == "&lt;b&gt;&amp;"
    assert theme.env.from_string("{{ x }}").render(x=Markup("<b>")) == "<b>"


@pytest.mark.parametrize(
    "value, text",
    [(7.912, "7.91"), (0.4231, "0.423"), (1.2e-05, "1.2e-05"), (None, "—"), (0, "0"), (-0.0, "0"),
     (-3.14159, "-3.14"), (1234.5, "1,234"), (2.5e7, "2.5e+07"), (float("nan"), "NaN"), (float("inf"), "∞"), (42, "42")],
)
def test_num_filter(value, text):
    assert theme_mod.format_num(value) == text


def test_pct_and_count_filters(theme):
    assert theme.env.from_string("{{ 0.123|pct }} {{ 1|pct }} {{ none|pct }}").render() == "12.3% 100.0% —"
    assert theme.env.from_string("{{ 1234567|count }}").render() == "1,234,567"


# --------------------------------------------------------------------------- custom dir


def test_custom_dir_overrides_template_partial_and_asset(tmp_path):
    custom = tmp_path / "theme"
    (custom / "partials").mkdir(parents=True)
    (custom / "assets").mkdir()
    # a full replacement of one template
    (custom / "404.html").write_text('{% extends "base.html" %}{% block content %}<p>CUSTOM 404 {{ site.title }}</p>{% endblock %}')
    # a partial used by every page
    (custom / "partials" / "pager.html").write_text('<nav class="custom-pager">{{ nav.up or "" }}</nav>')
    # a built-in template extended through the "default/" prefix, one block replaced
    (custom / "inputs.html").write_text('{% extends "default/inputs.html" %}{% block footer %}<footer>CUSTOM FOOTER</footer>{% endblock %}')
    (custom / "assets" / "galleria.css").write_text("/* custom css */")
    (custom / "assets" / "extra.js").write_text("// extra")

    t = Theme(custom)
    assert t.dirs == [custom, builtin_theme_dir()]
    html = render(t, page_of("404"))
    assert "CUSTOM 404 Gallery" in html and "There is no page at this address" not in html
    unit = render(t, page_of("unit"))
    assert '<nav class="custom-pager">../index.html</nav>' in unit
    assert "Top activations" in unit  # the rest stays built-in
    inputs = render(t, page_of("inputs"))
    assert "CUSTOM FOOTER" in inputs and 'class="input-grid"' in inputs

    out = tmp_path / "site"
    written = t.copy_assets(out)
    assert (out / "assets" / "galleria.css").read_text() == "/* custom css */"
    assert (out / "assets" / "extra.js").read_text() == "// extra"
    builtin_js = (builtin_theme_dir() / "assets" / "galleria.js").read_text()
    assert (out / "assets" / "galleria.js").read_text() == builtin_js
    assert sorted(written) == written
    assert len(written) == len(set(written))
    assert set(written) == {p for p in (out / "assets").rglob("*") if p.is_file()}


def test_copy_assets_builtin_only(tmp_path):
    written = Theme().copy_assets(tmp_path)
    names = {p.relative_to(tmp_path / "assets").as_posix() for p in written}
    assert {"galleria.css", "galleria.js", "favicon.svg"} <= names
    # every asset the templates reference exists
    base = (builtin_theme_dir() / "base.html").read_text()
    for ref in re.findall(r"\{\{ root \}\}assets/([\w./-]+)", base):
        assert ref in names


def test_custom_dir_must_exist(tmp_path):
    with pytest.raises(FileNotFoundError):
        Theme(tmp_path / "missing")


def test_templates_only_use_root_relative_urls():
    """Static check: no template hard-codes an absolute or external URL."""
    for path in builtin_theme_dir().rglob("*.html"):
        text = path.read_text()
        for m in re.finditer(r'\b(?:href|src)="([^"]*)"', text):
            url = m.group(1)
            assert not url.startswith(("/", "http:", "https:", "//")), (path.name, url)
