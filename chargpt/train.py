"""Train the gallery's character-level decoder transformer on the Python standard library's source.

Run from the repository root: ``python chargpt/train.py``. The defaults are the exact run that
produced weights.pt (training.json records its figures and time), so rerunning reproduces it.

Choices, and why:
* The data, its split and the vocabulary are the character LSTM's (charlstm/train.py): the same
  stdlib files, the same held-out email/ package, so the two models are shown on the same code and
  their bits per character compare.
* Each step reads ``batch`` windows of ``context`` characters at random offsets (a fixed seed): a
  transformer carries no state between windows, so nothing is gained by reading them in order.
* AdamW with warm-up and cosine decay and gradient clipping; no dropout, as the model sees each
  character about once.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from charlstm.train import HELD_OUT, TOKENS, load_split, log_progress, save_run, warmup_cosine  # noqa: E402
from chargpt.model import CharGPT  # noqa: E402


@torch.no_grad()
def bits_per_char(model: CharGPT, ids: torch.Tensor, context: int, batch: int = 32) -> float:
    """Mean next-character loss in bits over ``ids``, read as consecutive windows of ``context``."""
    count = (len(ids) - 1) // context
    x = ids[: count * context + 1]
    total, seen = 0.0, 0
    for start in range(0, count, batch):
        rows = torch.stack([x[i * context : i * context + context + 1] for i in range(start, min(count, start + batch))])
        logits = model(rows[:, :-1])
        total += F.cross_entropy(logits.flatten(0, 1), rows[:, 1:].flatten(), reduction="sum").item()
        seen += rows[:, 1:].numel()
    return total / seen / math.log(2)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--context", type=int, default=256)
    p.add_argument("--width", type=int, default=192)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=6)
    p.add_argument("--hidden", type=int, default=768)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--clip", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log-every", type=int, default=100)
    p.add_argument("--out", type=Path, default=HERE)
    args = p.parse_args()

    started = time.time()
    torch.set_num_threads(2)
    torch.manual_seed(args.seed)
    train_ids, held_ids, train_files = load_split()

    model = CharGPT(len(TOKENS), args.width, args.layers, args.heads, args.hidden, args.context)
    params = sum(t.numel() for t in model.parameters())
    print(f"model: {args.layers} blocks of width {args.width}, MLP {args.hidden}, {params:,} parameters")
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    schedule = warmup_cosine(opt, args.warmup, args.steps)
    offsets = torch.Generator().manual_seed(args.seed)
    running = []
    for step in range(args.steps):
        starts = torch.randint(0, len(train_ids) - args.context - 1, (args.batch,), generator=offsets)
        x = torch.stack([train_ids[s : s + args.context + 1] for s in starts.tolist()])
        loss = F.cross_entropy(model(x[:, :-1]).flatten(0, 1), x[:, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        schedule.step()
        running.append(loss.item())
        log_progress(step, args.steps, running, args.log_every, schedule, started)

    model.eval()
    held_bpc = bits_per_char(model, held_ids, args.context)
    print(f"held-out {HELD_OUT}/: {held_bpc:.3f} bits per char; total time {time.time() - started:.0f}s")
    save_run(args.out, model, {
        "steps": args.steps, "batch": args.batch, "context": args.context, "width": args.width,
        "layers": args.layers, "heads": args.heads, "hidden": args.hidden, "params": params,
        "lr": args.lr, "warmup": args.warmup, "clip": args.clip, "seed": args.seed,
    }, running, args.log_every, held_bpc, (len(train_ids), train_files, len(held_ids)), args.context, started)


if __name__ == "__main__":
    main()
