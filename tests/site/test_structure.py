"""Urls: permalinks are folders, links between pages are relative and name index.html."""
from __future__ import annotations

import posixpath

import pytest

from galleria.site import structure as S


def test_permalinks():
    assert S.unit_dir("lite0", "blocks.4", 37) == "lite0/blocks.4/37"
    assert S.input_dir("lite0", "chelsea-s2-0-1") == "lite0/inputs/chelsea-s2-0-1"
    assert S.page_file(S.unit_dir("m", "fc", 3)) == "m/fc/3/index.html"
    assert S.page_file("") == "index.html"


def test_layer_names_become_safe_folders():
    assert S.slug("blocks.4") == "blocks.4"
    assert S.slug("features/3 conv") == "features-3-conv"
    assert S.slug("inputs") == "layer-inputs"  # would collide with the model's inputs folder
    assert S.slug("???") == "layer"


@pytest.mark.parametrize("source, target", [
    ("", "m/index.html"),
    ("m/fc/3", "m/fc/4/index.html"),
    ("m/fc/3", "m/fc/3/unit.json"),
    ("m/fc/3", "index.html"),
    ("m/inputs/cat", "m/fc/3/thumb.jpg"),
    ("m", "m/inputs/index.html"),
    ("m/fc", "m/fcx/index.html"),
])
def test_href_agrees_with_posixpath(source, target):
    expected = posixpath.relpath(target, source or ".")
    assert S.href(source, target) == expected


def test_root_prefix():
    assert S.root("") == ""
    assert S.root("m/fc/3") == "../../../"
