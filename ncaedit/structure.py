"""The structure term: how much of the result's local texture the photo's own structure does not explain.

In each small window the result's colours are fitted by a linear function of the photo's colours (a
ridge regression, as in the guided filter and the matting Laplacian's colour-line model). What the fit
explains, the photo's edges made stronger, weaker or recoloured, is free; what it leaves unexplained,
texture where the photo is flat or across its edges, is penalised. So strokes that follow the photo's
edges cost little and speckle over its flat parts costs much, where a total variation of the change
from the photo charged both alike (README, "Edit quality").

Each crop's mean unexplained deviation d is charged as a power of it (`[train] structure_power`),
so the price of more texture grows with how much a crop already has: a style that keeps to the
photo's edges (strokes) is charged little at the margin and draws more, one that lays its texture
over everything (fine hatching) is held back hard, and one weight keeps about as much of the photo's
layout under either (README, "Edit quality": charged in proportion, the strokes were held back and
the hatch covered the photo).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ncaedit.state import SOURCE, WORKING

RADIUS = 2  # windows of 5 x 5 cells (7 x 7 kept more layout, less texture: README, "Edit quality")
RIDGE = 1e-3  # in the state's [-1, 1] units: windows flatter than this (std ~0.03) explain little of the result
# the standard deviation charged as sqrt(v + FLOOR) - sqrt(FLOOR): faint residuals cost about quadratically,
# not at the square root's infinite slope at zero (with more generated scenes: README, "Seeds pooled")
FLOOR = 1e-3
REFERENCE = 0.2  # the deviation at which the weight is the marginal price: about a crop's under the rings at weight 1
_PAIRS = ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2))  # the photo's colour covariances, upper triangle


def window_mean(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean over each (2 radius + 1)^2 window, separably; at the borders over the cells inside."""
    k = 2 * radius + 1
    x = F.avg_pool2d(x, (k, 1), stride=1, padding=(radius, 0), count_include_pad=False)
    return F.avg_pool2d(x, (1, k), stride=1, padding=(0, radius), count_include_pad=False)


def unexplained_variance(photo: torch.Tensor, result: torch.Tensor, radius: int, ridge: float) -> torch.Tensor:
    """(n, c, h, w): per window around each cell, the variance of each result channel that a linear
    function of the photo's three colours (plus a constant) leaves unexplained. photo: (n, 3, h, w)."""
    products = [photo, result, *(photo[:, i : i + 1] * photo[:, j : j + 1] for i, j in _PAIRS), *(photo[:, i : i + 1] * result for i in range(3)), result * result]
    m = window_mean(torch.cat(products, 1), radius)
    c = result.shape[1]
    mp, mr = m[:, 0:3], m[:, 3 : 3 + c]
    at = 3 + c
    s = [m[:, at + k : at + k + 1] - mp[:, i : i + 1] * mp[:, j : j + 1] for k, (i, j) in enumerate(_PAIRS)]
    a, b, d, e, f, g = s[0] + ridge, s[1], s[2], s[3] + ridge, s[4], s[5] + ridge  # [[a b d] [b e f] [d f g]]
    # the symmetric 3 x 3 inverse in closed form (adjugate / determinant): cheaper than a batched solve
    A, B, D, E, G, H = e * g - f * f, d * f - b * g, b * f - d * e, a * g - d * d, b * d - a * f, a * e - b * b
    det = a * A + b * B + d * D
    at += 6
    x, y, z = (m[:, at + i * c : at + (i + 1) * c] - mp[:, i : i + 1] * mr for i in range(3))  # cov(photo_i, result)
    explained = (x * (A * x + B * y + D * z) + y * (B * x + E * y + G * z) + z * (D * x + G * y + H * z)) / det
    return (m[:, at + 3 * c :] - mr * mr - explained).clamp_min(0)


def unexplained_deviation(state: torch.Tensor) -> torch.Tensor:
    """(n,): for each crop, the mean over cells and colours of the working RGB's unexplained local
    standard deviation (floored, see FLOOR), with the source RGB (the levelled photo) as the guide:
    zero for the photo itself up to the ridge."""
    v = unexplained_variance(state[:, SOURCE], state[:, WORKING], RADIUS, RIDGE)
    return ((v + FLOOR).sqrt() - FLOOR**0.5).mean((1, 2, 3))


def structure_penalty(state: torch.Tensor, power: float) -> torch.Tensor:
    """The structure term: each crop's unexplained deviation d charged as REFERENCE (d / REFERENCE)^power
    / power, averaged over the crops (each crop on its own, so a batch split into parts scores as the
    whole batch). Its slope, (d / REFERENCE)^(power - 1), is what the structure weight is multiplied by."""
    d = unexplained_deviation(state) / REFERENCE
    return d.pow(power).mean() * (REFERENCE / power)
