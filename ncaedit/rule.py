"""The rule: a tiny network that every cell runs on its 3x3 neighbourhood, and the rollout.

One step:
    perception = [identity, Sobel-x, Sobel-y, Laplacian] of every channel   (4 * C features)
    update     = W2 relu(W1 perception + b1)                                 (C - 3 values)
    state[3:] += update * mask                                               (source stays frozen)
The mask fires each cell with probability `fire_rate`, drawn per absolute pixel position (noise.py),
so cells update asynchronously without any global clock, and tiles match whole images.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ncaedit.noise import position_uniform
from ncaedit.state import WRITABLE

PADDINGS = ("replicate", "reflect", "circular", "zeros")

_SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 8
_LAPLACIAN = torch.tensor([[1.0, 2.0, 1.0], [2.0, -12.0, 2.0], [1.0, 2.0, 1.0]]) / 16
_IDENTITY = torch.tensor([[0.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
PERCEPTION_FILTERS = torch.stack([_IDENTITY, _SOBEL_X, _SOBEL_X.T, _LAPLACIAN])  # (4, 3, 3)


@dataclass
class RuleConfig:
    hidden_channels: int = 12
    width: int = 96  # hidden units of the per-cell MLP
    fire_rate: float = 0.5  # probability that a cell updates in a step
    padding: str = "replicate"  # photos have edges: replicate, not circular (no left/right bleed)

    @property
    def channels(self) -> int:
        return 6 + self.hidden_channels

    def validate(self) -> None:
        from ncaedit.errors import NcaError

        if self.hidden_channels < 0 or self.width < 1:
            raise NcaError("rule: hidden_channels must be >= 0 and width >= 1")
        if not 0 < self.fire_rate <= 1:
            raise NcaError("rule: fire_rate must be in (0, 1]")
        if self.padding not in PADDINGS:
            raise NcaError(f"rule: padding must be one of {', '.join(PADDINGS)}")


class Rule(nn.Module):
    def __init__(self, config: RuleConfig):
        super().__init__()
        config.validate()
        self.config = config
        c = config.channels
        self.register_buffer("filters", PERCEPTION_FILTERS.repeat(c, 1, 1).unsqueeze(1), persistent=False)
        self.w1 = nn.Linear(4 * c, config.width)
        self.w2 = nn.Linear(config.width, c - 3, bias=False)
        nn.init.zeros_(self.w2.weight)  # a fresh rule changes nothing

    def perceive(self, state: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, 4C, H, W); feature 4c+k is filter k applied to channel c."""
        mode = "constant" if self.config.padding == "zeros" else self.config.padding
        padded = F.pad(state, (1, 1, 1, 1), mode=mode)
        return F.conv2d(padded, self.filters, groups=state.shape[1])

    def update(self, state: torch.Tensor) -> torch.Tensor:
        """The proposed change to channels 3.. for every cell, shape (B, C-3, H, W)."""
        features = self.perceive(state).permute(0, 2, 3, 1)  # cells as rows: two plain matrix products
        hidden = torch.relu(self.w1(features))
        return self.w2(hidden).permute(0, 3, 1, 2)

    def step(self, state: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        delta = self.update(state)
        if mask is not None:
            delta = delta * mask
        return torch.cat([state[:, :3], state[:, WRITABLE] + delta], dim=1)

    def arch(self) -> dict:
        return asdict(self.config)


def fire_mask(rule: Rule, seed: int, step: int, top: int, left: int, height: int, width: int, device=None):
    """The (1, 1, H, W) update mask of one step, or None when every cell fires."""
    rate = rule.config.fire_rate
    if rate >= 1:
        return None
    u = position_uniform(seed, step, top, left, height, width, device=device)
    return (u < rate).to(rule.w1.weight.dtype)[None, None]


def rollout(
    rule: Rule,
    state: torch.Tensor,
    steps: int,
    seed: int = 0,
    top: int = 0,
    left: int = 0,
    first_step: int = 0,
    checkpoint_every: int = 0,
) -> torch.Tensor:
    """Run `steps` steps. `top`/`left` say where the state sits in the full image (for the mask);
    `first_step` numbers the steps so a rollout can continue another. With `checkpoint_every` > 0,
    activations are recomputed in the backward pass, `checkpoint_every` steps a segment."""
    _, _, h, w = state.shape

    def run(x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        for i in range(start, stop):
            x = rule.step(x, fire_mask(rule, seed, i, top, left, h, w, device=x.device))
        return x

    start, stop = first_step, first_step + steps
    if checkpoint_every <= 0 or not torch.is_grad_enabled():
        return run(state, start, stop)
    from torch.utils.checkpoint import checkpoint

    for s in range(start, stop, checkpoint_every):
        state = checkpoint(run, state, s, min(s + checkpoint_every, stop), use_reentrant=False)
    return state
