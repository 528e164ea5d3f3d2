"""Styles made of cells: flat patches in many hues with outlines between them (a mosaic, stained
glass, tiles). `fast`'s loss paints such a style as bands of its colours; with random regions
(RuleConfig.regions) and the nearest-patch term steered by their hues (patches.py), a rule draws
the cells, each in one hue, in about 1.1x `fast`'s time. The same recipe turns strokes into
zig-zag bands, so it is chosen by the style (`[loss] cells`: "auto"; "on" or "off" to choose).

What "looks like cells" means, at 256 px: at least 30 % of the style is flat (its colour varies by
under 0.03 over 5 x 5 px), the flat parts are colourful (mean chroma, on the opponent axes of
patches.opponent, at least 0.5) and of many hues (the chroma-weighted mean of their hue directions
under half a unit long). Measured (flat / chroma / agreement): the bundled mosaic 0.55 / 0.71 / 0.12
and a generated tile style 0.39 / 0.75 / 0.05 are cells; the strokes, hatch and rings (flat 0.05,
0.00, 0.13) are not, nor are scikit-image's brick, grass, gravel, stained tissue, colour chart (0.72 /
0.37 / 0.01), logo (0.66 / 0.34 / 0.85), retina (0.70 / 0.43 / 1.00) and photos (README, "Edit quality").
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ncaedit.config import CELLS

SIDE = 256  # the style is judged at this size, whatever its own
FLAT = 0.03  # a pixel is flat where its colour's standard deviation over 5 x 5 px is under this
MIN_FLAT, MIN_CHROMA, MAX_HUE_AGREEMENT = 0.3, 0.5, 0.5


def cell_statistics(style_rgb: np.ndarray) -> tuple[float, float, float]:
    """(H, W, 3) float in [0, 1] -> (share of flat pixels, their mean chroma, how much their hues
    agree: 1 = all one hue, 0 = spread evenly round the wheel)."""
    import torch

    from ncaedit.image import fit_long_side
    from ncaedit.patches import opponent
    from ncaedit.structure import window_mean

    x = torch.from_numpy(np.ascontiguousarray(fit_long_side(style_rgb, SIDE), dtype=np.float32)).permute(2, 0, 1)[None]
    mean = window_mean(x, 2)
    spread = (window_mean(x * x, 2) - mean**2).clamp_min(0).sum(1).sqrt()[0]
    flat = spread < FLAT
    if not flat.any():
        return 0.0, 0.0, 1.0
    hue = opponent(x[0].permute(1, 2, 0)[flat])  # (n, 2)
    chroma = hue.norm(dim=-1)
    agreement = hue.sum(0).norm() / chroma.sum().clamp_min(1e-6)  # |sum of chroma x direction| / sum of chroma
    return flat.float().mean().item(), chroma.mean().item(), agreement.item()


def looks_like_cells(style_rgb: np.ndarray) -> bool:
    flat, chroma, agreement = cell_statistics(style_rgb)
    return flat >= MIN_FLAT and chroma >= MIN_CHROMA and agreement < MAX_HUE_AGREEMENT


def with_cells(recipe, style_rgb: np.ndarray):
    """The recipe as it trains on this style: with `loss.cells` "on", or "auto" and a style that
    looks like cells and a rule with room for the regions, config.CELLS's keys are set where the
    recipe leaves them at `fast`'s values (so a preset's or the user's own values stay). Returns
    (recipe, whether cells are drawn); `recipe` is not changed."""
    choice = recipe.loss.cells
    no_room = recipe.rule.hidden_channels < 2  # the regions take two hidden channels
    if choice == "off" or (choice == "auto" and (no_room or not looks_like_cells(style_rgb))):
        return recipe, False
    parts = {}
    for section, values in CELLS.items():
        part, fast = getattr(recipe, section), type(getattr(recipe, section))()
        parts[section] = dataclasses.replace(part, **{k: v for k, v in values.items() if getattr(part, k) == getattr(fast, k)})
        parts[section].validate()
    return dataclasses.replace(recipe, **parts), True
