"""Choosing the torch device a command runs on, and how many tiles it runs at once."""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator

from ncaedit.errors import NcaError

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

DEVICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(name: str) -> str:
    """`auto` picks CUDA, then Apple's MPS, then the CPU; a named device must be available."""
    import torch

    kind = name.split(":")[0]
    if kind not in DEVICES:
        raise NcaError(f"unknown device {name!r} (use one of {', '.join(DEVICES)})")
    cuda, mps = torch.cuda.is_available(), torch.backends.mps.is_available()
    if kind == "auto":
        return "cuda" if cuda else "mps" if mps else "cpu"
    if (kind == "cuda" and not cuda) or (kind == "mps" and not mps):
        raise NcaError(f"{name}: not available on this machine (use auto or cpu)", param="device")
    return name


def tile_workers(device: str) -> int:
    """Tiles to run at once: one per usable core on the CPU (each tile then wants a single torch
    thread, see tiling.edit_tiles), one on a GPU, which one tile keeps busy."""
    if device != "cpu":
        return 1
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def training_workers(device: str, batch: int, crop: int) -> int:
    """Parts of a training batch to roll out and score side by side (train.train_rule's workers), for
    a loss that scores each crop on its own: one per usable core on the CPU, at most one per crop,
    and only where a part has at least 4k cells. `fast`'s 2 crops of 80 px trained 1.45x faster so
    than on one thread, crops of 64 px 1.25x, of 48 px alike, of 32 px 1.6x slower (2-core machine)."""
    workers = min(batch, tile_workers(device))
    return workers if batch // workers * crop**2 >= 4096 else 1


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """torch runs `n` threads per op while inside (None: as it was), and as many as before afterwards."""
    import torch

    saved = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


@contextmanager
def one_thread_workers(n: int) -> Iterator[ThreadPoolExecutor | None]:
    """A pool of `n` threads that each run torch ops on one thread, so that n pieces of work share
    the cores (None for n <= 1). torch's thread count is restored afterwards: the workers' setting
    is process-wide for BLAS."""
    if n <= 1:
        yield None
        return
    from concurrent.futures import ThreadPoolExecutor

    import torch

    with torch_threads(None), ThreadPoolExecutor(n, initializer=torch.set_num_threads, initargs=(1,)) as pool:
        yield pool


@contextmanager
def tile_parallelism(device: str) -> Iterator[int]:
    """Tiles to run at once on `device` (tile_workers); while inside, torch runs one thread per op
    when tiles run side by side (tiling.edit_tiles), as the cores go to the tiles."""
    workers = tile_workers(device)
    with torch_threads(1 if workers > 1 else None):
        yield workers


@contextmanager
def training_threads(device: str, wanted: int | None) -> Iterator[None]:
    """torch runs `wanted` threads per op while inside (a mode's ModeSetup.threads), on the CPU and
    with threads that sleep between ops, as ncaedit sets them (__init__.py): waking them costs more
    than small ops gain. Threads that spin (`OMP_WAIT_POLICY=ACTIVE`, a machine of one's own) and
    other devices keep torch's own setting."""
    import torch

    limit = device == "cpu" and wanted is not None and os.environ.get("OMP_WAIT_POLICY", "").upper() != "ACTIVE"
    with torch_threads(min(wanted, torch.get_num_threads()) if limit else None):
        yield
