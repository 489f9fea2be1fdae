"""Which units are broken: dead, always on, saturated, non-finite, or copies of another unit.

Everything is read off what extraction already keeps (each unit's statistics and its peak on
every input), so checking health costs no extra pass over the inputs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from galleria.extract.similarity import nearest
from galleria.records import UnitStats

ALWAYS_ON = 0.99  # share of values above zero from which a unit counts as never off
SATURATED = 0.5  # share of inputs on which a unit's peak sits at its overall maximum
SAME_PEAK = 1e-6  # relative tolerance for "at its maximum" (clipped units hit it exactly)
CORRELATED_KEPT = 4  # per unit, the units whose peaks correlate most with its own, kept as its related units
DUPLICATE = 0.98  # correlation of two units' peaks over all inputs from which they are copies
DEFINITIONS = {  # each flag, and how it is decided, as pages explain it
    "dead": "never above zero, on any input at any position",
    "always on": f"above zero at {ALWAYS_ON:.0%} or more of all positions of all inputs",
    "saturated": f"its peak is its overall maximum, to the digit, on {SATURATED:.0%} or more of the inputs: "
                 "clipped (ReLU6 at 6) or not responding to the input at all",
    "non-finite": "produced NaN or infinite values",
    "duplicate": f"its peaks over all inputs correlate at {DUPLICATE} or more with another unit's",
}
FLAGS = tuple(DEFINITIONS)


@dataclass(frozen=True)
class Duplicate:
    unit: int  # unit numbers as shown, not positions
    other: int
    similarity: float


class Correlated(NamedTuple):
    """Per unit (by position), the positions of the units whose peaks correlate most with its own and
    the correlations, over ``inputs`` inputs: a by-product of the search for near-duplicates."""

    index: np.ndarray  # [units, CORRELATED_KEPT], -1 where fewer correlate above 0
    value: np.ndarray
    inputs: int


@dataclass
class LayerHealth:
    """Per flag, the units that carry it, and the near-duplicate pairs."""

    units: dict[str, list[int]] = field(default_factory=lambda: {flag: [] for flag in FLAGS})
    duplicates: list[Duplicate] = field(default_factory=list)
    saturation: dict[int, float] = field(default_factory=dict)  # unit -> share of inputs at its max
    by_unit: dict[int, list[str]] = field(default_factory=dict)  # unit -> its flags, in FLAGS order
    correlated: Correlated | None = None
    pairs: dict[int, list[Duplicate]] = field(default_factory=dict)  # unit -> the duplicate pairs it is in

    def flags(self, unit: int) -> list[str]:
        return self.by_unit.get(unit, [])

    def duplicates_of(self, unit: int) -> list[Duplicate]:
        return self.pairs.get(unit, [])


def layer_health(units: tuple[int, ...], unit_stats: list[UnitStats], peaks: np.ndarray) -> LayerHealth:
    """Health of one layer; ``peaks`` is [inputs, units], each unit's highest value per input."""
    health = LayerHealth()
    peaks = np.asarray(peaks, dtype=np.float64)
    for position, (unit, stats) in enumerate(zip(units, unit_stats)):
        if stats.nonfinite:
            health.units["non-finite"].append(unit)
        if not stats.count:
            continue
        if stats.max <= 0:
            health.units["dead"].append(unit)
        elif stats.frac_active >= ALWAYS_ON:
            health.units["always on"].append(unit)
        column = peaks[:, position]
        finite = column[np.isfinite(column)]
        if finite.size and stats.max > stats.min:
            share = float(np.mean(finite >= stats.max - SAME_PEAK * abs(stats.max)))
            if share >= SATURATED:
                health.units["saturated"].append(unit)
                health.saturation[unit] = share
    health.duplicates, health.correlated = _correlations(units, peaks, set(health.units["dead"]))
    for pair in health.duplicates:
        for unit in (pair.unit, pair.other):
            health.pairs.setdefault(unit, []).append(pair)
    health.units["duplicate"] = sorted(health.pairs)
    for flag in FLAGS:
        for unit in health.units[flag]:
            health.by_unit.setdefault(unit, []).append(flag)
    return health


def _correlations(units: tuple[int, ...], peaks: np.ndarray, dead: set[int]) -> tuple[list[Duplicate], Correlated]:
    """Pairs whose peaks over the inputs correlate above DUPLICATE (cosine of centred patterns), and
    each unit's most correlated others, from one pass over the correlations.

    Dead and constant units are never duplicates: any two of them would look identical. Constant
    units correlate with nothing; pairs are only looked for over 3 inputs or more.
    """
    values = np.nan_to_num(np.asarray(peaks, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    centred = (values - values.mean(0)).T  # [units, inputs]
    candidate = np.array([unit not in dead for unit in units]) & (np.linalg.norm(centred, axis=1) > 1e-12)
    found: list[Duplicate] = []

    def duplicates(start: int, block: np.ndarray) -> None:
        rows, cols = np.nonzero(np.triu(block, k=start + 1) >= DUPLICATE)  # each pair once
        for r, c in zip(rows, cols):
            if candidate[start + r] and candidate[c]:
                found.append(Duplicate(units[start + r], units[c], float(block[r, c])))

    index, value = nearest(centred, CORRELATED_KEPT, duplicates if peaks.shape[0] >= 3 else None)
    return found, Correlated(index, value, peaks.shape[0])
