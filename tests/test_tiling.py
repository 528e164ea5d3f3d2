"""Tiled rollouts, strength and masks: the parts of `apply` that make any resolution fit in memory."""

import numpy as np
import pytest
import torch

from ncaedit.apply import apply_rule
from ncaedit.image import Photo, load_image, save_image, to_float, to_samples
from ncaedit.mask import load_mask
from ncaedit.paths import atomic_output
from ncaedit.rule import Rule, RuleConfig, rollout
from ncaedit.state import HIDDEN, make_state, photo_levels, working_rgb
from ncaedit.tiling import edit_tiles, plan_tiles

from helpers import smooth_photo


def busy_rule(seed=0, scales=1) -> Rule:
    """A small rule with random output weights, so that it changes the photo visibly."""
    torch.manual_seed(seed)
    rule = Rule(RuleConfig(hidden_channels=4, width=16, scales=scales))
    torch.nn.init.normal_(rule.w2.weight, std=0.1)
    return rule


@torch.no_grad()
def untiled(rule, rgb_float, steps, seed, hidden=None):
    levels = photo_levels(rgb_float, rule.config.photo_contrast)  # of the whole photo, as every tile reads it
    state = make_state(torch.from_numpy(rgb_float).permute(2, 0, 1)[None], rule.config.hidden_channels, seed=seed, levels=levels)
    if hidden is not None:
        state[:, HIDDEN] = torch.from_numpy(hidden).permute(2, 0, 1)[None]
    state = rollout(rule, state, steps, seed=seed)
    return working_rgb(state)[0].permute(1, 2, 0).numpy(), state[0, HIDDEN].permute(1, 2, 0).numpy()


@pytest.mark.parametrize("height,width,tile,halo", [(45, 61, 8, 3), (64, 64, 64, 10), (10, 100, 7, 0), (33, 20, 16, 40)])
def test_tile_cores_cover_the_photo_exactly_once(height, width, tile, halo):
    cover = np.zeros((height, width), int)
    for t in plan_tiles(height, width, tile, halo):
        assert t.core.bottom - t.core.top <= tile and t.core.right - t.core.left <= tile
        cover[t.core.slices()] += 1
        r = t.run
        assert (r.top, r.left) == (max(0, t.core.top - halo), max(0, t.core.left - halo))
        assert (r.bottom, r.right) == (min(height, t.core.bottom + halo), min(width, t.core.right + halo))
    assert (cover == 1).all()


@pytest.mark.parametrize("dtype,tile,scales", [(np.uint8, 10, 1), (np.uint8, 64, 1), (np.uint16, 16, 1), (np.float32, 23, 1), (np.uint8, 12, 3)])
def test_tiled_equals_untiled(dtype, tile, scales):
    """Coarse perception (scales 3) reads 7 cells away a step: the halo must grow with it."""
    rule, steps, seed = busy_rule(scales=scales), 7, 3
    rgb = to_samples(smooth_photo(45, 61), dtype)
    whole, _ = untiled(rule, to_float(rgb), steps, seed)
    assert np.abs(whole - to_float(rgb)).mean() > 0.02  # the rule does change the photo
    out = apply_rule(rule, Photo(rgb), steps, seed=seed, tile=tile).rgb
    assert out.dtype == dtype
    assert np.abs(to_float(out) - whole).max() <= 1 / 255 + 1e-6


@pytest.mark.parametrize("scales", [1, 2])
def test_tiled_rollout_continues_from_a_given_hidden_state(scales):
    rule, steps = busy_rule(1, scales), 5
    rgb = smooth_photo(40, 50)
    start = np.random.default_rng(0).uniform(-0.3, 0.3, (40, 50, 4)).astype(np.float32)
    whole_rgb, whole_hidden = untiled(rule, rgb, steps, 0, hidden=start)
    out_rgb, out_hidden = np.zeros_like(rgb), np.zeros_like(start)
    levels = photo_levels(rgb, rule.config.photo_contrast)
    for t, edited, hidden in edit_tiles(rule, rgb, steps, tile=20, hidden=start, levels=levels):
        out_rgb[t.core.slices()], out_hidden[t.core.slices()] = edited, hidden
    assert np.abs(out_rgb - whole_rgb).max() < 1e-5 and np.abs(out_hidden - whole_hidden).max() < 1e-5


def test_strength_blends_with_the_source():
    rule, rgb = busy_rule(), smooth_photo(32, 32)
    full = apply_rule(rule, Photo(rgb), 4).rgb
    assert np.array_equal(apply_rule(rule, Photo(rgb), 4, strength=0).rgb, rgb)
    half = apply_rule(rule, Photo(rgb), 4, strength=0.5).rgb
    assert np.abs(half - (rgb + full) / 2).max() < 1e-5


def test_mask_limits_the_edit_with_soft_edges(tmp_path):
    rule, rgb = busy_rule(), smooth_photo(40, 64)
    mask_img = np.zeros((20, 32), np.uint8)  # half the photo's size: stretched to fit
    mask_img[:, 16:] = 255
    save_image(Photo(np.repeat(mask_img[:, :, None], 3, axis=2).astype(np.float32) / 255), tmp_path / "m.png")
    full = apply_rule(rule, Photo(rgb), 4).rgb
    hard = load_mask(tmp_path / "m.png", (64, 40))
    edited = apply_rule(rule, Photo(rgb), 4, mask=hard).rgb
    assert np.abs(edited[:, :28] - rgb[:, :28]).max() < 1e-6  # black: the source
    assert np.abs(edited[:, 36:] - full[:, 36:]).max() < 1e-6  # white: the full edit
    soft = load_mask(tmp_path / "m.png", (64, 40), feather=4)
    partial = (soft > 10) & (soft < 245)
    assert partial[:, 24:40].mean() > 0.3 and not partial[:, :16].any()  # a soft band only at the edge
    with pytest.raises(Exception, match="no such file"):
        load_mask(tmp_path / "missing.png", (64, 40))


def test_photos_keep_their_samples_in_memory(tmp_path):
    rgb = smooth_photo(24, 40)
    for depth, dtype in ((8, np.uint8), (16, np.uint16)):
        path = save_image(Photo(rgb, np.full((24, 40), 0.5, np.float32), depth), tmp_path / f"s{depth}.png")
        kept = load_image(path, keep_samples=True)
        assert kept.rgb.dtype == dtype and kept.alpha.dtype == dtype and kept.bit_depth == depth
        assert np.array_equal(kept.as_float().rgb, load_image(path).rgb)
        back = load_image(save_image(kept, tmp_path / f"t{depth}.png"), keep_samples=True)
        assert np.array_equal(back.rgb, kept.rgb) and np.array_equal(back.alpha, kept.alpha)


def test_atomic_output_leaves_nothing_half_written(tmp_path):
    target = tmp_path / "out.png"
    target.write_bytes(b"the user's file")
    for error in (RuntimeError, KeyboardInterrupt):
        with pytest.raises(error):
            with atomic_output(target) as tmp:
                tmp.write_bytes(b"half of a new fi")
                raise error()
        assert target.read_bytes() == b"the user's file"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]
    with atomic_output(target) as tmp:
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new" and sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]
