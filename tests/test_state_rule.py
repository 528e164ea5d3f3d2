import pytest
import torch

from ncaedit.noise import position_uniform
from ncaedit.rule import Rule, RuleConfig, fire_mask, rollout
from ncaedit.state import HIDDEN_NOISE, make_state, source_rgb, working_rgb

from helpers import random_rule


def test_layout_and_range():
    rgb = torch.rand(2, 3, 20, 30)
    s = make_state(rgb, hidden_channels=12)
    assert s.shape == (2, 18, 20, 30)
    assert torch.equal(source_rgb(s), (rgb * 2 - 1 + 1) * 0.5)
    assert torch.allclose(working_rgb(s), rgb, atol=1e-6)
    assert s[:, 6:].abs().max() <= HIDDEN_NOISE


def test_source_channels_are_frozen_bit_for_bit():
    rule = random_rule()
    s = make_state(torch.rand(1, 3, 16, 16), 12)
    with torch.no_grad():
        out = rollout(rule, s, 25, seed=3)
    assert torch.equal(out[:, :3], s[:, :3])
    assert not torch.allclose(out[:, 3:6], s[:, 3:6])  # the rule did do something


def test_fresh_rule_leaves_the_photo_unchanged():
    rule = Rule(RuleConfig())
    s = make_state(torch.rand(1, 3, 16, 16), 12)
    with torch.no_grad():
        out = rollout(rule, s, 10)
    assert torch.equal(out[:, 3:6], s[:, 3:6])


def test_replicate_padding_does_not_wrap_edges():
    rule = random_rule(padding="replicate", fire_rate=1.0)
    s = make_state(torch.rand(1, 3, 12, 12), 12)
    s2 = s.clone()
    s2[:, :, :, 0] += 0.5  # change only the left column
    with torch.no_grad():
        a, b = rule.step(s, None), rule.step(s2, None)
    assert torch.equal(a[:, :, :, -1], b[:, :, :, -1])  # right column never sees it
    circ = random_rule(padding="circular", fire_rate=1.0)
    with torch.no_grad():
        assert not torch.equal(circ.step(s, None)[:, :, :, -1], circ.step(s2, None)[:, :, :, -1])


def test_fire_mask_rate_and_determinism():
    rule = Rule(RuleConfig(fire_rate=0.3))
    m = fire_mask(rule, seed=1, step=5, top=0, left=0, height=200, width=200)
    assert abs(m.mean().item() - 0.3) < 0.02
    assert torch.equal(m, fire_mask(rule, 1, 5, 0, 0, 200, 200))
    assert not torch.equal(m, fire_mask(rule, 1, 6, 0, 0, 200, 200))
    assert fire_mask(Rule(RuleConfig(fire_rate=1.0)), 1, 5, 0, 0, 4, 4) is None


def test_noise_depends_only_on_absolute_position():
    whole = position_uniform(7, 2, 0, 0, 40, 50)
    part = position_uniform(7, 2, 10, 20, 15, 12)
    assert torch.equal(whole[10:25, 20:32], part)
    assert 0 <= whole.min() and whole.max() < 1


def test_a_crop_with_a_halo_matches_the_whole_image():
    rule = random_rule(1)
    rgb = torch.rand(1, 3, 64, 64)
    steps = 3
    halo = steps * rule.config.reach  # 7 cells a step with the default coarse perception
    with torch.no_grad():
        whole = rollout(rule, make_state(rgb, 12, seed=4), steps, seed=4)
        top, left = 24, 26
        crop = rgb[:, :, top - halo : top + 10 + halo, left - halo : left + 10 + halo]
        part = rollout(rule, make_state(crop, 12, seed=4, top=top - halo, left=left - halo), steps, seed=4, top=top - halo, left=left - halo)
    assert torch.allclose(part[:, :, halo:-halo, halo:-halo], whole[:, :, top : top + 10, left : left + 10], atol=1e-6)


def test_checkpointed_rollout_gives_the_same_gradients():
    rule = random_rule(2, hidden_channels=4, width=8)
    s = make_state(torch.rand(1, 3, 12, 12), 4)
    grads = []
    for every in (0, 3):
        rule.zero_grad()
        rollout(rule, s, 7, seed=1, checkpoint_every=every)[:, 3:6].sum().backward()
        grads.append([p.grad.clone() for p in rule.parameters()])
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("bad", [dict(width=0), dict(fire_rate=0.0), dict(padding="wrap")])
def test_bad_rule_config(bad):
    from ncaedit.errors import NcaError

    with pytest.raises(NcaError):
        Rule(RuleConfig(**bad))


def test_photo_levels_move_the_mean_to_grey_and_set_the_contrast():
    import numpy as np

    from ncaedit.state import MIN_CONTRAST, photo_levels

    from helpers import smooth_photo

    dark = smooth_photo(40, 50) * 0.5 + np.float32([0.05, 0.1, 0.0])  # dark and blue-green: far from the target
    levels = photo_levels(dark, 0.2)
    unclipped = dark * levels.gain + np.float32(levels.offset)
    assert np.allclose(unclipped.mean((0, 1)), 0.5, atol=1e-4)
    assert np.sqrt(unclipped.var((0, 1)).mean()) == pytest.approx(0.2, rel=1e-4)
    levelled = levels(torch.from_numpy(dark).permute(2, 0, 1))
    assert levelled.min() >= 0 and levelled.max() <= 1 and torch.allclose(levelled, torch.from_numpy(unclipped).permute(2, 0, 1).clamp(0, 1))
    # measured on a subsample: a photo too large to read whole is levelled as its stride-th pixels are
    big = np.repeat(np.repeat((dark * 255).astype(np.uint8), 30, 0), 30, 1)  # 1.8 megapixels of 30x30 blocks
    assert photo_levels(big, 0.2).gain == pytest.approx(photo_levels(big[::2, ::2], 0.2).gain, rel=1e-6)
    assert photo_levels(np.full((8, 8, 3), 0.3, np.float32), 0.2).gain == pytest.approx(0.2 / MIN_CONTRAST)  # flat: bounded gain
    assert photo_levels(dark, 0.0) is None  # the rule reads the photo as it is


def test_a_levelled_rule_edits_a_darker_flatter_copy_of_a_photo_as_the_photo():
    """What levelling is for: a rule trained on a dark photo restyles bright ones as it did its own."""
    import numpy as np

    from ncaedit.apply import apply_rule
    from ncaedit.image import Photo

    from helpers import smooth_photo

    photo = smooth_photo(30, 40)
    darker = photo * 0.4 + 0.05  # every channel: less light, less contrast
    for contrast, alike in ((0.2, True), (0.0, False)):
        rule = random_rule(hidden_channels=4, width=16, photo_contrast=contrast)
        a, b = (apply_rule(rule, Photo(p.astype(np.float32)), 8, seed=1).rgb for p in (photo, darker))
        assert (np.abs(a - b).max() < 1e-4) == alike, np.abs(a - b).max()
