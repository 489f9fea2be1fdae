"""How long the site search takes to become usable as a gallery grows.

Writes search indexes of N and 10 N synthetic units (labels, note words, class names and flags
the size of the default gallery's rows) beside the default theme, opens a page in headless
Chromium from file://, and times from focusing the search box to the first results: the index
scripts load, parse and are turned into entries. Prints each time, the index sizes, and the
ratio of the large gallery's time to the small one's (target: at most 5x for 10x the units, as
shards load in parallel; a 20,000-unit gallery should answer in well under a second).
Usage: python benchmarks/search_load.py [N]   (default N = 2,000)
"""
from __future__ import annotations

import random
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from galleria.site.search_index import SearchLayer, SearchModel, SearchUnit, write_search_index
from galleria.site.theme import Theme

RUNS = 5
WORDS = ("tabby cat fur whiskers stripes edge texture dog wheel window grid dots curve eye text "
         "letters water sky grass red blue bright dark corner circle face nose ear leaf").split()
PAGE = """<!doctype html><html><head><meta charset="utf-8">
<script src="assets/galleria.js"></script></head><body>
<form class="search" data-search-root=""><input type="search" id="search-box">
<ol id="search-results" hidden></ol></form></body></html>"""


def synthetic_site(folder: Path, units: int) -> int:
    """A site folder holding the theme's script, a page and an index of ``units`` units."""
    rng = random.Random(0)
    layers = [SearchLayer(f"blocks.{i}", f"m/blocks.{i}", "") for i in range(8)]
    for unit in range(units):
        words = " ".join(rng.choices(WORDS, k=8))
        label = " ".join(rng.choices(WORDS, k=2)) if rng.random() < 0.05 else ""
        flags = ("dead",) if rng.random() < 0.02 else ()
        layers[unit % len(layers)].units.append(SearchUnit(unit // len(layers), label, words, flags))
    Theme(None).copy_assets(folder)
    (folder / "index.html").write_text(PAGE)
    return write_search_index(folder, [SearchModel("Model", "m", "", layers)])


def time_to_results(page, url: str) -> float:
    """Milliseconds from focusing the box (index not yet loaded) to the first results listed."""
    page.goto(url)
    return page.evaluate("""() => new Promise(done => {
        const box = document.getElementById("search-box"), list = document.getElementById("search-results");
        const start = performance.now();
        new MutationObserver(() => { if (list.querySelector("a")) done(performance.now() - start); })
            .observe(list, {childList: true});
        box.value = "cat fur";
        box.focus();
        box.dispatchEvent(new Event("input", {bubbles: true}));
    })""")


def main(n: int) -> None:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    if not chromium:
        sys.exit("needs Debian's chromium on PATH (apt-get install chromium)")
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page()
        times = {}
        for units in (n, 10 * n):
            folder = Path(tmp) / str(units)
            size = synthetic_site(folder, units)
            url = (folder / "index.html").as_uri()
            time_to_results(page, url)  # warm-up: the browser's own start-up costs
            times[units] = statistics.median(time_to_results(page, url) for _ in range(RUNS))
            print(f"{units:>7,} units: index {size / 1024:,.0f} KB, first results after {times[units]:.0f} ms "
                  f"(median of {RUNS})")
        browser.close()
    print(f"ratio {times[10 * n] / times[n]:.2f} for 10x the units (target <= 5)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
