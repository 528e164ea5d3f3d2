"""Augmented training crops, so that a rule trained on one photo restyles other photos too.

A rule only ever sees its training crops. Trained on one photo, it learns that photo's colours,
brightness and scale, and on another photo it does little (measured: colour judge 0.9 on unseen
photos against 0.57 on the training photo). Each crop is therefore cut at a random scale, maybe
mirrored or turned by 90 degrees, and its colours jittered (brightness, contrast, saturation, and a
rotation of the hue), which shows the rule a wider range of photos than the one it was given.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import torch
import torch.nn.functional as F

_LUMA = torch.tensor([0.299, 0.587, 0.114])


@dataclass
class Augment:
    scale: float = 0.0  # crops cover crop * s pixels of the photo, log-uniform s in [1 / (1 + scale), 1 + scale]
    flips: bool = False  # mirror, flip and transpose (the 8 symmetries of the square)
    jitter: float = 0.0  # brightness, contrast and saturation factors in [1 - jitter, 1 + jitter]
    hue: float = 0.0  # hue rotation by up to this fraction of a turn either way

    @property
    def active(self) -> bool:
        return self.scale > 0 or self.flips or self.jitter > 0 or self.hue > 0


def crop_side(crop: int, augment: Augment, rng: random.Random, limit: int) -> int:
    """How many photo pixels the next crop covers (at most `limit`, the photo's shorter side)."""
    if augment.scale <= 0:
        return crop
    s = math.exp(rng.uniform(-1, 1) * math.log1p(augment.scale))
    return max(8, min(limit, round(crop * s)))


def augment_crop(x: torch.Tensor, crop: int, augment: Augment, rng: random.Random) -> torch.Tensor:
    """(3, s, s) cut from a photo in [0, 1] -> (3, crop, crop) in [0, 1], resampled and jittered."""
    if x.shape[-1] != crop:
        x = F.interpolate(x[None], size=(crop, crop), mode="bilinear", antialias=True, align_corners=False)[0]
    if augment.flips:
        if rng.random() < 0.5:
            x = x.flip(-1)
        if rng.random() < 0.5:
            x = x.flip(-2)
        if rng.random() < 0.5:
            x = x.transpose(-1, -2)
    if augment.jitter > 0 or augment.hue > 0:
        x = jitter_colours(x, *(rng.uniform(1 - augment.jitter, 1 + augment.jitter) for _ in range(3)), rng.uniform(-augment.hue, augment.hue))
    return x.clamp(0, 1).contiguous()


def jitter_colours(x: torch.Tensor, brightness: float, contrast: float, saturation: float, hue_turns: float) -> torch.Tensor:
    """Scale brightness, contrast about the mean grey, saturation about each pixel's grey, and turn
    the hue by `hue_turns` of a circle (a rotation about the grey axis of RGB space)."""
    luma = _LUMA.to(x)
    x = x * brightness
    grey = torch.einsum("c,chw->hw", luma, x)
    x = (x - grey.mean()) * contrast + grey.mean()
    grey = torch.einsum("c,chw->hw", luma, x)[None]
    x = grey + (x - grey) * saturation
    if hue_turns:
        a = 2 * math.pi * hue_turns
        axis = torch.ones(3, dtype=x.dtype, device=x.device) / math.sqrt(3)
        k = torch.tensor([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]], dtype=x.dtype, device=x.device)
        rot = torch.eye(3, dtype=x.dtype, device=x.device) + math.sin(a) * k + (1 - math.cos(a)) * (k @ k)
        x = torch.einsum("dc,chw->dhw", rot, x)
    return x
