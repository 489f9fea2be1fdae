"""Architectures nobody here wrote, built with random weights in-process: every layer's units are its
features (never its positions), whatever the layout, and a value on a unit page is the value a direct
forward pass gives at that input and position."""
from __future__ import annotations

import json
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image

from galleria.cli import main
from galleria.commands.layers import layers as layer_listing

MODELS = '''
import timm
import torch
import torchvision


def vit():
    torch.manual_seed(0)
    return timm.create_model("vit_tiny_patch16_224", pretrained=False)


def convnext():  # its blocks run their norm and MLP channels last
    torch.manual_seed(0)
    return timm.create_model("convnext_atto", pretrained=False, conv_mlp=False)


def swin():
    torch.manual_seed(0)
    return timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, embed_dim=16, depths=(1, 1),
                             num_heads=(1, 2))


def resnet():
    torch.manual_seed(0)
    return timm.create_model("resnet18", pretrained=False)


def tv_vit():  # torchvision's own, at a small size: 4 x 4 patches of 16 px and a class token
    torch.manual_seed(0)
    return torchvision.models.vision_transformer.VisionTransformer(
        image_size=64, patch_size=16, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=48, num_classes=10)


def tv_convnext():  # torchvision's ConvNeXt blocks permute to channels last around their MLP
    torch.manual_seed(0)
    from torchvision.models.convnext import CNBlockConfig, ConvNeXt
    return ConvNeXt([CNBlockConfig(16, 32, 1), CNBlockConfig(32, None, 1)], num_classes=10)
'''

# model id -> (callable, input size, {layer: (units, layout words galleria layers prints)})
IMAGE_MODELS = {
    "vit": ("vit", 224, {"blocks.0.mlp.act": (768, "197 tokens (1 CLS + 14×14) × 768"),
                         "blocks.11": (192, "197 tokens (1 CLS + 14×14) × 192"),
                         "patch_embed": (192, "196 tokens (14×14 patches) × 192")}),
    "convnext": ("convnext", 224, {"stages.0.blocks.0.mlp.fc1": (160, "56×56 × 160 (channels last)"),
                                   "stages.1": (80, "28×28 × 80 (channels first)")}),
    "swin": ("swin", 224, {"layers.0.blocks.0": (16, "56×56 × 16 (channels last)"),
                           "layers.1.blocks.0.mlp.act": (128, "784 tokens (28×28 patches) × 128")}),
    "resnet": ("resnet", 64, {"layer1": (64, "16×16 × 64 (channels first)"), "global_pool": (512, "512 (a vector)")}),
    "tv-vit": ("tv_vit", 64, {"encoder.layers.encoder_layer_0.mlp.1": (48, "17 tokens (1 CLS + 4×4) × 48")}),
    "tv-convnext": ("tv_convnext", 64, {"features.1.0.block.3": (64, "16×16 × 64 (channels last)")}),
}


def _site(models: str) -> str:
    """A site.yaml over the test photos; ``models`` is the YAML of the models list's entries."""
    return ("site: {title: Architectures, output_dir: out}\n"
            "inputs: [{path: photos}]\n"
            "models:\n" + textwrap.indent(models, "  ") +
            "examples: {top: 3, bottom: 1, tile_size: 32, bands: 2, per_band: 1}\n"
            "attribution: {inputs: 2}\n"
            "featureviz: false\n"
            "extract: {batch_size: 3}\n")


def _image_model(model_id: str) -> str:
    function, size, chosen = IMAGE_MODELS[model_id]
    return (f"- id: {model_id}\n  source: archmodels:{function}\n  preprocessing: {{size: {size}}}\n"
            f"  layers: {json.dumps(list(chosen))}\n")


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("architectures")
    (root / "archmodels.py").write_text(MODELS)
    photos = root / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        pixels = rng.integers(0, 256, (80, 96, 3), dtype=np.uint8)
        pixels[10 * i: 10 * i + 30, 20:60] = (255, 40 * i, 0)  # a bright patch in a different place each time
        Image.fromarray(pixels).save(photos / f"photo{i}.png")
    (root / "site.yaml").write_text(_site("".join(_image_model(m) for m in IMAGE_MODELS)))
    sys.path.insert(0, str(root))
    yield root
    sys.path.remove(str(root))


@pytest.fixture(scope="module")
def built(project):
    assert main(["build", "-q", "-f", str(project / "site.yaml")]) == 0
    return project / "out"


def test_an_sae_on_a_vits_tokens_is_laid_out_as_its_host(project):
    """64 latents on a ViT block's 197 tokens: 64 alone would fit an 8×8 grid of the 224-pixel input,
    so the latents take their host's layout (CLS + 14×14 patches), and their examples name patches."""
    from safetensors.torch import save_file

    torch.manual_seed(1)
    save_file({"W_enc": torch.randn(192, 64) * 0.1, "b_enc": torch.zeros(64)}, str(project / "vit-sae.safetensors"))
    config = project / "vit-sae.yaml"
    config.write_text(_site("- id: vit\n  source: archmodels:vit\n  preprocessing: {size: 224}\n"
                            "  layers: [{name: blocks.0, sae: vit-sae.safetensors}]\n")
                      .replace("output_dir: out", "output_dir: out-vit-sae"))
    assert main(["build", "-q", "-f", str(config)]) == 0
    layer = project / "out-vit-sae" / "vit" / "blocks.0.sae"
    assert "197 tokens (1 CLS + 14×14) × 64" in (layer / "index.html").read_text()
    tops = [json.loads((layer / str(unit) / "unit.json").read_text())["top"][0] for unit in range(64)]
    assert all(0 <= t["position"][0] < 197 and len(t["position"]) == 1 for t in tops)
    assert any(t["at"].startswith("patch ") for t in tops)


def _native_value(output: torch.Tensor, layout: str, unit: int, position: list[int]) -> float:
    """The unit's value at a position, read from the layer's output as the model lays it out."""
    if layout.endswith("(a vector)"):
        return float(output[0, unit])
    if "tokens" in layout or "channels last" in layout:
        return float(output[(0, *position, unit)])
    return float(output[(0, unit, *position)])


@pytest.mark.parametrize("model_id", list(IMAGE_MODELS))
def test_units_are_features_and_page_values_match_a_forward_pass(project, built, model_id):
    import archmodels

    from galleria.config import CropScheme, Preprocessing
    from galleria.extract.hooks import capture
    from galleria.records import InputItem
    from galleria.sources.images import ImageLoader, plan_crops

    function, size, chosen = IMAGE_MODELS[model_id]
    listing = layer_listing(str(project / "site.yaml"), model_id)
    net = getattr(archmodels, function)().eval()
    loader = ImageLoader(Preprocessing((size, size), 3, (0.0,) * 3, (1.0,) * 3))
    for layer, (units, layout) in chosen.items():
        row = next(line for line in listing.splitlines() if line.split()[1:2] == [layer])
        assert row.rstrip().endswith(layout), row  # galleria layers prints the layout it inferred
        folders = sorted((built / model_id / layer).glob("[0-9]*/"), key=lambda p: int(p.name))
        assert len(folders) == units, (layer, len(folders))
        record = json.loads((folders[units // 2] / "unit.json").read_text())
        top = record["top"][0]
        photo = project / "photos" / f"{top['input']}.png"
        with Image.open(photo) as img:
            box = next(plan_crops(img.size, CropScheme((1,), 0.0)))[0]  # scale 1: the centre square
        item = InputItem(0, top["input"], str(photo), photo.name, box)
        x = loader.batch([item])[0]
        with capture(net, [layer]) as seen, torch.inference_mode():
            net(x)
        expected = _native_value(seen[layer], layout, record["unit"], top["position"])
        assert top["value"] == pytest.approx(expected, rel=1e-4, abs=1e-5), (layer, top)
        assert record["stats"]["max"] == pytest.approx(top["value"])


@pytest.mark.parametrize("model_id", list(IMAGE_MODELS))
def test_the_live_probe_gives_the_pages_values(project, built, model_id):
    """Each architecture's probe graph (what the page runs, float16 weights) on a unit's top input
    gives its top value."""
    import onnxruntime

    from galleria.config import CropScheme, Preprocessing
    from galleria.records import InputItem
    from galleria.sources.images import ImageLoader, plan_crops
    from conftest import probe_graph

    function, size, chosen = IMAGE_MODELS[model_id]
    session = onnxruntime.InferenceSession(probe_graph(built / model_id / "probe.js"))
    loader = ImageLoader(Preprocessing((size, size), 3, (0.0,) * 3, (1.0,) * 3))
    for index, layer in enumerate(chosen):
        record = json.loads((built / model_id / layer / "3" / "unit.json").read_text())
        top = record["top"][0]
        photo = project / "photos" / f"{top['input']}.png"
        with Image.open(photo) as img:
            box = next(plan_crops(img.size, CropScheme((1,), 0.0)))[0]
        x = loader.batch([InputItem(0, top["input"], str(photo), photo.name, box)])[0]
        values = session.run(None, {"input": x.numpy()})[index][0, 3]  # [positions] of unit 3
        scale = max(abs(record["stats"]["max"]), abs(record["stats"]["min"]))  # float16 weights: 1% of it
        assert float(values.max()) == pytest.approx(top["value"], abs=0.01 * scale), (layer, top)


def test_token_layers_name_their_positions_and_show_the_patch_grid(built):
    page = (built / "vit" / "blocks.0.mlp.act" / "index.html").read_text()
    assert "197 tokens (1 CLS + 14×14) × 768" in page
    records = [json.loads(p.read_text()) for p in (built / "vit" / "blocks.0.mlp.act").glob("*/unit.json")]
    names = {e["at"] for r in records for e in r["top"] + r["bottom"]}
    assert all(n == "CLS" or n.startswith("patch ") for n in names)
    unit = (built / "vit" / "blocks.0.mlp.act" / "0" / "index.html").read_text()
    assert "CLS included in every statistic" in unit
    assert "every patch reaches every token" in unit  # attention: the field is the whole input, said so
    cls_examples = [(r, e) for r in records for e in r["top"] if e["at"] == "CLS"]
    if cls_examples:  # an example that peaked on the class token says so under its tile
        record, example = cls_examples[0]
        page = (built / "vit" / "blocks.0.mlp.act" / str(record["unit"]) / "index.html").read_text()
        assert '<span class="ex-at">at CLS</span>' in page
    patch = json.loads((built / "vit" / "patch_embed" / "0" / "unit.json").read_text())
    assert patch["receptive_field"]["size"] == [16, 16]  # before attention a patch token sees its patch
    assert patch["top"][0]["box"] is not None


def test_tiles_of_whole_input_fields_outline_the_peak_instead_of_cropping(built):
    record = json.loads((built / "vit" / "blocks.11" / "5" / "unit.json").read_text())
    assert record["receptive_field"]["size"][0] >= 224
    assert all(e["box"] is None for e in record["top"])  # nothing to crop to: the whole input is shown
    page = (built / "vit" / "blocks.11" / "5" / "index.html").read_text()
    assert "the outlined patch is where it peaked" in page


def test_a_layer_that_folds_the_batch_is_refused_with_the_reason(project, tmp_path):
    (tmp_path / "site.yaml").write_text(_site("- id: swin\n  source: archmodels:swin\n"
                                              "  layers: [layers.0.blocks.0.attn.qkv]\n")
                                        .replace("path: photos", f"path: {project / 'photos'}"))
    assert main(["build", "-q", "-f", str(tmp_path / "site.yaml")]) == 2


def test_an_ambiguous_shape_asks_for_a_layout_and_the_key_decides(project, tmp_path, capsys):
    (tmp_path / "cubes.py").write_text(textwrap.dedent('''
        import torch
        from torch import nn

        class Cube(nn.Module):
            """A map that is 8 x 8 with 8 channels: either end could be the channels."""
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(3, 8, 4, stride=4)
                self.mix = nn.Linear(8, 8)
            def forward(self, x):
                return self.mix(self.conv(x).permute(0, 2, 3, 1))

        def build():
            torch.manual_seed(0)
            return Cube()
        '''))
    site = _site("- id: cube\n  source: cubes:build\n  preprocessing: {size: 32}\n  layers: [mix]\n")
    site = site.replace("path: photos", f"path: {project / 'photos'}")
    (tmp_path / "site.yaml").write_text(site)
    sys.path.insert(0, str(tmp_path))
    try:
        import cubes

        assert main(["build", "-q", "-f", str(tmp_path / "site.yaml")]) == 0  # a larger input told them apart
        assert _cube_value_read_as(tmp_path, cubes.build(), "channels last")
        fixed = site.replace("layers: [mix]", "layers: [{name: mix, layout: channels-first}]")
        (tmp_path / "site.yaml").write_text(fixed)
        assert main(["build", "-q", "-f", str(tmp_path / "site.yaml")]) == 0  # the key overrides the model
        assert _cube_value_read_as(tmp_path, cubes.build(), "channels first")
        (tmp_path / "site.yaml").write_text(fixed.replace("channels-first", "tokens"))
        assert main(["build", "-q", "-f", str(tmp_path / "site.yaml")]) == 2
        assert "layout" in capsys.readouterr().err
    finally:
        sys.path.remove(str(tmp_path))


def _cube_value_read_as(root, net, layout: str) -> bool:
    """Whether unit 1's top value is the model's output at that position read in this layout."""
    from galleria.config import Preprocessing
    from galleria.sources.images import ImageLoader, discover
    from galleria.config import load_config

    record = json.loads((root / "out" / "cube" / "mix" / "1" / "unit.json").read_text())
    top = record["top"][0]
    inputs = discover(load_config(root / "site.yaml").inputs)
    item = next(i for i in inputs.items if i.id == top["input"])
    x = ImageLoader(Preprocessing((32, 32), 3, (0.0,) * 3, (1.0,) * 3)).batch([item])[0]
    with torch.inference_mode():
        output = net.eval()(x)
    return top["value"] == pytest.approx(_native_value(output, layout, 1, top["position"]), rel=1e-5)


def test_default_feature_visualization_runs_on_a_fixed_size_vit(project, tmp_path):
    site = _site("- id: vit\n  source: archmodels:vit\n"
                 "  layers: [{name: blocks.0.mlp.act, featureviz: {units: 1}}]\n").replace("featureviz: false\n", "")
    (tmp_path / "site.yaml").write_text(site.replace("path: photos", f"path: {project / 'photos'}"))
    assert main(["build", "-q", "-f", str(tmp_path / "site.yaml")]) == 0  # size 128 is refused: 224 is used
    record = json.loads((tmp_path / "out" / "vit" / "blocks.0.mlp.act" / "0" / "unit.json").read_text())
    viz = record["featureviz"]
    assert viz["channel"]["mean"] > viz["negative"]["mean"]
    with Image.open(tmp_path / "out" / "vit" / "blocks.0.mlp.act" / "0" / "featureviz.png") as image:
        assert image.size == (224, 224)


TEXT = '''\
def parse(header, value):
    """Split a header into its name and value, stripping whitespace."""
    name, _, rest = header.partition(":")
    return name.strip().lower(), rest.strip()


class Message:
    def __init__(self, headers=None):
        self.headers = dict(headers or {})

    def get(self, name, default=None):
        return self.headers.get(name.lower(), default)
'''


@pytest.fixture(scope="module")
def language_models(tmp_path_factory):
    """Tiny GPT-2 and Llama folders, random weights, with a byte-level BPE tokenizer trained on TEXT."""
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    root = tmp_path_factory.mktemp("lms")
    (root / "code.py").write_text(TEXT * 6)
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.train_from_iterator([TEXT], trainers.BpeTrainer(vocab_size=320,
                                                               initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    vocab = tokenizer.get_vocab_size()
    configs = {
        "gpt2": transformers.GPT2Config(vocab_size=vocab, n_positions=64, n_embd=32, n_layer=2, n_head=2,
                                        bos_token_id=0, eos_token_id=0),
        "llama": transformers.LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                          num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64,
                                          bos_token_id=0, eos_token_id=0),
    }
    for name, config in configs.items():
        torch.manual_seed(0)
        transformers.AutoModelForCausalLM.from_config(config).save_pretrained(root / name)
        tokenizer.save(str(root / name / "tokenizer.json"))
    (root / "site.yaml").write_text(
        "site: {title: LMs, output_dir: out}\n"
        "inputs: [{id: code, path: code.py, window: 24, overlap: 4}]\n"
        "models:\n"
        "  - {id: gpt2, source: 'transformers:gpt2', layers: ['transformer.h.*.mlp.act']}\n"
        "  - {id: llama, source: 'transformers:llama', layers: ['model.layers.*.mlp.down_proj.input']}\n"
        "examples: {top: 3, bottom: 1}\n")
    assert main(["build", "-q", "-f", str(root / "site.yaml")]) == 0
    return root


@pytest.mark.parametrize("model_id, layer", [("gpt2", "transformer.h.1.mlp.act"),
                                             ("llama", "model.layers.1.mlp.down_proj.input")])
def test_decoder_lms_have_a_live_probe_matching_a_forward_pass(language_models, model_id, layer):
    """Byte-level BPE runs in the page, so GPT-2 and Llama get a probe; its graph reads any length."""
    import onnxruntime

    from conftest import probe_graph
    from galleria.config import load_config
    from galleria.extract.hooks import capture
    from galleria.sources.models import load_model

    config = load_config(language_models / "site.yaml")
    module = load_model(next(m for m in config.models if m.id == model_id), config.root).module
    session = onnxruntime.InferenceSession(probe_graph(language_models / "out" / model_id / "probe.js"))
    ids = torch.tensor([[5, 17, 40, 3, 99, 12, 7]])
    with capture(module, [layer]) as seen, torch.no_grad():
        module(ids)
    want = seen[layer][0].T.numpy()  # [units, tokens], as the graph gives a layer
    outputs = session.run(None, {"input": ids.numpy()})
    assert any(o.shape[1:] == want.shape and np.allclose(o[0], want, rtol=1e-3, atol=1e-4) for o in outputs)


@pytest.mark.parametrize("model_id, layer, units", [("gpt2", "transformer.h.1.mlp.act", 128),
                                                    ("llama", "model.layers.1.mlp.down_proj.input", 48)])
def test_decoder_lm_neurons_match_a_forward_pass(language_models, model_id, layer, units):
    import transformers
    from tokenizers import Tokenizer

    from galleria.extract.hooks import capture

    root = language_models
    folders = list((root / "out" / model_id / layer).glob("[0-9]*/"))
    assert len(folders) == units
    record = json.loads((root / "out" / model_id / layer / "7" / "unit.json").read_text())
    top = record["top"][0]
    ids = Tokenizer.from_file(str(root / model_id / "tokenizer.json")).encode((root / "code.py").read_text()).ids
    window = torch.tensor([ids[top["window_start"]:top["window_start"] + 24]])
    model = transformers.AutoModelForCausalLM.from_pretrained(root / model_id).eval()
    if layer.endswith(".input"):  # the input of down_proj: read it with a pre-hook of our own
        seen = {}
        handle = model.get_submodule(layer.removesuffix(".input")).register_forward_pre_hook(
            lambda m, args: seen.__setitem__(layer, args[0]))
        with torch.inference_mode():
            model(window)
        handle.remove()
    else:
        with capture(model, [layer]) as seen, torch.inference_mode():
            model(window)
    assert top["value"] == pytest.approx(float(seen[layer][0, top["position"][0], 7]), rel=1e-4, abs=1e-6)


def test_decoder_lm_neurons_show_their_direct_logit_effects(language_models):
    import transformers

    root = language_models
    gpt2 = transformers.AutoModelForCausalLM.from_pretrained(root / "gpt2").eval()
    llama = transformers.AutoModelForCausalLM.from_pretrained(root / "llama").eval()
    with torch.no_grad():
        w = gpt2.transformer.h[1].mlp.c_proj.weight[7]  # Conv1D: [in, out], so row 7 is neuron 7's output
        gpt2_effect = gpt2.lm_head.weight @ (gpt2.transformer.ln_f.weight * (w - w.mean()))
        w = llama.model.layers[1].mlp.down_proj.weight[:, 7]  # Linear: [out, in]
        llama_effect = llama.lm_head.weight @ (llama.model.norm.weight * w)  # RMSNorm: no mean removed
    for model_id, layer, effect in (("gpt2", "transformer.h.1.mlp.act", gpt2_effect),
                                    ("llama", "model.layers.1.mlp.down_proj.input", llama_effect)):
        record = json.loads((root / "out" / model_id / layer / "7" / "unit.json").read_text())
        shown = record["effects"]
        assert shown["method"].startswith("direct:")
        best = torch.topk(effect, len(shown["up"]))
        assert [e["index"] for e in shown["up"]] == best.indices.tolist()
        assert [e["value"] for e in shown["up"]] == pytest.approx(best.values.tolist(), rel=1e-4)
        worst = torch.topk(-effect, len(shown["down"]))
        assert [e["index"] for e in shown["down"]] == worst.indices.tolist()
        page = (root / "out" / model_id / layer / "7" / "index.html").read_text()
        assert "pushes up" in page and "through the unembedding" in page


def test_an_sae_on_a_decoder_lms_residual_stream_gives_latents_per_token(language_models):
    """An SAE file on a GPT-2 block (whose output is a tuple: its hidden states first): the latents'
    top example is the encoder on that token's residual stream. Its latents' direct logit effects are
    their decoder rows through ln_f and the unembedding; an SAE on the MLP's hidden layer goes through
    the projection that writes the MLP's output first."""
    import transformers
    from safetensors.torch import save_file
    from tokenizers import Tokenizer

    root = language_models
    torch.manual_seed(5)
    w_enc, b_enc, w_dec = torch.randn(32, 40), torch.randn(40) * 0.1, torch.randn(40, 32)
    save_file({"W_enc": w_enc, "b_enc": b_enc, "W_dec": w_dec}, str(root / "h0.safetensors"))
    mlp_dec = torch.randn(24, 128)
    save_file({"W_enc": torch.randn(128, 24), "b_enc": torch.zeros(24), "W_dec": mlp_dec}, str(root / "mlp.safetensors"))
    (root / "sae.yaml").write_text(
        "site: {title: LMs, output_dir: out-sae}\n"
        "inputs: [{id: code, path: code.py, window: 24, overlap: 4}]\n"
        "models:\n"
        "  - {id: gpt2, source: 'transformers:gpt2', layers: [{name: transformer.h.0, sae: h0.safetensors},\n"
        "                                                     {name: transformer.h.1.mlp.act, sae: mlp.safetensors}]}\n"
        "examples: {top: 3, bottom: 1}\nfeatureviz: false\n")
    assert main(["build", "-q", "-f", str(root / "sae.yaml")]) == 0
    out = root / "out-sae" / "gpt2"
    folders = list((out / "transformer.h.0.sae").glob("[0-9]*/"))
    assert len(folders) == 40
    record = json.loads((out / "transformer.h.0.sae" / "9" / "unit.json").read_text())
    top = record["top"][0]
    ids = Tokenizer.from_file(str(root / "gpt2" / "tokenizer.json")).encode((root / "code.py").read_text()).ids
    window = torch.tensor([ids[top["window_start"]:top["window_start"] + 24]])
    model = transformers.AutoModelForCausalLM.from_pretrained(root / "gpt2").eval()
    with torch.inference_mode():
        hidden = model(window, output_hidden_states=True).hidden_states[1][0, top["position"][0]]  # after block 0
    assert top["value"] == pytest.approx(float(torch.relu(hidden @ w_enc + b_enc)[9]), rel=1e-4, abs=1e-6)
    with torch.no_grad():
        written = {"transformer.h.0.sae": w_dec[9],
                   "transformer.h.1.mlp.act.sae": mlp_dec[9] @ model.transformer.h[1].mlp.c_proj.weight}
        for layer, vector in written.items():
            effect = model.lm_head.weight @ (model.transformer.ln_f.weight * (vector - vector.mean()))
            shown = json.loads((out / layer / "9" / "unit.json").read_text())["effects"]
            assert shown["method"].startswith("direct: the latent's decoder row (W_dec)")
            best, worst = torch.topk(effect, len(shown["up"])), torch.topk(-effect, len(shown["down"]))
            assert [e["index"] for e in shown["up"]] == best.indices.tolist()
            assert [e["value"] for e in shown["up"]] == pytest.approx(best.values.tolist(), rel=1e-4)
            assert [e["index"] for e in shown["down"]] == worst.indices.tolist()
    assert "through transformer.h.1.mlp.c_proj" in shown["method"]
    page = (out / "transformer.h.1.mlp.act.sae" / "9" / "index.html").read_text()
    assert "pushes up" in page and "decoder row" in page
