"""End to end: a rule trained on a striped style draws stripes of that orientation, on its training
photo and on a photo it never saw (augmented training, as the presets do)."""

import numpy as np
import torch

from ncaedit.apply import apply_rule
from ncaedit.image import Photo
from ncaedit.lossnet import RandomFilters
from ncaedit.rule import RuleConfig
from ncaedit.style_loss import StyleLoss, StyleLossConfig
from ncaedit.train import TrainConfig, train_rule

from helpers import smooth_photo


def horizontal_stripes(h: int = 64, w: int = 64, period: int = 4) -> np.ndarray:
    band = (np.mgrid[0:h, 0:w][0] // (period // 2)) % 2 == 0
    return np.where(band[..., None], [0.1, 0.1, 0.4], [0.95, 0.9, 0.6]).astype(np.float32)


def textured_photo(seed: int) -> np.ndarray:
    """A photo-like image with some grain, as photos have (the rule shapes texture, it does not invent it)."""
    grain = np.random.default_rng(seed).uniform(-0.2, 0.2, (48, 64, 1))
    return np.clip(smooth_photo(48, 64, seed) + grain, 0, 1).astype(np.float32)


def orientation(rgb: np.ndarray) -> float:
    """Structure-tensor orientation of the luminance: +1 all horizontal lines, -1 all vertical, 0 none."""
    gy, gx = np.gradient(rgb @ np.array([0.299, 0.587, 0.114], np.float32))
    return float(((gy**2).sum() - (gx**2).sum()) / ((gy**2).sum() + (gx**2).sum() + 1e-12))


def test_a_striped_style_draws_stripes_of_its_orientation_on_seen_and_unseen_photos():
    torch.manual_seed(0)
    style = torch.from_numpy(horizontal_stripes()).permute(2, 0, 1)[None]
    # The Gram term alone: the steerable-pyramid statistics (texture_weight) have too few scales to work
    # with on 24-px crops, and with them the stripes did not appear within this test's budget. No
    # structure term either: the presets weigh it against the whole loss; against the Gram term alone
    # a penalty on new texture (then change-TV) flattened the stripes (orientation 0.03).
    loss = StyleLoss(RandomFilters(levels=2, maps=16), style, StyleLossConfig(content_weight=0.0, colour_weight=0.0, texture_weight=0.0))
    config = TrainConfig(
        iterations=80, batch=2, crop=24, train_size=64, pool=8, steps_min=4, steps_max=8, lr=0.03, grad_checkpoint_every=0,
        augment_scale=0.2, augment_flips=True, augment_jitter=0.2, structure_weight=0.0,
    )
    rule = train_rule([textured_photo(0)], loss, RuleConfig(hidden_channels=4, width=24), config).rule
    for seed in (0, 1):  # 0 trained on, 1 never seen
        photo = textured_photo(seed)
        out = apply_rule(rule, Photo(photo), 8).rgb
        print(f"photo {seed}: orientation {orientation(photo):.3f} -> {orientation(out):.3f}")
        assert abs(orientation(photo)) < 0.1
        assert orientation(out) > 0.15  # ten times the photo's; 0.21-0.43 over three training seeds
