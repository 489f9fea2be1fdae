"""Each unit's mean activation per vocabulary token, streamed and exactly mergeable.

Sums are float64 and counts integers, so halves merged equal the whole to the last bit that
matters. Only tokens seen often enough are kept (``TextCorpus.counted``): a vocabulary of
30,000 subwords times 1,536 units would not fit, and a token seen once says nothing.
"""
from __future__ import annotations

import numpy as np
import torch

TOP_TOKENS = 10


class TokenMeans:
    def __init__(self, num_tokens: int, num_units: int):
        self.sums = torch.zeros(num_tokens, num_units, dtype=torch.float64)
        self.counts = torch.zeros(num_tokens, dtype=torch.int64)

    def update(self, acts: torch.Tensor, compact: torch.Tensor) -> None:
        """Fold in a batch: acts [B, C, T], compact [B, T] each token's row (-1: not counted)."""
        rows = acts.transpose(1, 2).reshape(-1, acts.shape[1])
        keep = compact.reshape(-1).to(rows.device) >= 0
        index = compact.reshape(-1).to(rows.device)[keep]
        finite = rows[keep].double().cpu()
        finite = torch.nan_to_num(finite, nan=0.0, posinf=0.0, neginf=0.0)
        self.sums.index_add_(0, index.cpu(), finite)
        self.counts += torch.bincount(index.cpu(), minlength=len(self.counts))

    def merge(self, other: "TokenMeans") -> "TokenMeans":
        merged = TokenMeans(0, 0)
        merged.sums, merged.counts = self.sums + other.sums, self.counts + other.counts
        return merged

    def state_dict(self) -> dict:
        return {"sums": self.sums, "counts": self.counts}

    @classmethod
    def from_state_dict(cls, state: dict) -> "TokenMeans":
        means = cls(0, 0)
        means.sums, means.counts = state["sums"], state["counts"]
        return means

    def strongest(self, counted: np.ndarray, k: int = TOP_TOKENS) -> list[list[tuple[int, float, int]]]:
        """Per unit, its k tokens of highest mean activation: (vocabulary id, mean, occurrences)."""
        seen = self.counts > 0
        if not bool(seen.any()):
            return [[] for _ in range(self.sums.shape[1])]
        means = self.sums[seen] / self.counts[seen].unsqueeze(1)  # [tokens seen, units]
        ids = torch.from_numpy(np.asarray(counted))[seen]
        counts = self.counts[seen]
        top = means.topk(min(k, len(means)), dim=0)
        return [[(int(ids[r]), float(v), int(counts[r])) for r, v in zip(top.indices[:, u], top.values[:, u])]
                for u in range(means.shape[1])]
