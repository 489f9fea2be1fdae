"""Typed records passed between stages (config → sources → extract → visualize → site).

They are small, plain and JSON-serializable so that a unit's record can become its
``unit.json`` unchanged, and so that no stage needs another stage's internals.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class InputItem:
    """One candidate example: a source image, a crop of one, or a window of text."""

    index: int  # position in the input set; what reducers store
    id: str  # URL-safe and stable across builds, e.g. "chelsea-s3-1-2"
    source: str  # path of the file it was read from
    title: str  # human description, e.g. "chelsea.png · scale 3 · row 1, col 2"
    box: tuple[int, int, int, int] | None  # crop in source pixels: (left, top, right, bottom)
    span: tuple[int, int] | None = None  # a text window: [start, stop) in its corpus' token stream


@dataclass(frozen=True)
class Example:
    """An input that drove a unit to an extreme, and where in the unit's map it did."""

    input_index: int
    value: float
    position: tuple[int, ...] | None  # index into the unit's spatial map; None for vectors


@dataclass(frozen=True)
class Histogram:
    """Counts over equal-width bins; bin i covers [(lo + i) * width, (lo + i + 1) * width)."""

    width: float
    lo: int
    counts: tuple[int, ...]

    @property
    def edges(self) -> list[float]:
        return [(self.lo + i) * self.width for i in range(len(self.counts) + 1)]


@dataclass(frozen=True)
class UnitStats:
    """Summary of every activation value (every input, every position) of one unit."""

    count: int  # finite values seen
    mean: float
    std: float
    min: float
    max: float
    frac_active: float  # share of values above zero
    nonfinite: int  # NaN or infinite values, excluded from everything above
    histogram: Histogram


@dataclass(frozen=True)
class Interval:
    """A band of a unit's per-input peaks, [lo, hi), with a fair sample of the inputs in it."""

    lo: float
    hi: float
    count: int  # inputs whose peak falls in the band
    total: int  # inputs with a finite peak, all bands together
    examples: tuple[Example, ...]  # highest first

    @property
    def fraction(self) -> float:
        return self.count / self.total if self.total else 0.0


@dataclass(frozen=True)
class UnitSummary:
    """What extraction knows about one unit once all inputs have streamed past."""

    unit: int
    stats: UnitStats
    top: tuple[Example, ...]
    bottom: tuple[Example, ...]
    intervals: tuple[Interval, ...] = ()  # highest first


@dataclass
class BuildReport:
    """Counts and timings gathered through a build, printed as the closing summary."""

    models: int = 0
    layers: int = 0
    units: int = 0
    inputs_used: int = 0
    inputs_skipped: int = 0
    pages: int = 0
    images: int = 0  # encoded in this build; cached ones are not counted
    output: str = ""
    up_to_date: bool = False  # nothing changed: the existing output was kept
    warnings: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)  # said once in the summary; not failures under --strict
    search_bytes: int = 0  # the search index, all shards
    stage_seconds: dict[str, float] = field(default_factory=dict)
