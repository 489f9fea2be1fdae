"""Find the LSTM units that track something in Python source (after Karpathy et al. 2015).

Run from the repository root after train.py: ``python charlstm/find_units.py``. The trained model
reads the held-out ``email`` package (sorted files, concatenated, as in train.py) and every
hidden state h_t and cell state c_t of every layer is correlated with per-character features
computed by the ``tokenize`` module. h_t is the state after reading character t, so each feature
describes the text up to and including character t.

nn.LSTM returns cell states only for the last step, so the layers are unrolled here with the
module's own weights (gate order i, f, g, o); the unrolled top layer is checked against nn.LSTM.
Pearson r is reported for every feature, and for yes/no features also the AUC of the unit's value
as a detector (0.5 is chance; below 0.5 means the unit is low where the feature holds).
"""
from __future__ import annotations

import argparse
import io
import json
import keyword
import sys
import tokenize
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from charlstm.model import CharLSTM  # noqa: E402
from charlstm.train import stdlib_files  # noqa: E402

OPEN, CLOSE = "([{", ")]}"
STATEMENT_START = {tokenize.NEWLINE, tokenize.NL, tokenize.INDENT, tokenize.DEDENT,
                   tokenize.COMMENT, tokenize.ENCODING}


def file_features(text: str) -> dict[str, torch.Tensor]:
    """Per-character features of one source file, from its tokens and its lines."""
    n = len(text)
    lines = io.StringIO(text).readlines()  # split on "\n" only, as tokenize does
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))
    off = lambda pos: starts[pos[0] - 1] + pos[1]  # noqa: E731  (row, col) -> char offset

    zeros = lambda: torch.zeros(n)  # noqa: E731
    f = {k: zeros() for k in ("in_string", "in_short_string", "in_docstring", "in_comment",
                              "after_keyword", "in_identifier")}
    depth_delta, block_delta = torch.zeros(n + 1), torch.zeros(n + 1)  # end DEDENTs sit at n
    tokens = list(tokenize.generate_tokens(iter(lines).__next__))
    for k, tok in enumerate(tokens):
        a, b = off(tok.start), off(tok.end)
        if tok.type == tokenize.STRING:
            f["in_string"][a : b - 1] = 1  # opening quote read, closing quote not yet
            body = tok.string.lstrip("rRbBuUfF")
            if body[:3] not in ('"""', "'''"):
                f["in_short_string"][a : b - 1] = 1
            alone = k == 0 or tokens[k - 1].type in STATEMENT_START
            if alone and tokens[k + 1].type == tokenize.NEWLINE:  # a string statement
                f["in_docstring"][a : b - 1] = 1
        elif tok.type == tokenize.COMMENT:
            f["in_comment"][a:b] = 1
        elif tok.type == tokenize.NAME and keyword.iskeyword(tok.string):
            f["after_keyword"][b - 1] = 1  # its last letter: what follows is up to the keyword
        elif tok.type == tokenize.NAME:
            f["in_identifier"][a:b] = 1
        elif tok.type == tokenize.OP and tok.string in OPEN + CLOSE:
            depth_delta[a] = 1 if tok.string in OPEN else -1
        elif tok.type == tokenize.INDENT:
            block_delta[b] += 1  # the new level is known once the leading whitespace is read
        elif tok.type == tokenize.DEDENT:
            block_delta[a] -= 1

    f["bracket_depth"] = depth_delta.cumsum(0)[:n]
    f["in_brackets"] = (f["bracket_depth"] > 0).float()
    f["block_level"] = block_delta.cumsum(0)[:n]
    column, indent, newline = zeros(), zeros(), zeros()
    for a, b, line in zip(starts, starts[1:], lines):
        column[a:b] = torch.arange(b - a, dtype=torch.float)
        indent[a:b] = len(line) - len(line.lstrip(" \t")) if line.strip() else 0
        newline[b - 1] = float(line.endswith("\n"))
    f.update(column=column, indent=indent, newline=newline)
    return f


@torch.no_grad()
def unroll(lstm: torch.nn.LSTM, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(h, c) of every layer at every step for one sequence x [T, input]: lists of [T, hidden]."""
    states = []
    for layer in range(lstm.num_layers):
        w_ih, w_hh = getattr(lstm, f"weight_ih_l{layer}"), getattr(lstm, f"weight_hh_l{layer}")
        bias = getattr(lstm, f"bias_ih_l{layer}") + getattr(lstm, f"bias_hh_l{layer}")
        hs, cs = torch.empty(len(x), lstm.hidden_size), torch.empty(len(x), lstm.hidden_size)
        h, c = torch.zeros(lstm.hidden_size), torch.zeros(lstm.hidden_size)
        for a in range(0, len(x), 8192):  # input projections a chunk at a time, to bound memory
            proj = torch.addmm(bias, x[a : a + 8192], w_ih.t())
            for t, p in enumerate(proj, start=a):
                i, fg, g, o = torch.addmv(p, w_hh, h).chunk(4)
                c = torch.sigmoid(fg) * c + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(c)
                hs[t], cs[t] = h, c
        states.append((hs, cs))
        x = hs
    return states


def auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Area under the ROC curve of scores for binary labels (Mann-Whitney, ties ignored)."""
    ranks = torch.empty(len(scores), dtype=torch.float64)
    ranks[scores.argsort()] = torch.arange(1, len(scores) + 1, dtype=torch.float64)
    pos = labels.bool()
    n_pos, n_neg = pos.sum().item(), (~pos).sum().item()
    return ((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)).item()


def standardize(m: torch.Tensor) -> torch.Tensor:
    return (m - m.mean(0)) / m.std(0).clamp_min(1e-8)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", type=Path, default=HERE / "weights.pt")
    p.add_argument("--vocab", type=Path, default=HERE / "vocab.json")
    p.add_argument("--top", type=int, default=3, help="units listed per feature")
    args = p.parse_args()
    torch.set_num_threads(2)

    vocab = json.loads(args.vocab.read_text())
    index = {ch: i for i, ch in enumerate(vocab["tokens"])}
    model = CharLSTM(vocab_size=len(vocab["tokens"]))
    model.load_state_dict(torch.load(args.weights, weights_only=True))
    model.eval()

    texts = [path.read_text(encoding="utf-8", errors="replace") for path in stdlib_files()[1]]
    text = "".join(texts)
    per_file = [file_features(t) for t in texts]
    features = {k: torch.cat([f[k] for f in per_file]) for k in per_file[0]}
    ids = torch.tensor([index.get(ch, index[vocab["unknown"]]) for ch in text])
    print(f"email/: {len(texts)} files, {len(text):,} chars; "
          f"features: {', '.join(features)}")

    with torch.no_grad():
        states = unroll(model.lstm, model.embed(ids))
        reference = model.lstm(model.embed(ids)[None])[0][0]
    drift = (states[-1][0] - reference).abs().max().item()
    assert drift < 1e-3, f"unrolled LSTM disagrees with nn.LSTM by {drift}"

    hidden = model.lstm.hidden_size
    blocks = [(f"L{layer} {kind}", s) for layer, pair in enumerate(states)
              for kind, s in zip(("hidden", "cell"), pair)]
    feat = torch.stack(list(features.values()), dim=1)
    z = standardize(feat)
    r = torch.cat([standardize(s).t() @ z for _, s in blocks]) / (len(text) - 1)  # [units, feat]

    print(f"\nstrongest units per feature ({len(r)} candidates: layer, state, unit index)")
    for j, name in enumerate(features):
        binary = set(feat[:, j].unique().tolist()) <= {0.0, 1.0}
        share = f"{feat[:, j].mean().item():.1%} of chars" if binary else \
            f"mean {feat[:, j].mean().item():.2f}, max {feat[:, j].max().item():.0f}"
        print(f"{name:16s} ({share})")
        for k in r[:, j].abs().argsort(descending=True)[: args.top].tolist():
            label, values = blocks[k // hidden][0], blocks[k // hidden][1][:, k % hidden]
            line = f"    {label:9s} {k % hidden:3d}  r={r[k, j].item():+.3f}"
            if binary:
                on = feat[:, j].bool()
                line += (f"  AUC={auc(values, feat[:, j]):.3f}  mean {values[on].mean():+.2f}"
                         f" where true, {values[~on].mean():+.2f} elsewhere")
            print(line)


if __name__ == "__main__":
    main()
