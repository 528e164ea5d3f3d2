"""Running a rule over a photo tile by tile, so that any resolution fits in bounded memory.

A step reads the cells at most `reach` away (1: the 3x3 neighbourhood; more with coarse perception),
so after `steps` steps a pixel depends only on pixels at most `steps * reach` away. A tile therefore
runs on its core grown by a halo of that many pixels (clipped at the photo's edges, where the padding is the photo's own) and keeps only
its core. The update mask and the initial hidden noise depend on the absolute pixel position
(noise.py), so every tile sees the numbers the whole photo would see: tiled equals untiled.

The photo stays in its file's sample type (uint8/uint16) and only the tile being run is float32.
"""

from __future__ import annotations

import math
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch

from ncaedit.image import to_float
from ncaedit.inference import run_inplace
from ncaedit.rule import Rule
from ncaedit.state import HIDDEN, Levels, make_state, require_finite, working_rgb

# By default the tiles being run at one time cover at most RUN_PIXELS pixels, halos included (about
# 150 bytes a pixel for an 18-channel rule), and a tile's core is never below MIN_TILE or 6 halos, so
# long rollouts (wide halos) do not spend most of their time on halos.
RUN_PIXELS = 640 * 640
MIN_TILE = 256
PROGRESS_STEPS = 8  # report progress every this many steps


@dataclass(frozen=True)
class Box:
    top: int
    left: int
    bottom: int
    right: int

    def slices(self) -> tuple[slice, slice]:
        return slice(self.top, self.bottom), slice(self.left, self.right)

    @property
    def area(self) -> int:
        return (self.bottom - self.top) * (self.right - self.left)


@dataclass(frozen=True)
class Tile:
    core: Box  # the pixels this tile writes
    run: Box  # the core grown by the halo and clipped to the photo: the pixels the rule runs on

    def core_in_run(self) -> tuple[slice, slice]:
        """Where the core lies inside the run region."""
        c, r = self.core, self.run
        return slice(c.top - r.top, c.bottom - r.top), slice(c.left - r.left, c.right - r.left)


def default_tile(halo: int, workers: int = 1) -> int:
    """Cores as large as RUN_PIXELS allows the workers, and at least 6 halos wide, so that a wide
    halo (coarse perception) costs at most about twice the core."""
    return max(MIN_TILE, 6 * halo, math.isqrt(RUN_PIXELS // workers) - 2 * halo)


def _splits(length: int, tile: int) -> list[int]:
    n = math.ceil(length / tile)  # equal parts rather than full tiles and a thin last one
    return [round(i * length / n) for i in range(n + 1)]


def plan_tiles(height: int, width: int, tile: int, halo: int) -> list[Tile]:
    """Cores of at most `tile` x `tile` pixels covering the photo, each with its run region."""
    ys, xs = _splits(height, tile), _splits(width, tile)
    tiles = []
    for top, bottom in zip(ys, ys[1:]):
        for left, right in zip(xs, xs[1:]):
            run = Box(max(0, top - halo), max(0, left - halo), min(height, bottom + halo), min(width, right + halo))
            tiles.append(Tile(Box(top, left, bottom, right), run))
    return tiles


def edit_tiles(
    rule: Rule,
    rgb: np.ndarray,
    steps: int,
    seed: int = 0,
    tile: int | None = None,
    device: str = "cpu",
    hidden: np.ndarray | None = None,
    on_steps: Callable[[float], None] | None = None,
    workers: int = 1,
    levels: Levels | None = None,
) -> Iterator[tuple[Tile, np.ndarray, np.ndarray]]:
    """Run `steps` steps of `rule` on the photo `rgb` (H, W, 3; uint8, uint16 or float in [0, 1]).

    Yields, tile by tile, the tile, the edited RGB of its core (float32 (h, w, 3) in [0, 1]) and the
    final hidden state of its core (float32 (h, w, hidden channels)). `hidden`, of shape (H, W, hidden
    channels), starts the rollout from that hidden state instead of fresh noise (a video's previous
    frame). `levels`, the whole photo's (state.photo_levels; a video's frames share theirs), level
    every tile alike; None reads the photo as it is. `on_steps(x)` reports progress in whole-photo
    steps. `workers` tiles run at once, in threads: independent tiles keep every core busy without the
    fine-grained synchronisation of torch's intra-op threads, which stalls when other processes
    compete for the cores.
    """
    height, width = rgb.shape[:2]

    @torch.no_grad()  # here, not on edit_tiles: grad mode is per thread
    def run(t: Tile) -> tuple[Tile, np.ndarray, np.ndarray]:
        rows, cols = t.run.slices()
        source = torch.from_numpy(to_float(rgb[rows, cols])).permute(2, 0, 1)[None].to(device)
        state = make_state(source, rule.config.hidden_channels, seed=seed, top=t.run.top, left=t.run.left, levels=levels, regions=rule.config.regions)
        if hidden is not None:
            state[:, HIDDEN] = torch.from_numpy(hidden[rows, cols]).permute(2, 0, 1)[None].to(device)
        for first in range(0, steps, PROGRESS_STEPS):
            n = min(PROGRESS_STEPS, steps - first)
            state = run_inplace(rule, state, n, seed=seed, top=t.run.top, left=t.run.left, first_step=first, threads=threads)
            if on_steps:
                on_steps(n * t.core.area / (height * width))
        core = state[(slice(None), slice(None), *t.core_in_run())]
        require_finite(core, steps)
        return t, working_rgb(core)[0].permute(1, 2, 0).cpu().numpy(), core[0, HIDDEN].permute(1, 2, 0).cpu().numpy()

    # A photo that fits in one run is one tile, its bands shared among the workers' threads: tiles
    # side by side would each also run a halo (steps * reach: 112 pixels a side for `fast`)
    halo = steps * rule.config.reach
    whole = tile is None and height * width <= RUN_PIXELS
    tiles = plan_tiles(height, width, max(height, width) if whole else tile or default_tile(halo, workers), halo=halo)
    threads = max(1, workers // len(tiles)) if workers > 1 else None
    yield from run_in_order(run, tiles, workers)


def run_in_order(run: Callable, tiles: list, workers: int = 1) -> Iterator:
    """run(t) for every tile, yielded in order, `workers` at once in threads."""
    if workers <= 1:
        yield from map(run, tiles)
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="ncaedit-tile") as pool:
        running: deque = deque()
        for t in tiles:  # in order; `workers` tiles run while the caller takes one: memory stays bounded
            running.append(pool.submit(run, t))
            if len(running) > workers:
                yield running.popleft().result()
        while running:
            yield running.popleft().result()
