"""Find the SAE latents (and MLP neurons) of the character transformer that track something in code.

Run from the repository root after train.py and train_sae.py: ``python chargpt/find_latents.py``.
The model reads the held-out ``email`` package as the gallery shows it (windows of 256 characters;
here every character is scored once, with at least 128 characters of context before it except at
the very start), and each latent and neuron of ``blocks.2.mlp.act`` is compared with the per-character
features of charlstm/find_units.py (strings, docstrings, comments, brackets, indentation, column)
plus a few character classes. A latent is sparse: it is ranked, for each yes/no feature, by the F1
of "the latent is active" as a detector of the feature, with its precision (the share of its active
characters where the feature holds) and recall; a neuron is dense, and ranked by AUC (0.5 is chance).
Continuous features (depth, level, column, indentation) rank both by Pearson r.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from charlstm.find_units import file_features, standardize  # noqa: E402
from charlstm.train import TOKENS, UNKNOWN, stdlib_files  # noqa: E402
from chargpt.model import CharGPT  # noqa: E402
from chargpt.train_sae import HOOK  # noqa: E402


@torch.no_grad()
def neurons_on(model: CharGPT, ids: torch.Tensor, context: int) -> torch.Tensor:
    """The hooked layer's output for every character of ``ids`` [chars, neurons], read in windows of
    ``context`` that overlap by half; each character is taken from the window where it has most context."""
    seen = []
    handle = model.get_submodule(HOOK).register_forward_hook(lambda m, a, out: seen.append(out[0]))
    half, out = context // 2, torch.empty(len(ids), model.get_submodule(HOOK.replace(".act", ".fc")).out_features)
    for start in range(0, max(1, len(ids) - half), half):
        window = ids[start : start + context]
        model(window[None])
        keep = 0 if start == 0 else half
        out[start + keep : start + len(window)] = seen.pop()[keep:]
    handle.remove()
    return out


def aucs(values: torch.Tensor, labels: torch.Tensor, chunk: int = 128) -> torch.Tensor:
    """AUC [features, units] of each unit's values [chars, units] as a detector of each yes/no feature
    [chars, features] (Mann-Whitney). A latent's zeros tie: they share their average rank, which
    is what makes the AUC of a sparse latent fair."""
    n, positive = len(values), labels.sum(0).double()
    found = []
    for part in values.split(chunk, dim=1):
        ranks = torch.empty(part.shape, dtype=torch.float64)
        ranks.scatter_(0, part.argsort(0), torch.arange(1, n + 1, dtype=torch.float64)[:, None].expand(part.shape))
        zeros = (part == 0) & (part.amin(0) >= 0)  # ties at the bottom of a non-negative unit
        ranks = torch.where(zeros, (zeros.sum(0, keepdim=True) + 1) / 2, ranks)
        found.append((labels.double().t() @ ranks - (positive * (positive + 1) / 2)[:, None])
                     / (positive * (n - positive))[:, None])
    return torch.cat(found, dim=1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sae", type=Path, default=HERE / "sae")
    p.add_argument("--top", type=int, default=3, help="latents listed per feature")
    args = p.parse_args()
    torch.set_num_threads(2)
    settings = json.loads((HERE / "training.json").read_text())
    model = CharGPT(len(TOKENS), settings["width"], settings["layers"], settings["heads"], settings["hidden"],
                    settings["context"])
    model.load_state_dict(torch.load(HERE / "weights.pt", weights_only=True))
    model.eval()
    sae = {name: t.float() for name, t in load_file(str(args.sae / "sae_weights.safetensors")).items()}

    texts = [path.read_text(encoding="utf-8", errors="replace") for path in stdlib_files()[1]]
    text = "".join(texts)
    per_file = [file_features(t) for t in texts]
    features = {k: torch.cat([f[k] for f in per_file]) for k in per_file[0]}
    chars = list(text)
    for name, test in (("digit", str.isdigit), ("uppercase", str.isupper), ("space", lambda c: c == " "),
                       ("dot", lambda c: c == "."), ("open_paren", lambda c: c == "("),
                       ("colon", lambda c: c == ":"), ("equals", lambda c: c == "=")):
        features[name] = torch.tensor([float(test(c)) for c in chars])
    index = {ch: i for i, ch in enumerate(TOKENS)}
    ids = torch.tensor([index.get(ch, index[UNKNOWN]) for ch in text])
    neurons = neurons_on(model, ids, settings["context"])
    latents = torch.relu((neurons - sae["b_dec"]) @ sae["W_enc"] + sae["b_enc"])
    print(f"email/: {len(texts)} files, {len(text):,} chars; {neurons.shape[1]} neurons, {latents.shape[1]} latents, "
          f"{int((latents.amax(0) <= 0).sum())} never active here; mean L0 {(latents > 0).float().sum(1).mean():.1f}")

    feat = torch.stack(list(features.values()), dim=1)
    binary = [set(feat[:, j].unique().tolist()) <= {0.0, 1.0} for j in range(feat.shape[1])]
    yes_no = feat[:, binary]
    z = standardize(feat)
    for kind, values in (("latent", latents), ("neuron", neurons)):
        alive = values.std(0) > 0
        r = (standardize(values).t() @ z) / (len(text) - 1)
        r[~alive] = 0
        scores = torch.full((feat.shape[1], values.shape[1]), 0.5, dtype=torch.float64)
        scores[torch.tensor(binary)] = aucs(values, yes_no)
        scores[:, ~alive] = 0.5
        print(f"\nstrongest {kind}s per feature")
        for j, name in enumerate(features):
            share = f"{feat[:, j].mean().item():.1%} of chars" if binary[j] else \
                f"mean {feat[:, j].mean().item():.2f}, max {feat[:, j].max().item():.0f}"
            print(f"{name:16s} ({share})")
            on = feat[:, j].bool()
            active = (values > 0).double()
            hits = on.double() @ active
            precision, recall = hits / active.sum(0).clamp(min=1), hits / on.sum()
            f1 = 2 * precision * recall / (precision + recall).clamp(min=1e-12)
            ranking = ((f1 if kind == "latent" else (scores[j] - 0.5).abs()) if binary[j] else r[:, j].abs())
            for k in ranking.argsort(descending=True)[: args.top].tolist():
                line = f"    {kind} {k:4d}  r={r[k, j].item():+.3f}"
                if binary[j]:
                    line += f"  AUC={scores[j, k].item():.3f}"
                    if kind == "latent":
                        line += f"  F1={f1[k]:.2f} precision {precision[k]:.1%} recall {recall[k]:.1%}"
                print(line)


if __name__ == "__main__":
    main()
