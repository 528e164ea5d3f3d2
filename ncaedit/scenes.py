"""Synthetic scenes: varied photo-like images mixed into training, so a rule restyles other photos too.

A rule trained on crops of one photo learns what that photo looks like (its edges, its flat areas,
its textures) and edits other photos less. Generated scenes add what the photo lacks: a "dead
leaves" image (Lee, Mumford & Huang 2001) of shaded ellipses whose sizes follow a power law, as
object sizes in photos do, some of them textured with band-limited noise, blurred by a random amount.
"""

from __future__ import annotations

import math
import random

import torch
import torch.nn.functional as F

from ncaedit.style_loss import gaussian_blur

SCENES = 8  # scenes generated for a training run
SHAPES = 150  # ellipses per scene
SMALLEST = 0.02  # the smallest and largest radius, as fractions of the side
LARGEST = 0.5


def scene(size: int, rng: random.Random) -> torch.Tensor:
    """(3, size, size) in [0, 1]: shaded and textured ellipses, later ones on top, then blurred."""
    g = torch.Generator().manual_seed(rng.randrange(2**31))
    t = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    y, x = torch.meshgrid(t, t, indexing="ij")
    palette = [_colour(g) for _ in range(rng.randint(2, 5))]  # photos hold a few related colours, not confetti
    image = _shaded(rng.choice(palette), _colour(g), x, y, rng)
    for _ in range(SHAPES):
        r = _power_law(SMALLEST, LARGEST, rng)
        cx, cy, angle = rng.random(), rng.random(), rng.uniform(0, math.pi)
        aspect = math.exp(rng.uniform(-1, 1))
        reach = r * max(aspect, 1 / aspect)  # the ellipse lies in this square around its centre: only it is computed
        rows = slice(max(0, math.floor((cy - reach) * size)), min(size, math.ceil((cy + reach) * size)))
        cols = slice(max(0, math.floor((cx - reach) * size)), min(size, math.ceil((cx + reach) * size)))
        bx, by = x[rows, cols], y[rows, cols]
        u = (bx - cx) * math.cos(angle) + (by - cy) * math.sin(angle)
        v = -(bx - cx) * math.sin(angle) + (by - cy) * math.cos(angle)
        inside = (u * aspect) ** 2 + (v / aspect) ** 2 < r * r
        if not inside.any():
            continue
        fill = _shaded(rng.choice(palette) + 0.1 * torch.randn(3, generator=g), _colour(g), bx, by, rng)
        if rng.random() < 0.3:  # fur, grass, fabric: a texture inside the shape
            fill = fill + rng.uniform(0.1, 0.4) * _noise(inside.shape, rng.uniform(0.02, 0.2) * size, g)
        image[:, rows, cols] = torch.where(inside, fill, image[:, rows, cols])
    sigma = rng.uniform(0, 1.5)
    return gaussian_blur(image[None], sigma, math.ceil(3 * sigma))[0].clamp(0, 1) if sigma > 0.3 else image.clamp(0, 1)


def _power_law(lo: float, hi: float, rng: random.Random) -> float:
    """A radius with density ~ 1/r^3 on [lo, hi] (scale invariance in two dimensions)."""
    u = rng.random()
    return 1 / math.sqrt((1 - u) / lo**2 + u / hi**2)


def _colour(g: torch.Generator) -> torch.Tensor:
    """A random colour of moderate saturation."""
    grey = torch.rand(1, generator=g)
    return (grey + 0.4 * (torch.rand(3, generator=g) - 0.5)).clamp(0, 1)


def _shaded(a: torch.Tensor, b: torch.Tensor, x: torch.Tensor, y: torch.Tensor, rng: random.Random) -> torch.Tensor:
    """A colour that turns from `a` towards `b` along a random direction, by a random amount."""
    angle, amount = rng.uniform(0, 2 * math.pi), rng.uniform(0, 0.6)
    ramp = (x * math.cos(angle) + y * math.sin(angle))[None]
    return a[:, None, None] + amount * (b - a)[:, None, None] * ramp


def _noise(shape: tuple[int, int], feature: float, g: torch.Generator) -> torch.Tensor:
    """(1, *shape) grey noise with features about `feature` pixels across, zero mean, std 0.5."""
    n = [max(2, round(side / feature) + 1) for side in shape]
    fine = F.interpolate(torch.randn(1, 1, *n, generator=g), size=shape, mode="bicubic", align_corners=False)[0]
    return (fine - fine.mean()) / fine.std().clamp_min(1e-6) * 0.5
