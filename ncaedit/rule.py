"""The rule: a tiny network that every cell runs on its neighbourhood, and the rollout.

One step:
    perception = [identity, Sobel-x, Sobel-y, Laplacian] of every channel   (4 * C features per spacing)
    update     = W2 relu(W1 perception + b1)                                 (C - 3 values)
    state[3:] += update * mask                                               (source stays frozen)
(with random regions, state.REGIONS, their two channels stay frozen too: their rows of w2 are zero)
With `scales` > 1 the same four filters are also taken with their taps 2, 4, ... apart, on copies of
the state smoothed to match (coarse_stencils): a cell sees 2^scales - 1 cells away in one step, so a
short rollout can draw motifs much larger than its length, at every pixel (no coarse grid).
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

from ncaedit.config import PADDINGS, RuleConfig, scales_reach  # noqa: F401 (RuleConfig: re-exported where it was)
from ncaedit.noise import firing
from ncaedit.reference import PERCEPTION_FILTERS  # noqa: F401 (what w1's features mean; `stencils` computes them)
from ncaedit.state import REGIONS, WRITABLE

REGION_ROWS = slice(REGIONS.start - WRITABLE.start, REGIONS.stop - WRITABLE.start)  # w2's outputs are the writable channels


class Rule(nn.Module):
    def __init__(self, config: RuleConfig):
        super().__init__()
        config.validate()
        self.config = config
        c = config.channels
        self.w1 = nn.Linear(4 * c * config.scales, config.width)
        self.w2 = nn.Linear(config.width, c - 3, bias=False)
        nn.init.zeros_(self.w2.weight)  # a fresh rule changes nothing
        if config.regions:  # the regions' channels stay as they were made: their rows of w2 stay zero
            self.w2.weight.register_hook(without_region_rows)

    def stencil_weights(self) -> torch.Tensor:
        """The first layer re-expressed on the stencil features (see `stencils`), shape (width, 4C).

        The rule file stores w1 on the filter features (4c+k: filter k of channel c); this folds the
        filters' constants into it, and keeps gradients flowing to w1 when training."""
        parts = []
        for w in self.w1.weight.chunk(self.config.scales, dim=1):
            ident, sobel_x, sobel_y, laplacian = w.unflatten(1, (-1, 4)).unbind(2)
            parts += [ident - laplacian, sobel_x / 8, sobel_y / 8, laplacian / 16]
        return torch.cat(parts, dim=1)

    def step_cells(self, x: torch.Tensor, fires: torch.Tensor | None) -> torch.Tensor:
        """One step on a channels-last state (B, H, W, C); `fires` (H, W, bool) says which cells
        update, the same in every image of the batch (None: all of them)."""
        b, h, w, _ = x.shape
        cells = torch.arange(h * w, device=x.device) if fires is None else fires.flatten().nonzero().squeeze(1)
        rows = (torch.arange(b, device=x.device)[:, None] * (h * w) + cells).flatten()
        coarse = coarse_stencils(x, self.config.scales, self.config.padding)
        return _SparseStep.apply(pad_cells(x, self.config.padding), coarse, self.stencil_weights(), self.w1.bias, self.w2.weight, rows)

    def step(self, state: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """One step on a (B, C, H, W) state; `mask` (1, 1, H, W) from fire_mask, or None (every cell fires)."""
        out = self.step_cells(state.permute(0, 2, 3, 1), None if mask is None else mask[0, 0] > 0)
        return out.permute(0, 3, 1, 2)

    def arch(self) -> dict:
        return asdict(self.config)


def without_region_rows(grad: torch.Tensor) -> torch.Tensor:
    """w2's gradient with the rows that would write the random regions zeroed (on any device)."""
    grad = grad.clone()
    grad[REGION_ROWS] = 0
    return grad


def pad_cells(x: torch.Tensor, padding: str, width: int = 1, dims: tuple[int, ...] = (1, 2)) -> torch.Tensor:
    """(B, H, W, C) -> (B, H+2w, W+2w, C) with a border `width` cells wide (see PADDINGS), along `dims`."""
    if padding == "zeros":
        return F.pad(x, [0, 0] + [width if dim in dims else 0 for dim in (x.dim() - 2, x.dim() - 3) for _ in range(2)])
    for dim in dims:
        x = x.index_select(dim, pad_index(x.shape[dim], padding, width, x.device))
    return x


def pad_index(n: int, padding: str, width: int, device=None) -> torch.Tensor:
    """Which of n cells each of the n + 2 width padded cells copies (replicate, reflect or circular)."""
    i = torch.arange(-width, n + width, device=device)
    if padding == "replicate":
        return i.clamp(0, n - 1)
    if padding == "circular":
        return i % n
    # reflect, the edge cell not repeated; folded again where the border is wider than x
    return (n - 1 - (n - 1 - i.abs() % (2 * n - 2)).abs()) if n > 1 else i.clamp(0, 0)


def coarse_stencils(x: torch.Tensor, scales: int, padding: str) -> torch.Tensor | None:
    """The stencil features at spacings d = 2, 4, ... 2^(scales-1) of (B, H, W, C), at every cell:
    (B, H, W, 4C (scales - 1)), or None for one scale. Spacing d reads a smoothed copy of the state,
    so that its taps see areas rather than single pixels: spacing d/2's copy smoothed once more with
    taps d/2 apart (`smooth`), each on its predecessor padded as the state is. No coarse grid, so
    nothing depends on where a tile starts."""
    if scales == 1:
        return None
    return _Coarse.apply(x, scales, padding) if torch.is_grad_enabled() and x.requires_grad else coarse_forward(x, scales, padding)


def coarse_forward(x: torch.Tensor, scales: int, padding: str, dims: tuple[int, ...] = (1, 2), out: torch.Tensor | None = None) -> torch.Tensor:
    """coarse_stencils without autograd, padded along `dims`. With dims (2,) the rows are not padded:
    x holds 2^scales - 1 rows more on each side than the result, each blur loses the rows it cannot
    compute, and the stencils read only the rows they need (inference.band_coarse). Written into
    `out` when given."""
    b, h, w, c = x.shape
    rows = h if 1 in dims else h - 2 * scales_reach(scales)
    out = x.new_empty(b, rows, w, 4 * c * (scales - 1)) if out is None else out
    level = x
    for k in range(1, scales):
        d = 2**k
        level = smooth(pad_cells(level, padding, d // 2, dims), d // 2)
        skip = max(0, (level.shape[1] - rows) // 2 - d)  # rows the stencils at spacing d do not read (unpadded rows only)
        read = level[:, skip : level.shape[1] - skip]
        stencils(pad_cells(read, padding, d, dims), d, out=out[..., 4 * c * (k - 1) : 4 * c * k])
    return out


def smooth(p: torch.Tensor, d: int) -> torch.Tensor:
    """Padded (B, H+2d, W+2d, C) -> (B, H, W, C): the [1,2,1] x [1,2,1] / 16 blur with taps d apart."""
    return _smoothing(_smoothing(p, 1, d), 2, d).div_(16)


def _smoothing(x: torch.Tensor, dim: int, d: int, out: torch.Tensor | None = None) -> torch.Tensor:
    """y = x[:-2d] + 2 x[d:-d] + x[2d:] along `dim` (2d shorter there): [1,2,1] with taps d apart."""
    n = x.shape[dim] - 2 * d
    return torch.add(x.narrow(dim, 0, n), x.narrow(dim, 2 * d, n), out=out).add_(x.narrow(dim, d, n), alpha=2)


def stencils(p: torch.Tensor, d: int = 1, out: torch.Tensor | None = None) -> torch.Tensor:
    """Padded (B, H+2d, W+2d, C) -> (B, H, W, 4C): [x, Dx V x, Dy H x, H V x] with V, H the vertical and
    horizontal [1,2,1] smoothings and Dx, Dy the [-1,0,1] differences, taps d apart; `stencil_weights`
    matches it. Written into `out` when given (a view, such as a slice of a wider feature matrix)."""
    b, h, w, c = p.shape[0], p.shape[1] - 2 * d, p.shape[2] - 2 * d, p.shape[3]
    out = p.new_empty(b, h, w, 4 * c) if out is None else out
    f = out.unflatten(3, (4, c))
    v, hz = _smoothing(p, 1, d), _smoothing(p, 2, d)
    f[..., 0, :] = p[:, d:-d, d:-d]
    torch.sub(v[:, :, 2 * d :], v[:, :, : -2 * d], out=f[..., 1, :])
    torch.sub(hz[:, 2 * d :], hz[:, : -2 * d], out=f[..., 2, :])
    _smoothing(v, 2, d, out=f[..., 3, :])
    return out


def stencils_adjoint(grad: torch.Tensor, d: int = 1) -> torch.Tensor:
    """The transpose of `stencils`: gradient of the features (B, H, W, 4C) -> of the padded state (B, H+2d, W+2d, C)."""
    b, h, w, _ = grad.shape
    g_x, g_sx, g_sy, g_hv = grad.unflatten(3, (4, -1)).unbind(3)
    c = g_x.shape[-1]
    g_v = grad.new_zeros(b, h, w + 2 * d, c)  # through v = V p
    g_v[:, :, 2 * d :] += g_sx + g_hv
    g_v[:, :, : -2 * d] += g_hv - g_sx
    g_v[:, :, d:-d] += 2 * g_hv
    g_h = grad.new_zeros(b, h + 2 * d, w, c)  # through h = H p
    g_h[:, 2 * d :] += g_sy
    g_h[:, : -2 * d] -= g_sy
    g_p = _smoothing_adjoint(g_v, 1, d)
    g_p += _smoothing_adjoint(g_h, 2, d)
    g_p[:, d:-d, d:-d] += g_x
    return g_p


def _smoothing_adjoint(grad: torch.Tensor, dim: int, d: int) -> torch.Tensor:
    """The transpose of `_smoothing`: grad of y -> grad of x (2d longer along `dim`)."""
    shape = list(grad.shape)
    shape[dim] += 2 * d
    out = grad.new_zeros(shape)
    n = grad.shape[dim]
    out.narrow(dim, 0, n).add_(grad)
    out.narrow(dim, d, n).add_(grad, alpha=2)
    out.narrow(dim, 2 * d, n).add_(grad)
    return out


def pad_cells_adjoint(grad: torch.Tensor, padding: str, width: int) -> torch.Tensor:
    """The transpose of `pad_cells`: gradient of the padded (B, H+2w, W+2w, C) -> of the state (B, H, W, C)."""
    if padding == "zeros":
        return grad[:, width:-width, width:-width]
    for dim in (2, 1):
        n = grad.shape[dim] - 2 * width
        index = pad_index(n, padding, width, grad.device)
        shape = list(grad.shape)
        shape[dim] = n
        grad = grad.new_zeros(shape).index_add_(dim, index, grad)
    return grad


class _Coarse(torch.autograd.Function):
    """coarse_stencils with its backward written out (autograd's own, through the many shifted
    slices, took twice as long as the forward; see _SparseStep)."""

    @staticmethod
    def forward(ctx, x, scales, padding):
        ctx.scales, ctx.padding = scales, padding
        return coarse_forward(x, scales, padding)

    @staticmethod
    def backward(ctx, grad):
        c = grad.shape[-1] // (4 * (ctx.scales - 1))
        g_level = None
        for k in range(ctx.scales - 1, 0, -1):  # the last spacing first: each one's level feeds the next
            d = 2**k
            g = pad_cells_adjoint(stencils_adjoint(grad[..., 4 * c * (k - 1) : 4 * c * k], d), ctx.padding, d)
            if g_level is not None:
                g += g_level
            g_level = pad_cells_adjoint(_smooth_adjoint(g, d // 2), ctx.padding, d // 2)
        return g_level, None, None


def _smooth_adjoint(grad: torch.Tensor, d: int) -> torch.Tensor:
    """The transpose of `smooth`: gradient of (B, H, W, C) -> of the padded (B, H+2d, W+2d, C)."""
    return _smoothing_adjoint(_smoothing_adjoint(grad / 16, 2, d), 1, d)


class _SparseStep(torch.autograd.Function):
    """One step from the padded state (B, H+2, W+2, C) to the new state (B, H, W, C), where only the
    cells `rows` (of the B*H*W cells in order) go through the network. The backward is written out:
    the same products on the same rows, and no per-slice gradient buffers, which is what autograd's
    own backward of `stencils` spends most of its time on (training measured 1.4-1.7x faster)."""

    @staticmethod
    def forward(ctx, padded, coarse, w1, b1, w2, rows):
        c = padded.shape[-1]
        picked = stencils(padded).view(-1, 4 * c).index_select(0, rows)
        hidden = torch.addmm(b1, picked, w1[:, : 4 * c].t())
        if coarse is not None:  # its own product, not a concatenated feature matrix (a copy of the widest array)
            coarse = coarse.reshape(-1, coarse.shape[-1]).index_select(0, rows)
            hidden.addmm_(coarse, w1[:, 4 * c :].t())
        hidden.relu_()
        out = padded[:, 1:-1, 1:-1].clone(memory_format=torch.contiguous_format)
        out.view(-1, c)[:, 3:].index_add_(0, rows, hidden @ w2.t())
        ctx.save_for_backward(picked, coarse, hidden, w1, w2, rows)
        return out

    @staticmethod
    def backward(ctx, grad):
        picked, coarse, hidden, w1, w2, rows = ctx.saved_tensors
        b, h, w, c = grad.shape
        grad = grad.contiguous()
        g_delta = grad.view(-1, c)[:, 3:].index_select(0, rows)
        g_hidden = (g_delta @ w2).mul_(hidden > 0)
        g_features = grad.new_zeros(b * h * w, 4 * c).index_copy_(0, rows, g_hidden @ w1[:, : 4 * c])
        g_padded = stencils_adjoint(g_features.view(b, h, w, 4 * c))
        g_padded[:, 1:-1, 1:-1] += grad
        g_w1, g_coarse = g_hidden.t() @ picked, None
        if coarse is not None:
            g_w1 = torch.cat([g_w1, g_hidden.t() @ coarse], dim=1)
            g_coarse = grad.new_zeros(b * h * w, coarse.shape[1]).index_copy_(0, rows, g_hidden @ w1[:, 4 * c :]).view(b, h, w, -1)
        return g_padded, g_coarse, g_w1, g_hidden.sum(0), g_delta.t() @ hidden, None


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
