import base64
import gzip
import os
import re
import shutil
import sys
import threading
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import sync_playwright

from galleria.commands.build import build

sys.path.insert(0, str(Path(__file__).parent))  # lets test modules share fixtures' data

REPO = Path(__file__).resolve().parents[1]
PREFIX = "/galleria/"  # sites are served like a GitHub Pages project site


def probe_graph(script: Path) -> bytes:
    """The ONNX graph inside a model's probe.js (gzip + base64, its last argument)."""
    packed = re.search(r'"([A-Za-z0-9+/=]{64,})"\);\s*$', script.read_text()).group(1)
    return gzip.decompress(base64.b64decode(packed))


@pytest.fixture(scope="session")
def default_build(tmp_path_factory):
    """The repository's own site.yaml, built once for every test that needs it (~40 s, warm cache)."""
    return build(REPO / "site.yaml", tmp_path_factory.mktemp("default") / "site", quiet=True)


@pytest.fixture(scope="session")
def default_site(default_build) -> Path:
    """The default gallery's output folder."""
    return Path(default_build.output)


@pytest.fixture(scope="session")
def browser():
    """One Chromium for the whole session: the system's, since browser downloads are not possible."""
    chromium = shutil.which("chromium")
    if not chromium:
        pytest.fail("no chromium on PATH: install Debian's (apt-get install -y chromium), as .ci/run does", pytrace=False)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield browser
        browser.close()


@contextmanager
def serving(site: Path):
    """``site`` over HTTP at http://127.0.0.1:PORT/galleria/ (yielded); any other path is a 404."""

    class Handler(SimpleHTTPRequestHandler):
        def translate_path(self, path):
            if not urlsplit(path).path.startswith(PREFIX):
                return str(site / "no such file")
            return super().translate_path(path[len(PREFIX) - 1:])

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}{PREFIX}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def served(default_site):
    """The default build, served from a sub-path."""
    with serving(default_site) as url:
        yield url


@pytest.fixture(scope="session")
def shots(tmp_path_factory) -> Path:
    """Where the screenshots go."""
    folder = Path(os.environ.get("GALLERIA_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"screenshots: {folder}")
    return folder
