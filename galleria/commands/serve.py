"""``galleria serve``: build, serve on loopback, rebuild what an edit touches, reload open pages.

The site is served under its public url's path (``/galleria/`` for
``https://you.github.io/galleria/``), so links behave as they will on GitHub Pages. The models'
records stay in memory: a note edit re-renders the pages that read that note (its own page, the
grids and lists that show its label), a theme edit every page, and a site.yaml edit gathers again
(activations and images then come from the cache unless what they depend on changed). Open pages
long-poll the server and reload once a rebuild is in place.
"""
from __future__ import annotations

import copy
import functools
import json
import shutil
import sys
import tempfile
import threading
import time
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

from galleria.commands.build import Gathered, check_notes, gather, stage, write_site
from galleria.config import load_config
from galleria.site.content import load_notes, note_files
from galleria.errors import GalleriaError, UsageError
from galleria.fingerprint import site_fingerprint
from galleria.records import BuildReport

POLL_SECONDS = 0.5  # how often watched files are checked: cheap, a few hundred stat calls
WAIT_SECONDS = 25  # a reload long-poll answers at least this often, before proxies give up on it
RELOAD_PATH = "/_galleria/"
PROBE_PATH = RELOAD_PATH + "probe/"  # GET: a model's probe meta; POST an image or text: its layers' values
MAX_PROBE_BYTES = 32 * 2**20
RELOAD_SCRIPT = b"""window.galleriaServer = "/_galleria/";  // galleria-probe.js asks this server to run the model
(function () {
  var epoch = document.currentScript.getAttribute("data-epoch");
  function poll() {
    fetch("/_galleria/wait?epoch=" + epoch, { cache: "no-store" })
      .then(function (r) { return r.text(); })
      .then(function (now) { if (now !== epoch) location.reload(); else poll(); })
      .catch(function () { setTimeout(poll, 2000); });
  }
  poll();
})();
"""


class LiveSite:
    """A site kept built in a folder of the cache, and rebuilt there when its sources change.

    The folder sits beside the cached images (not in /tmp, often another file system) so that
    they are hard-linked into it, not copied.
    """

    def __init__(self, config_file: str | Path, quiet: bool = False, site_url: str | None = None):
        self.config_file = Path(config_file)
        self.quiet, self.site_url = quiet, site_url
        self.config = load_config(self.config_file, site_url)
        self.config.site.cache_dir.mkdir(parents=True, exist_ok=True)
        self.folder = Path(tempfile.mkdtemp(prefix=".serve-", dir=self.config.site.cache_dir))
        self.out = self.folder / "site"
        self.epoch = 0
        self.changed = threading.Condition()
        self.gathered: Gathered | None = None
        self.probes = None  # ProbeAnswers for the gathered builds, made on the first probe
        self.reads: dict[str, frozenset[str]] = {}  # page folder -> note keys it shows
        self.last: BuildReport | None = None
        self._all_stale = False  # a failed render left pages behind: the next edit renders all
        self._seen = self._snapshot()

    @property
    def base(self) -> str:
        """The url path the site is served under: its public url's path, or '/'."""
        return self.config.site.base_path

    def build(self, config=None) -> BuildReport:
        """Gather everything (cached work is reused) and write the site; ``config``, a newly read
        one, takes over only if that succeeds."""
        config = config or self.config
        report = BuildReport()
        started = time.perf_counter()
        gathered = gather(config, report, self.quiet)
        self.reads = write_site(config, gathered, self.out, site_fingerprint(config), report, quiet=True,
                                track_reads=True)
        self.config, self.gathered, self.probes = config, gathered, None
        return self._done(report, started)

    def probe(self, model_id: str, body: bytes | None) -> dict:
        """A probe answered with PyTorch: ``body`` (an image's bytes or text) through the model, or
        with None what the page draws the answers with."""
        from galleria.probe.answer import ProbeAnswers
        from galleria.site import structure as S
        from galleria.site.assemble import unit_label

        if self.probes is None:  # labels from the notes as they are now: a note edit re-renders without a build
            self.probes = ProbeAnswers(self.config.root, self.gathered.builds, lambda build, layer, unit: unit_label(
                build, layer, unit, self.gathered.notes.get(S.unit_dir(build.model.config.id, layer, unit))))
        return self.probes.meta(model_id) if body is None else self.probes.answer(model_id, body)

    def rerender(self) -> BuildReport:
        """Every page again from the records in memory, with the notes and theme as they are now."""
        from galleria.site.theme import Theme

        report = BuildReport()
        started = time.perf_counter()
        site = self.config.site
        gathered = copy.copy(self.gathered)
        gathered.notes, gathered.theme = load_notes(site.content_dir), Theme(site.theme_dir)
        check_notes(gathered.notes, gathered.builds, report, not self.quiet, gathered.skipped_models)
        self._all_stale = True
        self.reads = write_site(self.config, gathered, self.out, site_fingerprint(self.config), report,
                                quiet=True, track_reads=True)
        self.gathered, self._all_stale = gathered, False
        return self._done(report, started)

    def rerender_notes(self) -> BuildReport | None:
        """Only the pages that read a note that changed; None when no note did."""
        from galleria.site.writer import SiteWriter

        if self._all_stale:
            return self.rerender()
        report = BuildReport()
        started = time.perf_counter()
        old, notes = self.gathered.notes, load_notes(self.config.site.content_dir)
        edited = {key for key in old.keys() | notes.keys() if old.get(key) != notes.get(key)}
        if not edited:
            return None
        check_notes(notes, self.gathered.builds, report, not self.quiet, self.gathered.skipped_models)
        pages = {page for page, keys in self.reads.items() if keys & edited}
        if not pages:  # a note for no page: check_notes has said so
            self.gathered.notes = notes
            return None
        self._all_stale = True
        with stage(report, "pages"):
            writer = SiteWriter(self.config, self.gathered.theme, notes, self.out, self.gathered.cache, only=pages,
                                search=self.gathered.search, track_reads=True)
            writer.write(self.gathered.builds)
        self.reads.update(writer.reads)
        self.gathered.search = writer.search
        self.gathered.notes, self._all_stale = notes, False
        report.pages = len(writer.pages)
        return self._done(report, started)

    def _done(self, report: BuildReport, started: float) -> BuildReport:
        report.stage_seconds["total"] = time.perf_counter() - started
        self.last = report
        with self.changed:
            self.epoch += 1
            self.changed.notify_all()
        return report

    def watched(self) -> list[Path]:
        """site.yaml, the notes under content/ and, when the site has one, its theme folder's files;
        not editors' swap, backup and lock files, which change as you type."""
        site = self.config.site
        files = [self.config_file, *note_files(site.content_dir)]
        if site.theme_dir is not None and site.theme_dir.is_dir():
            files.extend(p for p in site.theme_dir.rglob("*") if p.is_file() and _edited_by_hand(p))
        return files

    def _snapshot(self) -> dict[Path, int]:
        stamps = {}
        for path in self.watched():
            try:
                stamps[path] = path.stat().st_mtime_ns
            except OSError:  # deleted between listing and stat
                continue
        return stamps

    def poll(self) -> BuildReport | None:
        """Rebuild if a watched file changed since the last look; returns that rebuild's report."""
        now = self._snapshot()
        if now == self._seen:
            return None
        edited = {p for p in now.keys() | self._seen.keys() if now.get(p) != self._seen.get(p)}
        self._seen = now
        if self.config_file in edited:
            report = self.build(load_config(self.config_file, self.site_url))
            self._seen = self._snapshot()  # content_dir or theme_dir may have moved
            return report
        theme = self.config.site.theme_dir
        if theme is not None and any(theme in p.parents for p in edited):
            return self.rerender()
        return self.rerender_notes()

    def wait(self, epoch: int, timeout: float) -> int:
        """Block until the site is newer than ``epoch`` (or the timeout); returns the current one."""
        with self.changed:
            self.changed.wait_for(lambda: self.epoch != epoch, timeout)
            return self.epoch

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def _edited_by_hand(path: Path) -> bool:
    """Not a hidden, swap, backup or lock file (vim's .x.swp and 4913, emacs' #x# and .#x, x~)."""
    name = path.name
    return not (name.startswith((".", "#")) or name.endswith(("~", ".swp", ".swx", ".tmp")) or name == "4913")


class _Handler(SimpleHTTPRequestHandler):
    live: LiveSite  # set on the subclass made per server

    def log_message(self, format, *args):  # noqa: A002 - the base class names it so
        pass  # a page load is dozens of requests: the terminal is for build messages

    def end_headers(self):
        self.send_header("Cache-Control", "no-store")  # an edit must show on reload
        super().end_headers()

    def translate_path(self, path: str) -> str:
        """Files under the site's base path; anything else maps to nowhere (404)."""
        path = unquote(urlparse(path).path)
        base = self.live.base
        if not path.startswith(base):
            return str(self.live.folder / "outside-the-site")
        inner = Path(self.live.out, *[p for p in path[len(base):].split("/") if p not in ("", ".", "..")])
        return str(inner)

    def _to_base(self) -> bool:
        """Send the bare root, and the base path without its slash, on to the base path."""
        if urlparse(self.path).path not in ("/", "", self.live.base.rstrip("/")) or self.live.base == "/":
            return False
        self.send_response(HTTPStatus.FOUND)
        self.send_header("Location", self.live.base)
        self.end_headers()
        return True

    def do_HEAD(self):
        if not self._to_base():
            super().do_HEAD()

    def do_POST(self):
        path = urlparse(self.path)
        if not path.path.startswith(PROBE_PATH):
            return self._send(HTTPStatus.METHOD_NOT_ALLOWED, "text/plain", b"only the probe takes POST")
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_PROBE_BYTES:
            return self._send(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "text/plain",
                              f"inputs of up to {MAX_PROBE_BYTES // 2**20} MB".encode())
        self._probe(path, self.rfile.read(length))

    def _probe(self, path, body: bytes | None) -> None:
        from galleria.probe.answer import ProbeError

        try:
            answer = self.live.probe(unquote(path.path[len(PROBE_PATH):]), body)
        except ProbeError as exc:
            return self._send(HTTPStatus.BAD_REQUEST, "text/plain; charset=utf-8", str(exc).encode())
        except GalleriaError as exc:
            return self._send(HTTPStatus.INTERNAL_SERVER_ERROR, "text/plain; charset=utf-8", str(exc).encode())
        self._send(HTTPStatus.OK, "application/json", json.dumps(answer).encode())

    def do_GET(self):
        path = urlparse(self.path)
        if path.path.startswith(PROBE_PATH):
            return self._probe(path, None)
        if path.path.startswith(RELOAD_PATH):
            return self._reload(path)
        if self._to_base():
            return
        target = Path(self.translate_path(self.path))
        if target.is_dir() and path.path.endswith("/"):
            target = target / "index.html"
        if target.suffix == ".html" and target.is_file():
            return self._html(target)
        if not target.exists():
            return self._not_found()
        return super().do_GET()

    def _html(self, target: Path) -> None:
        """An HTML page with the reload script added before </body>."""
        tag = f'<script src="{RELOAD_PATH}reload.js" data-epoch="{self.live.epoch}"></script>'
        html = target.read_text(encoding="utf-8")
        cut = html.rfind("</body>")
        html = html[:cut] + tag + html[cut:] if cut >= 0 else html + tag
        self._send(HTTPStatus.OK, "text/html; charset=utf-8", html.encode("utf-8"))

    def _not_found(self) -> None:
        page = self.live.out / "404.html"
        body = page.read_bytes() if page.is_file() else b"Not found"
        self._send(HTTPStatus.NOT_FOUND, "text/html; charset=utf-8", body)

    def _reload(self, path) -> None:
        if path.path == RELOAD_PATH + "reload.js":
            return self._send(HTTPStatus.OK, "text/javascript; charset=utf-8", RELOAD_SCRIPT)
        if path.path == RELOAD_PATH + "wait":
            try:
                epoch = int(parse_qs(path.query).get("epoch", [""])[0])
            except ValueError:
                epoch = -1
            now = self.live.wait(epoch, WAIT_SECONDS)
            return self._send(HTTPStatus.OK, "text/plain", str(now).encode())
        self._not_found()

    def _send(self, status: HTTPStatus, kind: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def parse_address(address: str) -> tuple[str, int]:
    """'127.0.0.1:8000', 'localhost:8000' or ':8000' (loopback) into host and port."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UsageError(f"-a {address}: expected HOST:PORT, e.g. 127.0.0.1:8000")
    return host, int(port)


def make_server(live: LiveSite, address: str) -> ThreadingHTTPServer:
    host, port = parse_address(address)
    handler = type("Handler", (_Handler,), {"live": live})
    try:
        server = ThreadingHTTPServer((host, port), handler)
    except OSError as exc:
        raise UsageError(f"cannot serve on {host}:{port}: {exc.strerror or exc}; "
                         f"choose another address with -a, e.g. -a {host}:{port + 1}") from None
    server.daemon_threads = True  # waiting reload polls must not hold up Ctrl+C
    return server


def watch(live: LiveSite, stop: threading.Event, say=print) -> None:
    """Poll the watched files until ``stop`` is set; a failed rebuild keeps the last good site."""
    while not stop.wait(POLL_SECONDS):
        try:
            report = live.poll()
        except GalleriaError as exc:
            say(f"galleria: error: {exc} (still serving the last good build)")
            continue
        except Exception as exc:  # a bug, or a file gone mid-read: the watcher must outlive it
            say(f"galleria: internal error: {type(exc).__name__}: {exc} (still serving the last good build)")
            continue
        if report is not None:
            seconds = report.stage_seconds.get("total", 0.0)
            what = "pages" if "extract" not in report.stage_seconds else "site"
            say(f"Rebuilt {what} in {seconds:.1f} s: {report.pages:,} pages; reloading open pages")


def serve(config_file: str | Path = "site.yaml", address: str = "127.0.0.1:8000", quiet: bool = False,
          site_url: str | None = None) -> None:
    """Build, then serve until interrupted; the site lives in the cache folder only meanwhile."""
    live = LiveSite(config_file, quiet, site_url)
    stop = threading.Event()
    try:
        server = make_server(live, address)  # a bad or busy address fails before the build, not after it
        try:
            report = live.build()
            host, port = server.server_address[:2]
            theme = " and the theme" if live.config.site.theme_dir else ""
            print(f"Built {report.pages:,} pages in {report.stage_seconds['total']:.1f} s")
            print(f"Serving on http://{host}:{port}{live.base} (watching {live.config_file.name}, "
                  f"{live.config.site.content_dir.name}/{theme}; Ctrl+C stops)", flush=True)
            say = functools.partial(print, file=sys.stderr, flush=True)
            threading.Thread(target=watch, args=(live, stop, say), daemon=True).start()
            server.serve_forever()
        finally:
            stop.set()
            server.server_close()
    finally:
        live.close()
