"""Carrying a video's edit along the motion, so that textures move with the scene instead of crawling.

Editing every frame from scratch ties the cell updates to pixel positions, not to the scene, and on
moving content the textures shimmer. Here a frame's rollout of `steps` steps is split in two, the
first `lead` steps and the last `refresh` steps:
- The state after the lead steps, the pre-state (working RGB and hidden channels), is carried from
  frame to frame along the optical flow (flow.py). Pixels the previous frame did not see (uncovered,
  or new at an edge) get the per-frame pre-state instead: the lead steps are run on the blocks of
  the frame that hold such pixels (with halos, so the result is exact), and only they cost a rollout.
- The last `refresh` steps run on every frame, on the current frame's pixels, from the carried
  pre-state. So every output is `steps` steps of the rule from a fresh start: the edit neither
  drifts (the rule never runs past its rollout length, as with `--carry`) nor restarts.
- A cell keeps the random numbers of the pixel where it was born (which steps it fires in): they are
  hashed from its origin, which moves along with it (nearest pixel), so the updates follow the scene.
On a still shot the flow is zero and nothing is uncovered: the result is the per-frame result. A
scene cut (most of the frame unseen in the previous one) starts over with a fresh pre-state.

Memory: the carried pre-state is float16, half of float32 (its values lie in [-1, 1], where float16's
step is at most 1/1024, below one 8-bit level of the output), and each pixel's origin two int16.
With 12 hidden channels that is 34 bytes a pixel, 0.28 GB for a 4K frame, held twice while the next
frame's is made; everything else runs in tiles (tiling.py) or bands (flow.warp).
"""

from __future__ import annotations

import math
from typing import Iterator

import numpy as np
import torch

from ncaedit.inference import run_inplace
from ncaedit.errors import NcaError
from ncaedit.flow import estimate_motion, warp
from ncaedit.image import to_float
from ncaedit.noise import uniform_at
from ncaedit.state import WRITABLE, Levels, levelled, make_state, require_finite, working_rgb
from ncaedit.tiling import Box, Tile, default_tile, plan_tiles, run_in_order

REFRESH_STEPS = 4  # default refresh steps per frame (README, "Video": chosen by measurement)
CUT_VALID = 0.5  # a frame of which less than this fraction was seen in the previous one is a new scene
FRESH_BLOCK = 32  # uncovered pixels get a fresh pre-state in blocks of this side (each grown by a halo)


def fresh_tiles(fresh: np.ndarray, halo: int, max_side: int, block: int = FRESH_BLOCK) -> list[Tile]:
    """Tiles whose cores cover every True pixel of `fresh` (H, W): the blocks holding one, joined into
    runs along rows and runs of equal span down the columns (fewer halos: a pan's new edge is one
    tile), at most `max_side` pixels long either way (bounded memory), each run on its core grown by `halo`."""
    height, width = fresh.shape
    rows, cols = math.ceil(height / block), math.ceil(width / block)
    padded = np.zeros((rows * block, cols * block), bool)
    padded[:height, :width] = fresh
    marked = np.pad(padded.reshape(rows, block, cols, block).any(axis=(1, 3)), ((0, 1), (0, 0)))
    most = max(1, max_side // block)  # blocks a tile's core may span
    open_runs: dict[tuple[int, int], int] = {}  # (first, last + 1) block column -> first block row
    tiles = []
    for by in range(rows + 1):  # the padded last row closes every run
        edges = np.flatnonzero(np.diff(np.pad(marked[by], 1).astype(np.int8)))
        spans = set()
        for first, last in zip(edges[::2].tolist(), edges[1::2].tolist()):
            spans |= {(a, min(last, a + most)) for a in range(first, last, most)}
        for span in [s for s in open_runs if s not in spans or by - open_runs[s] == most]:
            top = open_runs.pop(span)
            core = Box(top * block, span[0] * block, min(height, by * block), min(width, span[1] * block))
            run = Box(max(0, core.top - halo), max(0, core.left - halo), min(height, core.bottom + halo), min(width, core.right + halo))
            tiles.append(Tile(core, run))
        for span in spans:
            open_runs.setdefault(span, by)
    return tiles


def positions(height: int, width: int) -> np.ndarray:
    """(H, W, 2) the (y, x) of every pixel, as int16 where that fits."""
    dtype = np.int16 if max(height, width) < 2**15 else np.int32
    ys, xs = np.mgrid[0:height, 0:width].astype(dtype)
    return np.stack([ys, xs], axis=2)


class FlowCarry:
    """The edit of a video's frames in order, carried along the motion (see the module's docstring)."""

    def __init__(
        self, rule, steps: int, refresh_steps: int, seed: int = 0, tile: int | None = None, device: str = "cpu", workers: int = 1,
        levels: Levels | None = None,
    ):
        if not 0 <= refresh_steps <= steps:
            raise NcaError(f"--refresh-steps must be between 0 and the steps ({steps})")
        self.rule, self.seed, self.tile, self.device, self.workers = rule, seed, tile, device, workers
        self.lead, self.refresh = steps - refresh_steps, refresh_steps
        self.previous: np.ndarray | None = None  # the previous frame, uint8 RGB
        self.levels = levels  # the whole video's (video.video_levels): every frame is levelled alike
        self.pre: np.ndarray | None = None  # (H, W, C - 3) float16: the pre-state, where the previous frame's pixels are
        self.origin: np.ndarray | None = None  # (H, W, 2): the pixel each cell was born at
        self.cuts = 0  # scene cuts met (frames that started over)
        self.fresh = 0.0  # sum over frames after the first of the fraction of pixels that got a fresh pre-state

    def edit(self, frame: np.ndarray) -> Iterator[tuple[Tile, np.ndarray, None]]:
        """Edit the next frame (uint8 RGB (H, W, 3)). Yields, tile by tile, the tile and the edited RGB of
        its core (float32 (h, w, 3) in [0, 1]); the None stands where tiling.edit_tiles gives a hidden state."""
        height, width = frame.shape[:2]
        motion = None if self.previous is None else estimate_motion(self.previous, frame)
        if motion is not None and motion.valid_fraction < CUT_VALID:
            motion, self.cuts = None, self.cuts + 1
        origin = positions(height, width)
        if motion is None:
            pre, fresh = np.empty((height, width, self.rule.config.channels - 3), np.float16), None
            self.fresh += self.previous is not None
        else:
            pre, fresh = warp(self.pre, motion.back), ~motion.valid
            origin = np.where(fresh[..., None], origin, warp(self.origin, motion.back, nearest=True))
            self.fresh += float(fresh.mean())
        self.previous = self.pre = self.origin = None  # the old pre-state goes before the fresh blocks run
        self._fill_fresh(frame, pre, fresh)
        self.previous, self.pre, self.origin = frame, pre, origin
        halo = self.refresh * self.rule.config.reach
        tiles = plan_tiles(height, width, self.tile or default_tile(halo, self.workers), halo=halo)
        yield from run_in_order(lambda t: (t, working_rgb(self._rollout(frame, t, self.refresh, self.lead, carried=True))[0].permute(1, 2, 0).numpy(), None), tiles, self.workers)

    def _fill_fresh(self, frame: np.ndarray, pre: np.ndarray, fresh: np.ndarray | None) -> None:
        """The per-frame pre-state where `fresh` is True (everywhere when it is None)."""
        height, width = frame.shape[:2]
        halo = self.lead * self.rule.config.reach
        if fresh is None:
            tiles = plan_tiles(height, width, self.tile or default_tile(halo, self.workers), halo=halo)
        else:
            tiles = fresh_tiles(fresh, halo, self.tile or default_tile(halo, self.workers))

        def run(t: Tile):
            return t, self._rollout(frame, t, self.lead, 0)[0, WRITABLE].permute(1, 2, 0).numpy()

        for t, core in run_in_order(run, tiles, self.workers):
            rows, cols = t.core.slices()
            if fresh is None:
                pre[rows, cols] = core
            else:
                where = fresh[rows, cols]
                pre[rows, cols][where] = core[where]

    @torch.no_grad()  # here: grad mode is per thread
    def _rollout(self, frame: np.ndarray, t: Tile, steps: int, first_step: int, carried: bool = False) -> torch.Tensor:
        """The state (1, C, h, w) of the tile's core after `steps` steps numbered from `first_step`,
        started from the carried pre-state (`carried`) or from a fresh state, on the CPU."""
        rows, cols = t.run.slices()
        source = torch.from_numpy(to_float(frame[rows, cols])).permute(2, 0, 1)[None].to(self.device)
        fire_fn = None
        if carried:
            pre = torch.from_numpy(self.pre[rows, cols].astype(np.float32)).permute(2, 0, 1)[None].to(self.device)
            state = torch.cat([levelled(source, self.levels) * 2 - 1, pre], dim=1)
            fire_fn = self._fires(self.origin[rows, cols])
        else:
            state = make_state(source, self.rule.config.hidden_channels, seed=self.seed, top=t.run.top, left=t.run.left, levels=self.levels, regions=self.rule.config.regions)
        if steps:
            state = run_inplace(self.rule, state, steps, seed=self.seed, top=t.run.top, left=t.run.left, first_step=first_step, fire_fn=fire_fn)
            require_finite(state, first_step + steps)
        return state[(slice(None), slice(None), *t.core_in_run())].cpu()

    def _fires(self, origin: np.ndarray):
        """fire_fn for inference.run_inplace: a cell fires as the pixel it was born at would."""
        rate = self.rule.config.fire_rate
        if rate >= 1:
            return None
        ys = torch.from_numpy(origin[..., 0].astype(np.int64)).to(self.device)
        xs = torch.from_numpy(origin[..., 1].astype(np.int64)).to(self.device)
        return lambda step, row, n: uniform_at(self.seed, step, ys[row : row + n], xs[row : row + n]) < rate
