"""Where a layer's units are in its output: channels first, channels last, or one vector per token.

Units are always features, never positions. A CNN gives [B, C, H, W]; Swin stages and ConvNeXt
block internals give [B, H, W, C]; a vision transformer gives [B, N, C], N patch tokens laid on
their grid with prefix tokens (CLS, distillation, registers) before them. The layout is decided
from the model: which dimensions are a grid of the input image, and, where two could be, which
ones change when the input does. Every stage after extraction sees [B, units, *positions].
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

MAX_PREFIX = 16  # tokens before the patch grid: CLS, distillation, registers (DINOv2 has up to 4 + 1)
_PREFIX_PARAMS = (  # parameter names of prefix tokens, in the order models place them
    ("CLS", re.compile(r"(^|\.)(cls_token|class_token|class_embedding)$")),
    ("distillation", re.compile(r"(^|\.)dist_token$")),
    ("register", re.compile(r"(^|\.)(reg_token|register_tokens)$")),
)


@dataclass(frozen=True)
class Layout:
    """How one layer lays out its output, and what its positions are."""

    kind: str  # "vector", "channels-first", "channels-last" or "tokens"
    raw: tuple[int, ...]  # the output's shape without the batch dimension
    grid: tuple[int, int] | None = None  # tokens: the patch grid (rows, columns) after the prefix
    prefix: tuple[str, ...] = ()  # tokens: names of the tokens before the grid, e.g. ("CLS",)

    @property
    def units(self) -> int:
        return self.raw[-1] if self.kind in ("channels-last", "tokens") else self.raw[0]

    @property
    def positions(self) -> tuple[int, ...]:
        """The shape of one unit's map: (H, W), (tokens,) or () for a vector."""
        return self.raw[:-1] if self.kind in ("channels-last", "tokens") else self.raw[1:]

    def units_first(self, x):
        """[..., *raw] -> [..., units, *positions] (a view; any leading dimensions, batch among them)."""
        if self.kind in ("channels-last", "tokens"):
            last = x.dim() - 1  # counted from the front: ONNX export rejects a negative permutation
            return x.movedim(last, last - len(self.positions))
        return x

    def grid_view(self, x):
        """A [B, units, rows, cols] view of x [B, *raw] over the image, or None when the
        positions are not laid on the image (vectors, text)."""
        y = self.units_first(x)
        if self.kind == "tokens":
            if self.grid is None:
                return None
            return y[:, :, len(self.prefix):].reshape(*y.shape[:2], *self.grid)
        return y if y.dim() == 4 else None

    def image_map(self, values: np.ndarray) -> np.ndarray | None:
        """One unit's map (its positions' values) as a 2-D map over the image, or None."""
        if self.kind == "tokens":
            if self.grid is None:
                return None
            return np.asarray(values).reshape(-1)[len(self.prefix):].reshape(self.grid)
        return values if np.ndim(values) == 2 else None

    def cell(self, position: tuple[int, ...] | None) -> tuple[int, int] | None:
        """The (row, column) on the image grid of a position; None for prefix tokens and vectors."""
        if position is None:
            return None
        if self.kind == "tokens":
            if self.grid is None or position[0] < len(self.prefix):
                return None
            return divmod(position[0] - len(self.prefix), self.grid[1])
        return (position[0], position[1]) if len(position) == 2 else None

    def centre(self, positions: tuple[int, ...]) -> int:
        """The flat index of the middle of a map of this layer's shaped ``positions`` (the input may
        have another size than the model's): the centre patch of a token grid."""
        if self.kind == "tokens" and self.grid is not None and positions == self.positions:
            return len(self.prefix) + (self.grid[0] // 2) * self.grid[1] + self.grid[1] // 2
        return int(np.ravel_multi_index(tuple(d // 2 for d in positions), positions)) if positions else 0

    def position_name(self, position: tuple[int, ...] | None) -> str | None:
        """Where an example's extreme value was, in words: "CLS", "patch 3, 5", "row 3, col 5"."""
        if position is None or not self.positions:
            return None
        if self.kind == "tokens":
            if position[0] < len(self.prefix):
                return self.prefix[position[0]]
            cell = self.cell(position)
            return f"patch {cell[0]}, {cell[1]}" if cell is not None else f"token {position[0]}"
        if len(position) == 2:
            return f"row {position[0]}, col {position[1]}"
        return "position " + ", ".join(map(str, position))

    def describe(self) -> str:
        """The layout in a few words: "197 tokens (1 CLS + 14×14) × 768", "56×56 × 96 (channels last)"."""
        if self.kind == "vector":
            return f"{self.units} (a vector)"
        if self.kind == "tokens":
            if self.grid is None:
                return f"{self.positions[0]} tokens × {self.units}"
            grid = "×".join(map(str, self.grid))
            parts = [f"{count} {name}" for name, count in _counted(self.prefix)] + [grid]
            inside = " + ".join(parts) if self.prefix else f"{grid} patches"
            return f"{self.positions[0]} tokens ({inside}) × {self.units}"
        spatial = "×".join(map(str, self.positions))
        where = "channels last" if self.kind == "channels-last" else "channels first"
        return f"{spatial} × {self.units} ({where})"

    def statistics_note(self) -> str:
        """What a token layer's statistics cover, said on its pages: prefix tokens count as positions."""
        if not self.prefix:
            return ""
        kinds = " and ".join(name for name, _ in _counted(self.prefix))
        return f"{self.positions[0]} per input, {kinds} included in every statistic"


def _counted(names: tuple[str, ...]) -> list[tuple[str, int]]:
    """("CLS", "register 1", "register 2") -> [("CLS", 1), ("registers", 2)]."""
    out: list[tuple[str, int]] = []
    for name in names:
        base = name.rsplit(" ", 1)[0] if name[-1].isdigit() else name
        if out and out[-1][0].rstrip("s") == base:
            out[-1] = (base + "s", out[-1][1] + 1)
        else:
            out.append((base, 1))
    return out


class Ambiguous(ValueError):
    """The shape alone cannot tell the units from the positions."""


def infer_layout(raw: tuple[int, ...], image: tuple[int, int], grids: set[tuple[int, int]] = frozenset(),
                 prefix_names: tuple[str, ...] = (), kind: str | None = None,
                 spatial_dims: set[int] | None = None) -> Layout:
    """The layout of an image model's layer output ``raw`` (no batch dimension).

    ``image`` is the input's (height, width); ``grids`` the feature-map grids seen anywhere in
    the model (a patch embedding's, a stage's); ``kind`` a layout the config insists on;
    ``spatial_dims`` the dimensions of ``raw`` that changed when the input size did (None if
    not measured). Raises Ambiguous when two layouts fit and nothing tells them apart, and
    ValueError when the config's kind does not fit the shape.
    """
    if len(raw) == 1:
        if kind not in (None, "channels-first"):
            raise ValueError(f"a vector of {raw[0]} has no positions to lay out as {kind}")
        return Layout("vector", raw)
    if kind == "tokens" or (kind is None and len(raw) == 2 and _token_grid(raw[0], image, grids) is not None
                            and _token_grid(raw[1], image, grids) is None):
        if len(raw) != 2:
            raise ValueError(f"tokens need an output of [batch, tokens, features], got {list(raw)} per input")
        found = _token_grid(raw[0], image, grids)
        grid, prefix = found if found else (None, 0)
        return Layout("tokens", raw, grid, _prefix(prefix_names, prefix))
    if kind is not None:
        return Layout(kind, raw)
    if len(raw) == 2:
        raise Ambiguous(f"tokens or features? {list(raw)} has no one dimension that is a grid of patches "
                        f"of the {image[0]}×{image[1]} input")
    if len(raw) > 3:
        return Layout("channels-first", raw)  # [C, D, H, W] and beyond: channels first by convention
    first, last = is_grid(raw[1:], image), is_grid(raw[:2], image)
    if first == last and spatial_dims:  # the shape cannot say; how the model reacts to a larger input can
        first, last = spatial_dims == {1, 2}, spatial_dims == {0, 1}
    if first != last:
        return Layout("channels-first" if first else "channels-last", raw)
    raise Ambiguous(f"channels first or last? {'both ends' if first else 'neither end'} of {list(raw)} "
                    f"fit a grid over the {image[0]}×{image[1]} input")


def is_grid(dims: tuple[int, ...], image: tuple[int, int]) -> bool:
    """Whether (rows, cols) can be a feature map over the image: one stride fits both sides."""
    rows, cols = dims
    if not 0 < rows <= image[0] or not 0 < cols <= image[1]:
        return False
    return any(all(abs(n - side / stride) < 1 for n, side in ((rows, image[0]), (cols, image[1])))
               for stride in {image[0] / rows, image[1] / cols})


def _token_grid(tokens: int, image: tuple[int, int],
                grids: set[tuple[int, int]]) -> tuple[tuple[int, int], int] | None:
    """The grid and prefix count that make up ``tokens``: from the grids the model was seen to
    make, else from patch sizes that divide the input; the fewest prefix tokens wins."""
    height, width = image
    divided = {(height // p, width // p) for p in range(1, min(height, width) + 1)
               if height % p == 0 and width % p == 0}
    for candidates in (grids, divided):
        fits = [(prefix, grid) for grid in candidates
                if 0 <= (prefix := tokens - grid[0] * grid[1]) <= MAX_PREFIX]
        if fits:
            prefix, grid = min(fits)
            return grid, prefix
    return None


def _prefix(names: tuple[str, ...], count: int) -> tuple[str, ...]:
    if len(names) == count:
        return names
    if count == 1:
        return ("CLS",)
    return tuple(f"prefix {i}" for i in range(count))


def prefix_names(module) -> tuple[str, ...]:
    """The model's own prefix tokens, by the names of its parameters: CLS, distillation, registers."""
    names: list[str] = []
    for label, pattern in _PREFIX_PARAMS:
        for name, param in module.named_parameters():
            if pattern.search(name):
                count = param.shape[-2] if label == "register" and param.dim() >= 2 else 1
                names.extend([label] if label != "register" else [f"register {i}" for i in range(1, count + 1)])
                break
    return tuple(names)
