"""Reading a built site back: ``galleria.open`` and ``galleria export`` (JSON Lines, Parquet), checked
against every unit's unit.json."""
from __future__ import annotations

import importlib.util
import json

import pyarrow.parquet as pq
import pytest

import galleria
from galleria.cli import main
from galleria.commands.export import read_parquet
from test_build import make_project


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = make_project(tmp_path_factory.mktemp("export"))
    (root / "content" / "tiny" / "2").mkdir(parents=True)
    (root / "content" / "tiny" / "2" / "1.md").write_text("---\nlabel: stripes <b>detector</b>\n---\nStripes.\n")
    assert main(["build", "-q", "-f", str(root / "site.yaml")]) == 0
    return root


def unit_jsons(root, layer):
    folder = root / "out" / "tiny" / layer
    return [json.loads((folder / str(u) / "unit.json").read_text())
            for u in sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit())]


def test_open_reads_every_record_in_the_models_order(project):
    site = galleria.open(project / "out")
    assert site.models == ("tiny",)
    assert [layer.name for layer in site.layers("tiny")] == ["0", "2", "5", "6"]  # as site.yaml lists them
    for layer in site.layers("tiny"):
        assert list(site.units("tiny", layer.name)) == unit_jsons(project, layer.name)
    assert site.unit("tiny", "2", 1)["label"] == "stripes <b>detector</b>"


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_export_writes_a_file_per_layer_holding_unit_json(project, capsys, fmt):
    out = project / f"export-{fmt}"
    assert main(["export", "-f", str(project / "site.yaml"), "--format", fmt, "-o", str(out), "--no-build"]) == 0
    assert f"{out}/<model>/<layer>.{fmt}" in capsys.readouterr().out
    for layer in ["0", "2", "5", "6"]:
        path = out / "tiny" / f"{layer}.{fmt}"
        got = ([json.loads(line) for line in path.read_text().splitlines()] if fmt == "jsonl"
               else read_parquet(path))
        assert got == unit_jsons(project, layer)
    if fmt == "parquet":  # typed columns where the values share a type: stats.max is a number
        table = pq.read_table(out / "tiny" / "2.parquet")
        assert table.schema.field("stats").type.get_field_index("max") >= 0
        assert table.column("stats").to_pylist()[1]["max"] == unit_jsons(project, "2")[1]["stats"]["max"]
    # a second export replaces the first; the API does the same
    assert galleria.export(project / "site.yaml", fmt, out, build_first=False) == out


def test_export_refuses_a_folder_it_did_not_write_and_a_missing_pyarrow(project, capsys, monkeypatch):
    mine = project / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("not galleria's")
    assert main(["export", "-f", str(project / "site.yaml"), "-o", str(mine), "--no-build"]) == 1
    err = capsys.readouterr().err
    assert "exists and was not created by galleria" in err and len(err.strip().splitlines()) == 1
    assert (mine / "keep.txt").exists()
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pyarrow" else real(name, *a))
    assert main(["export", "-f", str(project / "site.yaml"), "--format", "parquet", "--no-build"]) == 2
    assert "pip install pyarrow" in capsys.readouterr().err


def test_open_on_a_folder_that_is_no_site_is_one_line(tmp_path):
    with pytest.raises(galleria.errors.UsageError, match="is not a site galleria built"):
        galleria.open(tmp_path)
