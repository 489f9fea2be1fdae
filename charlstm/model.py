"""The character-level LSTM of the default gallery: read Python source one character at a time.

Small on purpose (trained on a 2-core CPU in minutes, see train.py) yet large enough to grow
the cells Karpathy et al. (2015) found: quotes, indentation, brackets, line position.
"""
from __future__ import annotations

import torch
from torch import nn


class CharLSTM(nn.Module):
    def __init__(self, vocab_size: int = 98, embedding: int = 32, hidden: int = 256, layers: int = 2):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embedding)
        self.lstm = nn.LSTM(embedding, hidden, layers, batch_first=True)
        self.head = nn.Linear(hidden, vocab_size)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Token ids [batch, time] to next-character logits [batch, time, vocab]."""
        return self.head(self.lstm(self.embed(ids))[0])
