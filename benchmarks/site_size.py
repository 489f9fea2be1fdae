"""How large a gallery is on disk, against GitHub Pages' 1 GB per site, and how the site stage's
memory grows with the number of units.

1. The default gallery (site.yaml, every unit and view) built with a public url, so that preview
   cards are drawn too: its size and file count (targets: at most 200 MB and 25,000 files).
2. A synthetic gallery of N units (default 50,000: random-initialised wide layers of an image model
   and a text model, scikit-image's photos and a stretch of this README) and one of N / 10: size per
   unit, all files counted (target: at most 20 KB per unit, so 50,000 units fit in 1 GB), and the
   site stage's peak resident memory, each built in a fresh process (target: within 1.2x of the
   small gallery's, as memory should grow with layers, not units).
Prints each figure and its ratio to the target or baseline measured in the same run.
Usage: python benchmarks/site_size.py [N] [--synthetic-only]
"""
from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
URL = "https://you.github.io/galleria/"

MODELS = '''
import torch
from torch import nn


def image(width):
    """A 4-pixel patchify stem, then two wide 1x1 layers (the second grouped, to stay cheap)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 64, 4, stride=4), nn.ReLU(), nn.Conv2d(64, width, 1), nn.ReLU(),
                         nn.Conv2d(width, width, 1, groups=width // 50), nn.ReLU())


class Text(nn.Module):
    """Characters embedded, then two wide layers of neurons."""

    def __init__(self, width, vocab=99):
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(vocab, 32)
        self.mlp = nn.Sequential(nn.Linear(32, width), nn.GELU(), nn.Linear(width, width), nn.GELU())

    def forward(self, ids):
        return self.mlp(self.embed(ids))
'''


def synthetic_project(root: Path, units: int) -> Path:
    """A site.yaml of ``units`` units: three fifths image channels, two fifths text neurons."""
    image, text = round(units * 0.3 / 50) * 50, round(units * 0.2)
    (root / "widemodels.py").write_text(MODELS)
    vocab = ["\n", "\t"] + [chr(c) for c in range(32, 127)] + ["\ufffd"]
    (root / "vocab.json").write_text(json.dumps({"tokens": vocab, "unknown": "\ufffd"}))
    (root / "corpus").mkdir(exist_ok=True)
    (root / "corpus" / "readme.md").write_text((REPO / "README.md").read_text()[:20000])
    (root / "site.yaml").write_text(textwrap.dedent(f"""\
        site: {{title: Wide, output_dir: out, url: '{URL}'}}
        inputs:
          - id: photos
            package: skimage
            path: data
            include: ["*.png", "*.jpg"]
            crops: {{scales: [1, 2]}}
          - {{id: readme, type: text, path: corpus, window: 128, overlap: 32}}
        models:
          - id: pixels
            source: widemodels:image
            kwargs: {{width: {image}}}
            inputs: [photos]
            preprocessing: {{size: 64}}
            layers: ['3', '5']
          - id: chars
            source: widemodels:Text
            kwargs: {{width: {text}}}
            tokenizer: chars:vocab.json
            inputs: [readme]
            layers: [mlp.1, mlp.3]
        examples: {{top: 8, bottom: 4, tile_size: 112, heatmap: true}}
        attribution: {{inputs: 0}}
        featureviz: false
        """))
    return root / "site.yaml"


def child(step: str, config_file: str, out: str) -> None:
    """``build``: build the site. ``pages``: in a fresh process, write it again from the warm cache
    with the peak memory reset once the records are gathered, so that the peak is the site stage's
    (this process and its forked page writers, none of the build's earlier workers); prints JSON of
    the site's size and that peak."""
    sys.path.insert(0, str(Path(config_file).parent))
    from galleria.commands.build import build, gather, write_site
    from galleria.config import load_config
    from galleria.forking import release_heap
    from galleria.records import BuildReport
    from galleria.site.footprint import footprint

    if step == "build":
        build(config_file, out, quiet=True)
        return
    config = load_config(config_file)
    gathered = gather(config, BuildReport(), quiet=True)  # from the cache: no extraction, no forked workers
    release_heap()  # as write_site does first: the peak counts from where the site stage starts
    gathered_kib = _status("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # resets this process's peak RSS (Linux)
    started = time.perf_counter()
    report = BuildReport()
    write_site(config, gathered, Path(out), "benchmark", report, quiet=True)
    seconds = time.perf_counter() - started
    peak = _status("VmHWM")
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # forked page writers, KiB
    size = footprint(Path(out))
    print(json.dumps({"bytes": size.bytes, "files": size.files, "pages": report.pages, "seconds": seconds,
                      "peak_kib": max(peak, workers), "gathered_kib": gathered_kib,
                      "largest": size.parts[:3]}))


def _status(field: str) -> int:
    """A figure of this process's /proc status, in KiB."""
    return next(int(line.split()[1]) for line in Path("/proc/self/status").read_text().splitlines()
                if line.startswith(field + ":"))


def synthetic(units: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        config = synthetic_project(Path(tmp), units)
        for step in ("build", "pages"):
            run = subprocess.run([sys.executable, __file__, "--child", step, str(config), str(Path(tmp) / "out")],
                                 capture_output=True, text=True)
            if run.returncode != 0:
                sys.exit(f"{step} of the {units:,}-unit gallery failed:\n{run.stderr[-3000:]}")
        return json.loads(run.stdout.strip().splitlines()[-1])


def default_gallery() -> None:
    from galleria.commands.build import build
    from galleria.site.footprint import footprint

    with tempfile.TemporaryDirectory() as tmp:
        report = build(REPO / "site.yaml", Path(tmp) / "site", quiet=True, site_url=URL)
        size = footprint(Path(tmp) / "site")
    print(f"default gallery ({report.units:,} units, {report.pages:,} pages, with {URL}): "
          f"{size.bytes / 1e6:,.1f} MB in {size.files:,} files, {size.bytes / report.units / 1024:.1f} KB per unit")
    print(f"  ratio to the targets: size {size.bytes / 200e6:.2f} of 200 MB, files {size.files / 25000:.2f} of 25,000")
    print("  largest parts: " + ", ".join(f"{path} {part / 1e6:.1f} MB" for path, part in size.parts[:4]))


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    units = int(args[0]) if args else 50_000
    if "--synthetic-only" not in sys.argv:
        default_gallery()
    results = {}
    for count in (units // 10, units):
        found = results[count] = synthetic(count)
        print(f"synthetic gallery, {count:,} units: {found['bytes'] / 1e6:,.1f} MB in {found['files']:,} files, "
              f"{found['bytes'] / count / 1024:.1f} KB per unit; site stage {found['pages']:,} pages in "
              f"{found['seconds']:.1f} s, peak RSS {found['peak_kib'] / 1024:,.0f} MiB "
              f"({found['gathered_kib'] / 1024:,.0f} MiB once the records were gathered)")
        print("  largest parts: " + ", ".join(f"{path} {part / 1e6:.1f} MB" for path, part in found["largest"]))
    big, small = results[units], results[units // 10]
    print(f"  per unit: {big['bytes'] / units / 1024:.1f} KB, ratio {big['bytes'] / units / 20480:.2f} of the "
          f"20 KB target; the whole gallery {big['bytes'] / 1e9:.2f} GB of GitHub Pages' 1 GB")
    print(f"  site stage peak RSS: ratio {big['peak_kib'] / small['peak_kib']:.2f} for 10x the units "
          "(target <= 1.2)")


if __name__ == "__main__":
    if len(sys.argv) > 4 and sys.argv[1] == "--child":
        child(*sys.argv[2:5])
    else:
        main()
