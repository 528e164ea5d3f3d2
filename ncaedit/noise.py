"""Random numbers that depend only on (seed, stream, absolute pixel position).

The stochastic update mask (`firing`), the initial hidden noise and the random regions (`regions`)
are drawn from here, so a tile cut out of a large photo sees exactly the numbers the whole photo would
see at the same pixels. That is what makes a tiled rollout match the untiled one.
"""

from __future__ import annotations

import math

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


def hash_at(seed: int, stream: int, ys: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
    """The 32-bit hash behind position_uniform, at arbitrary pixels: `ys`, `xs` int64 tensors of one shape."""
    row = _mix((ys + _key(seed, stream)) & _MASK32)
    return _mix((row ^ (xs * 0x27D4EB2D & _MASK32)) & _MASK32)


def uniform_at(seed: int, stream: int, ys: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
    """position_uniform at arbitrary pixels (a video's cells keep the numbers of the pixel they were
    born at as they move, temporal.py)."""
    return (hash_at(seed, stream, ys, xs) >> 8).to(torch.float32) * (1.0 / (1 << 24))


REGION_STREAM = -(1 << 20)  # streams of `regions`, apart from the hidden noise's (-1, -2, ...) and the steps' (0, 1, ...)
SUBPIXEL = 16  # regions' points and pixel centres are placed in 1/16 px


def regions(size: int, seed: int, top: int, left: int, height: int, width: int, device=None) -> torch.Tensor:
    """A random partition of the plane into regions about `size` pixels across (Worley's cellular
    noise: each pixel belongs to the nearest of points jittered one in each size x size square), each
    region carrying a random direction (cos, sin): (2, height, width) for the pixels [top:top+height,
    left:left+width]. Points and directions are hashed from their square, so a tile sees the same
    regions as the whole image. Distances are exact integers (points and pixel centres in 1/16 px;
    under 2^31 up to size 1024), so every device, and the web page's 32-bit integers, choose alike."""
    ys, xs = torch.arange(top, top + height), torch.arange(left, left + width)
    row, col = ys // size, xs // size
    # the squares the pixels and their neighbours fall in, one point and one direction each
    square_y = torch.arange(int(row[0]) - 1, int(row[-1]) + 2)[:, None].expand(-1, int(col[-1]) - int(col[0]) + 3)
    square_x = torch.arange(int(col[0]) - 1, int(col[-1]) + 2)[None, :].expand(len(square_y), -1)
    span = size * SUBPIXEL  # 14 bits of the hash times the span stay under 2^32, as the page computes them

    def jittered(square, stream):
        return square * span + ((hash_at(seed, stream, square_y, square_x) >> 18) * span >> 14)

    point_y, point_x = jittered(square_y, REGION_STREAM), jittered(square_x, REGION_STREAM - 1)
    direction = uniform_at(seed, REGION_STREAM - 2, square_y, square_x) * (2 * math.pi)
    centre_y, centre_x = ys * SUBPIXEL + SUBPIXEL // 2, xs * SUBPIXEL + SUBPIXEL // 2
    nearest, angle = torch.full((height, width), 1 << 62), torch.zeros(height, width)
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            i, j = (row - row[0] + dy)[:, None], (col - col[0] + dx)[None, :]
            distance = (point_y[i, j] - centre_y[:, None]) ** 2 + (point_x[i, j] - centre_x[None, :]) ** 2
            closer = distance < nearest
            nearest, angle = torch.where(closer, distance, nearest), torch.where(closer, direction[i, j], angle)
    return torch.stack([angle.cos(), angle.sin()]).to(device)
