"""The steerable-pyramid texture statistics (steerable.py) and the layout content term."""

import math

import pytest
import torch

from ncaedit.state import make_state
from ncaedit.steerable import TextureStatistics, texture_statistics
from ncaedit.style_loss import StyleLoss, StyleLossConfig, layout_distance
from ncaedit.lossnet import RandomFilters


def stripes(angle_deg, size=48, period=8.0, seed=0):
    """Noisy sine stripes at an angle, as (1, 3, size, size) in [0, 1]."""
    y, x = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32), indexing="ij")
    a = math.radians(angle_deg)
    wave = torch.sin((x * math.cos(a) + y * math.sin(a)) * 2 * math.pi / period)
    noise = torch.rand(size, size, generator=torch.Generator().manual_seed(seed)) * 0.2
    return ((wave * 0.4 + 0.5 + noise - 0.1).clamp(0, 1)).expand(1, 3, size, size).contiguous()


def dots(size=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    img = torch.ones(1, 3, size, size) * 0.9
    for _ in range(12):
        y, x = torch.randint(0, size - 6, (2,), generator=g).tolist()
        img[..., y : y + 5, x : x + 5] = 0.1
    return img


def test_a_texture_is_closer_to_another_sample_of_itself_than_to_other_textures_or_noise():
    loss = TextureStatistics(stripes(0, seed=0))
    same = loss(stripes(0, seed=1))
    for other in (stripes(90), stripes(45), dots(), torch.rand(1, 3, 48, 48)):
        assert loss(other) > 5 * same
    assert loss(stripes(0, seed=0)) < 1e-10


def test_statistics_are_invariant_to_circular_shifts_and_work_at_any_size():
    img = torch.rand(2, 3, 37, 53)
    a = texture_statistics(img)
    b = texture_statistics(torch.roll(img, shifts=(11, -7), dims=(2, 3)))
    for k in a:
        assert a[k].shape[0] == 2 and torch.isfinite(a[k]).all()
        assert torch.allclose(a[k], b[k], rtol=1e-3, atol=1e-6), k


@pytest.mark.parametrize("image", ["random", "constant"])
def test_gradients_are_finite(image):
    loss = TextureStatistics(dots())
    x = (torch.rand(2, 3, 40, 40) if image == "random" else torch.full((2, 3, 40, 40), 0.5)).requires_grad_(True)
    loss(x).backward()
    assert torch.isfinite(x.grad).all()
    if image == "random":  # a flat image is a stationary point (every statistic is even in the image)
        assert x.grad.abs().sum() > 0


def test_style_loss_adds_the_texture_term_and_it_pulls_toward_the_style():
    style = stripes(0)
    cfg = StyleLossConfig(style_weight=0, texture_weight=1, content_weight=0, colour_weight=0)
    loss = StyleLoss(RandomFilters(levels=2, maps=8), style, cfg)
    x = stripes(90).clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=0.02)
    first = None
    for _ in range(30):
        opt.zero_grad()
        terms = loss(torch.cat([x.detach() * 2 - 1, x * 2 - 1], 1))
        first = first if first is not None else terms["texture"].item()
        terms["total"].backward()
        opt.step()
    assert set(terms) == {"style", "texture", "overflow", "total"}
    assert terms["texture"].item() < 0.7 * first


def test_layout_term_keeps_where_things_are_and_lets_fine_detail_go():
    photo = torch.zeros(1, 3, 48, 48)
    photo[..., 10:30, 8:24] = 1.0
    detail = (photo + 0.3 * (torch.rand_like(photo) - 0.5)).clamp(0, 1)  # grain, same layout
    moved = torch.roll(photo, 12, dims=3)
    assert layout_distance(photo, photo, 2.0) < 1e-8
    assert layout_distance(moved, photo, 2.0) > 20 * layout_distance(detail, photo, 2.0)
    # the overall brightness is the colour term's: a darker version of the photo keeps its layout
    assert layout_distance(photo - 0.2, photo, 2.0) < 1e-6
    # but a faint copy does not (the correlation alone scored it as the photo)
    assert layout_distance(0.4 + 0.1 * photo, photo, 2.0) > 0.75
    assert layout_distance(0.4 + 0.1 * photo, photo, 2.0) > 3 * layout_distance(0.2 + 0.5 * photo, photo, 2.0)
    assert layout_distance(1 - photo, photo, 2.0) > 1.9  # a negative does not
    loss = StyleLoss(RandomFilters(levels=2, maps=8), torch.rand(1, 3, 32, 32), StyleLossConfig(content="layout"))
    assert loss(make_state(photo, 4))["content"] < 1e-8


def test_unknown_content_term_is_refused():
    from ncaedit.errors import NcaError

    with pytest.raises(NcaError, match="content must be one of"):
        StyleLossConfig(content="pixels").validate()


def test_per_layer_normalisation_puts_vgg19_and_the_offline_net_on_one_scale():
    """Each layer's term is relative to the style's own statistics, so the same weights mean the
    same for pretrained VGG19 (here with random He-initialised weights: no download) and the
    offline filter bank."""
    from torchvision.models.vgg import cfgs, make_layers

    from ncaedit.lossnet import VGG19

    torch.manual_seed(0)
    body = make_layers(cfgs["E"])[:30]
    for m in body:
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            torch.nn.init.zeros_(m.bias)
    vgg = VGG19({f"features.{k}": v for k, v in body.state_dict().items()})
    style, photo = dots(64), stripes(30, size=64)
    cfg = StyleLossConfig(content_weight=1, colour_weight=0)
    terms = {}
    for name, net in (("vgg", vgg), ("random", RandomFilters(levels=3, maps=16))):
        loss = StyleLoss(net, style, cfg)
        assert loss(make_state(style, 4))["style"] < 1e-6
        state = make_state(photo, 4)
        state[:, 3:6] = stripes(120, size=64) * 2 - 1  # another image where the photo was
        terms[name] = loss(state)
    for k in ("style", "content"):
        assert 0.05 < terms["vgg"][k] / terms["random"][k] < 20, k
