"""Spread CPU-bound work over every core with forked processes.

Forked workers inherit everything the parent built (models, activations, templates) without
pickling it. Callers only hand them work that touches numpy, PIL, Jinja and files, never
torch, so torch's threads left behind by fork are never used. Where fork is unavailable
(Windows, macOS' default) or there is one core, the tasks run in this process.
"""
from __future__ import annotations

import ctypes
import multiprocessing
import os
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def release_heap() -> None:
    """Give the memory this process freed back to the system (glibc keeps freed heap pages), so that
    workers forked next do not start from it; nothing where the C library has no malloc_trim."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def fork_map(function: Callable[[T], R], tasks: Iterable[T]) -> Iterator[R]:
    """``function(task)`` for every task, yielded as each finishes, in any order."""
    tasks = list(tasks)
    workers = min(len(tasks), os.cpu_count() or 1)
    if workers < 2 or "fork" not in multiprocessing.get_all_start_methods():
        yield from map(function, tasks)
        return
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        yield from pool.imap_unordered(function, tasks)
