"""Which units are most alike, by the cosine of their vectors, found a block of rows at a time.

One search serves every question asked of the same cosines: the related units of a layer, and the
health check's near-duplicates (``visit`` sees each block), so a layer's units are compared once.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

ROWS = 1024  # units compared with all others at once: units x units would not fit a wide layer


def nearest(vectors: np.ndarray, count: int,
            visit: Callable[[int, np.ndarray], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``vectors`` [n, d], the positions of the ``count`` other rows of highest cosine, best
    first, and their cosines (-1 and 0 where fewer are above 0; a zero row is near none, and none
    to it). ``visit(start, block)`` sees each block of cosines [rows from start, n] as it is made,
    a row's own column set to -2, so that other searches over the same cosines need no pass of their own."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = np.divide(vectors, norms, out=np.zeros_like(vectors, dtype=np.float64), where=norms > 1e-12)
    size = len(unit)
    index, value = np.full((size, count), -1), np.zeros((size, count))
    k = min(count, size - 1)
    for start in range(0, size, ROWS):  # a block of rows at a time: n x n would not fit a wide layer
        block = unit[start:start + ROWS] @ unit.T
        rows = np.arange(len(block))
        block[rows, start + rows] = -2  # not itself
        if visit is not None:
            visit(start, block)
        if k > 0:
            top = np.argpartition(-block, k - 1, axis=1)[:, :k]
            cosines = np.take_along_axis(block, top, 1)
            order = np.argsort(-cosines, axis=1, kind="stable")
            top, cosines = np.take_along_axis(top, order, 1), np.take_along_axis(cosines, order, 1)
            keep = cosines > 1e-6
            index[start:start + len(block), :k] = np.where(keep, top, -1)
            value[start:start + len(block), :k] = np.where(keep, cosines, 0.0)
    return index, value
