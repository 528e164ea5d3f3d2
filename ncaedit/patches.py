"""Nearest style patches: every small patch of the result, at a few coarser scales, pulled towards
a patch of the style like it (texture optimisation after Kwatra et al. 2005, on raw colours, with
the guided correspondence of Zhou et al. 2023 so that the result does not copy one patch everywhere).
With a guide (the photo's luminance), a style patch is also chosen by how light it is against how
light the photo is there, as image analogies and guided synthesis do: the photo's dark parts take the
style's dark patches and its light parts the light ones, so the motifs follow the photo's layout.
With random regions (RuleConfig.regions: a partition of the photo into regions, each with a random
direction in the plane of hues) a style patch is also chosen by how its hue agrees with its region's,
in proportion to how colourful the patch is: neighbouring regions take different hues and grey or
dark patches (outlines) go anywhere, so a rule draws a mosaic's cells, each in one of its hues, where
a rule without them painted one or two hues over everything.

Statistics that are averages over the image (Gram matrices, steerable-pyramid statistics) say which
edges and colours occur, not how they join: from noise they drew the rings as open arcs and the
mosaic as swirls crossed by dark curves. A patch of the result 1/4 or 1/8 as large as the image
covers 20-40 px, a whole ring or cell, and the style patch it is pulled to is one real ring or cell.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ncaedit.steerable import LUMA

PATCH = 5  # side of a patch, in pixels of its scale
SPREAD = 0.01  # per colour value: how little a style patch that the result already has repels others (smaller: more)


class NearestPatches(torch.nn.Module):
    def __init__(
        self, style_rgb: torch.Tensor, levels: tuple[int, ...] = (1, 2, 3), sample: int = 4096, seed: int = 0, guide_weight: float = 0.0, hue_weight: float = 0.0,
    ):
        """style_rgb (1, 3, h, w) in [0, 1]; `levels`: scales 1/2^level the patches are taken at;
        at most `sample` style patches a level, drawn at random once (the search costs in proportion).
        `guide_weight`: how much a style patch's lightness, against the guide's there, counts in
        choosing it (per colour value, as a squared difference; 0: not at all). `hue_weight`: how
        much its hue against its region's counts (per colour value, times 1 - the cosine of the angle
        between them and the patch's chroma over the style's most colourful patch's)."""
        super().__init__()
        self.levels, self.guide_weight, self.hue_weight = tuple(levels), guide_weight, hue_weight
        g = torch.Generator().manual_seed(seed)
        luma = torch.tensor(LUMA, dtype=style_rgb.dtype, device=style_rgb.device)
        for level in self.levels:
            p = patches(downscaled(style_rgb, level))[0]
            if len(p) > sample:
                p = p[torch.randperm(len(p), generator=g)[:sample]]
            self.register_buffer(f"style_{level}", p)
            colour = p.unflatten(-1, (3, -1)).mean(-1)  # each patch's mean colour, (n, 3)
            light = colour @ luma  # its mean luminance, centred on mid-grey as the levelled photo is
            self.register_buffer(f"lightness_{level}", light - light.mean() + 0.5)
            hue = opponent(colour)  # (n, 2)
            chroma = hue.norm(dim=-1, keepdim=True)
            self.register_buffer(f"hue_{level}", hue / chroma.clamp_min(1e-6) * (chroma / chroma.max().clamp_min(1e-6)))

    def forward(
        self, rgb: torch.Tensor, generator: torch.Generator | None = None, guide: torch.Tensor | None = None, regions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Squared distance of each patch of rgb (B, 3, H, W) to the style patch it is matched with
        (summed over the patch's colour values), averaged over patches and over the levels at which
        rgb is at least one patch large. Each level's grid starts at a random offset (`generator`),
        so that no block edges are learnt. `guide` (B, 1, H, W), the levelled photo's luminance,
        steers the choice where guide_weight > 0; `regions` (B, 2, H, W), each region's direction
        (state.REGIONS), where hue_weight > 0."""
        terms = []
        for level in self.levels:
            k = 2**level
            if min(rgb.shape[-2:]) < k * (PATCH + 1):  # under a patch at this scale, wherever its grid starts
                continue
            dy, dx = torch.randint(k, (2,), generator=generator).tolist()
            x = downscaled(rgb[..., dy:, dx:], level)
            p, style = patches(x), getattr(self, f"style_{level}")
            with torch.no_grad():  # which style patch to match is a choice, not a function to differentiate
                match = self.nearest(p, style, level, dy, dx, guide, regions)
            terms.append(((p - style[match]) ** 2).sum(-1).mean())
        return torch.stack(terms).mean() if terms else rgb.new_zeros(())

    def nearest(self, p, style, level, dy, dx, guide, regions) -> torch.Tensor:
        """(B, N): the index of the style patch each patch of p (B, N, D) is matched with."""
        # Every term of the distance is a squared difference, |a - b|^2 = |a|^2 - 2 a.b + |b|^2, or (hue)
        # linear in the region's direction, so all of them come from one matrix product of the patches
        # and their guide and region features against the style's: its elementwise terms over the
        # (N, style patches) matrix took three times as long as the product.
        n = p.shape[-1]
        rows, columns = [p], [-2 * style]
        row_bias, column_bias = (p**2).sum(-1), (style**2).sum(-1)
        if guide is not None and self.guide_weight > 0:
            there = patch_means(downscaled(guide[..., dy:, dx:], level))  # (B, N, 1)
            light = getattr(self, f"lightness_{level}")[:, None]
            rows.append(there), columns.append(-2 * self.guide_weight * n * light)
            row_bias = row_bias + self.guide_weight * n * there[..., 0] ** 2
            column_bias = column_bias + self.guide_weight * n * light[:, 0] ** 2
        if regions is not None and self.hue_weight > 0:
            way = patch_means(downscaled(regions[..., dy:, dx:], level))  # (B, N, 2)
            hue = getattr(self, f"hue_{level}")  # direction times relative chroma: 1 - cos, weighted
            rows.append(way / way.norm(dim=-1, keepdim=True).clamp_min(1e-6)), columns.append(-self.hue_weight * n * hue)
            column_bias = column_bias + self.hue_weight * n * hue.norm(dim=-1)
        rows = torch.cat(rows, -1)
        d = torch.addmm(column_bias, rows.flatten(0, 1), torch.cat(columns, -1).t()).view(*p.shape[:2], -1)
        d = d.add_(row_bias[..., None]).clamp_min_(0)
        # guided correspondence: a distance counts for less the further that style patch is from every
        # patch of the result, so patches spread over the style rather than all taking its commonest one
        return d.div_(d.amin(1, keepdim=True) + SPREAD * n).argmin(-1)


def opponent(rgb: torch.Tensor) -> torch.Tensor:
    """(..., 3) RGB -> (..., 2) its two opponent colour axes, red-green and yellow-blue: a plane of hues."""
    r, g, b = rgb.unbind(-1)
    return torch.stack([r - g, (r + g) / 2 - b], -1)


def downscaled(rgb: torch.Tensor, level: int) -> torch.Tensor:
    return F.avg_pool2d(rgb, 2**level) if level else rgb


def patches(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, N, C * PATCH^2), every PATCH x PATCH patch."""
    return F.unfold(x, PATCH).transpose(1, 2)


def patch_means(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, N, C): each channel's mean over every PATCH x PATCH patch, in patches()' order."""
    return patches(x).unflatten(-1, (x.shape[1], -1)).mean(-1)
