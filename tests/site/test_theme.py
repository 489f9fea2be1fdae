"""The default theme: every template renders from a realistic context, escapes user text,
links only relatively, and can be overridden from a site's custom theme dir."""
from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from markupsafe import Markup

from galleria import records
from galleria.errors import BuildError
from galleria.site import theme as theme_mod
from galleria.site.theme import Theme, builtin_theme_dir
from galleria.visualize.histogram_svg import histogram_svg

EVIL = "<script>alert(1)</script>"
EVIL_ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
TEMPLATES = ["index.html", "model.html", "layer.html", "unit.html", "input.html", "inputs.html", "404.html"]


# --------------------------------------------------------------------------- contexts


def common(kind: str, root: str, title: str, crumbs: list[tuple[str, str | None]], nav=None) -> dict:
    return {
        "site": {"title": "galleria", "description": "Activation galleries of small vision models.", "url": "https://example.org/gallery/"},
        "page": {
            "title": title,
            "description": f"{title} — galleria",
            "canonical": "https://example.org/gallery/" if kind == "index" else None,
            "image": "https://example.org/gallery/m/l/7/card.jpg" if kind == "unit" else None,
            "kind": kind,
            "breadcrumbs": [{"title": t, "url": u} for t, u in crumbs],
        },
        "root": root,
        "nav": nav or {"prev": None, "next": None, "up": None},
        "generator": "galleria 0.1.0",
    }


def model_ctx(root: str) -> dict:
    return {
        "id": "lenet",
        "title": "LeNet " + EVIL,
        "url": f"{root}models/lenet/index.html",
        "source": "torchvision-like toy",
        "description": "A tiny convnet. " + EVIL,
        "input_size": "224 × 224 × 3",
        "params": "4.65 M",
        "classifier": True,
        "num_classes": 1000,
        "note_html": Markup("<p>Trained on <em>noise</em>.</p>"),
        "label": EVIL,
        "inputs_url": f"{root}models/lenet/inputs/index.html",
        "num_inputs": 120,
        "layers": [
            {
                "name": name,
                "url": f"{root}models/lenet/{name}/index.html",
                "module": module,
                "shape": shape,
                "num_units": n,
                "receptive": rf,
                "label": label,
                "thumb": thumb,
            }
            for name, module, shape, n, rf, label, thumb in [
                ("conv1", "Conv2d", "40 × 28 × 28", 40, "5 × 5 px", "", f"{root}models/lenet/conv1/thumb.jpg"),
                ("fc", "Linear", "10", 10, "whole input", EVIL, None),
            ]
        ],
    }


def model_summary(root: str) -> dict:
    """The smaller model dict the unit, input and inputs pages get (as on the index, plus url)."""
    return {"id": "lenet", "title": "LeNet " + EVIL, "description": "", "num_layers": 2, "num_units": 50,
            "params": "61.7 k", "input_size": "32 × 32 × 1", "thumb": None, "url": f"{root}models/lenet/index.html"}


def layer_ctx(root: str) -> dict:
    return {
        "name": "conv1",
        "url": f"{root}models/lenet/conv1/index.html",
        "module": "Conv2d",
        "shape": "40 × 28 × 28",
        "num_units": 3,
        "receptive": "5 × 5 px",
        "note_html": Markup(""),
        "label": "",
    }


def units_list(root: str = "../../../") -> list[dict]:
    return [
        {"id": 0, "url": "0/index.html", "label": "", "thumb": "0/thumb.jpg", "max": 7.91, "mean": 0.423, "frac_active": 0.12, "flags": []},
        {"id": 1, "url": "1/index.html", "label": EVIL, "thumb": "1/thumb.jpg", "max": 0.0, "mean": 0.0, "frac_active": 0.0, "flags": ["dead"]},
        {"id": 2, "url": "2/index.html", "label": "curves", "thumb": None, "max": 1.2e-05, "mean": -0.5, "frac_active": 0.9, "flags": []},
    ]


def example(kind: str, rank: int, value: float, prediction) -> dict:
    return {
        "rank": rank,
        "anchor": "example-%d" % rank if kind == "top" else f"{kind}-{rank}",
        "value": value,
        "tile": f"{kind}-{rank}.jpg",
        "input_url": f"../../../inputs/in-{rank}/index.html",
        "input_title": f"cat.png · crop {rank} {EVIL}",
        "prediction": prediction,
    }


def unit_ctx() -> dict:
    hist = records.Histogram(width=0.5, lo=-4, counts=(1, 3, 10, 200, 900, 50, 20, 5, 2, 0, 1, 1))
    return {
        "id": 7,
        "label": EVIL,
        "tags": ["curve", EVIL],
        "note_html": Markup("<p>Looks at <strong>edges</strong>.</p>"),
        "stats": {"count": 123456, "mean": 0.423, "std": 1.02, "min": -2.0, "max": 7.91, "frac_active": 0.123, "nonfinite": 2},
        "histogram_svg": Markup(histogram_svg(hist, intervals=[(1.0, 2.0)])),
        "legend_svg": Markup('<svg class="legend-svg" width="120" height="10" role="img" aria-label="scale"><rect width="120" height="10" fill="currentColor"/></svg>'),
        "receptive": "35 × 35 px",
        "json_url": "unit.json",
        "top": [
            example("top", 1, 7.91, {"label": "tabby cat " + EVIL, "prob": 0.81}),
            example("top", 2, 6.5, None),
            example("top", 3, 5.25, {"label": "lynx", "prob": 0.05}),
        ],
        "bottom": [example("bottom", 1, -2.0, None)],
    }


def input_ctx() -> dict:
    return {
        "id": "cat-s1-0-0",
        "title": "cat.png · scale 1 " + EVIL,
        "image": "image.jpg",
        "source": "content/cat.png",
        "predictions": [{"label": "tabby " + EVIL, "prob": 0.8}, {"label": "lynx", "prob": 0.1}],
        "units": [
            {"layer": "conv1", "unit": 3, "url": "../../conv1/3/index.html", "thumb": "../../conv1/3/thumb.jpg", "value": 4.2, "relative": 0.93, "label": EVIL},
            {"layer": "fc", "unit": 1, "url": "../../fc/1/index.html", "thumb": None, "value": 0.5, "relative": 1.4, "label": ""},
        ],
    }


def context_for(template: str) -> dict:
    if template == "index.html":
        ctx = common("index", "", "galleria", [])
        ctx["models"] = [
            {"id": "lenet", "title": "LeNet " + EVIL, "url": "models/lenet/index.html", "description": EVIL,
             "num_layers": 2, "num_units": 50, "params": "61.7 k", "input_size": "32 × 32 × 1", "thumb": "models/lenet/thumb.jpg"},
            {"id": "mlp", "title": "MLP", "url": "models/mlp/index.html", "description": "",
             "num_layers": 1, "num_units": 1, "params": "", "input_size": "", "thumb": None},
        ]
        return ctx
    if template == "model.html":
        root = "../../"
        ctx = common("model", root, "LeNet", [("LeNet", None)], {"prev": None, "next": "../mlp/index.html", "up": "../../index.html"})
        ctx["model"] = model_ctx(root)
        return ctx
    if template == "layer.html":
        root = "../../../"
        ctx = common("layer", root, "conv1", [("LeNet", "../index.html"), ("conv1", None)],
                     {"prev": None, "next": "../fc/index.html", "up": "../index.html"})
        ctx.update(model=model_ctx(root), layer=layer_ctx(root), units=units_list(root))
        return ctx
    if template == "unit.html":
        root = "../../../../"
        ctx = common("unit", root, "Unit 7", [("galleria", "../../../../index.html"), ("LeNet", "../../index.html"), ("conv1", "../index.html"), ("Unit 7", None)],
                     {"prev": "../6/index.html", "next": "../8/index.html", "up": "../index.html"})
        ctx.update(model=model_summary(root), layer=layer_ctx(root), unit=unit_ctx())
        return ctx
    if template == "input.html":
        root = "../../../../"
        ctx = common("input", root, "cat.png", [("LeNet", "../../index.html"), ("inputs", "../index.html"), ("cat.png", None)],
                     {"prev": None, "next": None, "up": "../index.html"})
        ctx.update(model=model_summary(root), input=input_ctx())
        return ctx
    if template == "inputs.html":
        root = "../../../"
        ctx = common("inputs", root, "Inputs", [("LeNet", "../index.html"), ("Inputs", None)], {"prev": None, "next": None, "up": "../index.html"})
        ctx.update(model=model_summary(root), inputs=[
            {"id": "cat-s1-0-0", "title": "cat " + EVIL, "url": "cat-s1-0-0/index.html", "thumb": "cat-s1-0-0/thumb.jpg"},
            {"id": "dog", "title": "dog", "url": "dog/index.html", "thumb": None},
        ])
        return ctx
    if template == "404.html":
        return common("404", "", "Page not found", [])
    raise KeyError(template)


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
    return {name: theme.render(name, **context_for(name)) for name in TEMPLATES}


# --------------------------------------------------------------------------- tests


def test_builtin_theme_dir_has_every_template():
    d = builtin_theme_dir()
    for name in TEMPLATES + ["base.html"]:
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


@pytest.mark.parametrize("name", TEMPLATES)
def test_renders_a_full_page(rendered, name):
    html = rendered[name]
    assert html.startswith("<!doctype html>")
    assert html.rstrip().endswith("</html>")
    assert '<meta name="viewport"' in html
    assert '<meta name="generator" content="galleria 0.1.0">' in html
    assert "assets/galleria.css" in html and "assets/galleria.js" in html


@pytest.mark.parametrize("name", TEMPLATES)
def test_user_text_is_escaped(rendered, name):
    html = rendered[name]
    assert EVIL not in html
    assert "<script>alert" not in html
    if name != "404.html":
        assert EVIL_ESCAPED in html


@pytest.mark.parametrize("name", TEMPLATES)
def test_every_link_is_relative(rendered, name):
    parser = collect(rendered[name])
    assert parser.links
    for tag, attr, attrs in parser.links:
        url = attrs[attr]
        if tag == "link" and attrs.get("rel") == "canonical":
            assert url.startswith("https://")
            continue
        assert not url.startswith("/"), (tag, attr, url)
        assert not re.match(r"^[a-z][a-z0-9+.-]*:", url, re.I), (tag, attr, url)  # no http:, https:, data:, javascript:
        assert not url.startswith("//"), url


@pytest.mark.parametrize("name", TEMPLATES)
def test_no_external_requests_and_no_inline_script(rendered, name):
    html = rendered[name]
    parser = collect(html)
    assert parser.scripts_inline == []
    without_meta = re.sub(r'<(link rel="canonical"|meta property="og:[a-z_:]+"|meta name="twitter:[a-z]+")[^>]*>',
                          "", html)
    # only the SVG namespace may mention http
    assert re.findall(r"https?://(?!www\.w3\.org/2000/svg)", without_meta) == []


def test_assets_and_home_use_root(rendered):
    unit = rendered["unit.html"]
    assert 'href="../../../../assets/galleria.css"' in unit
    assert 'src="../../../../assets/galleria.js"' in unit
    assert 'href="../../../../index.html"' in unit
    index = rendered["index.html"]
    assert 'href="assets/galleria.css"' in index
    assert 'href="index.html"' in index


def test_canonical_only_when_given(rendered):
    assert '<link rel="canonical" href="https://example.org/gallery/">' in rendered["index.html"]
    assert 'rel="canonical"' not in rendered["unit.html"]


def test_unit_page(rendered):
    html = rendered["unit.html"]
    parser = collect(html)
    for anchor in ("example-1", "example-2", "example-3", "bottom-1"):
        assert anchor in parser.ids
    assert '<link rel="prev" href="../6/index.html">' in html
    assert '<link rel="next" href="../8/index.html">' in html
    assert '<link rel="up" href="../index.html">' in html
    assert 'href="unit.json"' in html
    assert '<meta property="og:image" content="https://example.org/gallery/m/l/7/card.jpg">' in html
    assert '<meta name="twitter:card" content="summary_large_image">' in html
    assert '<meta name="twitter:card" content="summary">' in rendered["layer.html"]  # no card image given
    assert 'rel="bookmark"' in html  # permalink: the canonical url, else this page's file
    assert "7.91" in html and "0.423" in html and "12.3%" in html and "123,456" in html
    assert "<svg" in html and "hist-bar" in html  # histogram Markup passed through unescaped
    assert 'class="legend-svg"' in html
    assert "<strong>edges</strong>" in html  # note_html is Markup
    assert "lynx" in html and "81.0%" in html
    assert "non-finite" in html  # health flag derived from stats
    # a missing prediction renders without error and without an empty prediction element
    top2 = html.split('id="example-2"', 1)[1].split("</li>", 1)[0]
    assert "ex-pred" not in top2


def test_unit_flags_from_context_win(theme):
    ctx = context_for("unit.html")
    ctx["unit"]["flags"] = ["dead"]
    html = theme.render("unit.html", **ctx)
    assert "flag-dead" in html and "flag-non-finite" not in html


def test_breadcrumbs_skip_duplicate_home(rendered):
    html = rendered["unit.html"]
    crumbs = html.split('class="crumbs"', 1)[1].split("</nav>", 1)[0]
    assert crumbs.count("galleria") == 1
    assert '<span aria-current="page">Unit 7</span>' in crumbs


def test_layer_page_grid(rendered):
    html = rendered["layer.html"]
    assert html.count('class="unit-tile') == 3
    assert 'data-max="7.91"' in html and 'data-density="0.12"' in html and 'data-id="2"' in html
    assert 'loading="lazy"' in html and 'width="64" height="64"' in html
    assert "data-filter" in html and "data-sort" in html
    assert 'value="-max"' in html and 'value="-density"' in html
    assert "1.2e-05" in html  # num filter
    assert 'src="None"' not in html  # a unit without a thumbnail gets a placeholder


def test_input_page(rendered):
    html = rendered["input.html"]
    assert 'src="image.jpg"' in html
    assert "width: 93.0%" in html and "width: 100.0%" in html  # relative clamped to 1
    assert "80.0%" in html


def test_404_links_home(rendered):
    assert 'href="index.html"' in rendered["404.html"]
    ctx = context_for("404.html")
    ctx["root"] = "/gallery/"
    html = Theme().render("404.html", **ctx)
    assert 'href="/gallery/index.html"' in html


def test_strict_undefined(theme):
    ctx = context_for("unit.html")
    del ctx["unit"]["stats"]
    with pytest.raises(BuildError, match="template unit.html: UndefinedError: .*stats"):
        theme.render("unit.html", **ctx)
    ctx = context_for("layer.html")
    del ctx["nav"]
    with pytest.raises(BuildError, match="UndefinedError: 'nav' is undefined"):
        theme.render("layer.html", **ctx)


def test_template_syntax_error_is_one_line_naming_file_and_line(tmp_path):
    (tmp_path / "unit.html").write_text('{% extends "default/unit.html" %}\n{% block content %}{% if %}{% endblock %}\n')
    with pytest.raises(BuildError, match=r"unit\.html:2: template error: "):
        Theme(tmp_path).render("unit.html", **context_for("unit.html"))


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


def test_health_flags():
    ok = {"count": 10, "frac_active": 0.5, "std": 1.0, "nonfinite": 0}
    assert theme_mod.health_flags(ok) == []
    assert theme_mod.health_flags({**ok, "frac_active": 0.0}) == ["dead"]
    assert theme_mod.health_flags({**ok, "std": 0.0, "nonfinite": 3}) == ["constant", "non-finite"]
    assert theme_mod.health_flags({**ok, "count": 0}) == ["no data"]
    stats = records.UnitStats(count=5, mean=0, std=0, min=0, max=0, frac_active=0, nonfinite=0,
                              histogram=records.Histogram(1.0, 0, (5,)))
    assert theme_mod.health_flags(stats) == ["dead", "constant"]


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
    html = t.render("404.html", **context_for("404.html"))
    assert "CUSTOM 404 galleria" in html and "There is no page at this address" not in html
    unit = t.render("unit.html", **context_for("unit.html"))
    assert '<nav class="custom-pager">../index.html</nav>' in unit
    assert "Top activations" in unit  # the rest stays built-in
    inputs = t.render("inputs.html", **context_for("inputs.html"))
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
