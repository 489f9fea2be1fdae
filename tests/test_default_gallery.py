"""The repository's own site.yaml builds offline, from installed packages, into a real gallery."""
from __future__ import annotations

import json
from pathlib import Path

from galleria.commands.build import build

REPO = Path(__file__).resolve().parents[1]


def test_default_gallery_builds(tmp_path):
    out = tmp_path / "site"
    report = build(REPO / "site.yaml", out, quiet=True)
    assert report.models == 3 and report.inputs_used > 3000 and report.inputs_skipped == 0 and not report.warnings
    chelsea = json.loads((out / "efficientnet-lite0" / "classifier" / "281" / "unit.json").read_text())
    assert chelsea["label"] == "tabby"  # output units are named after their ImageNet class
    # the tabby-cat logit's best example is a crop of the cat photo, and the model agrees
    assert chelsea["top"][0]["input"].startswith("chelsea")
    assert chelsea["top"][0]["prediction"]["label"] in {"tabby", "tiger cat", "Egyptian cat"}
    model_page = (out / "efficientnet-lite0" / "index.html").read_text()
    for layer in ["blocks.1", "blocks.4", "blocks.6", "classifier"]:
        assert f'href="{layer}/index.html"' in model_page
    assert len(list((out / "efficientnet-lite0" / "blocks.6").iterdir())) >= 320
    assert "cat fur and whiskers" in (out / "efficientnet-lite0" / "blocks.6" / "index.html").read_text()
    pooled = json.loads((out / "efficientnet-lite0" / "global_pool" / "0" / "unit.json").read_text())
    assert len(pooled["logit_effects"]["up"]) == 10 and len(pooled["logit_effects"]["down"]) == 5
    # pen strokes (content/): the classes it pushes are thin dark curved things; the bn2 units it is
    # built from are linked; weak responses are sampled across its range
    pen = json.loads((out / "efficientnet-lite0" / "blocks.6" / "134" / "unit.json").read_text())
    assert pen["logit_effects"]["method"].startswith("activation × gradient")
    assert "nematode" in [e["label"] for e in pen["logit_effects"]["up"][:3]]
    assert pen["built_from"]["layer"] == "blocks.6.0.bn2" and len(pen["built_from"]["up"]) == 6
    assert len(pen["intervals"]) == 4 and sum(b["count"] for b in pen["intervals"]) == 1061  # every crop
    fur = json.loads((out / "efficientnet-lite0" / "blocks.6" / "285" / "unit.json").read_text())["featureviz"]
    assert fur["channel"]["peak"] > fur["dataset_max"]  # the optimized image beats every photo
    assert fur["negative"] and len(fur["diverse"]) == 3
    assert (out / "efficientnet-lite0" / "blocks.6" / "featureviz" / "index.html").is_file()
    health = (out / "efficientnet-lite0" / "health" / "index.html").read_text()
    assert "global_pool" in health and "never above zero" in health
    from test_build import parse

    for page in out.rglob("*.html"):  # notes and templates alike: every link resolves
        if page.name != "404.html":
            for link in parse(page).links:
                target = link.split("#")[0]
                assert not target or (page.parent / target).exists(), f"{page} links to missing {link}"
    _text_checks(out)
    relu6 = json.loads((out / "efficientnet-lite0" / "blocks.6.0.bn2" / "494" / "unit.json").read_text())
    assert relu6["flags"] == ["dead"] and relu6["stats"]["max"] == 0  # a ReLU6 channel that never fires here


def _text_checks(out: Path) -> None:
    """The two text models: the character LSTM on the email package, MiniLM on the reference docs."""
    lstm = out / "char-lstm"
    for layer in ("lstm.hidden.0", "lstm.cell.0", "lstm.hidden.1", "lstm.cell.1"):
        assert len([p for p in (lstm / layer).iterdir() if p.name.isdigit()]) == 256
    record = json.loads((lstm / "lstm.hidden.1" / "0" / "unit.json").read_text())
    assert len(record["logit_effects"]["up"]) == 10  # the last layer feeds the next-character head
    assert record["top"][0]["input"].startswith("email-") and len(record["top"][0]["values"]) == 256
    quote = json.loads((lstm / "lstm.cell.1" / "144" / "unit.json").read_text())
    assert quote["label"] == "inside a quoted string"  # content/: found by charlstm/find_units.py
    top = quote["top"][0]
    assert top["values"][top["position"][0]] > 0 > quote["bottom"][0]["value"]
    indent = (lstm / "lstm.cell.0" / "index.html").read_text()
    assert "indentation level" in indent and "position in the line" in indent
    minilm = out / "minilm"
    neuron = json.loads((minilm / "encoder.layer.5.intermediate" / "0" / "unit.json").read_text())
    assert len(neuron["top_tokens"]) == 10 and neuron["top"][0]["input_title"].startswith("topics[")
    assert neuron["logit_effects"] is None
