"""A visitor in a real browser: headless Chromium (Debian's, driven by Playwright) walks the default
gallery served from a sub-path and opened from disk. Every page it reaches loads without console
errors or failed requests and with every image decoded; each step leaves a full-page screenshot in
$GALLERIA_SCREENSHOTS (or a temporary folder)."""
from __future__ import annotations

import re
from pathlib import Path
from urllib.error import HTTPError
from urllib.request import urlopen

import pytest
from playwright.sync_api import expect

from conftest import PREFIX
UNIT_URL = re.compile(r"/[^/]+/[^/]+/\d+/index\.html$")


class Visit:
    """A laptop-sized tab that records what goes wrong on its pages and checks each one it reaches."""

    def __init__(self, browser, shots: Path, name: str):
        self.page = browser.new_page(viewport={"width": 1280, "height": 800})
        self.page.set_default_timeout(10_000)
        self.shots, self.name, self.steps = shots, name, 0
        self.errors: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(
            f"console: {m.text} ({m.location['url']}:{m.location['lineNumber']})"))
        self.page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        self.page.on("requestfailed", lambda r: self.errors.append(f"failed: {r.url} {r.failure}"))
        self.page.on("response", lambda r: r.status >= 400 and self.errors.append(f"HTTP {r.status}: {r.url}"))

    def check(self, step: str) -> None:
        """The page loaded cleanly, every image (lazy ones too) decoded; a screenshot of all of it."""
        page = self.page
        page.wait_for_load_state("load")
        page.evaluate("() => document.querySelectorAll('img[loading=lazy]').forEach(i => { i.loading = 'eager'; })")
        page.wait_for_function("() => Array.from(document.images).every(i => i.complete)")
        broken = page.evaluate(
            "() => Array.from(document.images).filter(i => !i.naturalWidth).map(i => i.getAttribute('src'))")
        problems = self.errors + [f"image did not decode: {src}" for src in broken]
        assert not problems, f"{page.url}:\n" + "\n".join(problems)
        self.steps += 1
        page.screenshot(path=self.shots / f"{self.name}-{self.steps:02d}-{step}.png", full_page=True)

    def follow(self, link, step: str) -> None:
        """Clicks link (a locator) and checks the page it opens, the one the link names."""
        href = link.evaluate("a => a.href")
        link.click()
        self.page.wait_for_url(lambda url: url == href)
        self.check(step)

    def press(self, key: str, href: str, step: str) -> None:
        """Presses key and checks the page it opens, which must be href."""
        self.page.keyboard.press(key)
        self.page.wait_for_url(lambda url: url == href)
        self.check(step)


@pytest.fixture
def visit(browser, shots, request):
    """A fresh tab for one test, named after it for the screenshots."""
    tab = Visit(browser, shots, request.node.name.removeprefix("test_"))
    yield tab
    tab.page.close()


def search_result(page, path: str):
    """The result link of the header search that opens path, once it is listed."""
    page.wait_for_function(
        "p => Array.from(document.querySelectorAll('#search-results li a')).some(a => a.href.endsWith(p))", arg=path)
    links = page.locator("#search-results li a")
    hrefs = links.evaluate_all("links => links.map(a => a.href)")
    return links.nth(next(i for i, href in enumerate(hrefs) if href.endswith(path)))


def walk(visit: Visit, index: str) -> None:
    """index → model → layer → unit → next unit (→) → search box (/) → "tabby" → the tabby logit's page."""
    page = visit.page
    page.goto(index)
    visit.check("index")
    visit.follow(page.locator('main a[href="efficientnet-lite0/index.html"]').first, "model")
    visit.follow(page.locator('main a[href="blocks.6/index.html"]').first, "layer")
    visit.follow(page.locator('main a[href="284/index.html"]').first, "unit")
    following = page.evaluate("() => document.querySelector('link[rel=next]').href")
    assert following.endswith("/blocks.6/285/index.html")
    visit.press("ArrowRight", following, "next-unit")
    page.keyboard.press("/")
    expect(page.locator("#search-box")).to_be_focused()
    page.keyboard.type("tabby")
    visit.follow(search_result(page, "/efficientnet-lite0/classifier/281/index.html"), "search-result")
    expect(page.locator("h1")).to_contain_text("tabby")


def test_walk_served_from_a_sub_path(visit, served):
    """The walk over HTTP under /galleria/, as on GitHub Pages."""
    with pytest.raises(HTTPError, match="404"):  # so a root-absolute link would fail the walk
        urlopen(served.replace(PREFIX, "/") + "index.html")
    walk(visit, served + "index.html")


def test_walk_from_disk(visit, default_site):
    """The walk from file://, as after opening site/index.html."""
    walk(visit, (default_site / "index.html").as_uri())


def test_random_unit_then_up(visit, served):
    """The header's random unit link opens some unit page; "u" goes up to its layer."""
    page = visit.page
    page.goto(served + "index.html")
    page.locator("a[data-random-unit]").click()
    page.wait_for_url(UNIT_URL)
    visit.check("random-unit")
    assert page.locator("body.page-unit").count() == 1
    visit.press("u", page.evaluate("() => document.querySelector('link[rel=up]').href"), "layer")


def test_search_by_note_and_keys(visit, served):
    """Note text finds its unit; the arrows move the selection and Enter opens the selected result."""
    page = visit.page
    page.goto(served + "efficientnet-lite0/index.html")
    expect(page.locator("#search-results")).to_be_hidden()
    page.keyboard.press("/")
    page.keyboard.type("cat fur")
    search_result(page, "/efficientnet-lite0/blocks.6/285/index.html")
    first = page.locator("#search-results li a").first.evaluate("a => a.href")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowUp")
    visit.press("Enter", first, "enter")


def test_example_deep_link(visit, served):
    """unit/index.html#example-3 scrolls that example into view and makes it the :target."""
    page = visit.page
    page.goto(served + "efficientnet-lite0/classifier/281/index.html#example-3")
    assert page.evaluate("() => document.querySelector(':target')?.id") == "example-3"
    box = page.locator("#example-3").bounding_box()
    assert box and 0 <= box["y"] and box["y"] + box["height"] <= page.viewport_size["height"], box
    visit.check("example-3")


def test_script_draws_heat_tokens_windows_and_thumbnails(visit, default_site):
    """What the pages' script adds, from file://: each tile's map, each text example's coloured tokens
    (the extreme outlined), a top example's whole window from the corpus shards, a unit's related units
    from its layer's related.js, and unit thumbnails on an input page from its layers' thumbs.js."""
    page = visit.page
    page.goto((default_site / "efficientnet-lite0" / "blocks.4" / "7" / "index.html").as_uri())
    page.wait_for_function("() => document.querySelectorAll('#example-1 canvas.heat').length === 1")
    visit.check("heat")
    page.wait_for_function("() => document.querySelectorAll('.related a.u img').length >= 1")  # from related.js
    related = page.locator(".related")
    assert related.locator("p.k").first.inner_text() == "related in blocks.4"
    assert related.locator("a.u").count() >= 1 and "correlate most" in related.locator("p.method").first.inner_text()
    visit.check("related")
    page.goto((default_site / "char-lstm" / "lstm.cell.1" / "144" / "index.html").as_uri())
    page.wait_for_function("() => document.querySelectorAll('pre.tx-ctx span.t.x').length >= 8")
    first = page.locator("#example-1 pre.tx-ctx")
    assert first.locator("span.t").count() > 40 and first.locator("span.t.p8, span.t.x").count() >= 1
    assert first.inner_text().replace("\u00b7", " ") == first.evaluate("pre => pre.textContent").replace("\u00b7", " ")
    page.locator("#example-1 [data-window]").click()
    page.wait_for_function("() => document.querySelectorAll('#example-1 pre.tx-window span.t').length > 100")
    visit.check("whole-window")
    inputs = sorted((default_site / "efficientnet-lite0" / "inputs").iterdir())
    page.goto((inputs[0] / "index.html").as_uri() if inputs[0].is_dir() else (inputs[1] / "index.html").as_uri())
    page.wait_for_function("() => document.querySelectorAll('a.u img').length >= 6")
    visit.check("input-thumbnails")
