"""Dictionaries on a layer (``sae:`` in SAELens' format or as a bare safetensors file, and
``directions:``) become layers of units: built end to end on a tiny model, each latent's values
checked against its encoder applied by hand to the layer's output; bad dictionaries are one-line
errors naming the layer, the file and the sizes."""
from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from galleria.cli import main

MODEL = '''
import torch
from torch import nn


def tiny():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 5, stride=2), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))
'''

LAYERS = """
      - '2'
      - {name: '2', sae: saes/relu}
      - {name: '0', sae: saes/jumprelu.safetensors}
      - {name: '4', sae: saes/topk}
      - {name: '6', directions: probes.safetensors}
"""


def _site(root: Path, layers: str = LAYERS, name: str = "site.yaml") -> Path:
    (root / name).write_text(textwrap.dedent("""\
        site: {title: Dictionaries, output_dir: out}
        inputs:
          - {id: photos, path: photos}
        models:
          - id: tiny
            source: dictmodel:tiny
            preprocessing: {size: 32}
            labels: labels.txt
            layers:
        """) + textwrap.indent(textwrap.dedent(layers).strip("\n"), "      ") + "\n"
        + "featureviz: {units: 2, steps: 8, size: 32}\nattribution: {inputs: 8}\n")
    return root / name


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dictionaries")
    (root / "dictmodel.py").write_text(MODEL)
    (root / "labels.txt").write_text("".join(f"class {i}\n" for i in range(10)))
    photos = root / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(10):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(photos / f"p{i}.png")
    torch.manual_seed(3)
    saes = root / "saes"
    for name, d_in, d_sae, cfg in (("relu", 16, 24, {"architecture": "standard", "activation_fn_str": "relu",
                                                    "apply_b_dec_to_input": True, "normalize_activations": "none"}),
                                   ("topk", 16, 12, {"architecture": "topk", "activation_fn_kwargs": {"k": 3}})):
        (saes / name).mkdir(parents=True)
        (saes / name / "cfg.json").write_text(json.dumps({"d_in": d_in, "d_sae": d_sae, **cfg}))
        save_file({"W_enc": torch.randn(d_in, d_sae), "b_enc": torch.randn(d_sae) * 0.1,
                   "W_dec": torch.randn(d_sae, d_in), "b_dec": torch.randn(d_in) * 0.1},
                  str(saes / name / "sae_weights.safetensors"))
    save_file({"W_enc": torch.randn(8, 20), "b_enc": torch.zeros(20), "threshold": torch.rand(20) * 0.3},
              str(saes / "jumprelu.safetensors"))
    save_file({"directions": torch.randn(3, 10)}, str(root / "probes.safetensors"))
    _site(root)
    assert main(["build", "-q", "-f", str(root / "site.yaml")]) == 0
    return root


def _outputs(root: Path) -> dict[str, torch.Tensor]:
    """Every listed module's output over the photos, run by hand (size 32, mean 0, std 1)."""
    import sys
    sys.path.insert(0, str(root))
    from dictmodel import tiny

    model = tiny().eval()
    seen = {}
    for name, module in model.named_modules():
        if name:
            module.register_forward_hook(lambda m, a, out, name=name: seen.__setitem__(name, out))
    x = torch.stack([torch.from_numpy(np.array(Image.open(p).convert("RGB"))).permute(2, 0, 1).float() / 255
                     for p in sorted((root / "photos").glob("*.png"))])
    with torch.no_grad():
        model(x)
    return seen


def _unit(root: Path, layer: str, unit: int) -> dict:
    return json.loads((root / "out" / "tiny" / layer / str(unit) / "unit.json").read_text())


def test_each_dictionary_is_a_layer_whose_units_are_its_encoder_on_the_layer(project):
    from safetensors.torch import load_file

    out = _outputs(project)
    relu = load_file(str(project / "saes/relu/sae_weights.safetensors"))
    x = out["2"].movedim(1, -1)  # [B, H, W, 16]: the conv's channels are the SAE's d_in
    expected = torch.relu((x - relu["b_dec"]) @ relu["W_enc"] + relu["b_enc"])
    jump = load_file(str(project / "saes/jumprelu.safetensors"))
    pre = out["0"].movedim(1, -1) @ jump["W_enc"] + jump["b_enc"]
    jumped = pre * (pre > jump["threshold"])
    topk = load_file(str(project / "saes/topk/sae_weights.safetensors"))
    pre = out["4"].movedim(1, -1) @ topk["W_enc"] + topk["b_enc"]
    kept = pre.topk(3, dim=-1)
    topped = torch.zeros_like(pre).scatter(-1, kept.indices, torch.relu(kept.values))
    probes = out["6"] @ load_file(str(project / "probes.safetensors"))["directions"].T
    for layer, values, units in (("2.sae", expected, 24), ("0.sae", jumped, 20), ("4.sae", topped, 12),
                                 ("6.directions", probes, 3)):
        assert (project / "out" / "tiny" / layer / str(units - 1) / "index.html").is_file()
        assert not (project / "out" / "tiny" / layer / str(units)).exists()
        for unit in (0, units - 1):
            stats = _unit(project, layer, unit)["stats"]
            column = values[..., unit]
            assert stats["max"] == pytest.approx(float(column.max()), rel=1e-5, abs=1e-6), (layer, unit)
            assert stats["frac_active"] == pytest.approx(float((column > 0).float().mean()), abs=1e-6)
    assert (_unit(project, "2", 0)["stats"]["max"] == pytest.approx(float(out["2"][:, 0].max()), rel=1e-5))
    assert _unit(project, "2", 0)["effects"] is not None  # the layer's channels feed the classes
    assert all(_unit(project, layer, 0)["effects"] is None for layer in ("2.sae", "6.directions"))  # latents do not
    page = (project / "out" / "tiny" / "2.sae" / "index.html").read_text()
    assert "Activation density of" in page  # the latents' densities, on the layer page


def test_galleria_layers_lists_each_dictionary_under_its_layer(project, capsys, monkeypatch):
    monkeypatch.chdir(project)
    assert main(["layers"]) == 0
    out = capsys.readouterr().out
    assert "1,946 parameters" in out  # the model's own, not its dictionaries'
    assert "*   2.sae          Dictionary             24×6×6         24" in out
    assert "*   6.directions   Dictionary             3               3" in out


def test_topk_latents_fire_k_at_a_time(project):
    densities = [_unit(project, "4.sae", u)["stats"]["frac_active"] for u in range(12)]
    assert sum(densities) == pytest.approx(3.0, abs=1e-6)  # k = 3 of 12 on every input, one position each


@pytest.mark.parametrize("layers, message", [
    ("- {name: '2', sae: saes/relu, directions: probes.safetensors}", "one dictionary"),
    ("- {name: '2', sae: saes/none}", "SAELens' format"),
    ("- {name: 'conv*', sae: saes/relu}", "not a pattern"),
    ("- {name: '0', sae: saes/relu}", "reads 16 features (d_in), but the layer's output is"),
    ("- {name: '9', sae: saes/relu}", "has no module '9'"),
    ("- {name: '2', sae: saes/no-bias.safetensors}", "no tensor 'b_enc'"),
    ("- {name: '2', sae: saes/bad-decoder.safetensors}", "W_dec is (3, 3); expected [d_sae=4, d_in=16]"),
    ("- {name: '2', sae: saes/estimated}", "fold_activation_norm_scaling_factor"),
])
def test_bad_dictionaries_are_one_line_errors(project, tmp_path, capsys, layers, message):
    save_file({"W_enc": torch.randn(16, 4)}, str(project / "saes" / "no-bias.safetensors"))
    save_file({"W_enc": torch.randn(16, 4), "b_enc": torch.zeros(4), "W_dec": torch.randn(3, 3)},
              str(project / "saes" / "bad-decoder.safetensors"))
    estimated = project / "saes" / "estimated"
    estimated.mkdir(exist_ok=True)
    (estimated / "cfg.json").write_text(json.dumps({"d_in": 16, "d_sae": 4, "normalize_activations":
                                                   "expected_average_only_in"}))
    save_file({"W_enc": torch.randn(16, 4), "b_enc": torch.zeros(4)}, str(estimated / "sae_weights.safetensors"))
    config = _site(project, layers, "bad.yaml")
    assert main(["build", "-q", "-f", str(config), "-d", str(tmp_path / "out")]) != 0
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_the_features_are_the_dimension_with_d_in_and_the_entry_says_which_when_two_have():
    from galleria.errors import BuildError
    from galleria.sources.dictionaries import Dictionary

    def encoder(layout=None):
        return Dictionary(torch.randn(6, 4), torch.zeros(4), None, "relu", None, None, "layer 'x'", layout)

    assert encoder()(torch.randn(2, 6, 5, 5)).shape == (2, 4, 5, 5)  # a conv map's channels
    assert encoder()(torch.randn(2, 5, 5, 6)).shape == (2, 5, 5, 4)  # channels last
    assert encoder()(torch.randn(2, 6, 6)).shape == (2, 6, 4)  # tokens: the last dimension
    with pytest.raises(BuildError, match=r"both its channels and its last dimension have 6 \(d_in\)"):
        encoder()(torch.randn(2, 6, 5, 6))
    assert encoder("channels-first")(torch.randn(2, 6, 5, 6)).shape == (2, 4, 5, 6)
    assert encoder("channels-last")(torch.randn(2, 6, 5, 6)).shape == (2, 6, 5, 4)
    with pytest.raises(BuildError, match=r"output is \(2, 5, 5\): no dimension has 6"):
        encoder()(torch.randn(2, 5, 5))


def test_saelens_input_normalisations_are_applied_before_b_dec(tmp_path):
    """An SAE saved with normalize_activations constant_norm_rescale or layer_norm reads each feature
    vector as SAELens does: rescaled to a norm of sqrt(d_in), or centred and divided by its standard
    deviation, before b_dec is taken off."""
    from galleria.config import DictionaryConfig
    from galleria.sources.dictionaries import load_dictionary

    torch.manual_seed(7)
    tensors = {"W_enc": torch.randn(6, 5), "b_enc": torch.randn(5) * 0.1, "W_dec": torch.randn(5, 6),
               "b_dec": torch.randn(6) * 0.1}
    x = torch.randn(3, 4, 6) * 5 + 2
    expected = {"constant_norm_rescale": x * (6 ** 0.5 / x.norm(dim=-1, keepdim=True)),
                "layer_norm": (x - x.mean(-1, keepdim=True)) / ((x - x.mean(-1, keepdim=True)).std(-1, keepdim=True) + 1e-5)}
    for norm, scaled in expected.items():
        folder = tmp_path / norm
        folder.mkdir()
        (folder / "cfg.json").write_text(json.dumps({"d_in": 6, "d_sae": 5, "architecture": "standard",
                                                     "apply_b_dec_to_input": True, "normalize_activations": norm}))
        save_file(tensors, str(folder / "sae_weights.safetensors"))
        sae = load_dictionary(DictionaryConfig("sae", folder, "h"), "layer 'h'")
        want = torch.relu((scaled - tensors["b_dec"]) @ tensors["W_enc"] + tensors["b_enc"])
        assert torch.allclose(sae(x), want, atol=1e-5), norm


def test_an_sae_on_a_sequential_block_reads_it_without_joining_it(project, tmp_path):
    """A Sequential runs every child it holds: the SAE hung on one (a ResNet stage, a timm stage) must
    read its output, not become its last step. The block's own units and the model's output stay
    what a plain forward pass gives, and the latents are the encoder on the block's output."""
    (tmp_path / "nestedmodel.py").write_text(textwrap.dedent('''
        import torch
        from torch import nn


        def nested():
            torch.manual_seed(0)
            return nn.Sequential(nn.Sequential(nn.Conv2d(3, 8, 5, stride=2), nn.ReLU()), nn.Conv2d(8, 4, 3),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten())
        '''))
    for name in ("labels.txt", "photos"):
        (tmp_path / name).symlink_to(project / name)
    torch.manual_seed(4)
    w_enc, b_enc = torch.randn(8, 6), torch.randn(6) * 0.1
    save_file({"W_enc": w_enc, "b_enc": b_enc}, str(tmp_path / "block.safetensors"))
    config = _site(tmp_path, "- '0'\n- '3'\n- {name: '0', sae: block.safetensors}").read_text()
    (tmp_path / "site.yaml").write_text(config.replace("dictmodel:tiny", "nestedmodel:nested").replace(
        "    labels: labels.txt\n", ""))
    assert main(["build", "-q", "-f", str(tmp_path / "site.yaml")]) == 0
    sys.path.insert(0, str(tmp_path))
    try:
        from nestedmodel import nested
    finally:
        sys.path.remove(str(tmp_path))
    model = nested().eval()
    x = torch.stack([torch.from_numpy(np.array(Image.open(p).convert("RGB"))).permute(2, 0, 1).float() / 255
                     for p in sorted((tmp_path / "photos").glob("*.png"))])
    with torch.no_grad():
        block = model[0](x)
        logits = model(x)
    out = tmp_path / "out" / "tiny"
    assert _stat(out, "0", 2)["max"] == pytest.approx(float(block[:, 2].max()), rel=1e-5)
    assert _stat(out, "3", 1)["max"] == pytest.approx(float(logits[:, 1].max()), rel=1e-5)
    latents = torch.relu(block.movedim(1, -1) @ w_enc + b_enc)
    assert _stat(out, "0.sae", 4)["max"] == pytest.approx(float(latents[..., 4].max()), rel=1e-5, abs=1e-6)


def _stat(out: Path, layer: str, unit: int) -> dict:
    return json.loads((out / layer / str(unit) / "unit.json").read_text())["stats"]


def test_planted_latents_show_their_density_the_dead_share_and_the_inputs_they_never_fire_on(project, tmp_path):
    """Eight latents on layer '2': three that never fire, four always on, and one that fires on exactly
    two of the ten photos (a channel above a threshold between their peaks)."""
    for name in ("dictmodel.py", "labels.txt", "photos"):
        (tmp_path / name).symlink_to(project / name)
    channel = _outputs(project)["2"][:, 5]  # [photos, 6, 6]
    peaks = channel.flatten(1).amax(1).sort(descending=True).values
    threshold = float(peaks[1] + peaks[2]) / 2
    w_enc, b_enc = torch.zeros(16, 8), torch.zeros(8)
    b_enc[:3] = -1e3
    b_enc[3], b_enc[5:] = 1.0, 0.5
    w_enc[5, 4], b_enc[4] = 1.0, -threshold
    save_file({"W_enc": w_enc, "b_enc": b_enc}, str(tmp_path / "planted.safetensors"))
    _site(tmp_path, "- {name: '2', sae: planted.safetensors}")
    assert main(["build", "-q", "-f", str(tmp_path / "site.yaml")]) == 0
    layer = tmp_path / "out" / "tiny" / "2.sae"
    records = [json.loads((layer / str(unit) / "unit.json").read_text()) for unit in range(8)]
    assert [("dead" in r["flags"]) for r in records] == [True] * 3 + [False] * 5
    assert records[3]["stats"]["frac_active"] == 1 and records[3]["inactive"] == 0
    sparse = records[4]
    assert sparse["stats"]["frac_active"] == pytest.approx(float((channel > threshold).float().mean()), abs=1e-6)
    assert sparse["inactive"] == 8 and sum(b["count"] for b in sparse["bands"]) == 2
    assert all(e["value"] > 0 for b in sparse["bands"] for e in b["examples"])
    page = (layer / "4" / "index.html").read_text()
    assert "Inactive on 80.0% of inputs (8)" in page and "Non-zero activations (log count)" in page
    grid = (layer / "index.html").read_text()
    assert "3 dead units (never above zero) not shown" in grid and "37.5%" in grid


def _related(root: Path, layer: str) -> tuple[list, dict]:
    """A layer's related.js: its kinds and, per unit, per kind, [unit, value] pairs."""
    script = (root / "out" / "tiny" / layer / "related.js").read_text()
    kinds, units, _ = json.loads("[" + script.removeprefix("galleriaRelated(").removesuffix(");\n") + "]")
    return kinds, units


def test_related_units_are_decoder_neighbours_and_loadings_for_latents_and_correlated_peaks_for_channels(project):
    from safetensors.torch import load_file

    w_dec = load_file(str(project / "saes/relu/sae_weights.safetensors"))["W_dec"].double()  # [24 latents, 16]
    kinds, units = _related(project, "2.sae")
    assert [(k["layer"], k["href"]) for k in kinds] == [("2.sae", "../2.sae/"), ("2", "../2/")]  # the host's pages
    assert "decoder rows" in kinds[0]["method"] and "loads on" in kinds[1]["method"]
    neighbours, loadings = units["5"]
    direction = w_dec / w_dec.norm(dim=1, keepdim=True)
    cosine = direction @ direction[5]
    cosine[5] = -2
    best = cosine.topk(4)
    assert [i for i, _ in neighbours] == best.indices.tolist()
    assert [v for _, v in neighbours] == pytest.approx(best.values.tolist(), rel=5e-3)  # 3 significant digits
    assert [i for i, _ in loadings] == w_dec[5].topk(4).indices.tolist() + (-w_dec[5]).topk(2).indices.tolist()
    page = (project / "out" / "tiny" / "2.sae" / "5" / "index.html").read_text()
    assert 'class="related" data-unit="5"' in page  # drawn from the layer's script

    peaks = _outputs(project)["2"].flatten(2).amax(2).double()  # [photos, channels]
    correlation = torch.from_numpy(np.corrcoef(peaks.T.numpy()))[3]
    correlation[3] = -2
    kinds, units = _related(project, "2")
    found = correlation.topk(4)
    assert len(kinds) == 1 and "correlate" in kinds[0]["method"]
    assert [i for i, _ in units["3"][0]] == [i for i, v in zip(found.indices.tolist(), found.values) if v > 0]
    assert [v for _, v in units["3"][0]] == pytest.approx([v for v in found.values.tolist() if v > 0], rel=5e-3)
