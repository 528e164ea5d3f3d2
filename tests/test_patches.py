"""The nearest-style-patch term (patches.py)."""

import torch

from ncaedit.lossnet import RandomFilters
from ncaedit.patches import NearestPatches
from ncaedit.style_loss import StyleLoss, StyleLossConfig
from helpers import descended
from test_texture_loss import dots, stripes


def rings(size=64, period=16):
    """Concentric rings in a grid of cells `period` px apart: closed motifs, (1, 3, size, size)."""
    y, x = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32), indexing="ij")
    r = torch.hypot(x % period - period / 2, y % period - period / 2)
    img = ((r < 6) & ((r < 2) | (r > 4))).float() * 0.8 + 0.1
    return img.expand(1, 3, size, size).contiguous()


def test_every_patch_of_the_style_is_matched_with_itself_so_the_style_scores_zero():
    style = dots(size=48)
    loss = NearestPatches(style, levels=(0,), sample=10**6)  # every patch kept; full scale, where no grid moves
    assert loss(style).item() < 1e-10
    assert loss(torch.rand(1, 3, 48, 48)).item() > 0.1


def test_a_texture_is_closer_to_a_shifted_copy_of_itself_than_to_other_textures_or_noise():
    loss = NearestPatches(rings(), levels=(0, 1))
    same = loss(torch.roll(rings(), shifts=(6, 11), dims=(2, 3)))  # shifted off the grid of the coarser level
    for other in (stripes(0, size=64), stripes(45, size=64), dots(size=64), torch.rand(1, 3, 64, 64)):
        assert loss(other) > 3 * same


def test_translation_by_whole_coarse_pixels_leaves_a_periodic_texture_scoring_the_same():
    loss = NearestPatches(rings(), levels=(1, 2, 3))
    x = rings(size=80)
    same_grid = lambda: torch.Generator().manual_seed(0)  # noqa: E731 (each level's grid at the same offsets in both)
    assert torch.isclose(loss(x, same_grid()), loss(torch.roll(x, shifts=(16, 32), dims=(2, 3)), same_grid()), rtol=1e-4, atol=1e-7)


def test_gradients_are_finite_and_pull_towards_the_style():
    loss = NearestPatches(rings(), levels=(1, 2))
    x = torch.rand(2, 3, 48, 48).requires_grad_(True)
    opt = torch.optim.Adam([x], lr=0.05)
    first = loss(x).item()
    for _ in range(30):
        opt.zero_grad()
        value = loss(x)
        value.backward()
        assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
        opt.step()
    assert loss(x).item() < 0.5 * first


def test_images_smaller_than_a_patch_at_every_level_score_zero():
    loss = NearestPatches(rings(), levels=(2, 3))
    for side in (8, 12, 23):
        assert loss(torch.rand(1, 3, side, side + 3)).item() == 0.0
    assert loss(torch.rand(1, 3, 24, 24)).item() > 0  # one patch at 1/4 scale, wherever the grid starts


def test_style_loss_has_the_patch_term_only_when_weighted():
    style, state = rings(), torch.rand(1, 6, 40, 40) * 2 - 1
    terms = StyleLoss(RandomFilters(levels=2, maps=8), style, StyleLossConfig(patch_weight=2.0, colour_weight=0.0))(state)
    without = StyleLoss(RandomFilters(levels=2, maps=8), style, StyleLossConfig(patch_weight=0.0, colour_weight=0.0))(state)
    assert "patch" in terms and "patch" not in without
    assert torch.isclose(terms["total"] - without["total"], 2.0 * terms["patch"])


def test_a_guide_makes_dark_places_take_the_styles_dark_patches():
    """A style of dark and light halves; a result that is mid-grey everywhere: unguided, its patches
    pull towards whichever is nearest; guided by a photo dark on the left and light on the right,
    optimising the result makes its left dark and its right light."""
    style = torch.cat([torch.full((1, 3, 32, 16), 0.1), torch.full((1, 3, 32, 16), 0.9)], dim=3)
    guide = torch.cat([torch.full((1, 1, 32, 32), 0.2), torch.full((1, 1, 32, 32), 0.8)], dim=3)
    loss = NearestPatches(style, levels=(0,), guide_weight=4.0)
    assert torch.allclose(loss.lightness_0.mean(), torch.tensor(0.5))  # centred as the levelled photo is
    x = descended(lambda x: loss(x, guide=guide), torch.full((1, 3, 32, 64), 0.5))
    left, right = x[..., :24].mean().item(), x[..., 40:].mean().item()
    assert left < 0.25 and right > 0.75
    assert NearestPatches(style, levels=(0,))(x) < loss(x, guide=torch.flip(guide, dims=(3,)))  # the guide does count


def test_style_loss_guides_the_patch_term_by_the_photo_it_reads():
    """The state's source channels (the levelled photo) are the guide: a darker photo under the same
    result changes which style patches are matched, so the patch term changes too."""
    style = torch.cat([torch.full((1, 3, 40, 20), 0.1), torch.full((1, 3, 40, 20), 0.9)], dim=3)
    loss = StyleLoss(RandomFilters(levels=2, maps=8), style, StyleLossConfig(patch_weight=1.0, patch_guide=4.0, colour_weight=0.0))
    result = torch.full((1, 3, 40, 40), 0.1)  # dark everywhere, as the style's left half
    dark, light = (torch.cat([torch.full((1, 3, 40, 40), v), result], dim=1) * 2 - 1 for v in (0.2, 0.8))
    assert loss(dark)["patch"] < 0.01 < loss(light)["patch"]


def test_the_search_matches_each_patch_as_the_distance_written_out_term_by_term_does():
    """nearest() folds the guide's and the hue's terms into one matrix product; written out
    directly (colour distance, plus guide weight x lightness difference squared, plus hue weight x
    (chroma - agreement with the region's direction), each per colour value, then the guided
    correspondence), the same patches must be chosen."""
    from ncaedit.patches import PATCH, SPREAD, patch_means, patches

    g = torch.Generator().manual_seed(3)
    style = torch.rand(1, 3, 40, 40, generator=g)
    search = NearestPatches(style, levels=(0,), sample=500, guide_weight=2.0, hue_weight=0.5)
    x, guide = torch.rand(2, 3, 24, 24, generator=g), torch.rand(2, 1, 24, 24, generator=g)
    way = torch.nn.functional.normalize(torch.randn(2, 2, 24, 24, generator=g), dim=1)
    p, s = patches(x), search.style_0
    n = 3 * PATCH**2
    there, towards = patch_means(guide)[..., 0], torch.nn.functional.normalize(patch_means(way), dim=-1)
    d = ((p[:, :, None] - s) ** 2).sum(-1)
    d = d + 2.0 * n * (there[..., None] - search.lightness_0) ** 2
    d = d + 0.5 * n * (search.hue_0.norm(dim=-1) - towards @ search.hue_0.t())
    expected = (d / (d.amin(1, keepdim=True) + SPREAD * n)).argmin(-1)
    chosen = search.nearest(p, s, 0, 0, 0, guide, way)
    assert (chosen == expected).float().mean() > 0.99  # float rounding may break a near tie the other way
    assert (search.nearest(p, s, 0, 0, 0, None, None) != chosen).any()  # the guide and hue do count
