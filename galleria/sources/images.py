"""Image inputs: files found by folder and glob, expanded into multi-scale crops.

Crops multiply a few photographs into many candidate examples, so each unit can choose the
part of a scene that excites it. Unreadable files are skipped with a reason, never fatal.
"""
from __future__ import annotations

import hashlib
import math
import re
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, UnidentifiedImageError

from galleria.config import CropScheme, InputSetConfig, Preprocessing
from galleria.errors import BuildError
from galleria.records import InputItem

if TYPE_CHECKING:
    from galleria.sources.text import TextCorpus

MIN_CROP = 48  # source pixels; smaller crops upscale into blur that no unit should be judged on


@dataclass(frozen=True)
class InputSet:
    items: tuple[InputItem, ...]
    skipped: tuple[tuple[str, str], ...]  # (path, reason)
    key: str  # content hash of every file and the crop plan: what cached activations depend on
    text: "TextCorpus | None" = None  # text inputs: the token stream the items are windows of
    unreadable: frozenset[int] = frozenset()  # items whose file failed to decode when the model read it

    @property
    def usable(self) -> tuple[InputItem, ...]:
        """The items the model really read: pages, samples and listings show these."""
        if not self.unreadable:
            return self.items
        return tuple(item for item in self.items if item.index not in self.unreadable)

    def without(self, failed: dict[int, str]) -> "InputSet":
        """This set with the items that failed to decode (index -> reason) counted as skipped files."""
        if not failed:
            return self
        files = {self.items[i].source: reason for i, reason in sorted(failed.items())}
        return replace(self, skipped=self.skipped + tuple(files.items()),
                       unreadable=self.unreadable | frozenset(failed))


class UnreadableInput(BuildError):
    """An input file that passed the check at discovery but cannot be decoded (a truncated JPEG)."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"cannot decode input {path}: {reason}")
        self.path, self.reason = path, reason


def folder_label(path: Path, spec: InputSetConfig) -> str | None:
    """An image's own class under ``labels: folders``: the first folder below the set's (an image
    directly in the set's folder has none)."""
    if spec.labels != "folders":
        return None
    parts = path.relative_to(spec.root).parts
    return parts[0] if len(parts) > 1 else None


def discover(sets: tuple[InputSetConfig, ...]) -> InputSet:
    """List every input the config names; raise if nothing usable is left."""
    items: list[InputItem] = []
    skipped: list[tuple[str, str]] = []
    digest = hashlib.sha256()
    used_ids: set[str] = set()
    for spec in sets:
        files = matching_files(spec)
        files = files[: spec.limit] if spec.limit else files
        for path in files:
            try:
                with Image.open(path) as img:
                    img.verify()  # catches truncated and corrupt files without decoding all pixels
                with Image.open(path) as img:
                    size = img.size
            except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
                skipped.append((str(path), _reason(exc)))
                continue
            digest.update(str(path.relative_to(spec.root)).encode())
            digest.update(path.read_bytes())
            stem = _slug(str(path.relative_to(spec.root).with_suffix("")))
            if stem in used_ids:
                stem = f"{spec.id}-{stem}"
            used_ids.add(stem)
            label = folder_label(path, spec)
            for box, suffix, title in plan_crops(size, spec.crops):
                items.append(InputItem(len(items), stem + suffix, str(path), path.name + title, box, label=label))
    if not items:
        where = ", ".join(str(s.root) for s in sets)
        extra = f"; {len(skipped)} file(s) could not be read" if skipped else ""
        raise BuildError(f"no usable input images in {where}{extra} (check inputs: path and include)")
    digest.update(repr([(s.crops, MIN_CROP) for s in sets]).encode())
    return InputSet(tuple(items), tuple(skipped), digest.hexdigest()[:20])


def matching_files(spec: InputSetConfig) -> list[Path]:
    """The set's files: its include patterns less its exclude patterns, sorted."""
    found: set[Path] = set()
    for pattern in spec.include:
        found.update(p for p in spec.root.glob(pattern) if p.is_file())
    for pattern in spec.exclude:
        found.difference_update(spec.root.glob(pattern))
    return sorted(found)


def _reason(exc: Exception) -> str:
    if isinstance(exc, UnidentifiedImageError):
        return "not a readable image"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-").lower() or "input"


def plan_crops(size: tuple[int, int], scheme: CropScheme):
    """Square crops: scale 1 is the centre square (as ImageNet evaluation crops), scale n an
    n x n grid of overlapping squares (more along the longer side) covering the whole image."""
    width, height = size
    short = min(width, height)
    for n in scheme.scales:
        if n == 1:
            yield centre_square(size), "", ""
            continue
        side = short / (n - (n - 1) * scheme.overlap)
        if side < MIN_CROP:
            continue
        side_px = int(round(side))
        for r, top in enumerate(_positions(height, side_px, scheme.overlap)):
            for c, left in enumerate(_positions(width, side_px, scheme.overlap)):
                yield (left, top, left + side_px, top + side_px), f"-s{n}-{r}-{c}", \
                    f" · scale {n} · row {r + 1}, col {c + 1}"


def centre_square(size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The largest centred square of an image of ``size`` (width, height): scale 1's crop, and what
    the live probe shows the model of a visitor's image."""
    width, height = size
    short = min(width, height)
    left, top = (width - short) // 2, (height - short) // 2
    return left, top, left + short, top + short


def _positions(length: int, side: int, overlap: float) -> list[int]:
    if side >= length:
        return [max(0, (length - side) // 2)]
    count = math.ceil((length - side) / (side * (1 - overlap))) + 1
    return [round(i * (length - side) / (count - 1)) for i in range(count)]


class ImageLoader:
    """Turns input items into model-sized uint8 arrays, decoding each source file once."""

    def __init__(self, pre: Preprocessing, cache_files: int = 8):
        self.pre = pre
        self._sources: OrderedDict[str, Image.Image] = OrderedDict()
        self._cache_files = cache_files

    def _source(self, item: InputItem) -> Image.Image:
        path = item.source
        img = self._sources.pop(path, None)
        if img is None:
            img = open_image(path, self.pre.channels)
        self._sources[path] = img
        while len(self._sources) > self._cache_files:
            self._sources.popitem(last=False)
        return img

    def pixels(self, item: InputItem) -> np.ndarray:
        """H x W x C uint8 at the model's input size: what the model sees, before normalization."""
        img = self._source(item)
        if item.box is not None:
            img = img.crop(item.box)
        height, width = self.pre.size
        img = img.resize((width, height), Image.Resampling.BILINEAR, reducing_gap=2.0)
        array = np.asarray(img, dtype=np.uint8)
        return array[:, :, None] if array.ndim == 2 else array

    def batch(self, items: list[InputItem]):
        """A normalized float tensor [B, C, H, W] and the raw pixels it came from."""
        return self._tensor(np.stack([self.pixels(item) for item in items]))

    def readable(self, items: list[InputItem]):
        """The items that decode, their batch tensor (None if none does) and {index: reason} of the rest.

        Some files pass the check at discovery and fail only when decoded (a truncated JPEG):
        the build skips and counts them instead of failing."""
        kept, pixels, failed = [], [], {}
        for item in items:
            try:
                pixels.append(self.pixels(item))
                kept.append(item)
            except UnreadableInput as exc:
                failed[item.index] = exc.reason
        return kept, self._tensor(np.stack(pixels))[0] if pixels else None, failed

    def _tensor(self, pixels: np.ndarray):
        import torch

        x = torch.from_numpy(pixels).permute(0, 3, 1, 2).float().div_(255)
        mean = torch.tensor(self.pre.mean).view(1, -1, 1, 1)
        std = torch.tensor(self.pre.std).view(1, -1, 1, 1)
        return (x - mean) / std, pixels


def open_image(path: str, channels: int) -> Image.Image:
    """A source file decoded and converted to the model's channels; UnreadableInput if it cannot be."""
    try:
        with Image.open(path) as raw:
            raw.load()
            return _to_mode(raw, channels)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise UnreadableInput(path, _reason(exc)) from None


def _to_mode(img: Image.Image, channels: int) -> Image.Image:
    if img.mode in ("RGBA", "LA", "P"):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)  # transparent areas read as white paper
    if channels == 1:
        return img.convert("L")
    if channels == 3:
        return img.convert("RGB")
    raise BuildError(f"images have 1 or 3 channels; the model expects {channels} "
                     "(use a custom input source for other data)")
