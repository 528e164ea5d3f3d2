import random

import numpy as np
import pytest
import torch

from ncaedit.augment import Augment
from ncaedit.config import TrainConfig
from ncaedit.errors import NcaError
from ncaedit.scenes import _power_law, scene
from ncaedit.train import CropSampler


def test_a_scene_is_an_image_in_range_and_the_same_for_the_same_seed():
    a, b = scene(64, random.Random(3)), scene(64, random.Random(3))
    assert a.shape == (3, 64, 64) and torch.isfinite(a).all()
    assert a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, b)
    assert not torch.equal(a, scene(64, random.Random(4)))


def test_scenes_are_varied_photo_like_images_not_noise():
    """Several colours, regions with edges between them, and mostly smooth: neighbouring pixels
    differ far less than random pixels do."""
    rng = random.Random(0)
    for _ in range(4):
        s = scene(96, rng)
        assert float(s.std((1, 2)).mean()) > 0.05  # not a flat colour
        neighbour = float((s[:, :, 1:] - s[:, :, :-1]).abs().mean())
        shuffled = s.flatten(1)[:, torch.randperm(96 * 96, generator=torch.Generator().manual_seed(0))]
        random_pairs = float((shuffled[:, 1:] - shuffled[:, :-1]).abs().mean())
        assert neighbour < 0.35 * random_pairs


def test_shape_sizes_follow_the_power_law_within_their_bounds():
    rng = random.Random(0)
    r = np.array([_power_law(0.02, 0.5, rng) for _ in range(20000)])
    assert r.min() >= 0.02 and r.max() <= 0.5
    # density ~ 1/r^3: P(r > 2 lo) is about 1/4 when hi >> lo
    assert 0.22 < float((r > 0.04).mean()) < 0.27


def test_the_sampler_mixes_scenes_in_at_the_share_asked():
    photo = np.zeros((40, 40, 3), np.float32)  # black: any crop with light pixels came from a scene
    scenes = [np.ones((40, 40, 3), np.float32)]
    crops = CropSampler([photo], 40, random.Random(0), Augment(), scenes=scenes, scene_share=0.3).cut(400)[0]
    from_scenes = float((crops.flatten(1).mean(1) > 0.5).float().mean())
    assert 0.24 < from_scenes < 0.36
    plain = CropSampler([photo], 40, random.Random(0), Augment(), scenes=scenes, scene_share=0.0).cut(50)[0]
    assert plain.max() == 0


@pytest.mark.parametrize("share", [-0.1, 1.0, float("nan")])
def test_a_scene_share_out_of_range_is_refused(share):
    with pytest.raises(NcaError, match="scenes"):
        TrainConfig(scenes=share).validate()


def test_training_sees_scene_crops_as_often_as_asked_and_none_when_off():
    """The loss is shown fresh states whose source is a scene, not the (flat grey) photo."""
    from ncaedit.rule import RuleConfig
    from ncaedit.state import SOURCE
    from ncaedit.train import train_rule

    def seen(share: float) -> float:
        flat = []

        def loss(state, generator):
            source = state[:, SOURCE]
            flat.extend(float(s.detach().std()) < 1e-3 for s in source)  # rounding in the augmentation leaves ~1e-6
            return {"total": state[:, 3:].pow(2).mean()}

        config = TrainConfig(iterations=60, batch=2, crop=16, train_size=32, pool=4, steps_min=1, steps_max=1, fresh_per_batch=2, scenes=share, structure_weight=0.0)
        train_rule([np.full((32, 32, 3), 0.5, np.float32)], loss, RuleConfig(hidden_channels=2, width=8, scales=1), config)
        return 1 - sum(flat) / len(flat)

    assert seen(0.0) == 0
    assert 0.3 < seen(0.5) < 0.7
