"""``galleria new``: a starter that builds offline as written, and everything it points at works."""
from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from galleria.cli import main
from galleria.commands.build import build
from galleria.config import load_config

REPO = Path(__file__).resolve().parents[1]
FILES = {"site.yaml", ".gitignore", ".github/workflows/gallery.yml", "overrides/base.html",
         "content/efficientnet-lite0/index.md", "content/efficientnet-lite0/classifier/281.md"}
WRITTEN = FILES | {"site.schema.json"}  # beside site.yaml, for editors (tests/test_schema.py)


@pytest.fixture(scope="module")
def starter(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("new") / "my gallery"
    assert main(["new", str(folder)]) == 0
    return folder


def test_new_writes_the_starter_and_the_next_steps(tmp_path, capsys):
    folder = tmp_path / "gallery"
    folder.mkdir()  # an empty folder is fine
    assert main(["new", str(folder)]) == 0
    out = capsys.readouterr().out
    assert {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} == WRITTEN
    assert all(name in out for name in WRITTEN)
    assert f"cd {folder}" in out and "galleria build" in out and "galleria serve" in out


def test_new_refuses_a_folder_with_files(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["new", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "exists and is not an empty folder" in err and len(err.strip().splitlines()) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_starter_builds_offline_with_its_override_and_notes(starter):
    report = build(starter / "site.yaml", quiet=True)
    assert report.warnings == [] and report.inputs_skipped == 0
    site = Path(report.output)
    assert site == starter / "site"
    for page in ["index.html", "efficientnet-lite0/index.html", "efficientnet-lite0/blocks.2/0/index.html",
                 "efficientnet-lite0/classifier/281/index.html"]:
        assert "edit overrides/base.html to change this line" in (site / page).read_text(), page
    assert "This note appears on the model's page" in (site / "efficientnet-lite0" / "index.html").read_text()
    assert "tabby cat" in (site / "efficientnet-lite0" / "classifier" / "index.html").read_text()
    tabby = json.loads((site / "efficientnet-lite0" / "classifier" / "281" / "unit.json").read_text())
    assert tabby["top"][0]["input"].startswith("chelsea")  # what the note promises


def test_workflow_builds_caches_and_publishes_to_pages(starter):
    workflow = yaml.safe_load((starter / ".github" / "workflows" / "gallery.yml").read_text())
    deploy = workflow["jobs"]["deploy"]["permissions"]  # only the job that deploys may write to Pages
    assert deploy == {"pages": "write", "id-token": "write"} and workflow["permissions"] == {"contents": "read"}
    assert workflow["concurrency"]["group"]
    steps = [s for job in workflow["jobs"].values() for s in job["steps"]]
    uses = {s["uses"].split("@")[0]: s for s in steps if "uses" in s}
    assert {"actions/configure-pages", "actions/upload-pages-artifact", "actions/deploy-pages"} <= set(uses)
    assert any("pip install galleria" in s.get("run", "") for s in steps)
    # the build learns the Pages address from configure-pages, which runs before it
    build = next(i for i, s in enumerate(steps) if s.get("run", "").startswith("galleria build"))
    pages = next(i for i, s in enumerate(steps) if s.get("uses", "").startswith("actions/configure-pages"))
    assert pages < build and "--site-url" in steps[build]["run"] and steps[pages]["id"] == "pages"
    assert "steps.pages.outputs.base_url" in steps[build]["run"]
    config = load_config(starter / "site.yaml")
    assert uses["actions/cache"]["with"]["path"] == config.site.cache_dir.name
    assert uses["actions/upload-pages-artifact"]["with"]["path"] == config.site.output_dir.name
    ignored = (starter / ".gitignore").read_text().split()
    assert f"/{config.site.output_dir.name}/" in ignored and f"/{config.site.cache_dir.name}/" in ignored


def test_the_wheel_ships_the_starter(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path), str(REPO)], check=True)
    names = zipfile.ZipFile(next(tmp_path.glob("galleria-*.whl"))).namelist()
    assert {f"galleria/starter/{name}" for name in FILES} | {"galleria/site.schema.json"} <= set(names)
