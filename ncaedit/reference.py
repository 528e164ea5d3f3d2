"""The specification of one step of a rule, written plainly, as the NCA papers and the texture-NCA
reference implementations write it: NCHW, a depthwise 3x3 convolution for perception (with `scales` > 1,
also dilated by 2, 4, ... on the state smoothed by dilated [1,2,1] filters), two 1x1 convolutions for the per-cell network, and
the firing mask.

rule.py (the training rollout, with its hand-written backward) and inference.py (the in-place
engine for applying rules) compute the same numbers, arranged for speed; tests/test_inference.py
checks both against this, and benchmarks/run.py measures them against it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ncaedit.noise import firing

_SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 8
_LAPLACIAN = torch.tensor([[1.0, 2.0, 1.0], [2.0, -12.0, 2.0], [1.0, 2.0, 1.0]]) / 16
_SMOOTH = torch.tensor([1.0, 2.0, 1.0])
_IDENTITY = torch.tensor([[0.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
# What the rule's first-layer features are: filter k of channel c is feature 4c+k.
PERCEPTION_FILTERS = torch.stack([_IDENTITY, _SOBEL_X, _SOBEL_X.T, _LAPLACIAN])  # (4, 3, 3)


class ReferenceRule(nn.Module):
    """One step of `rule` (a rule.Rule, whose weights it uses, gradients included)."""

    def __init__(self, rule):
        super().__init__()
        self.rule = rule
        self.register_buffer("filters", PERCEPTION_FILTERS.repeat(rule.config.channels, 1, 1).unsqueeze(1))

    def perceive(self, state: torch.Tensor, d: int) -> torch.Tensor:
        """The filters with their taps d apart, on the state smoothed by [1,2,1] x [1,2,1] / 16 with
        taps 1, 2, ... d/2 apart in turn, each padded by its tap distance as the state is."""
        c = state.shape[1]
        mode = "constant" if self.rule.config.padding == "zeros" else self.rule.config.padding
        smoothing = (_SMOOTH[:, None] * _SMOOTH[None, :] / 16).to(state).expand(c, 1, 3, 3)
        tap = 1
        while tap < d:
            state = F.conv2d(F.pad(state, (tap,) * 4, mode=mode), smoothing, groups=c, dilation=tap)
            tap *= 2
        return F.conv2d(F.pad(state, (d,) * 4, mode=mode), self.filters.to(state), groups=c, dilation=d)

    def forward(self, state: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """(B, C, H, W) -> the next state; `mask` (1, 1, H, W) is 1 where a cell fires (None: everywhere)."""
        perception = torch.cat([self.perceive(state, 2**k) for k in range(self.rule.config.scales)], dim=1)
        hidden = torch.relu(F.conv2d(perception, self.rule.w1.weight[:, :, None, None], self.rule.w1.bias))
        delta = F.conv2d(hidden, self.rule.w2.weight[:, :, None, None])
        if mask is not None:
            delta = delta * mask
        return torch.cat([state[:, :3], state[:, 3:] + delta], dim=1)  # the source RGB stays frozen


def reference_rollout(ref: ReferenceRule, state: torch.Tensor, steps: int, seed: int = 0, top: int = 0, left: int = 0, first_step: int = 0) -> torch.Tensor:
    """`steps` steps; the firing mask depends on the seed, the step and the absolute pixel position."""
    _, _, h, w = state.shape
    for i in range(first_step, first_step + steps):
        fires = firing(ref.rule.config.fire_rate, seed, i, top, left, h, w, device=state.device)
        state = ref(state, None if fires is None else fires.to(state.dtype)[None, None])
    return state
