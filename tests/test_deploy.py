"""``galleria gh-deploy`` against a real bare repository as the remote: what lands on the branch,
what the user's own checkout keeps, and the one-line errors."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from galleria import __version__
from galleria.cli import main
from galleria.commands.build import build
from galleria.commands.deploy import pages_url
from test_build import MODEL_CODE

SITE = """\
site: {title: Tiny, output_dir: out}
inputs: [{path: photos}]
models:
  - id: tiny
    source: tinymodel_e2e:tiny
    preprocessing: {size: 32, mean: 0.5, std: 0.25}
    layers: ['2']
examples: {top: 2, bottom: 1, tile_size: 32}
featureviz: false
attribution: {inputs: 0}
"""


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def _project(folder: Path) -> Path:
    folder.mkdir()
    (folder / "tinymodel_e2e.py").write_text(MODEL_CODE)
    (folder / "site.yaml").write_text(SITE)
    (folder / "photos").mkdir()
    for i, colour in enumerate([(200, 30, 30), (30, 30, 200)]):
        Image.new("RGB", (40, 40), colour).save(folder / "photos" / f"p{i}.png")
    return folder


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """One real build, copied into each test's repository."""
    project = _project(tmp_path_factory.mktemp("built") / "project")
    return Path(build(project / "site.yaml", quiet=True).output)


@pytest.fixture
def work(tmp_path, built) -> Path:
    """The user's repository: a commit on main, unfinished edits, the built site, a bare remote."""
    repo = _project(tmp_path / "work")
    git("init", "-q", "-b", "main", cwd=repo)
    git("config", "user.name", "Ada", cwd=repo)
    git("config", "user.email", "ada@example.org", cwd=repo)
    (repo / ".gitignore").write_text("out/\n.galleria-cache/\n__pycache__/\n")
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "gallery", cwd=repo)
    (repo / "site.yaml").write_text(SITE + "seed: 1\n")  # staged, then edited again: unfinished work
    git("add", "site.yaml", cwd=repo)
    (repo / "site.yaml").write_text(SITE + "seed: 2\n")
    (repo / "scratch.txt").write_text("untracked\n")
    shutil.copytree(built, repo / "out")
    git("init", "-q", "--bare", str(tmp_path / "remote.git"), cwd=tmp_path)
    git("remote", "add", "origin", str(tmp_path / "remote.git"), cwd=repo)
    return repo


def deploy(repo: Path, *args: str) -> int:
    return main(["gh-deploy", "-q", "--no-build", "-f", str(repo / "site.yaml"), *args])


def remote(repo: Path) -> Path:
    return repo.parent / "remote.git"


def test_deploy_commits_the_site_and_leaves_the_checkout_alone(work, capsys):
    def state():
        return (git("rev-parse", "HEAD", cwd=work), git("symbolic-ref", "HEAD", cwd=work),
                git("status", "--porcelain", cwd=work), git("ls-files", "--stage", cwd=work),
                git("diff", cwd=work), (work / ".git" / "index").read_bytes())

    before = state()
    assert deploy(work) == 0
    assert "Pushed" in capsys.readouterr().out
    assert state() == before
    files = git("ls-tree", "-r", "--name-only", "gh-pages", cwd=remote(work)).splitlines()
    assert {"index.html", ".nojekyll", "tiny/2/1/index.html", "tiny/2/1/unit.json", "assets/galleria.css"} <= set(files)
    assert ".galleria" not in files  # galleria's own marker stays home
    assert len(files) == len([p for p in (work / "out").rglob("*") if p.is_file()]) - 1
    short = git("rev-parse", "--short", "HEAD", cwd=work)
    assert git("log", "-1", "--format=%s", "gh-pages", cwd=remote(work)) == f"Deployed {short} with galleria {__version__}"


def test_each_deploy_follows_the_last_and_a_custom_domain_stays(work, tmp_path, capsys):
    assert deploy(work) == 0
    first = git("rev-parse", "gh-pages", cwd=remote(work))
    assert deploy(work, "-m", "second") == 0
    second = git("rev-parse", "gh-pages", cwd=remote(work))
    assert second != first and git("rev-parse", "gh-pages^", cwd=remote(work)) == first
    # GitHub's Pages settings commit a CNAME on the branch when a custom domain is set
    clone = tmp_path / "clone"
    git("clone", "-q", "-b", "gh-pages", str(remote(work)), str(clone), cwd=tmp_path)
    (clone / "CNAME").write_text("gallery.example.org\n")
    git("add", "CNAME", cwd=clone)
    git("-c", "user.name=GitHub", "-c", "user.email=noreply@github.com", "commit", "-q", "-m", "Create CNAME", cwd=clone)
    git("push", "-q", "origin", "gh-pages", cwd=clone)
    with_cname = git("rev-parse", "gh-pages", cwd=remote(work))
    capsys.readouterr()
    assert deploy(work) == 0
    assert git("rev-parse", "gh-pages^", cwd=remote(work)) == with_cname
    assert git("show", "gh-pages:CNAME", cwd=remote(work)) == "gallery.example.org"
    assert "serve it at https://gallery.example.org/\nTip: set site.url to https://gallery.example.org/" \
        in capsys.readouterr().out
    (work / "out" / "CNAME").write_text("units.example.org\n")  # the site's own CNAME wins
    (work / "site.yaml").write_text(SITE.replace("title: Tiny,", "title: Tiny, url: 'https://units.example.org/',"))
    assert deploy(work) == 0
    assert git("show", "gh-pages:CNAME", cwd=remote(work)) == "units.example.org"
    assert "Tip" not in capsys.readouterr().out  # site.url already says where it is served


def test_deploy_builds_first_and_works_without_a_git_identity(work, tmp_path, monkeypatch, capsys):
    shutil.rmtree(work / "out")
    git("config", "--unset", "user.name", cwd=work)
    git("config", "--unset", "user.email", cwd=work)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "no-gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.delenv("EMAIL", raising=False)
    assert main(["gh-deploy", "-q", "-f", str(work / "site.yaml")]) == 0
    assert (work / "out" / "tiny" / "2" / "1" / "index.html").is_file()
    assert git("cat-file", "-e", "gh-pages:tiny/2/1/index.html", cwd=remote(work)) == ""
    assert git("log", "-1", "--format=%an <%ae>", "gh-pages", cwd=remote(work)) == "galleria <galleria@localhost>"


def _error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


def test_missing_remote_says_how_to_add_one(work, capsys):
    git("remote", "remove", "origin", cwd=work)
    assert deploy(work) == 1
    assert ("no git remote 'origin': add one with `git remote add origin URL`, or pass -r") in _error(capsys)
    assert deploy(work, "-r", "upstream") == 1 and "no git remote 'upstream'" in _error(capsys)


def test_outside_a_repository(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    project = _project(tmp_path / "plain")
    assert deploy(project) == 1
    assert "is not inside a git repository" in _error(capsys)


def test_no_build_needs_a_built_site(work, capsys):
    shutil.rmtree(work / "out")
    assert deploy(work) == 1
    assert "out does not exist: run `galleria build` first, or drop --no-build" in _error(capsys)
    (work / "out").mkdir()
    (work / "out" / "index.html").write_text("mine")
    assert deploy(work) == 1 and "was not built by galleria" in _error(capsys)


def test_rejected_push_suggests_force(work, capsys):
    hook = remote(work) / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'branch is protected' >&2\nexit 1\n")
    hook.chmod(0o755)
    assert deploy(work) == 1
    err = _error(capsys)
    assert "rejected" in err and "pre-receive hook declined" in err and "--force" in err
    hook.unlink()
    assert deploy(work, "--force") == 0


def test_refuses_to_replace_the_branch_it_is_on(work, capsys):
    git("checkout", "-q", "-b", "gh-pages", cwd=work)
    assert deploy(work) == 1
    assert "you are on branch 'gh-pages'" in _error(capsys)


def test_missing_git(work, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(work / "photos"))
    assert deploy(work) == 1
    assert "git is not installed" in _error(capsys)


@pytest.mark.parametrize("url, served", [
    ("https://github.com/Ada/gallery.git", "https://ada.github.io/gallery/"),
    ("https://github.com/Ada/gallery", "https://ada.github.io/gallery/"),
    ("git@github.com:Ada/gallery.git", "https://ada.github.io/gallery/"),
    ("ssh://git@github.com/Ada/gallery.git", "https://ada.github.io/gallery/"),
    ("git@github.com:Ada/Ada.github.io.git", "https://ada.github.io/"),
    ("https://gitlab.com/Ada/gallery.git", None),
    ("/srv/git/gallery.git", None),
])
def test_pages_url_from_a_github_remote(url, served):
    assert pages_url(url) == served
