"""Builds spread over processes with torchrun: which share of each stage's work is this process's.

``torchrun --nproc-per-node N -m galleria build`` starts N processes (ranks) with RANK, WORLD_SIZE,
LOCAL_RANK and a rendezvous in their environment; ``srun torchrun ...`` does the same on every node
of a cluster. Every rank runs the same build over the same config, cache and output folder (on a
filesystem they all see). A stage splits its work by rank in a fixed way, leaves each share in the
content-keyed cache, and waits for the others; what follows reads the finished results from the
cache just as a one-process build does, so the site does not depend on how many processes made it.
Without torchrun there is one rank, and every share is the whole.
"""
from __future__ import annotations

import datetime
import os
import time
from dataclasses import dataclass

from galleria.errors import BuildError

#: How long a rank waits for the others at a stage's end. Long: while rank 0 writes the pages of a
#: large site the others wait for it; a rank that fails ends the job sooner (torchrun stops the rest).
PATIENCE = datetime.timedelta(hours=12)


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1

    @property
    def first(self) -> bool:
        """Whether this rank writes what there is one of (merged results, the site) and speaks."""
        return self.rank == 0

    def share(self, count: int, block: int = 1, rank: int | None = None) -> range:
        """A rank's (by default this one's) contiguous share of ``count`` items, in whole blocks of
        ``block`` items (batches), as even as whole blocks allow."""
        rank = self.rank if rank is None else rank
        blocks = -(-count // block)
        start, stop = blocks * rank // self.world, blocks * (rank + 1) // self.world
        return range(min(start * block, count), min(stop * block, count))

    def mine(self, items: list, costs: list[float] | None = None) -> list:
        """This rank's share of a list of independent tasks: dealt round-robin where their costs even
        out; with an estimate of each one's ``costs``, the costliest first, each to the rank with the
        least so far (a few tasks of very different cost: the deepest layers' feature visualizations)."""
        if costs is None:
            return items[self.rank::self.world]
        loads = [0.0] * self.world
        taken: list[int] = []
        for position in sorted(range(len(items)), key=lambda i: -costs[i]):  # stable: ties in list order
            rank = loads.index(min(loads))
            loads[rank] += costs[position]
            if rank == self.rank:
                taken.append(position)
        return [items[i] for i in sorted(taken)]

    def wait(self) -> None:
        """Return once every rank has got here; fail if another rank stopped (its own line says why)."""
        if self.world > 1:
            import torch.distributed as dist
            _together(dist.barrier)

    def gather(self, value) -> list:
        """Every rank's ``value`` (picklable), in rank order, on every rank, once all have sent theirs."""
        if self.world == 1:
            return [value]
        import torch.distributed as dist
        found = [None] * self.world
        _together(dist.all_gather_object, found, value)
        return found


def _together(collective, *args) -> None:
    """Run a collective call, counting the time spent in it as waiting for the other ranks; a
    rank that died on the way fails this one with a line that says so."""
    global _waited
    started = time.perf_counter()
    try:
        collective(*args)
    except RuntimeError as exc:  # gloo's "connection closed by peer", NCCL's timeout...
        raise BuildError("stopped: another rank of this torchrun build failed (its own line above "
                         "or below says why)") from exc
    _waited += time.perf_counter() - started


def waited() -> float:
    """Seconds this rank has spent waiting for the others."""
    return _waited


_ranks = Ranks()
_waited = 0.0
_joined = False


def cores() -> int:
    """The cores this process may keep busy: the machine's, shared evenly by the ranks torchrun
    started on it (LOCAL_WORLD_SIZE), so that their forked workers do not crowd each other out."""
    return max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def ranks() -> Ranks:
    """This process's place in the build: rank 0 of 1 without torchrun."""
    return _ranks


def join() -> Ranks:
    """Join the torchrun job this process was started in (one rank of one without torchrun).

    Gloo carries the ranks' few messages; where each rank has a GPU, LOCAL_RANK picks its own and
    NCCL joins too, for anything a stage sends between GPUs."""
    global _ranks
    if int(os.environ.get("WORLD_SIZE", "1")) < 2:
        return _ranks
    import torch
    import torch.distributed as dist
    backend = "gloo"
    if torch.cuda.is_available() and torch.cuda.device_count() > 0:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
        backend = "cpu:gloo,cuda:nccl"
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=PATIENCE)
    _ranks = Ranks(dist.get_rank(), dist.get_world_size())
    global _joined
    _joined = True
    return _ranks


def joined() -> bool:
    """Whether this process joined a torchrun job (and so must end through os._exit: see cli.main)."""
    return _joined


def leave() -> None:
    """Leave the job (after the last wait), so that torchrun sees a clean exit."""
    global _ranks
    if _ranks.world > 1:
        import torch.distributed as dist
        _ranks.wait()  # no rank closes its connections while another still reads from them
        dist.destroy_process_group()
        _ranks = Ranks()
_waited = 0.0
_joined = False
