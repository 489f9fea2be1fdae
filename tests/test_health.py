"""Broken units are found and shown: planted dead, always-on, saturated, NaN and duplicate units."""
from __future__ import annotations

import json
import re

import numpy as np
from PIL import Image

from galleria.cli import main
from galleria.extract.health import layer_health
from galleria.records import Histogram, UnitStats, UnitSummary


def summary(unit: int, low: float, high: float, active: float, nonfinite: int = 0, count: int = 100) -> UnitSummary:
    stats = UnitStats(count, (low + high) / 2, 1.0, low, high, active, nonfinite, Histogram(1.0, 0, ()))
    return UnitSummary(unit, stats, (), ())


def test_planted_units_are_flagged():
    rng = np.random.default_rng(0)
    base = rng.normal(size=40)
    peaks = np.stack([
        rng.normal(size=40),  # 10: healthy
        -np.abs(rng.normal(size=40)),  # 11: dead
        np.abs(rng.normal(size=40)) + 1,  # 12: always on
        np.minimum(rng.normal(size=40) * 6, 6.0),  # 13: clipped at 6 on about half the inputs or more
        base,  # 14 and 15: one is a scaled copy of the other
        2 * base + 1 + rng.normal(size=40) * 0.01,
        rng.normal(size=40),  # 16: NaN somewhere
    ], axis=1)
    peaks[:25, 3] = 6.0  # unit 13 sits at its ceiling on 25 of 40 inputs
    units = (10, 11, 12, 13, 14, 15, 16)
    summaries = [
        summary(10, -2, 2, 0.5), summary(11, -3, 0, 0.0), summary(12, 0.5, 4, 1.0),
        summary(13, -5, 6, 0.6), summary(14, -2, 2, 0.5), summary(15, -3, 5, 0.5),
        summary(16, -2, 2, 0.5, nonfinite=7),
    ]
    health = layer_health(units, [s.stats for s in summaries], peaks)
    assert health.units["dead"] == [11]
    assert health.units["always on"] == [12]
    assert health.units["saturated"] == [13] and health.saturation[13] >= 25 / 40
    assert health.units["non-finite"] == [16]
    assert [(d.unit, d.other) for d in health.duplicates] == [(14, 15)]
    assert health.duplicates[0].similarity > 0.99
    assert health.flags(15) == ["duplicate"] and health.flags(10) == []


def test_dead_units_are_not_duplicates_of_each_other():
    peaks = np.zeros((10, 3))
    peaks[:, 2] = np.arange(10)
    summaries = [summary(i, -1, 0, 0.0) for i in range(2)] + [summary(2, 0, 9, 0.9)]
    health = layer_health((0, 1, 2), [s.stats for s in summaries], peaks)
    assert health.duplicates == [] and health.units["dead"] == [0, 1]


MODEL = '''
import torch
from torch import nn


class Planted(nn.Module):
    """Channel 1 copies channel 0 (doubled), channel 2 is dead, channel 3 is NaN."""

    def forward(self, x):
        x = x.clone()
        x[:, 1] = 2 * x[:, 0]
        x[:, 2] = -1.0
        x[:, 3] = float("nan")
        return x


def build():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 5, 3), Planted())
'''


def test_health_pages_of_a_built_site(tmp_path, capsys):
    (tmp_path / "photos").mkdir()
    rng = np.random.default_rng(2)
    for i in range(5):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "photos" / f"{i}.png")
    (tmp_path / "planted.py").write_text(MODEL)
    (tmp_path / "site.yaml").write_text(
        "site: {title: Health, output_dir: out}\ninputs: [{path: photos}]\n"
        "models:\n  - id: m\n    source: planted:build\n    preprocessing: {size: 16}\n    layers: ['1']\n"
        "examples: {top: 2, bottom: 1, tile_size: 32}\n")
    assert main(["build", "-q", "-f", str(tmp_path / "site.yaml")]) == 0, capsys.readouterr().err
    out = tmp_path / "out" / "m"
    page = (out / "health" / "index.html").read_text()
    assert "never above zero" in page
    for unit in (0, 1, 2, 3):
        assert f'href="../1/{unit}/index.html"' in page
    assert "health" in (out / "index.html").read_text() and (out / "1" / "health" / "index.html").is_file()
    nan_unit = json.loads((out / "1" / "3" / "unit.json").read_text())
    assert nan_unit["flags"] == ["non-finite"] and nan_unit["top"] == [] and nan_unit["stats"]["nonfinite"] > 0
    copy = json.loads((out / "1" / "1" / "unit.json").read_text())
    assert "duplicate" in copy["flags"] and copy["duplicates"][0]["unit"] == 0
    assert "near-duplicate of" in (out / "1" / "1" / "index.html").read_text()
    assert json.loads((out / "1" / "2" / "unit.json").read_text())["flags"] == ["dead"]
    assert "dead" in (out / "1" / "index.html").read_text()
    from test_build import parse

    for html in out.rglob("*.html"):  # a unit without examples has no images to link to
        for link in parse(html).links:
            assert (html.parent / re.split("[?#]", link)[0]).exists(), f"{html} links to missing {link}"
