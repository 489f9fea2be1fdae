"""How fast the site stage writes pages, against rendering the same template with nothing in it.

Gathers the default gallery's records from its cache (building it first if the cache is cold),
then writes the whole site several times into a fresh folder: every unit, layer, input, health and
feature-visualization page, unit.json beside each unit page, the search index and the assets.
Prints pages per second (target: at least 2,000 on the 2-core machine) and the ratio to the
baseline: the theme's unit.html rendered by plain Jinja with an empty context (no records, no
files written), the cost floor of a page from this template. Also the CPU time a page takes
(user and system, every process): this shared disk's cost per file varies by 10x from minute to
minute, and the CPU time does not, so it is the figure to compare between versions.
Usage: python benchmarks/site_pages.py [runs]   (default 3; the best run is reported)
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import jinja2

from galleria.commands.build import gather, write_site
from galleria.config import load_config
from galleria.records import BuildReport
from galleria.site.theme import Theme

REPO = Path(__file__).resolve().parents[1]
BASELINE_RENDERS = 2000


def _tolerant(function):
    """A filter that renders an absent value as nothing, as Jinja's own output does."""
    def apply(value, *args, **kwargs):
        return "" if isinstance(value, jinja2.Undefined) else function(value, *args, **kwargs)
    return apply


def plain_render_rate(theme: Theme) -> float:
    """unit.html rendered with an empty context (chainable undefined, so that the template's
    lookups of absent records render as nothing): renders per second."""
    env = jinja2.Environment(loader=theme.env.loader, autoescape=True, undefined=jinja2.ChainableUndefined,
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters.update({name: _tolerant(f) for name, f in theme.env.filters.items()})
    template = env.get_template("unit.html")
    template.render()
    started = time.perf_counter()
    for _ in range(BASELINE_RENDERS):
        template.render()
    return BASELINE_RENDERS / (time.perf_counter() - started)


def bare_write_seconds(site: Path, dest: Path) -> tuple[float, int]:
    """The physical limit of writing this site here: its folders made and its files' bytes written
    (read into memory first), nothing computed. This disk's cost per file varies by 30x from hour to
    hour on these shared machines, so it is measured in the same run."""
    files = [(path.relative_to(site), path.read_bytes()) for path in site.rglob("*") if path.is_file()]
    started = time.perf_counter()
    for rel, data in files:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    seconds = time.perf_counter() - started
    shutil.rmtree(dest)
    return seconds, len(files)


def _cpu_seconds() -> float:
    """User and system time of this process and of its finished children (the forked page writers)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    config = load_config(REPO / "site.yaml")
    started = time.perf_counter()
    gathered = gather(config, BuildReport(), quiet=True)
    print(f"records gathered from the cache in {time.perf_counter() - started:.1f} s")
    units = sum(len(layer.units) for build in gathered.builds for layer in build.layout.layers)
    best = best_cpu = None
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(runs):
            out = Path(tmp) / f"site{run}"
            report = BuildReport()
            cpu = _cpu_seconds()
            started = time.perf_counter()
            write_site(config, gathered, out, "benchmark", report, quiet=True)
            seconds = time.perf_counter() - started
            cpu = _cpu_seconds() - cpu
            print(f"  run {run + 1}: {report.pages:,} pages ({units:,} unit pages) in {seconds:.2f} s, "
                  f"{cpu:.1f} s of CPU")
            best = seconds if best is None else min(best, seconds)
            best_cpu = cpu if best_cpu is None else min(best_cpu, cpu)
            if run == 0:
                floor, count = bare_write_seconds(out, Path(tmp) / "bare")
            shutil.rmtree(out)
    rate = report.pages / best
    baseline = plain_render_rate(gathered.theme)
    print(f"site stage: {rate:,.0f} pages/s (best of {runs}); target 2,000 pages/s: ratio {rate / 2000:.2f}")
    cores = os.cpu_count() or 1
    print(f"CPU: {1000 * best_cpu / report.pages:.2f} ms a page (every process, user and system); on {cores} cores "
          f"with no waiting on the disk, {cores * report.pages / best_cpu:,.0f} pages/s")
    print(f"physical limit, the same {count:,} files and their folders written bare (one process): "
          f"{floor:.2f} s, {report.pages / floor:,.0f} pages/s; ratio {rate * floor / report.pages:.2f}")
    print(f"baseline, plain Jinja render of unit.html with an empty context: {baseline:,.0f} pages/s; "
          f"ratio {rate / baseline:.2f}")


if __name__ == "__main__":
    main()
