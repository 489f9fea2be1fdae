"""Text inputs: documents from files, JSON Lines, or a Python object, cut into token windows.

Each input set's documents are joined into one token stream (a blank line between
documents) and cut into windows of equal length that overlap, the last one aligned to the
stream's end, so every window is a full batch row and no position is padding. A token's
``piece`` is the text it covers plus the whitespace before it: joined, the pieces give back
the text, which is how pages can show whitespace and newlines exactly as they were.
"""
from __future__ import annotations

import bisect
import hashlib
import importlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from galleria.config import InputSetConfig
from galleria.errors import BuildError
from galleria.records import InputItem
from galleria.sources.images import InputSet, matching_files

SEPARATOR = "\n\n"  # between documents of a stream
MIN_TOKEN_COUNT = 3  # tokens seen fewer times get no mean activation: one lucky context is no evidence


class CharTokenizer:
    """One token per character, from a vocabulary file {"tokens": [...], "unknown": "?"}."""

    kind = "chars"
    lead: tuple[int, ...] = ()
    trail: tuple[int, ...] = ()

    def __init__(self, path: Path):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            tokens, unknown = data["tokens"], data["unknown"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise BuildError(f"{path}: not a character vocabulary ({type(exc).__name__}: {exc}); expected "
                             '{"tokens": ["a", "b", ...], "unknown": "?"}') from None
        if not all(isinstance(t, str) and len(t) == 1 for t in tokens) or unknown not in tokens:
            raise BuildError(f"{path}: every token must be one character, and 'unknown' one of them")
        self.labels = tuple(tokens)
        self._index = {t: i for i, t in enumerate(tokens)}
        self.unknown = self._index[unknown]
        self.key = hashlib.sha256(path.read_bytes()).hexdigest()[:16]

    def encode(self, text: str) -> tuple[np.ndarray, list[str]]:
        ids = np.fromiter((self._index.get(ch, self.unknown) for ch in text), dtype=np.int64, count=len(text))
        return ids, list(text)


class SubwordTokenizer:
    """A Hugging Face ``tokenizer.json`` (the ``tokenizers`` package), without truncation or padding."""

    kind = "subwords"

    def __init__(self, path: Path):
        try:
            from tokenizers import Tokenizer
        except ImportError:
            raise BuildError(f"{path}: reading a Hugging Face tokenizer needs pip install 'galleria[text]'") from None
        try:
            self._tok = Tokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises its own exception type
            raise BuildError(f"{path}: not a Hugging Face tokenizer.json: {exc}") from None
        self._tok.no_truncation()
        self._tok.no_padding()
        marked = self._tok.encode("a", add_special_tokens=True).ids
        plain = self._tok.encode("a", add_special_tokens=False).ids
        at = next(i for i in range(len(marked)) if marked[i:i + len(plain)] == plain)
        self.lead, self.trail = tuple(marked[:at]), tuple(marked[at + len(plain):])
        size = self._tok.get_vocab_size(with_added_tokens=True)
        labels = [self._tok.id_to_token(i) or "" for i in range(size)]
        if _byte_level(self._tok):  # GPT-2 style: "Ġthe" is " the", "Ċ" a line break
            labels = [_byte_text(label) for label in labels]
        self.labels = tuple(labels)
        self.key = hashlib.sha256(path.read_bytes()).hexdigest()[:16]

    def spec(self) -> str:
        """The tokenizer.json it was read from, as text (the live probe reads its kind and vocabulary)."""
        return self._tok.to_str()

    def encode(self, text: str) -> tuple[np.ndarray, list[str]]:
        encoding = self._tok.encode(text, add_special_tokens=False)
        pieces, end = [], 0
        for start, stop in encoding.offsets:
            stop = max(stop, end)
            pieces.append(text[end:stop])
            end = stop
        return np.asarray(encoding.ids, dtype=np.int64), pieces


def _byte_level(tokenizer) -> bool:
    """Whether the vocabulary is written in byte-level BPE's printable stand-ins for bytes."""
    spec = json.loads(tokenizer.to_str())
    return any((spec.get(part) or {}).get("type") == "ByteLevel" for part in ("decoder", "pre_tokenizer"))


def _byte_units() -> dict[str, int]:
    """GPT-2's map from the printable character standing for each byte back to the byte."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            chars[chr(byte)] = byte
        else:
            chars[chr(256 + extra)] = byte
            extra += 1
    return chars


_BYTES = _byte_units()


def _byte_text(label: str) -> str:
    """A byte-level token as the text it stands for; a token that is part of a character shows its bytes."""
    if not all(ch in _BYTES for ch in label):
        return label  # a special token such as <|endoftext|>
    raw = bytes(_BYTES[ch] for ch in label)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return "".join(f"\\x{b:02x}" for b in raw)


def load_tokenizer(spec: str, pretrained: Path | None):
    """The tokenizer a text model's config names: chars:VOCAB, a tokenizer.json, or the model's own."""
    if spec.startswith("chars:"):
        return CharTokenizer(Path(spec.split(":", 1)[1]))
    path = pretrained / "tokenizer.json" if spec == "model" else Path(spec)
    if not path.is_file():
        raise BuildError(f"{path.parent}: no tokenizer.json (save the tokenizer with the model)")
    return SubwordTokenizer(path)


@dataclass(frozen=True)
class TextCorpus:
    """Every token of a model's text inputs, one stream; input items are windows into it."""

    ids: np.ndarray  # [tokens] token ids
    pieces: tuple[str, ...]  # [tokens] the text of each token, with the whitespace before it
    labels: tuple[str, ...]  # per vocabulary id, how the tokenizer writes it
    kind: str  # "chars" or "subwords"
    lead: tuple[int, ...]  # special token ids the model sees before each window (e.g. [CLS])
    trail: tuple[int, ...]  # and after it (e.g. [SEP])
    counted: np.ndarray  # vocabulary ids seen often enough to have a mean activation, ascending
    compact: np.ndarray  # [tokens] index of each token's id in ``counted``, -1 where rare
    window: int  # tokens per window (every window of the corpus has this length)


def discover_text(sets: tuple[InputSetConfig, ...], tokenizer) -> InputSet:
    """Read, tokenize and window every document of the text input sets."""
    items: list[InputItem] = []
    skipped: list[tuple[str, str]] = []
    all_ids: list[np.ndarray] = []
    all_pieces: list[str] = []
    digest = hashlib.sha256(repr((tokenizer.key, SEPARATOR, MIN_TOKEN_COUNT)).encode())
    window = min(s.window for s in sets)
    offset = 0
    for spec in sets:
        documents = _documents(spec, skipped)
        if not documents:
            continue
        text, starts = "", []
        for name, body in documents:
            text += SEPARATOR if text else ""
            starts.append((len(text), name))
            text += body
        ids, pieces = tokenizer.encode(text)
        if not len(ids):
            skipped.append((spec.id, "no tokens"))
            continue
        token_starts = np.cumsum([0] + [len(p) for p in pieces[:-1]])  # character where each piece begins
        doc_tokens = [int(np.searchsorted(token_starts, char, side="left")) for char, _ in starts]
        stride = max(1, spec.window - spec.overlap)
        length = min(window, len(ids))
        if length < window:
            raise BuildError(f"input set '{spec.id}' has {len(ids)} tokens, fewer than one window of {window}; "
                             "lower 'window' or add text")
        for start in _window_starts(len(ids), length, stride):
            first = bisect.bisect_right(doc_tokens, start) - 1
            last = bisect.bisect_right(doc_tokens, start + length - 1) - 1
            name = starts[first][1] + (f" (+{last - first} more)" if last > first else "")
            items.append(InputItem(len(items), f"{spec.id}-{start}", name,
                                   f"{name} · tokens {start - doc_tokens[first]:,}–"
                                   f"{start - doc_tokens[first] + length - 1:,}", None,
                                   (offset + start, offset + start + length)))
        digest.update(spec.id.encode())
        digest.update(ids.tobytes())
        digest.update(repr((length, stride)).encode())
        all_ids.append(ids)
        all_pieces.extend(pieces)
        offset += len(ids)
    if not items:
        raise BuildError("no text in " + ", ".join(s.id for s in sets) + (f" ({skipped[0][0]}: {skipped[0][1]})"
                                                                            if skipped else ""))
    ids = np.concatenate(all_ids)
    counted, compact = _count(ids, items, len(tokenizer.labels))
    corpus = TextCorpus(ids, tuple(all_pieces), tokenizer.labels, tokenizer.kind, tuple(tokenizer.lead),
                        tuple(tokenizer.trail), counted, compact, window)
    return InputSet(tuple(items), tuple(skipped), digest.hexdigest()[:20], corpus)


def _window_starts(tokens: int, window: int, stride: int) -> list[int]:
    starts = list(range(0, max(tokens - window, 0) + 1, stride))
    if starts[-1] + window < tokens:
        starts.append(tokens - window)  # the tail, aligned to the end
    return starts


def _count(ids: np.ndarray, items: list[InputItem], vocab: int) -> tuple[np.ndarray, np.ndarray]:
    """Which vocabulary ids occur at least MIN_TOKEN_COUNT times inside windows (overlaps counted once)."""
    inside = np.zeros(len(ids), dtype=bool)
    for item in items:
        inside[item.span[0]:item.span[1]] = True
    counts = np.bincount(ids[inside], minlength=vocab)
    counted = np.flatnonzero(counts >= MIN_TOKEN_COUNT)
    lookup = np.full(max(vocab, int(ids.max()) + 1), -1, dtype=np.int64)
    lookup[counted] = np.arange(len(counted))
    return counted, lookup[ids]


def _documents(spec: InputSetConfig, skipped: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """(name, text) of every document in a set, in a stable order."""
    if spec.python is not None:
        docs = _python_documents(spec.python, spec.root)
    else:
        docs = []
        for path in matching_files(spec):
            name = str(path.relative_to(spec.root))
            try:
                raw = path.read_bytes()
            except OSError as exc:
                skipped.append((str(path), str(exc)))
                continue
            if b"\0" in raw[:8192]:
                skipped.append((str(path), "binary, not text"))
                continue
            text = raw.decode("utf-8", errors="replace")
            if spec.field is not None or path.suffix == ".jsonl":
                docs.extend(_json_lines(path, name, text, spec.field or "text", skipped))
            else:
                docs.append((name, text))
    docs = [(name, text) for name, text in docs if text.strip()]
    return docs[: spec.limit] if spec.limit else docs


def _python_documents(python: str, root: Path) -> list[tuple[str, str]]:
    module_name, _, attribute = python.partition(":")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))  # so a module beside site.yaml imports, as model code does
    try:
        value = importlib.import_module(module_name)
        for part in attribute.split("."):
            value = getattr(value, part)
    except (ImportError, AttributeError) as exc:
        raise BuildError(f"cannot read text from {python}: {exc}") from None
    if isinstance(value, str):
        return [(attribute, value)]
    if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
        return [(f"{attribute}[{k!r}]", v) for k, v in value.items()]
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return [(f"{attribute}[{i}]", v) for i, v in enumerate(value)]
    raise BuildError(f"{python} is {type(value).__name__}; give a str, a list of str or a dict of name: str")


def _json_lines(path: Path, name: str, text: str, field: str, skipped) -> list[tuple[str, str]]:
    docs, bad = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)[field]
        except (ValueError, KeyError, TypeError):
            bad.append(number)
            continue
        if isinstance(value, str):
            docs.append((f"{name}:{number}", value))
        else:
            bad.append(number)
    if bad:
        skipped.append((str(path), f"{len(bad)} line(s) without a text field '{field}' (first: line {bad[0]})"))
    return docs


class TokenLoader:
    """Turns window items into the model's token id batches, special tokens included."""

    def __init__(self, corpus: TextCorpus):
        self.corpus = corpus

    def batch(self, items: list[InputItem]):
        import torch

        c = self.corpus
        rows = [np.concatenate([c.lead, c.ids[i.span[0]:i.span[1]], c.trail]).astype(np.int64) for i in items]
        return torch.from_numpy(np.stack(rows)), None

    def readable(self, items: list[InputItem]):
        """As ImageLoader.readable: text windows always are."""
        return items, self.batch(items)[0], {}
