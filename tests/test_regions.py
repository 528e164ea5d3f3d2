"""Random regions (RuleConfig.regions): the field a rule reads to place a style's cells, and the hue
each region asks of the nearest-patch term."""

import math

import numpy as np
import pytest
import torch

from ncaedit.apply import apply_rule
from ncaedit.cell_style import with_cells
from ncaedit.errors import NcaError
from ncaedit.export import export_page
from ncaedit.image import Photo, to_float
from ncaedit.nca_format import load_rule, save_rule
from ncaedit.noise import regions
from ncaedit.patches import NearestPatches, opponent
from ncaedit.recipe import load_recipe
from ncaedit.rule import REGION_ROWS, Rule, RuleConfig, rollout
from ncaedit.state import HIDDEN, REGIONS, make_state, photo_levels, working_rgb

from helpers import cell_mosaic, descended, smooth_photo, stripes


def test_regions_are_unit_directions_constant_over_cells_of_about_their_size():
    field = regions(16, seed=3, top=0, left=0, height=128, width=128)
    assert field.shape == (2, 128, 128)
    assert torch.allclose(field.norm(dim=0), torch.ones(128, 128), atol=1e-5)
    angles = torch.atan2(field[1], field[0])
    count = len(torch.unique(angles))
    assert 40 <= count <= 100, count  # one point per 16 x 16 square: about (128 / 16)^2 = 64 regions
    changes = (angles[1:] != angles[:-1]).float().mean() + (angles[:, 1:] != angles[:, :-1]).float().mean()
    assert changes < 0.2  # constant within a region: a neighbour differs only across a border
    assert not torch.equal(field, regions(16, seed=4, top=0, left=0, height=128, width=128))


@pytest.mark.parametrize("top,left,height,width", [(0, 0, 40, 50), (37, 81, 60, 23), (100, 5, 28, 100)])
def test_a_tile_sees_the_regions_of_the_whole_image(top, left, height, width):
    whole = regions(24, seed=1, top=0, left=0, height=128, width=128)
    assert torch.equal(regions(24, seed=1, top=top, left=left, height=height, width=width), whole[:, top : top + height, left : left + width])


def test_make_state_puts_the_regions_in_the_first_hidden_channels():
    rgb = torch.rand(2, 3, 40, 50)
    state = make_state(rgb, 6, seed=5, top=7, left=9, regions=16)
    assert torch.equal(state[0, REGIONS], regions(16, 5, 7, 9, 40, 50)) and torch.equal(state[1, REGIONS], state[0, REGIONS])
    plain = make_state(rgb, 6, seed=5, top=7, left=9)
    assert torch.equal(state[:, 8:], plain[:, 8:])  # the other hidden channels keep their noise
    assert make_state(rgb, 0).shape == (2, 6, 40, 50)  # no hidden channels at all


def region_rule(seed=0) -> Rule:
    """A rule with regions and random weights, its region rows kept zero as training keeps them."""
    torch.manual_seed(seed)
    rule = Rule(RuleConfig(hidden_channels=4, width=16, scales=2, regions=12))
    with torch.no_grad():
        torch.nn.init.normal_(rule.w2.weight, std=0.1)
        rule.w2.weight[REGION_ROWS] = 0
    return rule


def test_a_rule_never_changes_its_regions_and_training_keeps_it_so():
    rule = region_rule()
    state = make_state(torch.rand(1, 3, 32, 32), 4, seed=2, regions=12)
    with torch.no_grad():
        out = rollout(rule, state, 6, seed=2)
    assert torch.equal(out[:, REGIONS], state[:, REGIONS]) and not torch.equal(out[:, 8:], state[:, 8:])
    opt = torch.optim.Adam(rule.parameters(), lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        rollout(rule, state, 4, seed=2)[:, HIDDEN].square().sum().backward()
        assert rule.w2.weight.grad[REGION_ROWS].abs().sum() == 0 and rule.w2.weight.grad.abs().sum() > 0
        opt.step()
    assert not rule.w2.weight[REGION_ROWS].any()
    grads = torch.autograd.grad(rollout(rule, state, 4, seed=2)[:, HIDDEN].square().sum(), list(rule.parameters()))  # as train_step asks
    assert grads[2][REGION_ROWS].abs().sum() == 0 and grads[2].abs().sum() > 0


def test_tiled_apply_equals_the_untiled_rollout_with_regions():
    rule, steps, seed = region_rule(), 6, 3
    rgb = smooth_photo(45, 61)
    levels = photo_levels(rgb, rule.config.photo_contrast)
    with torch.no_grad():
        state = make_state(torch.from_numpy(rgb).permute(2, 0, 1)[None], 4, seed=seed, levels=levels, regions=12)
        whole = working_rgb(rollout(rule, state, steps, seed=seed))[0].permute(1, 2, 0).numpy()
    out = apply_rule(rule, Photo(rgb), steps, seed=seed, tile=16).rgb
    assert np.abs(to_float(out) - whole).max() <= 1 / 255 + 1e-6


def test_each_region_takes_the_style_hue_its_direction_asks_for():
    """A style of red and blue halves, alike in lightness; a grey result over two regions whose
    directions are red's and blue's hues: optimising it makes each region its own hue, and swapping
    the directions swaps the hues. Without hue_weight nothing tells the two regions apart."""
    red, blue = torch.tensor([0.8, 0.2, 0.3]), torch.tensor([0.2, 0.3, 0.8])
    style = torch.cat([red.view(1, 3, 1, 1).expand(1, 3, 32, 16), blue.view(1, 3, 1, 1).expand(1, 3, 32, 16)], dim=3)

    def hue(rgb):
        h = opponent(rgb)
        return h / h.norm()

    def field(left, right):
        return torch.cat([left.view(1, 2, 1, 1).expand(1, 2, 32, 32), right.view(1, 2, 1, 1).expand(1, 2, 32, 32)], dim=3)

    def optimised(hue_weight, where):
        loss = NearestPatches(style, levels=(0,), hue_weight=hue_weight)
        x = descended(lambda x: loss(x, regions=where), torch.full((1, 3, 32, 64), 0.5))
        return x[0, :, :, :32].mean((1, 2)), x[0, :, :, 32:].mean((1, 2))

    left, right = optimised(2.0, field(hue(red), hue(blue)))
    assert left[0] > left[2] + 0.3 and right[2] > right[0] + 0.3  # red, then blue
    left, right = optimised(2.0, field(hue(blue), hue(red)))
    assert left[2] > left[0] + 0.3 and right[0] > right[2] + 0.3
    left, right = optimised(0.0, field(hue(red), hue(blue)))
    assert torch.allclose(left, right, atol=0.05)  # unsteered: both halves alike


def test_grey_style_patches_are_free_of_the_regions_hue():
    grey_and_red = torch.cat([torch.full((1, 3, 16, 16), 0.1), torch.tensor([0.9, 0.1, 0.1]).view(1, 3, 1, 1).expand(1, 3, 16, 16)], dim=3)
    loss = NearestPatches(grey_and_red, levels=(0,), hue_weight=1.0)
    chroma = loss.hue_0.norm(dim=-1)
    assert chroma.max() == pytest.approx(1.0) and chroma.min() < 1e-6  # the most colourful patch counts in full, a grey one not at all


def test_recipes_refuse_regions_they_cannot_use():
    assert with_cells(load_recipe("cells"), stripes(64, 64))[0].rule.regions > 0  # the cells preset draws them on any style
    with pytest.raises(NcaError, match="patch_hue needs rule.regions"):
        load_recipe("motifs", {"loss": {"patch_hue": 0.2, "cells": "off"}})
    with pytest.raises(NcaError, match="patch_hue needs rule.regions"):
        load_recipe("fast", {"rule": {"regions": 32}, "loss": {"patch_hue": 0.2, "cells": "off"}})  # no patch term to steer
    hue = load_recipe("fast", {"loss": {"patch_hue": 0.1}})  # for the regions a style of cells gets (cell_style.with_cells)
    assert with_cells(hue, stripes(64, 64)) == (hue, False) and with_cells(hue, cell_mosaic())[0].loss.patch_hue == 0.1
    with pytest.raises(NcaError, match="rule.regions must be a whole number from 4"):
        load_recipe("fast", {"rule": {"regions": 2}})
    with pytest.raises(NcaError, match="hidden_channels >= 2"):
        with_cells(load_recipe("cells", {"rule": {"hidden_channels": 1}}), stripes(64, 64))
    for bad in (float("nan"), 3.5, True, "32", 10**12, -4):
        with pytest.raises(NcaError, match="rule.regions must be"):
            load_recipe("cells", {"rule": {"regions": bad}})
    for key in ("patch_hue", "patch_guide"):  # weights, bounded as the others are
        for bad in (float("nan"), float("inf"), 1e300, True, "a"):
            with pytest.raises(NcaError, match=f"loss.{key} must be"):
                load_recipe("cells", {"loss": {key: bad}})


def test_rule_files_keep_regions_and_refuse_a_rule_that_writes_them(tmp_path):
    rule = region_rule()
    path = save_rule(rule, tmp_path / "cells.nca", {"mode": "style"})
    assert load_rule(path).rule.config.regions == 12
    assert "regions" in export_page(path).read_text()  # the web page draws them too (test_export.py runs it)
    with torch.no_grad():
        rule.w2.weight[REGION_ROWS] = 0.5
    with pytest.raises(NcaError, match="altered or damaged"):
        load_rule(save_rule(rule, tmp_path / "writes.nca", {"mode": "style"}))


def test_regions_field_is_cheap_enough_for_large_photos():
    """Nine candidate points a pixel: a 1-megapixel field in well under the rollout's time."""
    field = regions(32, seed=0, top=0, left=0, height=1024, width=1024)
    assert field.shape == (2, 1024, 1024) and math.isclose(float(field.norm(dim=0).mean()), 1.0, rel_tol=1e-5)


def test_training_with_regions_keeps_them_and_the_hue_term_runs():
    from ncaedit.lossnet import RandomFilters
    from ncaedit.style_loss import StyleLoss, StyleLossConfig
    from ncaedit.train import TrainConfig, train_rule

    style = torch.rand(1, 3, 48, 48)
    loss = StyleLoss(RandomFilters(levels=2, maps=8), style, StyleLossConfig(patch_weight=2.0, patch_guide=1.0, patch_hue=0.5))
    config = TrainConfig(iterations=4, batch=2, crop=48, train_size=64, pool=4, steps_min=2, steps_max=3)
    trained = train_rule([smooth_photo(64, 64)], loss, RuleConfig(hidden_channels=4, width=8, regions=16), config, workers=2)
    assert not trained.rule.w2.weight[REGION_ROWS].any() and trained.rule.w2.weight.abs().sum() > 0
    assert all(np.isfinite(h["patch"]) and h["patch"] > 0 for h in trained.history)
