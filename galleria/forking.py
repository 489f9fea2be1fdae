"""Spread CPU-bound work over every core with forked processes.

Forked workers inherit everything the parent built (models, activations, templates) without
pickling it. Callers hand them work on numpy, PIL, Jinja and files, and at most torch's reading of
saved tensors: each worker runs torch on one thread, as PyTorch's own DataLoader workers do, since
the thread pool it had in the parent does not survive a fork. Where fork is unavailable (Windows,
macOS' default) or there is one core (per torchrun rank on this machine), the tasks run in this process.
"""
from __future__ import annotations

import contextlib
import ctypes
import gc
import multiprocessing
import sys
from typing import Callable, Iterable, Iterator, TypeVar

from galleria.distributed import cores

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
    """``function(task)`` for every task, yielded as each finishes, in any order. ``function`` may
    be a closure over anything: the workers inherit it with the rest of this process, and only
    the tasks and their results are pickled."""
    global _calling
    tasks = list(tasks)
    workers = min(len(tasks), cores())
    if workers < 2 or "fork" not in multiprocessing.get_all_start_methods():
        yield from map(function, tasks)
        return
    _calling = function
    try:
        with multiprocessing.get_context("fork").Pool(workers, initializer=_one_thread) as pool:
            yield from pool.imap_unordered(_call, tasks)
    finally:
        _calling = None


_calling: Callable | None = None  # fork_map's function while its workers run


def _call(task):
    return _calling(task)


def _one_thread() -> None:
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)


@contextlib.contextmanager
def collect_rarely():
    """Within: what exists now is left out of garbage collection, and collections are rarer.

    Writing pages makes millions of short-lived objects next to the hundreds of thousands the
    records hold; by default every few hundred allocations start a collection that walks all of
    them (measured: 15-20% of the site stage), and in forked workers that walk also copies every
    page the parent's objects live on."""
    threshold = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()
