"""Applying a trained rule to a photo: run the rule tile by tile (tiling.py), blend the edit with the
source by strength and mask, and write it back in the photo's own sample type."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from ncaedit.image import Photo, to_float, to_samples
from ncaedit.rule import Rule
from ncaedit.state import photo_levels
from ncaedit.tiling import edit_tiles


def check_apply_options(steps: int, mask: Path | str | None = None) -> None:
    """Refuse, before any photo is read, steps out of bounds (the rule's default included: the other
    numbers are checked by limits.checked on the caller) and a mask file that cannot be decoded."""
    from ncaedit.image import MIN_SIDE
    from ncaedit.limits import check_number
    from ncaedit.mask import load_mask

    check_number("steps", steps)
    if mask is not None:
        load_mask(Path(mask), (MIN_SIDE, MIN_SIDE))  # decoded without feathering: cheap, and an unreadable mask fails here


def blend(source: np.ndarray, edited: np.ndarray, strength: float = 1.0, mask: np.ndarray | None = None) -> np.ndarray:
    """source + (edited - source) * strength * mask: float32 (h, w, 3); `mask` (h, w) is uint8 or float in [0, 1]."""
    if strength == 1 and mask is None:
        return edited
    weight = np.float32(strength) if mask is None else (to_float(mask) * np.float32(strength))[:, :, None]
    source = to_float(source)
    return source + (edited - source) * weight


def apply_rule(
    rule: Rule,
    photo: Photo,
    steps: int,
    seed: int = 0,
    device: str = "cpu",
    on_steps: Callable[[float], None] | None = None,
    tile: int | None = None,
    strength: float = 1.0,
    mask: np.ndarray | None = None,
    workers: int = 1,
) -> Photo:
    """The edited photo: same size, alpha, bit depth and sample type as the input.

    `tile` bounds the memory (tiling.py; the result does not depend on it), `strength` in [0, 1]
    blends with the source, `mask` (H, W) limits the edit to where it is white, grey giving a partial
    edit. `workers` tiles run at once (tiling.edit_tiles). `on_steps(x)` reports progress in steps."""
    rule = rule.to(device)
    out = np.empty_like(photo.rgb)
    levels = photo_levels(photo.rgb, rule.config.photo_contrast)
    for t, edited, _ in edit_tiles(rule, photo.rgb, steps, seed, tile, device, on_steps=on_steps, workers=workers, levels=levels):
        rows, cols = t.core.slices()
        core_mask = None if mask is None else mask[rows, cols]
        out[rows, cols] = to_samples(blend(photo.rgb[rows, cols], edited, strength, core_mask), out.dtype)
    return Photo(out, photo.alpha, photo.bit_depth)
