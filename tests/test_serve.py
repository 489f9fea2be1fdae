"""``galleria serve``: the site under its public path, live reload, and rebuilds of only what changed."""
from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from PIL import Image

from galleria.cli import main
from galleria.commands.serve import LiveSite, make_server, parse_address, watch
from galleria.errors import UsageError
from test_build import MODEL_CODE, SITE


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    (root / "tinymodel_e2e.py").write_text(MODEL_CODE)
    (root / "site.yaml").write_text(SITE.replace("  output_dir: out\n",
                                                 "  output_dir: out\n  url: https://example.org/gallery/\n"))
    photos = root / "photos"
    photos.mkdir()
    rng = np.random.default_rng(1)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(photos / f"p{i}.png")
    (root / "content" / "tiny" / "2").mkdir(parents=True)
    (root / "content" / "tiny" / "2" / "1.md").write_text("---\nlabel: first label\n---\n")
    live = LiveSite(root / "site.yaml", quiet=True)
    live.build()
    server = make_server(live, "127.0.0.1:0")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    stop = threading.Event()
    messages: list[str] = []
    threading.Thread(target=watch, args=(live, stop, messages.append), daemon=True).start()
    host, port = server.server_address[:2]
    yield live, f"http://{host}:{port}", root, messages
    stop.set()
    server.shutdown()
    live.close()


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def wait_for(live: LiveSite, epoch: int) -> None:
    deadline = time.monotonic() + 60
    while live.epoch == epoch and time.monotonic() < deadline:
        time.sleep(0.1)
    assert live.epoch != epoch, "no rebuild after the edit"


def test_served_under_the_public_path_with_reload_script(served):
    live, url, _, _ = served
    status, page = get(f"{url}/gallery/tiny/2/1/")
    assert status == 200 and "first label" in page
    assert '<script src="/_galleria/reload.js" data-epoch=' in page and page.index("reload.js") < page.index("</body>")
    assert get(f"{url}/gallery/tiny/2/1/unit.json")[0] == 200
    assert get(f"{url}/gallery/assets/galleria.css")[0] == 200
    assert get(f"{url}/tiny/2/1/index.html")[0] == 404  # outside the public path, as on GitHub Pages
    status, page = get(f"{url}/gallery/no/such/page.html")
    assert status == 404 and "Page not found" in page
    assert get(f"{url}/")[1] == get(f"{url}/gallery/")[1]  # the bare root redirects to the site
    with urllib.request.urlopen(urllib.request.Request(f"{url}/", method="HEAD"), timeout=30) as response:
        assert response.status == 200 and response.url.endswith("/gallery/")
    assert get(f"{url}/gallery/../site.yaml")[0] == 404


def test_note_edit_rerenders_pages_without_touching_activations(served):
    live, url, root, messages = served
    builds = live.gathered.builds
    showing = {page for page, keys in live.reads.items() if "tiny/2/1" in keys}
    epoch = live.epoch
    status, before = get(f"{url}/_galleria/wait?epoch={epoch - 1}")
    assert status == 200 and before == str(epoch)  # an old page learns at once that it is stale
    (root / "content" / "tiny" / "2" / "1.md").write_text("---\nlabel: edited label\n---\nNew **note**.\n")
    wait_for(live, epoch)
    assert live.gathered.builds is builds  # the models' records were reused, not gathered again
    assert "extract" not in live.last.stage_seconds and "load" not in live.last.stage_seconds
    page = get(f"{url}/gallery/tiny/2/1/index.html")[1]
    assert "edited label" in page and "<strong>note</strong>" in page
    assert "edited label" in get(f"{url}/gallery/tiny/2/index.html")[1]  # the layer grid too
    assert any(m.startswith("Rebuilt pages") for m in messages)
    # only the pages that show that note: its unit, the grid, pages listing the unit, the search
    assert live.last.pages == len(showing) < len(live.reads) / 2
    assert {"tiny/2/1", "tiny/2", "search"} <= showing


def test_editor_files_and_unchanged_notes_rebuild_nothing(served):
    live, _, root, _ = served
    folder = root / "content" / "tiny" / "2"
    epoch = live.epoch
    for name in (".1.md.swp", "#1.md#", ".#1.md", "1.md~", "4913"):
        (folder / name).write_text("editor state")
    note = folder / "1.md"
    note.write_text(note.read_text())  # saved without a change
    time.sleep(1.5)  # three looks of the watcher
    assert live.epoch == epoch and live.poll() is None


def test_reload_poll_answers_when_the_site_changes(served):
    live, url, root, _ = served
    epoch = live.epoch
    answer: list[str] = []
    poll = threading.Thread(target=lambda: answer.append(get(f"{url}/_galleria/wait?epoch={epoch}")[1]))
    poll.start()
    time.sleep(0.3)
    assert not answer  # held open while nothing changed
    note = root / "content" / "tiny" / "index.md"
    note.write_text("---\nlabel: a tiny model\n---\n")
    poll.join(60)
    assert answer == [str(epoch + 1)]


def test_config_edit_rebuilds_the_site_and_a_bad_one_keeps_the_last(served):
    live, url, root, messages = served
    config = root / "site.yaml"
    text = config.read_text()
    epoch = live.epoch
    config.write_text(text.replace("title: Tiny <gallery>", "title: Renamed gallery"))
    wait_for(live, epoch)
    assert "Renamed gallery" in get(f"{url}/gallery/")[1]
    assert "extract" in live.last.stage_seconds  # gathered again (from the cache)
    epoch = live.epoch
    config.write_text(text.replace("models:", "modles:"))
    deadline = time.monotonic() + 30
    while not any("still serving" in m for m in messages) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert any("modles" in m and "still serving the last good build" in m for m in messages)
    assert live.epoch == epoch and "Renamed gallery" in get(f"{url}/gallery/")[1]
    config.write_text(text)
    wait_for(live, epoch)


def test_bad_address_is_one_line_usage_error(capsys, served):
    with pytest.raises(UsageError):
        parse_address("localhost:http")
    _, url, root, _ = served
    port = url.rsplit(":", 1)[1]
    assert main(["serve", "-f", str(root / "site.yaml"), "-a", "nonsense"]) == 2
    assert "expected HOST:PORT" in capsys.readouterr().err
    live = LiveSite(root / "site.yaml", quiet=True)
    try:
        with pytest.raises(UsageError, match="choose another address"):
            make_server(live, f"127.0.0.1:{port}")  # the fixture's server holds that port
    finally:
        live.close()


def test_the_live_probe_is_answered_by_pytorch(served):
    """The pages' probe, answered by the server's PyTorch model: the build's preprocessing and the
    values of a direct forward pass; a bad input is one line, not a traceback."""
    import json

    import torch

    from galleria.config import load_config
    from galleria.extract.hooks import capture
    from galleria.records import InputItem
    from galleria.sources.images import ImageLoader, centre_square
    from galleria.sources.models import load_model

    live, url, root, _ = served
    status, body = get(f"{url}/_galleria/probe/tiny")
    assert status == 200 and [layer["name"] for layer in json.loads(body)["layers"]] == ["0", "2", "5", "6"]
    photo = root / "photos" / "p1.png"
    request = urllib.request.Request(f"{url}/_galleria/probe/tiny", data=photo.read_bytes(), method="POST")
    with urllib.request.urlopen(request, timeout=60) as response:
        answer = json.loads(response.read())
    config = load_config(root / "site.yaml")
    module = load_model(config.models[0], config.root).module
    with Image.open(photo) as img:
        box = centre_square(img.size)
    x = ImageLoader(config.models[0].preprocessing).batch([InputItem(0, "p1", str(photo), "p1", box)])[0]
    with capture(module, ["2"]) as seen, torch.no_grad():
        module(x)
    got = np.array(answer["layers"][1]["values"]).reshape(6, -1)
    np.testing.assert_allclose(got, seen["2"][0].flatten(1).numpy(), rtol=1e-5, atol=1e-5)
    for target, data, words in ((f"{url}/_galleria/probe/tiny", b"not an image", "cannot read the image"),
                                (f"{url}/_galleria/probe/nothing", b"x", "no model 'nothing'")):
        try:
            urllib.request.urlopen(urllib.request.Request(target, data=data, method="POST"), timeout=60)
        except urllib.error.HTTPError as error:
            text = error.read().decode()
            assert error.code == 400 and words in text and len(text.splitlines()) == 1, text
        else:
            pytest.fail("a bad probe was answered")
