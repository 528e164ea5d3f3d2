import random

import numpy as np
import pytest
import torch

from ncaedit.augment import Augment, augment_crop, crop_side, jitter_colours
from ncaedit.errors import NcaError
from ncaedit.train import CropSampler, TrainConfig


def test_crops_keep_their_shape_and_range_under_every_augmentation():
    photo = np.random.default_rng(0).uniform(0, 1, (60, 90, 3)).astype(np.float32)
    aug = Augment(scale=0.5, flips=True, jitter=0.4, hue=0.5)
    crops = CropSampler([photo], 32, random.Random(0), aug).cut(16)[0]
    assert crops.shape == (16, 3, 32, 32)
    assert crops.min() >= 0 and crops.max() <= 1 and torch.isfinite(crops).all()


def test_crop_sides_stay_within_the_scale_range_and_the_photo():
    rng = random.Random(1)
    sides = [crop_side(40, Augment(scale=0.5), rng, 1000) for _ in range(500)]
    assert min(sides) >= round(40 / 1.5) and max(sides) <= round(40 * 1.5)
    assert min(sides) < 32 and max(sides) > 50  # the range is used, not one value
    assert max(crop_side(40, Augment(scale=3), rng, 45) for _ in range(100)) == 45
    assert crop_side(40, Augment(), rng, 1000) == 40


def test_no_augmentation_cuts_plain_crops():
    photo = np.random.default_rng(0).uniform(0, 1, (40, 40, 3)).astype(np.float32)
    crop = CropSampler([photo], 40, random.Random(0), Augment()).cut(1)[0][0]
    assert torch.equal(crop, torch.from_numpy(photo).permute(2, 0, 1))


def test_crops_are_cut_from_the_photo_levelled_as_a_whole():
    """Training reads each photo as applying the rule does: levelled by its whole-photo levels."""
    from ncaedit.state import photo_levels

    photo = np.random.default_rng(0).uniform(0, 0.3, (40, 60, 3)).astype(np.float32)  # dark
    crops = CropSampler([photo], 40, random.Random(0), Augment(), contrast=0.2).cut(4)[0]
    whole = photo_levels(photo, 0.2)(torch.from_numpy(photo).permute(2, 0, 1))
    for crop in crops:
        assert any(torch.equal(crop, whole[:, :, x : x + 40]) for x in range(21))
    assert 0.45 < float(crops.mean()) < 0.55  # near grey, where the dark photo was near black


def test_flips_only_rearrange_pixels():
    x = torch.rand(3, 16, 16)
    for seed in range(8):
        y = augment_crop(x, 16, Augment(flips=True), random.Random(seed))
        assert torch.equal(y.flatten().sort().values, x.flatten().sort().values)


def test_colour_jitter_keeps_grey_grey_and_hue_turns_colours():
    grey = torch.full((3, 4, 4), 0.5)
    assert torch.allclose(jitter_colours(grey, 1.0, 1.3, 0.5, 0.25), grey, atol=1e-6)
    red = torch.zeros(3, 2, 2)
    red[0] = 1
    third = jitter_colours(red, 1.0, 1.0, 1.0, 1 / 3)  # a third of a turn takes red to green
    assert torch.allclose(third[:, 0, 0], torch.tensor([0.0, 1.0, 0.0]), atol=1e-5)
    assert torch.allclose(jitter_colours(red, 0.5, 1.0, 1.0, 0.0), red * 0.5)


def test_augment_options_are_validated():
    for bad in ({"augment_scale": -0.1}, {"augment_jitter": 1.0}, {"augment_hue": 0.6}, {"structure_weight": -1.0}, {"structure_power": 0.5}):
        with pytest.raises(NcaError):
            TrainConfig(**bad).validate()
