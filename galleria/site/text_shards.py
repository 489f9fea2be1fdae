"""A text corpus' tokens, written once for every page that shows a whole window of it.

Unit pages carry the text of each example's stretch, readable without script; the whole window
of a top or bottom example (hundreds of tokens) is drawn on request from these shards instead of
being repeated on every page that shows it. Scripts, not JSON, because browsers refuse fetch()
from file://; named by the corpus' content key, so a cached shard of another build never mixes in.
"""
from __future__ import annotations

import json
from pathlib import Path

from galleria.site.search_index import script_json
from galleria.site.views import shown_pieces
from galleria.sources.text import TextCorpus

SHARD_TOKENS = 8192


def shard_folder(corpus_key: str) -> str:
    """The site folder of a corpus' shards (pages point their script at it)."""
    return f"text/{corpus_key}"


def write_text_shards(out: Path, corpus: TextCorpus, corpus_key: str) -> int:
    """Every token of the corpus, its whitespace drawn as pages draw it, in shards of SHARD_TOKENS;
    returns the bytes written. ``galleriaText(key, n, pieces)`` is called by each."""
    folder = out / shard_folder(corpus_key)
    folder.mkdir(parents=True, exist_ok=True)
    written = 0
    drawn = shown_pieces(corpus)[0]
    for number, start in enumerate(range(0, len(drawn), SHARD_TOKENS)):
        pieces = drawn[start:start + SHARD_TOKENS]
        data = f"galleriaText({json.dumps(corpus_key)},{number},{script_json(pieces)});\n".encode("utf-8")
        (folder / f"{number}.js").write_bytes(data)
        written += len(data)
    return written
