"""The repository's own site.yaml builds offline, from installed packages, into a real gallery."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from conftest import REPO
from galleria.commands.build import build
from galleria.config import load_config
from galleria.records import TEXT_LEVELS, unpacked
from linkcheck import check_site


def test_default_gallery_builds(default_build, default_site):
    out, report = default_site, default_build
    assert report.models == 4 and report.inputs_used > 3000 and report.inputs_skipped == 0 and not report.warnings
    chelsea = json.loads((out / "efficientnet-lite0" / "classifier" / "281" / "unit.json").read_text())
    assert chelsea["label"] == "tabby"  # output units are named after their ImageNet class
    # the tabby-cat logit's best example is a crop of the cat photo, and the model agrees
    best = chelsea["top"][0]["input"]
    assert best.startswith("chelsea")
    predicted = (out / "efficientnet-lite0" / "inputs" / best / "index.html").read_text()
    assert any(f"<span class=\"bar-label\">{label}</span>" in predicted for label in ("tabby", "tiger cat", "Egyptian cat"))
    model_page = (out / "efficientnet-lite0" / "index.html").read_text()
    for layer in ["blocks.1", "blocks.4", "blocks.6", "classifier"]:
        assert f'href="{layer}/index.html"' in model_page
    assert len(list((out / "efficientnet-lite0" / "blocks.6").iterdir())) >= 320
    assert "cat fur and whiskers" in (out / "efficientnet-lite0" / "blocks.6" / "index.html").read_text()
    pooled = json.loads((out / "efficientnet-lite0" / "global_pool" / "0" / "unit.json").read_text())
    assert len(pooled["effects"]["up"]) == 10 and len(pooled["effects"]["down"]) == 5
    # pen strokes (content/): the classes it pushes are thin dark curved things; the bn2 units it is
    # built from are linked; weak responses are sampled across its range
    pen = json.loads((out / "efficientnet-lite0" / "blocks.6" / "134" / "unit.json").read_text())
    assert pen["effects"]["method"].startswith("activation × gradient")
    assert "nematode" in [e["label"] for e in pen["effects"]["up"][:3]]
    assert pen["built_from"]["layer"] == "blocks.6.0.bn2" and len(pen["built_from"]["up"]) == 6
    assert len(pen["bands"]) == 4 and sum(b["count"] for b in pen["bands"]) == 1061  # every crop
    fur = json.loads((out / "efficientnet-lite0" / "blocks.6" / "285" / "unit.json").read_text())
    assert fur["featureviz"]["channel"]["peak"] > fur["stats"]["max"]  # the optimized image beats every photo
    assert fur["featureviz"]["negative"] and len(fur["featureviz"]["diverse"]) == 3
    assert (out / "efficientnet-lite0" / "blocks.6" / "featureviz" / "index.html").is_file()
    health = (out / "efficientnet-lite0" / "health" / "index.html").read_text()
    assert "global_pool" in health and "never above zero" in health
    _text_checks(out)
    relu6 = json.loads((out / "efficientnet-lite0" / "blocks.6.0.bn2" / "494" / "unit.json").read_text())
    assert relu6["flags"] == ["dead"] and relu6["stats"]["max"] == 0  # a ReLU6 channel that never fires here


def test_default_gallery_rebuild_with_nothing_changed_is_up_to_date(default_build, default_site):
    """The fingerprint covers exactly what the build reads: the python: input set's module, not the
    folder beside site.yaml, so building again finds nothing to do."""
    again = build(REPO / "site.yaml", default_site, quiet=True)
    assert again.up_to_date and again.output == default_build.output


def test_default_gallery_links_resolve(default_site):
    """Notes and templates alike: every link of every page names a file, every #fragment an id."""
    started = time.perf_counter()
    report = check_site(default_site, load_config(REPO / "site.yaml").site.url)
    print(f"link check: {report.links:,} links in {report.pages:,} pages, {time.perf_counter() - started:.1f} s")
    assert report.pages > 10000 and report.links > 100000
    if report.problems:
        pytest.fail(report.summary(), pytrace=False)


def test_link_checker_finds_what_it_should(tmp_path):
    """The checker on a made-up site: each kind of broken link is reported, good ones are not."""
    (tmp_path / "a").mkdir()
    (tmp_path / "assets").mkdir()
    (tmp_path / "a" / "x.png").write_bytes(b"")
    (tmp_path / "assets" / "s.css").write_text("b { background: url('../a/x.png') } i { background: url(gone.svg) }")
    (tmp_path / "404.html").write_text('<a href="/anything">skipped</a>')
    (tmp_path / "index.html").write_text(
        '<!-- <a href="commented.html"> --><script>var s = "<a href=in-script.html>";</script>'
        '<a href="a/index.html#top" title="x > y">ok</a> <a href="a/">folder</a> <a href="a">bare folder</a>'
        '<img src="a/x.png?v=1" srcset="a/x.png 1x, a/y.png 2x"> <a href="#nowhere">self</a> <a href="#main">ok</a>'
        '<a href="/a/index.html">rooted</a> <a href="https://example.org/">out</a> <a href="https://me.test/a/">own</a>'
        '<a href="../up.html">up</a> <main id="main"></main>')
    (tmp_path / "a" / "index.html").write_text('<h1 id="top"><a href="../index.html#gone">back</a></h1>')
    problems = check_site(tmp_path, "https://me.test/").problems
    assert sorted(problems) == sorted([
        ("assets/s.css", "gone.svg", "missing file assets/gone.svg"),
        ("index.html", "a/", "folder a named instead of its index.html"),
        ("index.html", "a", "folder a named instead of its index.html"),
        ("index.html", "a/y.png", "missing file a/y.png"),
        ("index.html", "#nowhere", "no id 'nowhere' in index.html"),
        ("index.html", "/a/index.html", "root-absolute link (breaks file:// and sub-paths)"),
        ("index.html", "https://me.test/a/", "absolute link to the site itself"),
        ("index.html", "../up.html", "link out of the site"),
        ("a/index.html", "../index.html#gone", "no id 'gone' in index.html"),
    ])


def _text_checks(out: Path) -> None:
    """The three text models: the character LSTM on the email package, the character transformer and
    its SAE on four of its modules, MiniLM on the reference docs."""
    lstm = out / "char-lstm"
    for layer in ("lstm.hidden.0", "lstm.cell.0", "lstm.hidden.1", "lstm.cell.1"):
        assert len([p for p in (lstm / layer).iterdir() if p.name.isdigit()]) == 256
    record = json.loads((lstm / "lstm.hidden.1" / "0" / "unit.json").read_text())
    assert len(record["effects"]["up"]) == 10  # the last layer feeds the next-character head
    assert record["top"][0]["input"].startswith("email-") and len(unpacked(record["top"][0]["window_levels"])) == 256
    quote = json.loads((lstm / "lstm.cell.1" / "144" / "unit.json").read_text())
    assert quote["label"] == "inside a quoted string"  # content/: found by charlstm/find_units.py
    top = quote["top"][0]
    assert unpacked(top["window_levels"])[top["position"][0]] > TEXT_LEVELS[8] and quote["bottom"][0]["value"] < 0
    indent = (lstm / "lstm.cell.0" / "index.html").read_text()
    assert "indentation level" in indent and "position in the line" in indent
    gpt = out / "char-gpt"
    assert len([p for p in (gpt / "blocks.2.mlp.act").iterdir() if p.name.isdigit()]) == 256
    assert len([p for p in (gpt / "blocks.2.mlp.act.sae").iterdir() if p.name.isdigit()]) == 2048
    neuron = json.loads((gpt / "blocks.2.mlp.act" / "0" / "unit.json").read_text())
    assert neuron["effects"]["method"].startswith("direct: the unit's output vector (its row of blocks.2.mlp.proj)")
    assign = json.loads((gpt / "blocks.2.mlp.act.sae" / "1503" / "unit.json").read_text())
    assert assign["label"] == "= of an assignment"  # content/: found by chargpt/find_latents.py
    assert assign["effects"]["method"].startswith("direct: the latent's decoder row (W_dec) through blocks.2.mlp.proj")
    assert assign["inactive"] > 0 and assign["stats"]["frac_active"] < 0.05  # sparse: bands over where it fired
    related = (gpt / "blocks.2.mlp.act.sae" / "related.js").read_text()
    assert '"layer":"blocks.2.mlp.act.sae"' in related and '"layer":"blocks.2.mlp.act"' in related
    minilm = out / "minilm"
    neuron = json.loads((minilm / "encoder.layer.5.intermediate" / "0" / "unit.json").read_text())
    assert len(neuron["top_tokens"]) == 10 and neuron["top"][0]["input"].startswith("pydoc-topics")
    assert neuron["effects"] is None


def test_the_hand_labelled_lstm_cells_get_automatic_labels_naming_the_same_thing(default_site):
    """The cells content/ labels by hand, and the automatic label that names the same thing (the
    first, or for the column cell the second, whose first says where on the line it is high)."""
    expected = {("lstm.cell.0", 10): ("inside a docstring", 0), ("lstm.cell.1", 144): ("inside a one-line string", 0),
                ("lstm.cell.0", 194): ("on a line indented 8 or more", 0), ("lstm.hidden.1", 214): ("a line break", 0),
                ("lstm.cell.1", 66): ("inside parentheses", 0), ("lstm.cell.0", 36): ("in the first 16 columns of a line", 1)}
    for (layer, unit), (label, rank) in expected.items():
        record = json.loads((default_site / "char-lstm" / layer / str(unit) / "unit.json").read_text())
        assert record["auto_labels"][rank]["label"] == label, (layer, unit, record["auto_labels"])
        assert record["auto_labels"][rank]["score"] > 0.84
