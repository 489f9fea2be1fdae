"""Train the gallery's character-level LSTM on the Python standard library's own source.

Run from the repository root: ``python charlstm/train.py``. The defaults are the exact run that
produced weights.pt (about 12 minutes on an idle 2-core CPU), so rerunning reproduces it.

Choices, and why:
* Data is every *.py file of the running interpreter's stdlib, sorted, minus tests, vendored
  packages, idlelib and ``email/``; email is held out so the gallery can show the model on code
  it never saw, and its bits per character is the honest score.
* The corpus is cut into ``batch`` contiguous streams read in order, with the LSTM state carried
  (detached) from one window to the next: truncated BPTT, so the model sees context far longer
  than ``seq`` and can learn indentation, docstrings and long strings.
* Adam with warm-up and cosine decay plus gradient clipping: the fastest stable recipe for a
  single short pass; the model is far from overfitting, so there is no dropout.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import platform
import sys
import sysconfig
import time
from pathlib import Path

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from charlstm.model import CharLSTM  # noqa: E402

TOKENS = ["\n", "\t"] + [chr(c) for c in range(32, 127)] + ["\ufffd"]
UNKNOWN = "\ufffd"  # what errors='replace' yields, and where every other character goes
EXCLUDED_DIRS = {"test", "tests", "site-packages", "dist-packages", "idlelib"}
HELD_OUT = "email"


def stdlib_files() -> tuple[list[Path], list[Path]]:
    """Sorted (training, held-out email/) source files of this interpreter's stdlib."""
    root = Path(sysconfig.get_paths()["stdlib"])
    train, held = [], []
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).parts
        if EXCLUDED_DIRS.intersection(parts[:-1]):
            continue
        (held if parts[0] == HELD_OUT else train).append(path)
    return train, held


def encode(paths: list[Path]) -> torch.Tensor:
    """Concatenated file texts as token ids."""
    index = {ch: i for i, ch in enumerate(TOKENS)}
    unknown = index[UNKNOWN]
    text = "".join(p.read_text(encoding="utf-8", errors="replace") for p in paths)
    return torch.tensor([index.get(ch, unknown) for ch in text], dtype=torch.long)


def load_split() -> tuple[torch.Tensor, torch.Tensor, int]:
    """The training and held-out characters as ids (sizes printed), and the number of training files."""
    train_files, held_files = stdlib_files()
    train_ids, held_ids = encode(train_files), encode(held_files)
    print(f"train: {len(train_files)} files, {len(train_ids):,} chars; "
          f"held out {HELD_OUT}/: {len(held_files)} files, {len(held_ids):,} chars")
    return train_ids, held_ids, len(train_files)


def warmup_cosine(opt: torch.optim.Optimizer, warmup: int, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """The learning rate: a linear warm-up over ``warmup`` steps, then a cosine decay to 0 at ``steps``."""
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup)
                                             * 0.5 * (1 + math.cos(math.pi * s / steps)))


def log_progress(step: int, steps: int, running: list[float], every: int,
                 schedule: torch.optim.lr_scheduler.LambdaLR, started: float) -> None:
    """Every ``every`` steps and at the last, the mean loss of the last ``every`` steps."""
    if (step + 1) % every == 0 or step + 1 == steps:
        recent = sum(running[-every:]) / len(running[-every:])
        print(f"step {step + 1:5d}  loss {recent:.4f} nats ({recent / math.log(2):.3f} bpc)  "
              f"lr {schedule.get_last_lr()[0]:.2e}  {time.time() - started:6.0f}s", flush=True)


def save_run(out: Path, model: torch.nn.Module, settings: dict, running: list[float], every: int,
             held_bpc: float, sizes: tuple[int, int, int], window: int, started: float) -> None:
    """weights.pt, vocab.json and training.json (``settings``, then the run's figures) in ``out``;
    ``sizes`` are the training split's characters and files and the held-out characters, ``window``
    the characters each batch row reads a step."""
    final_loss = sum(running[-every:]) / len(running[-every:])
    out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out / "weights.pt")
    (out / "vocab.json").write_text(json.dumps({"tokens": TOKENS, "unknown": UNKNOWN}) + "\n")
    figures = {
        **settings, "train_chars": sizes[0], "train_files": sizes[1],
        "chars_seen": settings["steps"] * settings["batch"] * window,
        "train_time_s": round(time.time() - started, 1),
        "final_train_loss_nats": round(final_loss, 4),
        "final_train_bpc": round(final_loss / math.log(2), 4),
        f"heldout_{HELD_OUT}_bpc": round(held_bpc, 4), "heldout_chars": sizes[2],
        "stdlib_python": platform.python_version(), "torch": torch.__version__,
        "date": datetime.date.today().isoformat(),
    }
    (out / "training.json").write_text(json.dumps(figures, indent=2) + "\n")


def streams(ids: torch.Tensor, batch: int) -> torch.Tensor:
    """Cut ids into ``batch`` equal contiguous rows [batch, length]."""
    length = len(ids) // batch
    return ids[: batch * length].view(batch, length)


def step_logits(model: CharLSTM, x: torch.Tensor, state):
    """Forward one window, carrying the LSTM state in and out."""
    out, state = model.lstm(model.embed(x), state)
    return model.head(out), state


@torch.no_grad()
def bits_per_char(model: CharLSTM, ids: torch.Tensor, batch: int = 32, seq: int = 512) -> float:
    """Mean next-character loss in bits over ``ids``, read as carried-state streams."""
    data, state, total, count = streams(ids, batch), None, 0.0, 0
    for start in range(0, data.shape[1] - 1, seq):
        x = data[:, start : start + seq + 1]
        logits, state = step_logits(model, x[:, :-1], state)
        total += F.cross_entropy(logits.flatten(0, 1), x[:, 1:].flatten(), reduction="sum").item()
        count += x[:, 1:].numel()
    return total / count / math.log(2)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=2400)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--embedding", type=int, default=32)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--lr", type=float, default=1e-2)
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
    data = streams(train_ids, args.batch)

    model = CharLSTM(len(TOKENS), args.embedding, args.hidden, args.layers)
    params = sum(t.numel() for t in model.parameters())
    print(f"model: {args.layers}x{args.hidden} LSTM, {params:,} parameters")
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    schedule = warmup_cosine(opt, args.warmup, args.steps)

    windows = (data.shape[1] - 1) // args.seq
    state, running = None, []
    for step in range(args.steps):
        w = step % windows
        if w == 0:
            state = None  # a new pass over the streams starts from a clean state
        x = data[:, w * args.seq : w * args.seq + args.seq + 1]
        logits, state = step_logits(model, x[:, :-1], state)
        state = tuple(s.detach() for s in state)
        loss = F.cross_entropy(logits.flatten(0, 1), x[:, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        schedule.step()
        running.append(loss.item())
        log_progress(step, args.steps, running, args.log_every, schedule, started)

    model.eval()
    held_bpc = bits_per_char(model, held_ids)
    print(f"held-out {HELD_OUT}/: {held_bpc:.3f} bits per char; total time {time.time() - started:.0f}s")
    save_run(args.out, model, {
        "steps": args.steps, "batch": args.batch, "seq_len": args.seq,
        "embedding": args.embedding, "hidden": args.hidden, "layers": args.layers,
        "params": params, "lr": args.lr, "warmup": args.warmup, "clip": args.clip, "seed": args.seed,
    }, running, args.log_every, held_bpc, (len(train_ids), train_files, len(held_ids)), args.seq, started)


if __name__ == "__main__":
    main()
