"""How much faster two torchrun ranks build than one process, and that they build the same site.

The default gallery's image model (EfficientNet-Lite0 on scikit-image's photos, every stage) is built
from a cold cache twice in one run: by one process on one thread (the baseline), then by two ranks
on one thread each, started by torch's own elastic launcher (what torchrun runs) with gloo. Prints
the speedup (target: at least 1.7), each rank's seconds per stage and time spent waiting for the
other (the balance), and whether the two sites are identical, byte for byte. Also the machine's own
ceiling, measured in the same run: the same one-thread torch work done by two processes at once
against one alone (on shared or hyperthreaded cores two processes get less than twice the work done).
Usage: python benchmarks/distributed.py
"""
from __future__ import annotations

import multiprocessing
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import yaml
from torch.distributed.launcher.api import LaunchConfig, elastic_launch

REPO = Path(__file__).resolve().parents[1]


def _rank_build(config_file: str, out: str) -> dict:
    """One rank's build, on one thread; its report's timings."""
    import torch

    torch.set_num_threads(1)
    from galleria.commands.build import build
    from galleria.distributed import join, leave

    join()
    report = build(config_file, out, quiet=True)
    leave()
    return {"stage_seconds": report.stage_seconds, "ranks": report.ranks}


def _launch(ranks: int, config_file: Path, out: Path) -> tuple[float, dict]:
    launch = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=ranks, run_id=uuid.uuid4().hex,
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0, start_method="spawn")
    started = time.perf_counter()
    results = elastic_launch(launch, _rank_build)(str(config_file), str(out))
    return time.perf_counter() - started, results


def _torch_work(rounds: int) -> float:
    """Seconds for a fixed convolution workload on one thread: what extraction and feature
    visualization spend their time on."""
    import torch

    torch.set_num_threads(1)
    x, w = torch.randn(8, 64, 56, 56), torch.randn(64, 64, 3, 3)
    torch.nn.functional.conv2d(x, w, padding=1)  # its buffers allocated
    started = time.perf_counter()
    for _ in range(rounds):
        torch.nn.functional.conv2d(x, w, padding=1)
    return time.perf_counter() - started


def ceiling(rounds: int = 60) -> float:
    """How much more two processes get done than one on this machine: the same work in each, at once."""
    context = multiprocessing.get_context("spawn")
    alone, together = [], []
    for _ in range(2):  # interleaved, best of each
        with context.Pool(1) as pool:
            alone.append(pool.apply(_torch_work, (rounds,)))
        with context.Pool(2) as pool:
            together.append(max(pool.map(_torch_work, [rounds, rounds])))
    return 2 * min(alone) / min(together)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def main() -> None:
    site = yaml.safe_load((REPO / "site.yaml").read_text())
    site["models"] = site["models"][:1]
    site["inputs"] = site["inputs"][:1]  # the photos
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        site["site"]["output_dir"] = "site"
        (root / "site.yaml").write_text(yaml.safe_dump(site, sort_keys=False))
        one_seconds, one = _launch(1, root / "site.yaml", root / "one")
        shutil.rmtree(root / ".galleria-cache")
        two_seconds, two = _launch(2, root / "site.yaml", root / "two")
        alone, together = _files(root / "one"), _files(root / "two")
    most = ceiling()
    differ = sorted(set(alone) ^ set(together)) + [n for n in alone if n in together and alone[n] != together[n]]
    print(f"one process, one thread: {one_seconds:.1f} s (its build {one[0]['stage_seconds']['total']:.1f} s)")
    print(f"two ranks, one thread each: {two_seconds:.1f} s (rank 0's build {two[0]['stage_seconds']['total']:.1f} s)")
    print(f"speedup {one_seconds / two_seconds:.2f} (target >= 1.7); this machine's ceiling for two processes "
          f"(the same one-thread torch work in each, at once against alone) {most:.2f}: "
          f"{one_seconds / two_seconds / most:.0%} of it")
    stages = [k for k in one[0]["stage_seconds"] if k != "total"]
    print("seconds per stage:  " + "  ".join(f"{k:>11}" for k in stages))
    print("  one process       " + "  ".join(f"{one[0]['stage_seconds'].get(k, 0):11.1f}" for k in stages))
    for rank, each in enumerate(two[0]["ranks"]):
        print(f"  rank {rank} of 2       " + "  ".join(f"{each['stage_seconds'].get(k, 0):11.1f}" for k in stages)
              + f"   (waited {each['waited']:.1f} s for the other)")
    print(f"identical sites: {'yes' if not differ else 'NO'} ({len(alone):,} files"
          + (f"; {len(differ)} differ, e.g. {differ[:3]})" if differ else ")"))


if __name__ == "__main__":
    main()
