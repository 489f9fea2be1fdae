"""Text models end to end: a tiny character LSTM trained in-process, built into a site, and
checked as a visitor sees it: per-token values equal to a direct forward pass, corpus markup
shown as text, windows that tile the text exactly."""
from __future__ import annotations

import json
import html
import re
from html.parser import HTMLParser

import numpy as np
import pytest
import torch
from torch import nn

from galleria.cli import main
from galleria.config import InputSetConfig, CropScheme
from galleria.records import TEXT_LEVELS, unpacked
from galleria.sources.text import CharTokenizer, TokenLoader, discover_text
from galleria.visualize.tokens import visible

MODEL_CODE = '''
import torch
from torch import nn


class CharNet(nn.Module):
    def __init__(self, vocab=98):
        super().__init__()
        self.embed = nn.Embedding(vocab, 8)
        self.lstm = nn.LSTM(8, 12, 2, batch_first=True)
        self.head = nn.Linear(12, vocab)

    def forward(self, ids):
        return self.head(self.lstm(self.embed(ids))[0])
'''

SITE = """\
site: {title: Tiny text, output_dir: out}
inputs:
  - id: code
    type: text
    path: corpus
    window: 48
    overlap: 12
models:
  - id: charnet
    source: charnet_text:CharNet
    tokenizer: chars:vocab.json
    weights: charnet.pt
    layers: [lstm.hidden.0, lstm.cell.0, lstm.hidden.1]
examples: {top: 3, bottom: 2, context: 10}
extract: {batch_size: 5}
"""

CORPUS = ('def greet(name):\n    """Say hello."""\n    return "<script>alert(1)</script> & " + name\n\n'
          + "".join(f"x{i} = [{i}, ({i} + 1)]  # item {i}\n" for i in range(30)))


def _vocab() -> list[str]:
    return ["\n", "\t"] + [chr(c) for c in range(32, 127)] + ["\ufffd"]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return make_project(tmp_path_factory.mktemp("textproject"))


def make_project(root):
    """The character LSTM (a few training steps), its site.yaml, vocabulary and corpus, in ``root``;
    returns root, the network and the vocabulary's index."""
    (root / "charnet_text.py").write_text(MODEL_CODE)
    (root / "site.yaml").write_text(SITE)
    vocab = _vocab()
    (root / "vocab.json").write_text(json.dumps({"tokens": vocab, "unknown": "\ufffd"}))
    (root / "corpus").mkdir()
    (root / "corpus" / "greet.py").write_text(CORPUS)
    (root / "corpus" / "notes.md").write_text("Brackets (nest [deep {inside}]) and quotes 'here'.\n" * 6)
    # a few steps of next-character training, so the units are not those of a random model
    import importlib.util

    spec = importlib.util.spec_from_file_location("charnet_text", root / "charnet_text.py")
    code = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(code)
    torch.manual_seed(0)
    net = code.CharNet()
    index = {c: i for i, c in enumerate(vocab)}
    ids = torch.tensor([index.get(c, len(vocab) - 1) for c in CORPUS])
    optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
    for step in range(20):
        start = (step * 37) % (len(ids) - 65)
        chunk = ids[start:start + 65].unsqueeze(0)
        loss = nn.functional.cross_entropy(net(chunk[:, :-1]).flatten(0, 1), chunk[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    torch.save(net.state_dict(), root / "charnet.pt")
    return root, net, index


@pytest.fixture(scope="module")
def built(project):
    root = project[0]
    assert main(["build", "-q", "-f", str(root / "site.yaml")]) == 0
    return root / "out"


def _states(net: nn.Module, ids: torch.Tensor) -> dict[str, np.ndarray]:
    """Hidden and cell states of every step, by a plain loop over LSTM cells: the reference."""
    lstm = net.lstm
    x = net.embed(ids.unsqueeze(0))[0]
    out = {}
    for layer in range(lstm.num_layers):
        cell = nn.LSTMCell(lstm.input_size if layer == 0 else lstm.hidden_size, lstm.hidden_size)
        cell.load_state_dict({k.replace(f"_l{layer}", ""): v for k, v in lstm.state_dict().items()
                              if k.endswith(f"_l{layer}")})
        h = c = torch.zeros(1, lstm.hidden_size)
        hs, cs = [], []
        for t in range(len(x)):
            h, c = cell(x[t:t + 1], (h, c))
            hs.append(h[0])
            cs.append(c[0])
        out[f"lstm.hidden.{layer}"], out[f"lstm.cell.{layer}"] = torch.stack(hs).numpy(), torch.stack(cs).numpy()
        x = torch.stack(hs)
    return out


def _levels_agree(example: dict, expected: np.ndarray, scale: float) -> None:
    """The colour levels unit.json carries for a window's tokens are the values' steps of ±8 on the
    unit's scale (one step of slack where a value sits on a step's edge)."""
    shown = np.array([TEXT_LEVELS.index(c) - 8 for c in unpacked(example["window_levels"])])
    steps = np.clip(np.rint(expected / scale * 8), -8, 8)
    assert len(shown) == len(expected) and np.abs(shown - steps).max() <= 1


def test_per_token_values_match_a_direct_forward_pass(project, built):
    root, net, index = project
    text = (root / "corpus" / "greet.py").read_text() + "\n\n" + (root / "corpus" / "notes.md").read_text()
    checked = 0
    for layer in ("lstm.hidden.0", "lstm.cell.0", "lstm.hidden.1"):
        for unit in (0, 5, 11):
            record = json.loads((built / "charnet" / layer / str(unit) / "unit.json").read_text())
            examples = record["top"] + record["bottom"]
            assert record["top"] and record["bottom"]
            for band in record["bands"]:  # sampled examples: where and how much, not every value
                for example in band["examples"]:
                    assert band["lo"] <= example["value"] < band["hi"] + 1e-3
                    assert example["at"] == visible(text[example["window_start"] + example["position"][0]])
            for example in examples:
                start = example["window_start"]
                window = text[start:start + 48]
                with torch.no_grad():
                    expected = _states(net, torch.tensor([index.get(c, len(index) - 1) for c in window]))[layer]
                _levels_agree(example, expected[:, unit], record["scale"][1])
                assert example["at"] == visible(window[example["position"][0]])
                assert example["value"] == pytest.approx(expected[example["position"][0], unit], abs=2e-3)
                checked += 1
            top = [e["value"] for e in record["top"]]
            assert top == sorted(top, reverse=True) and top[0] == pytest.approx(record["stats"]["max"], abs=1e-3)
    assert checked > 30


class _Text(HTMLParser):
    """The visible text inside elements with a given class."""

    def __init__(self, cls: str):
        super().__init__()
        self.cls, self.depth, self.parts, self.tags = cls, 0, [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if self.depth or self.cls in (dict(attrs).get("class") or "").split():
            self.depth += 1

    def handle_endtag(self, tag):
        if self.depth:
            self.depth -= 1

    def handle_data(self, data):
        if self.depth:
            self.parts.append(data)


def test_markup_in_the_corpus_renders_as_text(built):
    page = (built / "charnet" / "inputs" / "code-36" / "index.html").read_text()  # the window holding it
    assert "<script>alert" not in page
    parser = _Text("input-text")
    parser.feed(page)
    shown = "".join(parser.parts)
    assert '"<script>alert(1)</script>·&·"' in shown  # whitespace drawn, markup as characters
    assert shown.startswith('"↵\n····return·"')
    assert parser.tags.count("script") == 1  # the theme's own script, nothing from the corpus


def test_unit_page_shows_each_example_as_text_with_its_levels_and_extreme(built):
    """Without script the page shows readable text; its script colours each token from the levels of
    the whole window (data-w, from data-lo on) and outlines the token at data-at, and shows the whole
    window when asked."""
    page = (built / "charnet" / "lstm.hidden.1" / "5" / "index.html").read_text()
    record = json.loads((built / "charnet" / "lstm.hidden.1" / "5" / "unit.json").read_text())
    shown = re.findall(r'<pre class="tx-ctx" data-at="(\d+)"[^>]*? data-w="([^"]*)" data-s="\d+" data-lo="(\d+)">'
                       r'(.*?)</pre>', page, re.S)
    assert len(shown) == len(record["top"]) + len(record["bottom"])
    top = record["top"][0]
    at, window, lo, text = shown[0]
    levels = unpacked(window)[int(lo):top["shown"][1]]
    assert window == top["window_levels"] and int(lo) == top["shown"][0] and "levels" not in top
    assert int(at) == top["position"][0] - top["shown"][0]
    assert html.unescape(text).replace("↵\n", "\n").replace("→", "\t")[int(at)] == top["at"].replace("↵\n", "\n")[0]
    assert levels[int(at)] == TEXT_LEVELS[-1] or top["value"] <= 0  # the strongest value, the strongest colour
    assert "highest mean on" in page and page.count("data-window") == len(record["top"]) + len(record["bottom"])
    assert page.count(f'data-w="{top["window_levels"]}"') >= 1
    effects = record["effects"]
    assert effects and effects["method"].startswith("exact: the language model head")
    assert len(record["top_tokens"]) == 10


def test_layer_grid_and_inputs_listing_show_text(built):
    grid = (built / "charnet" / "lstm.cell.0" / "index.html").read_text()
    assert grid.count('<span class="tx-snippet">') == 12
    listing = (built / "charnet" / "inputs" / "index.html").read_text()
    assert "greet.py · tokens 0–47" in listing
    model = (built / "charnet" / "index.html").read_text()
    assert "windows of 48 tokens" in model


def _corpus_set(root, window=16, overlap=5) -> InputSetConfig:
    return InputSetConfig("c", root, ("*.txt",), (), CropScheme((1,), 0.0), None, None, "text", None, None,
                          window, overlap)


def test_windows_tile_the_text_exactly(tmp_path):
    (tmp_path / "vocab.json").write_text(json.dumps({"tokens": _vocab(), "unknown": "\ufffd"}))
    (tmp_path / "a.txt").write_text("The first document, with an ünïcode word.\n")
    (tmp_path / "b.txt").write_text("Second one <b>bold</b>\tand a tab." * 3)
    tokenizer = CharTokenizer(tmp_path / "vocab.json")
    inputs = discover_text((_corpus_set(tmp_path),), tokenizer)
    corpus = inputs.text
    text = (tmp_path / "a.txt").read_text() + "\n\n" + (tmp_path / "b.txt").read_text()
    assert "".join(corpus.pieces) == text
    starts = [item.span[0] for item in inputs.items]
    assert starts[:-1] == list(range(0, starts[-2] + 1, 11)) and inputs.items[-1].span[1] == len(text)
    assert all(item.span[1] - item.span[0] == 16 for item in inputs.items)
    batch = TokenLoader(corpus).batch(list(inputs.items[:3]))[0]
    assert batch.shape == (3, 16)
    assert "".join(tokenizer.labels[i] for i in batch[1].tolist()) == text[11:27]
    assert tokenizer.labels[int(corpus.ids[text.index("ü")])] == "\ufffd"  # unknown characters
    assert inputs.items[-1].title.startswith("b.txt · tokens")
    assert inputs.items[2].source == "a.txt" and inputs.items[3].source == "a.txt (+1 more)"


def test_token_means_merge_exactly():
    from galleria.extract.token_means import TokenMeans

    torch.manual_seed(0)
    acts = torch.randn(10, 4, 7)
    compact = torch.randint(-1, 5, (10, 7))
    whole = TokenMeans(5, 4)
    whole.update(acts, compact)
    halves = [TokenMeans(5, 4), TokenMeans(5, 4)]
    halves[0].update(acts[:3], compact[:3])
    halves[1].update(acts[3:], compact[3:])
    merged = halves[1].merge(halves[0])
    assert torch.equal(merged.counts, whole.counts)
    torch.testing.assert_close(merged.sums, whole.sums, rtol=0, atol=1e-12)
    rows = compact.flatten() == 2
    expected = acts.transpose(1, 2).reshape(-1, 4)[rows].double().mean(0)
    torch.testing.assert_close(whole.sums[2] / whole.counts[2], expected)


def test_text_reducers_over_halves_merge_into_the_whole(project):
    from galleria.extract.reducers import LayerReducer

    _, net, index = project
    ids = torch.tensor([[index.get(c, 0) for c in CORPUS[i:i + 40]] for i in range(0, 400, 40)])
    with torch.no_grad():
        acts = net.lstm(net.embed(ids))[0].transpose(1, 2).contiguous()  # [windows, units, tokens]
    whole, first, second = (LayerReducer(12, 4, 4, 32) for _ in range(3))
    whole.update(acts, torch.arange(10))
    first.update(acts[:4], torch.arange(4))
    second.update(acts[4:], torch.arange(4, 10))
    for a, b in zip(first.merge(second).summaries(), whole.summaries()):
        assert a.top == b.top and a.bottom == b.bottom
        assert a.stats.histogram == b.stats.histogram and a.stats.count == b.stats.count


def test_text_config_errors(project, tmp_path, capsys):
    root = project[0]
    site = (root / "site.yaml").read_text()
    cases = [
        (site.replace("tokenizer: chars:vocab.json", "tokenizer: chars:missing.json"),
         "tokenizer file 'missing.json' not found"),
        (site.replace("overlap: 12", "overlap: 48"), "overlap: must be at least 0 and below the window (48)"),
        (site.replace("    tokenizer: chars:vocab.json\n", ""), "model 'charnet' reads images but no input set holds any"),
        (site.replace("lstm.cell.0", "embed.weight"), "has no layer 'embed.weight'"),
        (site.replace("    weights: charnet.pt\n", "    weights: charnet.pt\n    inputs: [cod]\n"),
         "no input set 'cod' (did you mean 'code'?)"),
        (site.replace("    weights: charnet.pt\n", "    weights: charnet.pt\n    inputs: []\n"),
         "inputs: must name at least one input set"),
    ]
    for text, message in cases:
        (root / "bad.yaml").write_text(text)
        code = main(["build", "-q", "-f", str(root / "bad.yaml"), "-d", str(tmp_path / "o")])
        err = capsys.readouterr().err
        assert code != 0 and message in err, err
        assert "Traceback" not in err and not (tmp_path / "o").exists()


TRANSFORMER_SITE = """\
site: {title: Tiny transformer, output_dir: out}
inputs:
  - id: topics
    python: tiny_topics:TOPICS
    window: 14
    overlap: 4
models:
  - id: bert
    source: transformers:tinybert
    layers: [bert.encoder.layer.*.intermediate]
examples: {top: 3, bottom: 2}
attribution: {inputs: 0}
"""


@pytest.fixture(scope="module")
def transformer_project(tmp_path_factory):
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    root = tmp_path_factory.mktemp("transformer")
    words = "the a cat dog sat on mat ran to tree and then <b> </b> < > b / .".split()
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words,
                                         *[chr(c) for c in range(97, 123)],
                                         *[f"##{chr(c)}" for c in range(97, 123)]])}
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]",
                                                             special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    folder = root / "tinybert"
    folder.mkdir()
    tokenizer.save(str(folder / "tokenizer.json"))
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=24, max_position_embeddings=32)
    model = transformers.BertForMaskedLM(config).eval()
    model.save_pretrained(folder)
    topics = {"pets": "The cat sat on the mat. The dog ran to the tree, and then <b>sat</b>.",
              "more": "A dog and a cat ran. " * 4}
    (root / "tiny_topics.py").write_text(f"TOPICS = {topics!r}\n")
    (root / "site.yaml").write_text(TRANSFORMER_SITE)
    return root, model, tokenizer, topics


def test_transformer_neurons_match_a_direct_forward_pass(transformer_project):
    root, model, tokenizer, topics = transformer_project
    assert main(["build", "-q", "-f", str(root / "site.yaml")]) == 0
    out = root / "out" / "bert"
    text = "\n\n".join(topics.values())
    encoding = tokenizer.encode(text, add_special_tokens=False)
    captured = {}
    model.bert.encoder.layer[1].intermediate.register_forward_hook(lambda m, i, o: captured.__setitem__("acts", o))
    checked = 0
    for unit in (0, 7, 23):
        record = json.loads((out / "bert.encoder.layer.1.intermediate" / str(unit) / "unit.json").read_text())
        for example in record["top"] + record["bottom"]:
            start = example["window_start"]
            ids = torch.tensor([[2, *encoding.ids[start:start + 14], 3]])
            with torch.no_grad():
                model(input_ids=ids, attention_mask=torch.ones_like(ids))
            expected = captured["acts"][0, 1:-1, unit].numpy()  # [CLS] and [SEP] are seen, not shown
            _levels_agree(example, expected, record["scale"][1])
            assert example["value"] == pytest.approx(float(expected[example["position"][0]]), abs=2e-3)
            checked += 1
        assert record["effects"] is None  # the MLP feeds no head directly
    assert checked >= 12
    page = (out / "inputs" / "topics-10" / "index.html").read_text()
    parser = _Text("input-text")
    parser.feed(page)
    assert "<b>sat</b>" in "".join(parser.parts) and "<b>sat" not in page  # the text as written, escaped
    assert "[CLS]" not in page
    assert "windows of 14 tokens" in (out / "index.html").read_text()


def test_a_missing_text_extra_skips_its_model_in_one_line(project, tmp_path, monkeypatch, capsys):
    import importlib.util

    from galleria.commands.build import build

    root = project[0]
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("transformers", "not_installed_model") else real(name, *a))
    (root / "extra.yaml").write_text((root / "site.yaml").read_text().replace("examples:", (
        "  - id: bert\n    source: transformers:not_installed_model/model\n    layers: [encoder.layer.0]\nexamples:")))
    (root / "content" / "bert").mkdir(parents=True)
    (root / "content" / "bert" / "index.md").write_text("Notes of a model that is not built today.\n")
    report = build(root / "extra.yaml", tmp_path / "site")
    assert report.models == 1 and (tmp_path / "site" / "charnet" / "index.html").is_file()
    assert report.warnings == ["skipped model 'bert': it needs pip install 'galleria[text]'"]
    assert capsys.readouterr().err.count("warning:") == 1
