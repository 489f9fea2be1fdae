"""Hugging Face transformers models from a folder on disk, never from the hub.

The wrapper takes token ids and returns one tensor, like every other model galleria runs,
and registers the transformer's own children under their own names, so layers are chosen
as ``encoder.layer.3.intermediate`` exactly as the model's code and its papers call them.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from galleria.errors import BuildError

LM_HEADS = ("ForCausalLM", "ForMaskedLM", "LMHeadModel")


class TransformerModel(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        if any(True for _ in model.named_parameters(recurse=False)):
            self.add_module("model", model)
        else:
            for name, child in model.named_children():
                self.add_module(name, child)
        object.__setattr__(self, "_model", model)  # not a child: its children are already ours

    def train(self, mode: bool = True):
        self._model.train(mode)
        return super().train(mode)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Token ids [batch, time] to logits [batch, time, vocab], or hidden states where no head."""
        out = self._model(input_ids=ids, attention_mask=torch.ones_like(ids))
        logits = getattr(out, "logits", None)
        return logits if logits is not None else out.last_hidden_state


def load_transformer(folder: Path, model_id: str) -> TransformerModel:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a folder on disk is all there is
    try:
        import transformers
    except ImportError:
        raise BuildError(f"model '{model_id}' needs the transformers library: pip install 'galleria[text]'") from None
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    try:
        config = transformers.AutoConfig.from_pretrained(folder, local_files_only=True)
        architecture = next(iter(config.architectures or []), "")
        auto = transformers.AutoModel
        if architecture.endswith(LM_HEADS):
            auto = (transformers.AutoModelForMaskedLM if architecture.endswith("ForMaskedLM")
                    else transformers.AutoModelForCausalLM)
        model = auto.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise BuildError(f"model '{model_id}': cannot load {folder}: {str(exc).splitlines()[0]}") from None
    return TransformerModel(model.eval())
