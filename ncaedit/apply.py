"""Applying a trained rule to a photo: make the state, run the rule, read back the working RGB."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from ncaedit.errors import NcaError
from ncaedit.image import Photo
from ncaedit.rule import Rule, rollout
from ncaedit.state import make_state, working_rgb


def check_device(name: str) -> str:
    """`name` if torch knows it and this machine has it, else a one-line NcaError."""
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise NcaError(f"unknown device {name!r}; use cpu, cuda, cuda:N or mps") from None
    available = {
        "cpu": True,
        "cuda": torch.cuda.is_available() and (device.index or 0) < torch.cuda.device_count(),
        "mps": torch.backends.mps.is_available(),
    }
    if not available.get(device.type, False):
        raise NcaError(f"device {name!r} is not available on this machine; use --device cpu")
    return name


@torch.no_grad()
def apply_rule(
    rule: Rule,
    photo: Photo,
    steps: int,
    seed: int = 0,
    device: str = "cpu",
    on_steps: Callable[[int], None] | None = None,
) -> Photo:
    """The edited photo: same size, alpha and bit depth as the input. `on_steps(n)` reports progress."""
    rule = rule.to(check_device(device))
    rgb = torch.from_numpy(photo.rgb).permute(2, 0, 1)[None].to(device)
    state = make_state(rgb, rule.config.hidden_channels, seed=seed)
    chunk = 8
    for first in range(0, steps, chunk):
        n = min(chunk, steps - first)
        state = rollout(rule, state, n, seed=seed, first_step=first)
        if on_steps:
            on_steps(n)
    edited = working_rgb(state)[0].permute(1, 2, 0).cpu().numpy().astype(np.float32)
    return Photo(edited, photo.alpha, photo.bit_depth)
