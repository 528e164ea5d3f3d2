"""The rule: a tiny network that every cell runs on its 3x3 neighbourhood, and the rollout.

One step:
    perception = [identity, Sobel-x, Sobel-y, Laplacian] of every channel   (4 * C features)
    update     = W2 relu(W1 perception + b1)                                 (C - 3 values)
    state[3:] += update * mask                                               (source stays frozen)
The mask fires each cell with probability `fire_rate`, drawn per absolute pixel position (noise.py),
so cells update asynchronously without any global clock, and tiles match whole images.

How it is computed (the arithmetic above, arranged for speed): cells are rows (channels-last), and
the four filters are built from separable stencils, [1,2,1] smoothing and [-1,0,1] differences:
Sobel-x = Dx(V x)/8, Sobel-y = Dy(H x)/8, Laplacian = (H V x - 16 x)/16. The constants (1/8, 1/16,
-16 x) are folded into the first layer's weights, so perception is a few shifted adds and the
network is two matrix products over a (cells x features) matrix of the cells that fire. Under
autograd (training) `_SparseStep` has a hand-written backward; without autograd, inference.py runs the
same arithmetic in place.
"""

from __future__ import annotations

from dataclasses import asdict

import torch
import torch.nn.functional as F
from torch import nn

from ncaedit.config import PADDINGS, RuleConfig  # noqa: F401 (RuleConfig: re-exported where it was)
from ncaedit.noise import firing
from ncaedit.reference import PERCEPTION_FILTERS  # noqa: F401 (what w1's features mean; `stencils` computes them)


class Rule(nn.Module):
    def __init__(self, config: RuleConfig):
        super().__init__()
        config.validate()
        self.config = config
        c = config.channels
        self.w1 = nn.Linear(4 * c, config.width)
        self.w2 = nn.Linear(config.width, c - 3, bias=False)
        nn.init.zeros_(self.w2.weight)  # a fresh rule changes nothing

    def stencil_weights(self) -> torch.Tensor:
        """The first layer re-expressed on the stencil features (see `stencils`), shape (width, 4C).

        The rule file stores w1 on the filter features (4c+k: filter k of channel c); this folds the
        filters' constants into it, and keeps gradients flowing to w1 when training."""
        ident, sobel_x, sobel_y, laplacian = self.w1.weight.unflatten(1, (-1, 4)).unbind(2)
        return torch.cat([ident - laplacian, sobel_x / 8, sobel_y / 8, laplacian / 16], dim=1)

    def step_cells(self, x: torch.Tensor, fires: torch.Tensor | None) -> torch.Tensor:
        """One step on a channels-last state (B, H, W, C); `fires` (H, W, bool) says which cells
        update, the same in every image of the batch (None: all of them)."""
        b, h, w, _ = x.shape
        cells = torch.arange(h * w, device=x.device) if fires is None else fires.flatten().nonzero().squeeze(1)
        rows = (torch.arange(b, device=x.device)[:, None] * (h * w) + cells).flatten()
        return _SparseStep.apply(pad_cells(x, self.config.padding), self.stencil_weights(), self.w1.bias, self.w2.weight, rows)

    def step(self, state: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """One step on a (B, C, H, W) state; `mask` (1, 1, H, W) from fire_mask, or None (every cell fires)."""
        out = self.step_cells(state.permute(0, 2, 3, 1), None if mask is None else mask[0, 0] > 0)
        return out.permute(0, 3, 1, 2)

    def arch(self) -> dict:
        return asdict(self.config)


def pad_cells(x: torch.Tensor, padding: str) -> torch.Tensor:
    """(B, H, W, C) -> (B, H+2, W+2, C) with a one-cell border (see PADDINGS)."""
    if padding == "zeros":
        return F.pad(x, (0, 0, 1, 1, 1, 1))
    for dim in (1, 2):
        n = x.shape[dim]
        inner = list(range(n))
        edge = {"replicate": (0, n - 1), "reflect": (1, n - 2), "circular": (n - 1, 0)}[padding]
        x = x.index_select(dim, torch.tensor([edge[0], *inner, edge[1]], device=x.device))
    return x


def stencils(p: torch.Tensor) -> torch.Tensor:
    """Padded (B, H+2, W+2, C) -> (B, H, W, 4C): [x, Dx V x, Dy H x, H V x] with V, H the vertical and
    horizontal [1,2,1] smoothings and Dx, Dy the [-1,0,1] differences; `stencil_weights` matches it."""
    v = p[:, :-2] + 2 * p[:, 1:-1] + p[:, 2:]
    h = p[:, :, :-2] + 2 * p[:, :, 1:-1] + p[:, :, 2:]
    return torch.cat(
        [p[:, 1:-1, 1:-1], v[:, :, 2:] - v[:, :, :-2], h[:, 2:] - h[:, :-2], v[:, :, :-2] + 2 * v[:, :, 1:-1] + v[:, :, 2:]], dim=-1
    )


def stencils_adjoint(grad: torch.Tensor) -> torch.Tensor:
    """The transpose of `stencils`: gradient of the features (B, H, W, 4C) -> of the padded state (B, H+2, W+2, C)."""
    b, h, w, _ = grad.shape
    g_x, g_sx, g_sy, g_hv = grad.unflatten(3, (4, -1)).unbind(3)
    c = g_x.shape[-1]
    g_v = grad.new_zeros(b, h, w + 2, c)  # through v = V p
    g_v[:, :, 2:] += g_sx + g_hv
    g_v[:, :, :-2] += g_hv - g_sx
    g_v[:, :, 1:-1] += 2 * g_hv
    g_h = grad.new_zeros(b, h + 2, w, c)  # through h = H p
    g_h[:, 2:] += g_sy
    g_h[:, :-2] -= g_sy
    g_p = grad.new_zeros(b, h + 2, w + 2, c)
    g_p[:, :-2] += g_v
    g_p[:, 1:-1] += 2 * g_v
    g_p[:, 2:] += g_v
    g_p[:, :, :-2] += g_h
    g_p[:, :, 1:-1] += 2 * g_h
    g_p[:, :, 2:] += g_h
    g_p[:, 1:-1, 1:-1] += g_x
    return g_p


class _SparseStep(torch.autograd.Function):
    """One step from the padded state (B, H+2, W+2, C) to the new state (B, H, W, C), where only the
    cells `rows` (of the B*H*W cells in order) go through the network. The backward is written out:
    the same products on the same rows, and no per-slice gradient buffers, which is what autograd's
    own backward of `stencils` spends most of its time on (training measured 1.4-1.7x faster)."""

    @staticmethod
    def forward(ctx, padded, w1, b1, w2, rows):
        c = padded.shape[-1]
        picked = stencils(padded).reshape(-1, 4 * c).index_select(0, rows)
        hidden = torch.addmm(b1, picked, w1.t()).relu_()
        out = padded[:, 1:-1, 1:-1].clone(memory_format=torch.contiguous_format)
        out.view(-1, c)[:, 3:].index_add_(0, rows, hidden @ w2.t())
        ctx.save_for_backward(picked, hidden, w1, w2, rows)
        return out

    @staticmethod
    def backward(ctx, grad):
        picked, hidden, w1, w2, rows = ctx.saved_tensors
        b, h, w, c = grad.shape
        grad = grad.contiguous()
        g_delta = grad.view(-1, c)[:, 3:].index_select(0, rows)
        g_hidden = (g_delta @ w2).mul_(hidden > 0)
        g_features = grad.new_zeros(b * h * w, 4 * c).index_copy_(0, rows, g_hidden @ w1)
        g_padded = stencils_adjoint(g_features.view(b, h, w, 4 * c))
        g_padded[:, 1:-1, 1:-1] += grad
        return g_padded, g_hidden.t() @ picked, g_hidden.sum(0), g_delta.t() @ hidden, None


def fire_mask(rule: Rule, seed: int, step: int, top: int, left: int, height: int, width: int, device=None):
    """The (1, 1, H, W) update mask of one step, or None when every cell fires."""
    fires = firing(rule.config.fire_rate, seed, step, top, left, height, width, device=device)
    return None if fires is None else fires.to(rule.w1.weight.dtype)[None, None]


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
    """The training rollout: `steps` steps on a (B, C, H, W) state, differentiable. `top`/`left` say
    where the state sits in the full image (for the mask); `first_step` numbers the steps so a
    rollout can continue another. With `checkpoint_every` > 0, activations are recomputed in the
    backward pass, `checkpoint_every` steps a segment. Applying a rule, without gradients, is
    inference.run_inplace: the same arithmetic in place, several times faster."""
    _, _, h, w = state.shape

    def run(x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        for i in range(start, stop):
            x = rule.step_cells(x, firing(rule.config.fire_rate, seed, i, top, left, h, w, device=x.device))
        return x

    x = state.permute(0, 2, 3, 1)  # cells as rows
    start, stop = first_step, first_step + steps
    if checkpoint_every <= 0:
        return run(x, start, stop).permute(0, 3, 1, 2)
    from torch.utils.checkpoint import checkpoint

    for s in range(start, stop, checkpoint_every):
        x = checkpoint(run, x, s, min(s + checkpoint_every, stop), use_reentrant=False)
    return x.permute(0, 3, 1, 2)
