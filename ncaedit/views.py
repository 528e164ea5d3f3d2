"""Augmented views ("cutouts") of training crops, as a guidance model sees them.

Scoring many distorted views instead of the one image keeps the rule from fooling CLIP with
adversarial pixel patterns that only work at one position and scale. Each view is a random square
crop, warped by a random perspective, maybe mirrored, resampled to the model's input size in one
bilinear step, then lightly colour-jittered. A `Views` object is a fixed draw of these choices, so
the edited image and its source can be seen through exactly the same views (the directional loss
compares their embeddings view by view).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ncaedit.config import ViewConfig  # noqa: F401 (re-exported where it was)

_SQUARE = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])  # corners in grid_sample coordinates
_LUMA = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)


@dataclass
class Views:
    grid: torch.Tensor  # (B * n, S, S, 2) where each view pixel samples its image
    colour: torch.Tensor  # (B * n, 3) brightness, contrast, saturation factors
    per_image: int

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> (B * n, 3, S, S) in [0, 1]; view k of image b is row b * n + k."""
        x = images.repeat_interleave(self.per_image, dim=0)
        x = F.grid_sample(x, self.grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        b, c, s = (self.colour[:, i].view(-1, 1, 1, 1) for i in range(3))
        luma = _LUMA.to(x)
        x = x * b
        mean = (x * luma).sum(1, keepdim=True).mean((2, 3), keepdim=True)
        x = (x - mean) * c + mean
        grey = (x * luma).sum(1, keepdim=True)
        x = grey + (x - grey) * s
        return x.clamp(0, 1)


def sample_views(batch: int, height: int, width: int, size: int, config: ViewConfig, generator: torch.Generator | None, device=None) -> Views:
    """Draw `config.cutouts` views of `size`x`size` pixels for each of `batch` images of height x width."""
    n = batch * config.cutouts

    def uniform(*shape, lo=0.0, hi=1.0):
        return lo + (hi - lo) * torch.rand(*shape, generator=generator)

    side = uniform(n, lo=config.cut_min, hi=1.0) * min(height, width)
    half = torch.stack([side / width, side / height], dim=1)  # half the view's side in [-1, 1] units
    centre = (uniform(n, 2) * 2 - 1) * (1 - half)
    mirror = torch.where(uniform(n) < 0.5, -1.0, 1.0) if config.flip else torch.ones(n)
    offsets = _SQUARE[None] * torch.stack([half[:, 0] * mirror, half[:, 1]], dim=1)[:, None]
    corners = centre[:, None] + offsets + uniform(n, 4, 2, lo=-config.perspective, hi=config.perspective) * half[:, None]
    grid = _warp_grid(_homography(corners), size)
    colour = uniform(n, 3, lo=1 - config.jitter, hi=1 + config.jitter)
    return Views(grid.to(device), colour.to(device), config.cutouts)


def _homography(corners: torch.Tensor) -> torch.Tensor:
    """(N, 4, 2) images of _SQUARE's corners -> (N, 3, 3) projective maps from the square onto them."""
    x, y = _SQUARE[:, 0].expand(len(corners), 4), _SQUARE[:, 1].expand(len(corners), 4)
    u, v = corners[..., 0], corners[..., 1]
    one, zero = torch.ones_like(u), torch.zeros_like(u)
    rows_u = torch.stack([x, y, one, zero, zero, zero, -u * x, -u * y], dim=-1)
    rows_v = torch.stack([zero, zero, zero, x, y, one, -v * x, -v * y], dim=-1)
    a = torch.cat([rows_u, rows_v], dim=1)  # (N, 8, 8)
    h = torch.linalg.solve(a, torch.cat([u, v], dim=1))
    return torch.cat([h, torch.ones(len(h), 1)], dim=1).view(-1, 3, 3)


def _warp_grid(h: torch.Tensor, size: int) -> torch.Tensor:
    """Pixel centres of a size x size view mapped through h: (N, size, size, 2) for grid_sample."""
    t = (torch.arange(size) + 0.5) / size * 2 - 1
    gy, gx = torch.meshgrid(t, t, indexing="ij")
    points = torch.stack([gx, gy, torch.ones_like(gx)], dim=-1).view(1, -1, 3)
    mapped = points @ h.transpose(1, 2)
    return (mapped[..., :2] / mapped[..., 2:]).view(-1, size, size, 2)
