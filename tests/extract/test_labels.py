"""Automatic labels: predicates over a text's tokens, and detection scores on held-out data."""
from __future__ import annotations

import numpy as np

from galleria.extract.labels import SHOWN, average_ranks, image_layer_labels, text_unit_labels
from galleria.extract.text_features import token_features

CODE = '''def parse(line, width=80):
    """Split a line (at most width columns)."""
    parts = [p for p in line.split(",") if p]  # drop the empty ones
    return {"parts": parts, "count": len(parts) + 12}


class Point:
    x = 3
    y = 45
'''


def holds(features, name: str, text: str) -> str:
    """Where a predicate holds, drawn over the text: ^ where it does."""
    column = features.holds[:, features.names.index(name)]
    return "".join("^" if v else "." for v in column[:len(text)])


def test_the_scan_reads_strings_comments_brackets_and_indentation():
    features = token_features(tuple(CODE), np.arange(len(CODE)), True)
    line = CODE.index('    parts = [p')
    end = CODE.index("\n", line)
    drawn = lambda name: holds(features, name, CODE)[line:end]  # noqa: E731
    shown = CODE[line:end]
    assert shown == '    parts = [p for p in line.split(",") if p]  # drop the empty ones'

    def between(first: int, last: int) -> str:  # ^ from first to last, inclusive
        return "." * first + "^" * (last - first + 1) + "." * (len(shown) - last - 1)
    quote = shown.index('"')
    assert drawn("inside a one-line string") == between(quote + 1, quote + 2)  # the opening quote is outside
    assert drawn("inside square brackets") == between(shown.index("[") + 1, shown.index("]"))  # the closing inside
    assert drawn("inside parentheses") == between(shown.index("(") + 1, shown.index(")"))
    assert drawn("inside a comment") == between(shown.index("#") + 1, len(shown) - 1)
    assert drawn("in the indentation") == between(0, 3)
    assert drawn("at the start of a line") == between(4, 4)
    doc = CODE.index('"""Split')
    close = CODE.index('"""', doc + 3) + 3  # after the closing quotes
    assert holds(features, "inside a docstring", CODE)[doc:close + 1] == "..." + "^" * (close - doc - 3) + "."
    assert not holds(features, "inside a one-line string", CODE)[doc + 3:doc + 40].count("^")
    assert holds(features, "a digit", CODE).count("^") == sum(c.isdigit() for c in CODE)
    keyword_at = CODE.index("return")
    assert holds(features, "part of a Python keyword", CODE)[keyword_at:keyword_at + 7] == "^^^^^^."
    assert holds(features, "on a line indented 4 or more", CODE)[CODE.index("    x = 3")] == "^"
    assert holds(features, "inside braces", CODE).count("^") == CODE.count("}") + len(
        '"parts": parts, "count": len(parts) + 12')


def corpus(seed: int = 0, size: int = 20000):
    """A stream of characters of code-like text, long enough to split into many stretches."""
    rng = np.random.default_rng(seed)
    words = ["x", "total", "= ", "(", ")", "12", "7", "'a'", "\n", "    ", "for ", "in ", "+ ", "345", ", "]
    text = "".join(rng.choice(words, size // 3))[:size]
    vocab = sorted(set(text))
    return text, np.array([vocab.index(c) for c in text]), vocab


def test_a_unit_that_fires_on_digits_is_labelled_digits_with_a_score_near_one():
    text, ids, vocab = corpus()
    features = token_features(tuple(text), ids, True)
    rng = np.random.default_rng(1)
    values = np.array([1.0 if c.isdigit() else 0.0 for c in text]) + rng.normal(0, 0.05, len(text))
    labels = text_unit_labels(values, np.arange(len(text)), features, ids, lambda i: vocab[i])
    assert labels[0].label == "a digit" and labels[0].score > 0.99
    assert labels[0].method.startswith("detection")


def test_a_random_unit_scores_near_chance_and_is_not_shown():
    text, ids, vocab = corpus()
    features = token_features(tuple(text), ids, True)
    values = np.random.default_rng(2).normal(size=len(text))
    labels = text_unit_labels(values, np.arange(len(text)), features, ids, lambda i: vocab[i])
    assert labels and all(abs(label.score - 0.5) < 0.06 for label in labels)
    assert labels[0].score < SHOWN


def test_a_set_of_tokens_is_one_label():
    text, ids, vocab = corpus()
    features = token_features(tuple(text), ids, True)
    values = np.array([1.0 if c in "()" else 0.0 for c in text])
    labels = text_unit_labels(values, np.arange(len(text)), features, ids, lambda i: vocab[i])
    assert labels[0].label in ("'(' or ')'", "')' or '('") and labels[0].score > 0.99


def test_average_ranks_share_ties():
    assert average_ranks(np.array([3.0, 1.0, 3.0, 0.0])).tolist() == [3.5, 2.0, 3.5, 1.0]


def test_an_image_unit_is_labelled_by_the_class_the_model_sees_where_it_fires():
    rng = np.random.default_rng(0)
    photos = [f"photo{i}.png" for i in range(40)]
    sources = [p for p in photos for _ in range(5)]  # five crops of each photo
    predicted = np.array([i % 4 for i in range(40) for _ in range(5)])  # photo i is of class i % 4
    peaks = rng.normal(size=(200, 3))
    peaks[:, 0] += 4 * (predicted == 2)  # unit 0 fires on class 2
    peaks[7, 1] = np.nan  # an input that could not be read
    labels = image_layer_labels(peaks, predicted, ["cat", "dog", "kite", "boat"], sources)
    assert labels[0][0].label == "kite" and labels[0][0].score > 0.95
    assert labels[2][0].score < SHOWN  # noise


def test_a_class_seen_in_one_photo_is_no_label():
    photos = [f"photo{i}.png" for i in range(20)]
    sources = [p for p in photos for _ in range(9)]
    predicted = np.zeros(180, int)
    predicted[:9] = 1  # every crop of photo 0, and no other photo, is class 1
    peaks = np.random.default_rng(0).normal(size=(180, 1))
    peaks[:9, 0] += 10
    labels = image_layer_labels(peaks, predicted, ["sea", "ship"], sources)
    assert all(label.label != "ship" for label in labels[0])
