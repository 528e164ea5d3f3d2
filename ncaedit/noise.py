"""Random numbers that depend only on (seed, stream, absolute pixel position).

The stochastic update mask (`firing`) and the initial hidden noise are drawn from here, so a tile cut out of a
large photo sees exactly the numbers the whole photo would see at the same pixels. That is what
makes a tiled rollout match the untiled one.
"""

from __future__ import annotations

import torch

_MASK32 = 0xFFFFFFFF


def _mix(x: torch.Tensor) -> torch.Tensor:
    # A 32-bit integer hash (two multiply-xorshift rounds). Kept in int64 with constants below 2^31
    # so that products never overflow.
    x = ((x >> 16) ^ x) * 0x45D9F3B & _MASK32
    x = ((x >> 16) ^ x) * 0x45D9F3B & _MASK32
    return (x >> 16) ^ x


def _key(seed: int, stream: int) -> int:
    return _mix((seed * 0x9E3779B1 + stream * 0x85EBCA77) & _MASK32)  # on a Python int: same value, no tensor round trip


def position_uniform(seed: int, stream: int, top: int, left: int, height: int, width: int, device=None) -> torch.Tensor:
    """Uniform numbers in [0, 1) of shape (height, width) for the pixels [top:top+height, left:left+width]."""
    key = _key(seed, stream)
    ys = torch.arange(top, top + height, device=device, dtype=torch.int64)
    xs = torch.arange(left, left + width, device=device, dtype=torch.int64)
    row = _mix((ys + key) & _MASK32)
    h = _mix((row[:, None] ^ (xs[None, :] * 0x27D4EB2D & _MASK32)) & _MASK32)
    return (h >> 8).to(torch.float32) * (1.0 / (1 << 24))


def firing(fire_rate: float, seed: int, step: int, top: int, left: int, height: int, width: int, device=None) -> torch.Tensor | None:
    """Which cells of [top:top+height, left:left+width] update in a step: bool (H, W), or None when all do."""
    if fire_rate >= 1:
        return None
    return position_uniform(seed, step, top, left, height, width, device=device) < fire_rate


def uniform_at(seed: int, stream: int, ys: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
    """position_uniform at arbitrary pixels: `ys`, `xs` are int64 tensors of one shape (a video's
    cells keep the numbers of the pixel they were born at as they move, temporal.py)."""
    row = _mix((ys + _key(seed, stream)) & _MASK32)
    h = _mix((row ^ (xs * 0x27D4EB2D & _MASK32)) & _MASK32)
    return (h >> 8).to(torch.float32) * (1.0 / (1 << 24))
