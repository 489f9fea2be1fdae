"""What holds at each token of a text: the predicates automatic labels are made of (extract/labels.py).

Each predicate is a plain statement a reader can check on the page ("inside a quoted string",
"a digit", "indented 8 or more"): token classes, and the structure a Python-aware scan of the text
sees (quotes, brackets of each kind, comments and docstrings, indentation, the column). The token
itself and the token before it are predicates too, kept as ids (labels.py scores every one at once).
A token's structure is read where its own text starts (a subword's leading space is not its own).
"""
from __future__ import annotations

import keyword
import re
import unicodedata
from dataclasses import dataclass

import numpy as np

INDENTS = (4, 8, 12)  # "indented N or more": the line's leading spaces (a tab counts 4)
COLUMNS = (16, 32, 48, 64)  # "past column N"
BRACKETS = {"(": ("parentheses", ")"), "[": ("square brackets", "]"), "{": ("braces", "}")}
WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
CODE_DENSITY = 1 / 2000  # "def " or "import " at least this often per character: the text is code


@dataclass(frozen=True)
class TokenFeatures:
    """Predicates over a corpus' token stream: ``holds`` [tokens, predicates] (bool), named by
    ``names``; ``previous`` each token's previous token id (-1 at the start)."""

    names: tuple[str, ...]
    holds: np.ndarray
    previous: np.ndarray


def token_features(pieces: tuple[str, ...], ids: np.ndarray, chars: bool) -> TokenFeatures:
    """The predicates at every token of a stream (``pieces``: each token's text, with the whitespace
    before it; ``chars``: one character a token)."""
    text = "".join(pieces)
    state = _scan(text)
    starts = np.cumsum([0] + [len(p) for p in pieces[:-1]], dtype=np.int64)
    lead = np.array([0 if chars else len(p) - len(p.lstrip()) for p in pieces], dtype=np.int64)
    lengths = np.array([len(p) for p in pieces], dtype=np.int64)
    at = np.minimum(starts + lead, starts + np.maximum(lengths - 1, 0)).clip(0, max(len(text) - 1, 0))
    own = [p if chars else (p.lstrip() or p) for p in pieces]
    names, columns = [], []

    def add(name: str, values) -> None:
        names.append(name)
        columns.append(np.asarray(values, dtype=bool))

    add("a digit", [bool(t) and all(c.isdigit() for c in t) for t in own])
    add("a capital letter", [t[:1].isupper() for t in own])
    add("a lowercase letter", [t[:1].islower() for t in own])
    add("a space", [bool(t) and t.strip(" \t") == "" for t in own])
    add("a line break", ["\n" in p for p in pieces])
    add("punctuation", [bool(t.strip()) and all(unicodedata.category(c).startswith(("P", "S")) for c in t.strip())
                        for t in own])
    add("part of a word", state["word"][at])
    if len(text) and (text.count("def ") + text.count("import ")) / len(text) >= CODE_DENSITY:
        add("part of a Python keyword", state["keyword"][at])
    add("inside a quoted string", state["string"][at])
    add("inside a one-line string", (state["string"] & ~state["docstring"])[at])
    add("inside a docstring", state["docstring"][at])
    add("inside a comment", state["comment"][at])
    for opening, (name, _) in BRACKETS.items():
        add(f"inside {name}", state[opening][at])
    add("inside brackets", (state["("] | state["["] | state["{"])[at])
    add("at the start of a line", state["line_start"][at])
    add("in the indentation", state["indentation"][at])
    for depth in INDENTS:
        add(f"on a line indented {depth} or more", state["indent"][at] >= depth)
    for column in COLUMNS:
        add(f"past column {column}", state["column"][at] >= column)
    for column in COLUMNS[:-1]:
        add(f"in the first {column} columns of a line", state["column"][at] < column)
    previous = np.concatenate([[-1], np.asarray(ids[:-1], dtype=np.int64)]) if len(ids) else np.zeros(0, np.int64)
    holds = np.stack(columns, axis=1) if columns else np.zeros((len(pieces), 0), bool)
    return TokenFeatures(tuple(names), holds, previous)


def _scan(text: str) -> dict[str, np.ndarray]:
    """Per character, what a Python-aware reader knows there: inside a string (a docstring: one in
    triple quotes; the others end with their line), a comment, each kind of bracket (the opening one is outside, the closing one
    inside); its column, its line's indentation, whether it is in that indentation or starts the line."""
    n = len(text)
    string, docstring, comment = np.zeros(n, bool), np.zeros(n, bool), np.zeros(n, bool)
    inside = {opening: np.zeros(n, bool) for opening in BRACKETS}
    column, indent = np.zeros(n, np.int32), np.zeros(n, np.int32)
    indentation, line_start = np.zeros(n, bool), np.zeros(n, bool)
    quote, in_comment, escaped = "", False, False
    depth = dict.fromkeys(BRACKETS, 0)
    closing = {close: opening for opening, (_, close) in BRACKETS.items()}
    i, col, width, leading = 0, 0, 0, True

    def past(i: int, col: int, length: int) -> tuple[int, int]:
        """Past a quote of ``length`` characters at ``i``, each marked with its column, its line's
        indentation and the brackets it is in; the next position and column."""
        column[i:i + length] = range(col, col + length)
        indent[i:i + length] = width
        for opening in BRACKETS:
            inside[opening][i:i + length] = depth[opening] > 0
        return i + length, col + length
    while i < n:
        c = text[i]
        if i == 0 or text[i - 1] == "\n":  # a new line: measure its indentation
            j, width = i, 0
            while j < n and text[j] in " \t":
                width += 4 if text[j] == "\t" else 1
                j += 1
            leading = True
        column[i], indent[i] = col, width
        if leading and c not in " \t":
            line_start[i], leading = c != "\n", False
        indentation[i] = leading
        for opening in BRACKETS:
            inside[opening][i] = depth[opening] > 0
        comment[i] = in_comment
        if quote:
            string[i], docstring[i] = True, len(quote) == 3
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif text.startswith(quote, i):
                string[i:i + len(quote)], docstring[i:i + len(quote)] = True, len(quote) == 3
                i, col = past(i, col, len(quote))
                quote = ""
                continue
            elif c == "\n" and len(quote) == 1:
                quote = ""  # an unclosed one-line string ends with its line
        elif in_comment:
            in_comment = c != "\n"
        elif c == "#":
            in_comment = True
        elif c in "'\"":
            quote = c * 3 if text.startswith(c * 3, i) else c
            i, col = past(i, col, len(quote))
            continue
        elif c in BRACKETS:
            depth[c] += 1
        elif c in closing and depth[closing[c]]:
            depth[closing[c]] -= 1
        if c == "\n":
            col, in_comment = 0, False
        else:
            col += 1
        i += 1
    word, words = np.zeros(n, bool), np.zeros(n, bool)
    keywords = set(keyword.kwlist)
    for match in WORD.finditer(text):
        word[match.start():match.end()] = True
        if match.group() in keywords:
            words[match.start():match.end()] = True
    return {"string": string, "docstring": docstring, "comment": comment, **inside, "column": column,
            "indent": indent, "indentation": indentation, "line_start": line_start, "word": word, "keyword": words}
