"""The model's tokenizer as the page runs it (galleria-probe.js): a character vocabulary, or WordPiece.

A Hugging Face tokenizer is run in the page when it is BERT's WordPiece (BertNormalizer,
BertPreTokenizer) or GPT-2's byte-level BPE (ByteLevel pre-tokenizer with its own regex, no
normalizer); other kinds (SentencePiece's Metaspace and byte fallback, Unigram, custom split
patterns) return None, and their models are probed by ``galleria serve`` only.
"""
from __future__ import annotations

import json


def page_tokenizer(tokenizer) -> dict | None:
    """What galleria-probe.js needs to turn text into the same ids as the build, or None if it cannot."""
    if tokenizer.kind == "chars":
        return {"kind": "chars", "tokens": list(tokenizer.labels), "unknown": tokenizer.unknown}
    spec = json.loads(tokenizer.spec())
    model, normalizer, pre = spec.get("model") or {}, spec.get("normalizer") or {}, spec.get("pre_tokenizer") or {}
    if model.get("type") == "BPE":
        return _byte_level_bpe(model, normalizer, pre)
    if model.get("type") != "WordPiece" or normalizer.get("type") != "BertNormalizer" \
            or pre.get("type") != "BertPreTokenizer":
        return None
    vocab = model["vocab"]
    tokens = [""] * (max(vocab.values()) + 1)
    for token, index in vocab.items():
        tokens[index] = token
    lowercase = bool(normalizer.get("lowercase", True))
    strip_accents = normalizer.get("strip_accents")
    return {"kind": "wordpiece", "tokens": tokens, "unknown": vocab[model.get("unk_token", "[UNK]")],
            "prefix": model.get("continuing_subword_prefix", "##"),
            "max_chars": int(model.get("max_input_chars_per_word", 100)), "lowercase": lowercase,
            "strip_accents": lowercase if strip_accents is None else bool(strip_accents),
            "clean_text": bool(normalizer.get("clean_text", True)),
            "chinese_chars": bool(normalizer.get("handle_chinese_chars", True))}


def _byte_level_bpe(model: dict, normalizer: dict, pre: dict) -> dict | None:
    plain = (not normalizer and pre.get("type") == "ByteLevel" and pre.get("use_regex", True)
             and not pre.get("add_prefix_space", False) and not model.get("dropout")
             and not model.get("continuing_subword_prefix") and not model.get("end_of_word_suffix")
             and not model.get("byte_fallback"))
    if not plain:
        return None
    vocab = model["vocab"]
    tokens = [""] * (max(vocab.values()) + 1)
    for token, index in vocab.items():
        tokens[index] = token
    merges = [m.split(" ", 1) if isinstance(m, str) else list(m) for m in model.get("merges", ())]
    return {"kind": "bpe", "tokens": tokens, "merges": merges, "ignore_merges": bool(model.get("ignore_merges")),
            "unknown": vocab.get(model.get("unk_token") or "", -1)}
