"""Each source image stored once, for every page that shows a part of it.

An input set's items are crops of a few photos (or one item per file), and every example a page
shows is a window onto one of them. Storing each photo once, and drawing every example as a
window onto it (with the unit's map laid over by the page's script), makes a gallery grow with
its inputs rather than with units × examples. A photo is stored as large as its finest crop was
for the model, never larger than the file itself, and cached by content.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from galleria.cache import Cache, content_key
from galleria.config import Preprocessing
from galleria.distributed import ranks
from galleria.forking import fork_map
from galleria.sources.images import InputSet, UnreadableInput, open_image
from galleria.visualize.tiles import encode

FORMAT = 1  # bump when the stored images change
QUALITY = 85


@dataclass(frozen=True)
class SourceImage:
    """A source file as stored for the site: where it is cached and how it was scaled."""

    path: Path  # the cached JPEG
    size: tuple[int, int]  # (width, height) of the stored image
    scale: tuple[float, float]  # stored pixels per source pixel, across and down (sizes are whole pixels)


def source_images(inputs: InputSet, pre: Preprocessing, cache: Cache,
                  progress=None) -> tuple[dict[str, SourceImage], int]:
    """Every source file of the usable items, stored once (cached by content and scale), and how many
    were encoded now."""
    needed: dict[str, float] = defaultdict(float)  # source path -> scale its finest crop needs
    for item in inputs.usable:
        if item.box is not None:
            side = max(item.box[2] - item.box[0], item.box[3] - item.box[1], 1)
            needed[item.source] = max(needed[item.source], max(pre.size) / side)
    tasks = []
    found: dict[str, SourceImage] = {}
    ranks().wait()  # every rank sees the same images missing (none stores before all have looked)
    for source, scale in sorted(needed.items()):
        scale = min(scale, 1.0)
        key = content_key(FORMAT, inputs.key, source, round(scale, 4), pre.channels, QUALITY)
        path = cache.file("sources", key, ".jpg")
        if path.is_file():
            found[source] = _stored(path, source)
        else:
            tasks.append((source, scale, key, pre.channels, cache))
    ranks().wait()  # and so stores its own share of them
    mine = ranks().mine(tasks)
    if progress is not None:
        progress.reset(total=max(len(found) + len(mine), 1))
        progress.update(len(found))
    for source, stored in fork_map(_store, mine):
        found[source] = stored
        if progress is not None:
            progress.update(1)
    ranks().wait()
    for source, _, key, _, _ in tasks:
        if source not in found:  # stored by another rank
            found[source] = _stored(cache.file("sources", key, ".jpg"), source)
    return found, len(tasks)


def _stored(path: Path, source: str) -> SourceImage:
    """A source image stored before."""
    with Image.open(path) as img, Image.open(source) as original:
        return SourceImage(path, img.size, _scales(img.size, original.size))


def _store(task) -> tuple[str, SourceImage]:
    source, scale, key, channels, cache = task
    try:
        img = open_image(source, channels)
    except UnreadableInput:  # read fine when the model ran; gone since: show nothing rather than fail
        img = Image.new("L" if channels == 1 else "RGB", (1, 1), 128)
    original = img.size
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    if size != img.size:
        img = img.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    path = cache.put_file("sources", key, ".jpg", encode(img, quality=QUALITY))
    return source, SourceImage(path, img.size, _scales(img.size, original))


def _scales(stored: tuple[int, int], original: tuple[int, int]) -> tuple[float, float]:
    return stored[0] / original[0], stored[1] / original[1]
