"""The cell state: what each pixel of the photo carries through the rollout.

Channel layout of a state tensor of shape (B, C, H, W), with C = 6 + hidden channels:

    0-2   source RGB of the photo; frozen: the rule reads it and never writes it
    3-5   working RGB: the edited image; starts as a copy of the source
    6-    hidden channels: the rule's scratch memory; start as small noise
    6-7   with random regions (RuleConfig.regions): each pixel's region's random direction (noise.regions),
          frozen (the rule reads them and never writes them): where each motif goes

Levels: the source and working RGB start from the photo levelled for the rule (`photo_levels`: its
mean colour moved to mid-grey, its contrast scaled to the rule's photo_contrast; a video's frames
share one set, `levels_of`), so that a rule trained on a dark photo reads a bright one as it read
its own; the edit is blended with the photo itself (apply.blend).

Value range: RGB is stored as 2 * rgb - 1, so [0, 1] pixel values become [-1, 1]; the hidden
channels start uniform in [-HIDDEN_NOISE, HIDDEN_NOISE]. Training penalises any channel that
leaves [-1, 1] (the overflow loss), and the working RGB is clamped to [-1, 1] on output.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

from ncaedit.noise import position_uniform, regions as random_regions

SOURCE = slice(0, 3)
WORKING = slice(3, 6)
HIDDEN = slice(6, None)
REGIONS = slice(6, 8)  # with RuleConfig.regions
WRITABLE = slice(3, None)
HIDDEN_NOISE = 0.1
LEVELS_PIXELS = 1 << 20  # levels are measured on a regular subsample of at most about this many pixels
MIN_CONTRAST = 0.05  # a flat photo's contrast is counted as this, so its noise is not blown up


@dataclass(frozen=True)
class Levels:
    """rgb -> rgb * gain + offset, clipped to [0, 1]: one photo's levelling, the same in every tile."""

    gain: float
    offset: tuple[float, float, float]

    def __call__(self, rgb: torch.Tensor) -> torch.Tensor:
        """(..., 3, H, W) in [0, 1] -> levelled, same shape."""
        offset = torch.tensor(self.offset, dtype=rgb.dtype, device=rgb.device)[:, None, None]
        return (rgb * self.gain + offset).clamp(0, 1)


class LevelsMeter:
    """A colour mean and RMS contrast pooled over one photo, or over all of a video's frames (so that
    every frame is levelled alike: levels that followed each frame would shift still parts of the
    scene whenever something moved). Each image counts every stride-th pixel of every stride-th row,
    so a huge one costs what a megapixel does; sums in float64, as the web page keeps them."""

    def __init__(self):
        self.count, self.sums, self.squares = 0, np.zeros(3), np.zeros(3)

    def add(self, rgb: np.ndarray) -> None:
        """One image (H, W, 3+; uint8, uint16 or float in [0, 1])."""
        from ncaedit.image import to_float

        h, w = rgb.shape[:2]
        stride = max(1, math.ceil(math.sqrt(h * w / LEVELS_PIXELS)))
        sample = to_float(rgb[::stride, ::stride, :3]).reshape(-1, 3).astype(np.float64)
        self.count += len(sample)
        self.sums += sample.sum(0)
        self.squares += (sample * sample).sum(0)

    def levels(self, contrast: float) -> Levels | None:
        """The levels that move the mean colour to mid-grey and the RMS contrast (the per-channel
        variances' mean, square-rooted) to `contrast`; None when `contrast` is 0 (read as it is)."""
        if contrast <= 0 or not self.count:
            return None
        mean = self.sums / self.count
        rms = math.sqrt(max(0.0, float((self.squares / self.count - mean * mean).mean())))
        gain = contrast / max(rms, MIN_CONTRAST)
        return Levels(gain, tuple(float(0.5 - m * gain) for m in mean))


def levels_of(images: Iterable[np.ndarray], contrast: float) -> Levels | None:
    """The levels pooled over `images` (one photo, or all of a video's frames); None, without reading
    any image, when `contrast` is 0."""
    if contrast <= 0:
        return None
    meter = LevelsMeter()
    for rgb in images:
        meter.add(rgb)
    return meter.levels(contrast)


def photo_levels(rgb: np.ndarray, contrast: float) -> Levels | None:
    """The levels of one whole photo."""
    return levels_of([rgb], contrast)


def levelled(rgb: torch.Tensor, levels: Levels | None) -> torch.Tensor:
    """`rgb` (..., 3, H, W) as the rule reads it: levelled, or as it is when `levels` is None."""
    return rgb if levels is None else levels(rgb)


def make_state(
    rgb: torch.Tensor, hidden_channels: int, seed: int = 0, top: int = 0, left: int = 0, levels: Levels | None = None, regions: int = 0,
) -> torch.Tensor:
    """Initial state for photos `rgb` of shape (B, 3, H, W) in [0, 1], levelled by `levels` (None: as they are).

    `top`/`left` place the batch inside a larger image, so that hidden noise depends on the absolute
    pixel position (tiles of one photo get the same noise as the whole photo). With `regions` (their
    size in pixels, RuleConfig.regions) the first two hidden channels hold the random regions instead.
    """
    b, _, h, w = rgb.shape
    colour = levelled(rgb, levels) * 2 - 1
    noise = [position_uniform(seed, -1 - c, top, left, h, w, device=rgb.device) for c in range(hidden_channels)]
    hidden = (torch.stack(noise) * 2 - 1) * HIDDEN_NOISE if noise else torch.zeros(0, h, w, device=rgb.device)
    if regions:
        hidden[REGIONS.start - HIDDEN.start : REGIONS.stop - HIDDEN.start] = random_regions(regions, seed, top, left, h, w, device=rgb.device)
    return torch.cat([colour, colour, hidden.to(rgb.dtype).expand(b, -1, -1, -1)], dim=1)


def require_finite(state: torch.Tensor, steps: int) -> None:
    """Refuse a state that went infinite or NaN: an unstable rule (finite but huge weights) would
    otherwise come out as a silently black or saturated image. Checked once per tile or frame, not
    per step (non-finite values never become finite again), and as one sum, which is non-finite when
    any value is (or when values are past 1e30, a state as broken): a sequential read, several times
    cheaper than an element-wise test of the channels-last state."""
    if not torch.isfinite(state.sum()):
        from ncaedit.errors import NcaError

        raise NcaError(
            f"the rule's cell state became infinite or NaN within {steps} steps: the rule is unstable "
            "(its weights are far too large), so nothing was written; use another rule"
        )


def working_rgb(state: torch.Tensor) -> torch.Tensor:
    """The edited image in [0, 1], shape (B, 3, H, W)."""
    return ((state[:, WORKING] + 1) * 0.5).clamp(0, 1)


def source_rgb(state: torch.Tensor) -> torch.Tensor:
    return (state[:, SOURCE] + 1) * 0.5
