"""torchrun builds: two ranks (real processes, gloo) make the same site, byte for byte, as one
process does, for an image and a text model; a rank that fails fails the build, names itself, and
leaves the previous site as it was."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import test_build
import test_text

FAILING_MODEL = '''

class Failing(torch.nn.Module):
    """tiny(), whose forward pass fails on rank 1 while a file 'fail' lies beside it, once
    extraction's batches of 4 come (not the probe's or the later stages') and rank 0 has finished its share of them;
    it notes which rank ran each such batch."""

    def __init__(self):
        super().__init__()
        self.net = tiny()

    def forward(self, x):
        import os
        from pathlib import Path
        here = Path(__file__).parent
        if x.shape[0] == 4 and torch.is_inference_mode_enabled():  # extraction's batches
            with open(here / "batches.txt", "a") as log:
                log.write(os.environ.get("RANK", "-") + "\\n")
            if os.environ.get("RANK") == "1" and (here / "fail").exists():
                import time
                for _ in range(600):  # once rank 0 has its share of the inputs done
                    if list(here.glob(".galleria-cache/activations/.*.parts/0-*")):
                        break
                    time.sleep(0.1)
                raise RuntimeError("the user's model broke")
        return self.net(x)


def failing():
    return Failing()
'''


def _build(root: Path, out: Path, ranks: int) -> subprocess.CompletedProcess:
    """``galleria build`` of ``root`` into ``out``, by one process or by torchrun with ``ranks``
    processes; one thread each, as the same arithmetic is then done in the same order."""
    command = [sys.executable, "-m", "galleria", "build", "-q", "-f", str(root / "site.yaml"), "-d", str(out)]
    if ranks > 1:
        command[1:3] = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}", "-m", "galleria"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=600)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("kind", ["image", "text"])
def test_two_ranks_build_the_site_one_process_builds(kind, tmp_path):
    root = tmp_path / "project"
    root.mkdir()
    if kind == "image":
        test_build.make_project(root, photos=7)  # 43 crops in batches of 4: shares of 6 and 5 batches
    else:
        test_text.make_project(root)
    one = _build(root, tmp_path / "one", 1)
    assert one.returncode == 0, one.stderr
    shutil.rmtree(root / ".galleria-cache")  # nothing made by the first build is reused
    two = _build(root, tmp_path / "two", 2)
    assert two.returncode == 0, two.stderr
    assert two.stdout.count("Built ") == 1  # rank 0 reports; the other rank is quiet
    alone, together = _files(tmp_path / "one"), _files(tmp_path / "two")
    assert len(alone) > 50
    assert alone.keys() == together.keys()
    assert [name for name in alone if alone[name] != together[name]] == []
    assert not list((root / ".galleria-cache" / "activations").glob(".*"))  # the ranks' shares, merged and gone


def test_a_failing_rank_fails_the_build_and_leaves_the_site_and_a_rerun_resumes(tmp_path):
    root = tmp_path / "project"
    root.mkdir()
    test_build.make_project(root)
    assert _build(root, tmp_path / "site", 1).returncode == 0
    before = _files(tmp_path / "site")
    with open(root / "tinymodel_e2e.py", "a") as code:
        code.write(FAILING_MODEL)
    site = (root / "site.yaml").read_text()
    (root / "site.yaml").write_text(site.replace("tinymodel_e2e:tiny", "tinymodel_e2e:failing")
                                    .replace("layers: ['0', '2', '5', {name: '6', featureviz: false}]",
                                             "layers: [net.0, net.2]"))
    (root / "fail").touch()
    failed = _build(root, tmp_path / "site", 2)
    assert failed.returncode != 0
    said = [line for line in failed.stderr.splitlines() if line.startswith("galleria: ")]
    assert "galleria: error: rank 1: model 'tiny' raised in its top-level forward during extraction: " \
           "RuntimeError: the user's model broke" in said
    assert _files(tmp_path / "site") == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".site.")]  # no half-written site left
    # the cause gone, the build again: rank 0's share of the inputs is not run through the model again
    (root / "fail").unlink()
    (root / "batches.txt").unlink()
    again = _build(root, tmp_path / "site", 2)
    assert again.returncode == 0, again.stderr
    assert set((root / "batches.txt").read_text().split()) == {"1"}
    assert _files(tmp_path / "site") != before


def test_only_build_runs_under_torchrun(monkeypatch, capsys):
    from galleria.cli import main

    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["gh-deploy", "-f", "site.yaml"]) == 2
    assert "only 'galleria build' runs under torchrun: build with torchrun, then run 'galleria gh-deploy' " \
           "--no-build in one process" in capsys.readouterr().err


def test_tasks_of_known_cost_are_dealt_so_that_ranks_finish_together():
    """Round-robin by default; with costs (feature visualization batches: a deep layer's costs 20
    times an early one's), the costliest first to the least loaded rank. Every task once."""
    from galleria.distributed import Ranks

    items = list("abcdefghi")
    costs = [3, 6, 9, 12, 15, 18, 56, 21, 24]  # layers in model order; 'g' is the deepest, largest batch
    assert [Ranks(r, 2).mine(items) for r in range(2)] == [list("acegi"), list("bdfh")]
    shares = [Ranks(r, 2).mine(items, costs) for r in range(2)]
    assert sorted(shares[0] + shares[1]) == items
    loads = [sum(costs[items.index(i)] for i in share) for share in shares]
    assert max(loads) - min(loads) <= 3  # round-robin: 107 against 57
    assert Ranks(0, 1).mine(items, costs) == items
