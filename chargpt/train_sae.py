"""Train a sparse autoencoder on the character transformer's MLP neurons, saved in SAELens' format.

Run from the repository root, after train.py: ``python chargpt/train_sae.py``. The defaults are the
exact run that produced sae/ (sae/training.json records its figures and time).

Choices, and why:
* It reads ``blocks.2.mlp.act``, the third block's 768 GELU neurons, on windows of the training
  split at random offsets (a fixed seed): the held-out email/ package stays unseen, as for the model.
* A standard ReLU SAE (SAELens' "standard" architecture: ``relu((x - b_dec) @ W_enc + b_enc)``,
  decoded by ``@ W_dec + b_dec``) with the L1 penalty weighted by each decoder row's norm, the
  encoder initialised as the decoder's transpose and b_dec as the data's mean: the recipe most
  SAEs of 2024 started from, and one that trains in minutes here. The penalty is given for inputs
  scaled to a mean square of 1 per neuron (as Anthropic's recipe scales them) and applied to the
  unscaled neurons, so the saved SAE reads the layer as it is (``normalize_activations: none``).
* Saved as float16 (half the size in the repository; galleria reads it as float32) with the cfg.json
  SAELens writes, so `sae: chargpt/sae` in site.yaml loads it as it loads any SAELens SAE.
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from charlstm.train import TOKENS, encode, stdlib_files  # noqa: E402
from chargpt.model import CharGPT  # noqa: E402

HOOK = "blocks.2.mlp.act"


@torch.no_grad()
def neuron_values(model: CharGPT, ids: torch.Tensor, windows: int, context: int, seed: int) -> torch.Tensor:
    """The hooked layer's output on ``windows`` random windows of ``ids``, one row per character."""
    seen = []
    handle = model.get_submodule(HOOK).register_forward_hook(lambda m, a, out: seen.append(out.flatten(0, 1)))
    starts = torch.randint(0, len(ids) - context, (windows,), generator=torch.Generator().manual_seed(seed))
    for chunk in starts.split(64):
        model(torch.stack([ids[s : s + context] for s in chunk.tolist()]))
    handle.remove()
    return torch.cat(seen)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--latents", type=int, default=2048)
    p.add_argument("--windows", type=int, default=1200)
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--l1", type=float, default=5.0, help="the L1 penalty, for inputs scaled to a mean square of 1")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log-every", type=int, default=250)
    p.add_argument("--model", type=Path, default=HERE, help="the folder of train.py's weights.pt and training.json")
    p.add_argument("--out", type=Path, default=HERE / "sae")
    args = p.parse_args()

    started = time.time()
    torch.set_num_threads(2)
    torch.manual_seed(args.seed)
    settings = json.loads((args.model / "training.json").read_text())
    model = CharGPT(len(TOKENS), settings["width"], settings["layers"], settings["heads"], settings["hidden"],
                    settings["context"])
    model.load_state_dict(torch.load(args.model / "weights.pt", weights_only=True))
    model.eval()
    train_files, _ = stdlib_files()
    data = neuron_values(model, encode(train_files), args.windows, settings["context"], args.seed)
    d_in = data.shape[1]
    print(f"{HOOK}: {len(data):,} rows of {d_in} neurons ({time.time() - started:.0f}s)", flush=True)

    w_dec = torch.randn(args.latents, d_in)
    w_dec = w_dec / w_dec.norm(dim=1, keepdim=True) * 0.1
    params = {"W_dec": w_dec, "W_enc": w_dec.T.clone(), "b_enc": torch.zeros(args.latents), "b_dec": data.mean(0)}
    for tensor in params.values():
        tensor.requires_grad_(True)
    opt = torch.optim.Adam(params.values(), lr=args.lr)
    variance = (data - data.mean(0)).pow(2).sum(1).mean()
    penalty = args.l1 * data.pow(2).mean().sqrt().item()  # the squared error scales as the square of the inputs' size, the L1 term as their size
    order = torch.Generator().manual_seed(args.seed + 1)
    fired = torch.zeros(args.latents, dtype=torch.bool)
    running = []
    for step in range(args.steps):
        x = data[torch.randint(0, len(data), (args.batch,), generator=order)]
        latents = torch.relu((x - params["b_dec"]) @ params["W_enc"] + params["b_enc"])
        error = (latents @ params["W_dec"] + params["b_dec"] - x).pow(2).sum(1).mean()
        sparsity = (latents * params["W_dec"].norm(dim=1)).sum(1).mean()
        loss = error + penalty * min(1.0, (step + 1) / (args.steps / 20)) * sparsity  # the penalty warms up
        opt.zero_grad()
        loss.backward()
        opt.step()
        fired |= (latents > 0).any(0)
        running.append((error.item() / variance.item(), (latents > 0).float().sum(1).mean().item()))
        if (step + 1) % args.log_every == 0 or step + 1 == args.steps:
            recent = running[-args.log_every:]
            unexplained, l0 = (sum(r[i] for r in recent) / len(recent) for i in (0, 1))
            print(f"step {step + 1:5d}  variance unexplained {unexplained:.3f}  L0 {l0:.1f}  "
                  f"never fired {int((~fired).sum())}  {time.time() - started:5.0f}s", flush=True)
            fired[:] = False

    with torch.no_grad():
        latents = torch.relu((data - params["b_dec"]) @ params["W_enc"] + params["b_enc"])
        unexplained = ((latents @ params["W_dec"] + params["b_dec"] - data).pow(2).sum(1).mean() / variance).item()
        l0 = (latents > 0).float().sum(1).mean().item()
        dead = int((latents.amax(0) <= 0).sum())
    elapsed = time.time() - started
    print(f"variance unexplained {unexplained:.3f}, L0 {l0:.1f}, dead {dead} of {args.latents}; {elapsed:.0f}s")
    args.out.mkdir(parents=True, exist_ok=True)
    save_file({name: t.detach().half().contiguous() for name, t in params.items()},
              str(args.out / "sae_weights.safetensors"))
    (args.out / "cfg.json").write_text(json.dumps({
        "architecture": "standard", "d_in": d_in, "d_sae": args.latents, "activation_fn_str": "relu",
        "apply_b_dec_to_input": True, "normalize_activations": "none", "dtype": "float16", "device": "cpu",
        "model_name": "chargpt", "hook_name": HOOK, "hook_layer": 2, "context_size": settings["context"],
    }, indent=2) + "\n")
    (args.out / "training.json").write_text(json.dumps({
        "hook": HOOK, "latents": args.latents, "rows": len(data), "windows": args.windows, "steps": args.steps,
        "batch": args.batch, "lr": args.lr, "l1": args.l1, "l1_applied": round(penalty, 5), "seed": args.seed,
        "variance_unexplained": round(unexplained, 4), "l0": round(l0, 2), "dead_latents": dead,
        "train_time_s": round(elapsed, 1), "torch": torch.__version__, "date": datetime.date.today().isoformat(),
    }, indent=2) + "\n")


if __name__ == "__main__":
    main()
