"""The rollout without autograd: Rule.step_cells' arithmetic (specified in reference.py), in place and in cache-sized pieces.

Applying a rule is many steps over a large image; nearly all the time goes into the two matrix
products per cell. This arranges the work so that a CPU runs them near its matrix-product speed
(benchmarks/run.py measures how near):
- the state lives channels-last in two padded buffers (read one, write the other, swap), so a step
  allocates nothing and only the one-cell border is refreshed instead of re-padding the image;
- a step goes through the image in bands of rows small enough (BAND_CELLS) that the features and
  hidden activations of a band stay in the CPU cache from the stencils to the second product;
- bands are shared among worker threads that each run single-threaded torch ops: one wait per step
  instead of one per small op, which matters most on a busy machine;
- cells that don't fire in a step are left out of the products (with fire_rate 0.5, half the work);
- the second layer's output is padded to a multiple of 16 columns, which BLAS handles much faster
  than 15.
- coarse perception (scales > 1) is computed for a few bands at a time (COARSE_CELLS), from their
  rows and the rows they reach, so it too stays in cache.
On a GPU the image is one band (BAND_CELLS_GPU) and every cell is computed (no gather).
"""

from __future__ import annotations

import torch

from ncaedit.config import scales_reach
from ncaedit.device import one_thread_workers
from ncaedit.noise import firing
from ncaedit.rule import coarse_forward

BAND_CELLS = 4096  # cells per band on a CPU: ~2.7 MB of features and activations at width 96, about an L2 cache (best of 1k-16k measured)
BAND_CELLS_GPU = 1 << 22
COARSE_CELLS = 1 << 14  # cells of bands whose coarse perception is computed together: fewer rows computed twice around them, still in cache (best of 4k-64k measured)


def refresh_border(p: torch.Tensor, padding: str) -> None:
    """Rewrite the one-cell border of padded (B, H+2, W+2, C) buffers from their interior, as
    rule.pad_cells pads: rows first, then columns (which sets the corners)."""
    if padding == "zeros":
        return  # the buffers start zeroed and the border is never written
    first, last = {"replicate": (1, -2), "reflect": (2, -3), "circular": (-2, 1)}[padding]
    for dim in (1, 2):
        p.select(dim, 0).copy_(p.select(dim, first))
        p.select(dim, -1).copy_(p.select(dim, last))


class _Band:
    """Scratch buffers for one band of `rows` x `width` cells, and the computation of one band."""

    def __init__(self, rows: int, width: int, channels: int, scales: int, hidden: int, out_cols: int, like: torch.Tensor):
        n = rows * width
        self.v = like.new_empty(rows, width + 2, channels)
        self.h = like.new_empty(rows + 2, width, channels)
        self.features = like.new_empty(rows, width, 4 * scales, channels)
        self.picked = like.new_empty(n, 4 * scales * channels)
        self.hidden = like.new_empty(n, hidden)
        self.delta = like.new_empty(n, out_cols)
        self.scattered = like.new_empty(n, out_cols)

    def run(self, src, dst, weights, image: int, top: int, rows: int, fires: torch.Tensor | None, skip_idle: bool, coarse: torch.Tensor | None) -> None:
        """Rows top..top+rows of `image` from `src` into `dst`; `fires` (rows, W) bool or None (all);
        `coarse` these rows' coarse_stencils (rows, W, 4C (scales - 1)) or None (one scale)."""
        w1, b1, w2 = weights
        p = src[image, top : top + rows + 2]  # the band with its one-row halo above and below
        width, channels = p.shape[1] - 2, p.shape[2]
        n = rows * width
        v, h, f = self.v[:rows], self.h[: rows + 2], self.features[:rows]
        # rule.stencils, written into the band's feature matrix
        torch.add(p[:-2], p[2:], out=v).add_(p[1:-1], alpha=2)
        torch.add(p[:, :-2], p[:, 2:], out=h).add_(p[:, 1:-1], alpha=2)
        f[:, :, 0] = p[1:-1, 1:-1]
        torch.sub(v[:, 2:], v[:, :-2], out=f[:, :, 1])
        torch.sub(h[2:], h[:-2], out=f[:, :, 2])
        torch.add(v[:, :-2], v[:, 2:], out=f[:, :, 3]).add_(v[:, 1:-1], alpha=2)
        if coarse is not None:
            f[:, :, 4:] = coarse.view(rows, width, -1, channels)
        features = f.view(n, -1)

        old = p[1:-1, 1:-1, 3:]
        new = dst[image, top + 1 : top + rows + 1, 1:-1, 3:]
        writable = channels - 3
        if fires is not None and skip_idle:
            idx = fires.view(-1).nonzero().squeeze(1)
            k = idx.numel()
            if k == 0:
                new.copy_(old)
                return
            torch.index_select(features, 0, idx, out=self.picked[:k])
            features = self.picked[:k]
        hidden, delta = self.hidden[: features.shape[0]], self.delta[: features.shape[0]]
        torch.addmm(b1, features, w1, out=hidden).relu_()
        torch.mm(hidden, w2, out=delta)
        if fires is None:
            torch.add(old, delta.view(rows, width, -1)[..., :writable], out=new)
        elif not skip_idle:
            torch.addcmul(old, delta.view(rows, width, -1)[..., :writable], fires[..., None].to(delta.dtype), out=new)
        else:
            full = self.scattered[:n].zero_().index_copy_(0, idx, delta)
            torch.add(old, full.view(rows, width, -1)[..., :writable], out=new)


def band_coarse(x: torch.Tensor, top: int, rows: int, scales: int, padding: str, out: torch.Tensor) -> None:
    """rule.coarse_stencils of rows top..top+rows of one state x (H, W, C), into `out` (rows, W,
    4C (scales - 1)), from those rows and the 2^scales - 1 around them. Away from the top and bottom
    edges (and always with circular padding, whose rows wrap) every level is computed only on the rows
    that the next one reads, so only columns are padded; near those edges, padded as the state is."""
    height, reach = x.shape[0], scales_reach(scales)
    if padding != "circular" and not reach <= top <= height - rows - reach:
        lo = max(0, top - reach)
        out.copy_(coarse_forward(x[lo : min(height, top + rows + reach)][None], scales, padding)[0, top - lo : top - lo + rows])
        return
    x = x.index_select(0, torch.arange(top - reach, top + rows + reach, device=x.device) % height)  # rows top-reach..
    coarse_forward(x[None], scales, padding, dims=(2,), out=out[None])


def run_inplace(
    rule, state: torch.Tensor, steps: int, seed: int = 0, top: int = 0, left: int = 0, first_step: int = 0,
    skip_idle: bool | None = None, threads: int | None = None, fire_fn=None,
) -> torch.Tensor:
    """rule.rollout without autograd (the way to apply a rule; reference.py specifies the step). Returns the (B, C, H, W) result as a view of a channels-last
    buffer. `skip_idle` leaves non-firing cells out of the products (default: on a CPU). `threads`
    worker threads share the bands (default: torch.get_num_threads()); with 1, torch's own intra-op
    threads split each op instead. Workers set torch's thread count, which is process-wide, and it is
    restored afterwards: a caller running several rollouts at once from its own threads passes 1.
    `fire_fn(step, row, rows)`, when given, says which cells of rows row..row+rows fire instead of the
    position hash (bool (rows, W); a video's cells keep the numbers of where they were born)."""
    b, c, height, width = state.shape
    cfg = rule.config
    on_cpu = state.device.type == "cpu"
    skip_idle = on_cpu if skip_idle is None else skip_idle
    with torch.no_grad():
        w1 = rule.stencil_weights().t().to(state).contiguous()
        b1 = rule.w1.bias.to(state)
        out_cols = -(-(c - 3) // 16) * 16
        w2 = state.new_zeros(cfg.width, out_cols)
        w2[:, : c - 3] = rule.w2.weight.t()
    weights = (w1, b1, w2)

    src = state.new_zeros(b, height + 2, width + 2, c)
    src[:, 1:-1, 1:-1] = state.permute(0, 2, 3, 1)
    refresh_border(src, cfg.padding)
    dst = src.clone()  # the source channels are copied once here and never written again

    rows = max(1, min(height, (BAND_CELLS if on_cpu else BAND_CELLS_GPU) // width))
    # work is handed out in chunks of bands; with coarse perception a chunk's coarse features are
    # computed together (band_coarse) before its bands run
    chunk = rows * (max(1, COARSE_CELLS // (rows * width)) if cfg.scales > 1 else 1)
    chunks = [(i, r, min(chunk, height - r)) for i in range(b) for r in range(0, height, chunk)]
    threads = min(threads or torch.get_num_threads(), len(chunks)) if on_cpu else 1
    workers = [_Band(rows, width, c, cfg.scales, cfg.width, out_cols, state) for _ in range(threads)]
    coarse = [state.new_empty(chunk, width, 4 * c * (cfg.scales - 1)) if cfg.scales > 1 else None for _ in range(threads)]
    grad_mode = torch.inference_mode if torch.is_inference_mode_enabled() else torch.no_grad

    def work(worker: int, src: torch.Tensor, dst: torch.Tensor, step: int) -> None:
        with grad_mode():
            for image, r, n in chunks[worker::threads]:
                if coarse[worker] is not None:
                    band_coarse(src[image, 1:-1, 1:-1], r, n, cfg.scales, cfg.padding, coarse[worker][:n])
                for band in range(r, r + n, rows):
                    k = min(rows, r + n - band)
                    if fire_fn is None:
                        fires = firing(cfg.fire_rate, seed, step, top + band, left, k, width, device=src.device)
                    else:
                        fires = fire_fn(step, band, k)
                    rows_coarse = None if coarse[worker] is None else coarse[worker][band - r : band - r + k]
                    workers[worker].run(src, dst, weights, image, band, k, fires, skip_idle, rows_coarse)

    with one_thread_workers(threads) as pool:
        for step in range(first_step, first_step + steps):
            if pool is None:
                work(0, src, dst, step)
            else:
                for done in [pool.submit(work, i, src, dst, step) for i in range(threads)]:
                    done.result()
            refresh_border(dst, cfg.padding)
            src, dst = dst, src
    return src[:, 1:-1, 1:-1].permute(0, 3, 1, 2)
