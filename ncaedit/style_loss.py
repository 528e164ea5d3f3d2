"""The style objective: look like the style image's textures and colours, keep the photo's layout.

    total = style_weight   * style distance (Gram matrices, or sliced Wasserstein) of loss-net features
          + texture_weight * distance of steerable-pyramid texture statistics (shapes: steerable.py)
          + patch_weight   * distance of each coarse patch to a style patch like it (whole motifs: patches.py),
                             chosen by the photo's lightness and the random regions' hues where asked
          + content_weight * spatial distance to the source photo (keeps layout): loss-net features,
                             or the concordance of low-passed luminances ("layout")
          + colour_weight  * sliced Wasserstein distance between RGB colour distributions (the style's
                             lighter or darker where the photo is)
          + overflow_weight * how far the state strays outside [-1, 1]
Each term is normalised by its target's magnitude, so weights mean the same for any loss network.
In training, each crop is asked for its share (`crop_share`) of the whole photo's Gram matrices and
steerable statistics, not all of them (running_statistics.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ncaedit.config import STYLE_DISTANCES, StyleLossConfig  # noqa: F401 (re-exported where it was)
from ncaedit.lossnet import LossNet
from ncaedit.patches import NearestPatches
from ncaedit.running_statistics import RunningStatistics, StatisticsPart
from ncaedit.state import REGIONS, WRITABLE, source_rgb, working_rgb
from ncaedit.steerable import TextureStatistics, luminance


def gram(f: torch.Tensor) -> torch.Tensor:
    b, c, h, w = f.shape
    f = f.reshape(b, c, h * w)
    return f @ f.transpose(1, 2) / (h * w)


def sliced_wasserstein(x: torch.Tensor, target_sorted: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """x: (B, C, N) samples; target_sorted: (P, M) sorted projections of the target, or (B, P, M) one
    target per sample; directions (P, C)."""
    proj = torch.sort(directions @ x, dim=-1).values  # (B, P, N)
    n = proj.shape[-1]
    if target_sorted.shape[-1] != n:  # resample the target's quantiles to the output's sample count
        target_sorted = F.interpolate(target_sorted.unsqueeze(0) if target_sorted.dim() == 2 else target_sorted, size=n, mode="linear", align_corners=True)
    return ((proj - target_sorted) ** 2).mean()


def content_distance(net: LossNet, feats: list[torch.Tensor], src: torch.Tensor) -> torch.Tensor:
    """Distance of the output's features `feats` to the source photo's at the same place, relative to
    the source features' size, per image (the content term of every mode)."""
    with torch.no_grad():
        src_feats = net.features(src)
    return sum(
        (((feats[i] - src_feats[i]) ** 2).flatten(1).mean(1) / (src_feats[i] ** 2).flatten(1).mean(1).clamp_min(1e-12)).mean()
        for i in net.content_layers
    ) / len(net.content_layers)


def layout_distance(out: torch.Tensor, src: torch.Tensor, sigma: float) -> torch.Tensor:
    """1 - the concordance of the low-passed luminance of output and photo, per image: keeps where
    things are lighter and darker, at the photo's contrast, leaves finer detail free, and leaves the
    overall brightness to the colour term (which sets it from the style's palette). Concordance
    (Lin's, on the centred maps: 2 cov / (var + var)) is the correlation times how alike the two
    contrasts are; the correlation alone let a rule keep the layout at a fifth of the photo's contrast
    and score as if it kept it all (the hatching: term 0.01, against the pixel optimum's 0.12, at SSIM
    0.19 against 0.28). A distance between absolute luminances fought the colour term: with it the
    rule's texture judge was 0.37 against 0.28 on strokes and 0.54 against 0.47 on rings."""
    both = torch.cat([luminance(out), luminance(src)]).unsqueeze(1)
    if sigma > 0:
        both = gaussian_blur(both, sigma, max(1, min(round(3 * sigma), min(out.shape[-2:]) - 1)))  # reflect padding needs radius < size
    a, b = (x.flatten(1) - x.flatten(1).mean(1, keepdim=True) for x in both.chunk(2))
    # The floor on the denominator (standard deviations of about 3 % of the range) leaves flat regions,
    # a clear sky, free rather than amplifying their noise.
    concordance = 2 * (a * b).mean(1) / (a.pow(2).mean(1) + b.pow(2).mean(1)).clamp_min(2e-3)
    return (1 - concordance).mean()


def lightness_shift(src: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) sources -> (B, 3): grey vectors that move the style's palette as much lighter or
    darker as each source is than mid-grey. The rule reads every photo levelled, its mean at mid-grey,
    so a crop of the photo's dark part asks for the palette's darker side: without it every 80-px
    training crop was asked for the whole palette, which flattened the light and dark parts of a photo
    into one tone (the unseen photos' median SSIM 0.35 / 0.34 without, 0.39 / 0.40 with)."""
    return (luminance(src).mean((1, 2)) - 0.5).unsqueeze(1).expand(-1, 3)


def gaussian_blur(x: torch.Tensor, sigma: float, radius: int) -> torch.Tensor:
    """(B, C, H, W) blurred by a Gaussian of `sigma` pixels cut off `radius` pixels out, one axis at
    a time, reflect-padded (so radius < H, W)."""
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = (k / k.sum()).view(1, 1, 1, -1).expand(x.shape[1], 1, 1, -1)
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect"), k, groups=x.shape[1])
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode="reflect"), k.transpose(2, 3), groups=x.shape[1])


def random_directions(p: int, c: int, generator: torch.Generator | None, device) -> torch.Tensor:
    d = torch.randn(p, c, generator=generator).to(device)
    return d / d.norm(dim=1, keepdim=True)


class ProjectedQuantiles:
    """A target distribution seen along a fixed bank of random directions: its sorted projections,
    kept at `quantiles` points, computed once. Each comparison draws `projections` directions from
    the bank (sliced Wasserstein), so the target, often ten times the output's size, is never sorted
    again: sorting the style's colours every iteration took about a quarter of a training step."""

    def __init__(self, target: torch.Tensor, bank: int = 128, quantiles: int = 4096, seed: int = 0):
        """target: (C, N) samples."""
        self.directions = random_directions(bank, target.shape[0], torch.Generator().manual_seed(seed), target.device)
        ordered = torch.sort(self.directions @ target, dim=-1).values  # (bank, N)
        self.scale = float((ordered**2).mean().clamp_min(1e-12))
        if ordered.shape[-1] > quantiles:
            ordered = F.interpolate(ordered[None], size=quantiles, mode="linear", align_corners=True)[0]
        self.sorted = ordered

    def distance(self, x: torch.Tensor, projections: int, generator: torch.Generator | None, shift: torch.Tensor | None = None) -> torch.Tensor:
        """Sliced Wasserstein distance of samples x (B, C, N) to the target, over the target's magnitude;
        `shift` (B, C) moves the target by a vector for each of x's B sample sets."""
        pick = torch.randint(len(self.directions), (projections,), generator=generator).to(self.sorted.device)
        target = self.sorted[pick]
        if shift is not None:  # a shifted distribution's projections are shifted by the projected vector
            target = target + (shift @ self.directions[pick].t()).unsqueeze(-1)
        return sliced_wasserstein(x, target, self.directions[pick]) / self.scale


class StyleLoss(nn.Module):
    def __init__(self, net: LossNet, style_rgb: torch.Tensor, config: StyleLossConfig):
        """style_rgb: (1, 3, h, w) in [0, 1], already at the size its features should be taken."""
        super().__init__()
        config.validate()
        self.net, self.config = net, config
        self.texture = None
        if config.texture_weight > 0:
            self.texture = TextureStatistics(style_rgb)
        self.patches = NearestPatches(style_rgb, guide_weight=config.patch_guide, hue_weight=config.patch_hue) if config.patch_weight > 0 else None
        with torch.no_grad():
            feats = net.features(style_rgb)
            self.style_grams = [gram(feats[i])[0] for i in net.style_layers]
            if config.style_distance == "sw":
                self.style_quantiles = [ProjectedQuantiles(feats[i].flatten(2)[0]) for i in net.style_layers]
            self.colour_quantiles = ProjectedQuantiles(style_rgb.flatten(2)[0])
        w = torch.tensor(net.style_weights)
        self.layer_weights = (w / w.sum()).tolist()

    def running_statistics(self) -> RunningStatistics | None:
        """What training estimates the whole photo's statistics with (running_statistics.py), or
        None when every crop is asked for all of the style (`crop_share` 1)."""
        return RunningStatistics(self.config.crop_share) if self.config.crop_share < 1 else None

    def forward(self, state: torch.Tensor, generator: torch.Generator | None = None, running: StatisticsPart | None = None) -> dict[str, torch.Tensor]:
        """The terms for a batch of crops (each scored on its own). With `running`, training's part
        of a RunningStatistics, each crop's Gram matrices and steerable statistics are first mixed
        with their running mean over recent crops: it is asked for its share of the whole photo's."""
        cfg = self.config
        out, src = working_rgb(state), source_rgb(state)
        need_feats = cfg.style_weight > 0 or (cfg.content == "features" and cfg.content_weight > 0)
        feats = self.net.features(out) if need_feats else None
        mixed = running or (lambda key, x: x)
        per_share = 1.0 if running is None else 1 / running.share  # the gradient on each crop as large as unmixed
        terms = {}
        if cfg.style_weight == 0:
            terms["style"] = out.new_zeros(())
        elif cfg.style_distance == "gram":
            terms["style"] = per_share * sum(
                wt * ((mixed(("gram", i), gram(feats[i])) - g) ** 2).mean() / (g**2).mean().clamp_min(1e-12)
                for wt, i, g in zip(self.layer_weights, self.net.style_layers, self.style_grams)
            )
        else:
            terms["style"] = sum(
                wt * q.distance(feats[i].flatten(2), cfg.projections, generator)
                for wt, i, q in zip(self.layer_weights, self.net.style_layers, self.style_quantiles)
            )
        if self.texture is not None:
            terms["texture"] = per_share * self.texture(out, lambda k, x: mixed(("texture", k), x))
        if self.patches is not None:
            guide = luminance(src)[:, None] if cfg.patch_guide > 0 else None  # unused unguided: not computed
            regions = state[:, REGIONS] if cfg.patch_hue > 0 else None  # the rule's random regions (RuleConfig.regions)
            terms["patch"] = self.patches(out, generator, guide, regions)
        if cfg.content_weight > 0:
            terms["content"] = content_distance(self.net, feats, src) if cfg.content == "features" else layout_distance(out, src, cfg.layout_blur)
        if cfg.colour_weight > 0:
            terms["colour"] = self.colour_quantiles.distance(out.flatten(2), 16, generator, lightness_shift(src))
        x = state[:, WRITABLE]
        terms["overflow"] = (x - x.clamp(-1, 1)).abs().mean()
        weights = {"style": cfg.style_weight, "texture": cfg.texture_weight, "patch": cfg.patch_weight, "content": cfg.content_weight, "colour": cfg.colour_weight, "overflow": cfg.overflow_weight}
        terms["total"] = sum(weights[k] * v for k, v in terms.items())
        return terms
