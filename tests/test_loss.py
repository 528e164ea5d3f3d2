import pytest
import torch

from ncaedit.errors import NcaError
from ncaedit.lossnet import VGG19, RandomFilters, load_loss_net
from ncaedit.state import make_state
from ncaedit.steerable import luminance
from ncaedit.style_loss import StyleLoss, StyleLossConfig, gram


def vgg19_features_state_dict(seed=0):
    from torchvision.models.vgg import cfgs, make_layers

    torch.manual_seed(seed)
    return {f"features.{k}": v for k, v in make_layers(cfgs["E"]).state_dict().items()}


def test_vgg19_loads_from_an_explicit_path(tmp_path):
    sd = vgg19_features_state_dict()
    torch.save(sd, tmp_path / "vgg.pth")
    choice = load_loss_net("auto", tmp_path / "vgg.pth")
    assert isinstance(choice.net, VGG19) and choice.warning is None
    feats = choice.net.features(torch.rand(1, 3, 64, 64))
    assert [f.shape[1] for f in feats] == [64, 128, 256, 512, 512, 512]
    assert torch.equal(choice.net.body[0].weight, sd["features.0.weight"])


def test_vgg19_loads_from_the_torch_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(vgg19_features_state_dict(), tmp_path / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth")
    assert isinstance(load_loss_net("auto").net, VGG19)


def test_missing_vgg_falls_back_with_one_warning_unless_asked_for():
    choice = load_loss_net("auto")
    assert isinstance(choice.net, RandomFilters)
    assert "VGG19 weights unavailable" in choice.warning and "--vgg-weights" in choice.warning
    with pytest.raises(NcaError, match="offline"):
        load_loss_net("vgg19")


def test_bad_vgg_weight_files(tmp_path):
    with pytest.raises(NcaError, match="no such file"):
        load_loss_net("auto", tmp_path / "none.pth")
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(NcaError, match="not a readable"):
        load_loss_net("auto", tmp_path / "junk.pth")
    torch.save({"features.0.weight": torch.zeros(2)}, tmp_path / "small.pth")
    with pytest.raises(NcaError, match="not VGG19"):
        load_loss_net("auto", tmp_path / "small.pth")


def test_random_filters_are_the_same_everywhere():
    a, b = RandomFilters(), RandomFilters()
    x = torch.rand(1, 3, 32, 32)
    assert all(torch.equal(p, q) for p, q in zip(a.features(x), b.features(x)))
    assert "seed=0" in a.name


def test_gram_is_a_normalised_inner_product():
    f = torch.rand(2, 5, 4, 6)
    g = gram(f)
    assert g.shape == (2, 5, 5) and torch.allclose(g, g.transpose(1, 2))
    assert torch.allclose(g[0, 1, 2], (f[0, 1] * f[0, 2]).mean())


@pytest.mark.parametrize("distance", ["gram", "sw"])
def test_style_loss_is_zero_on_the_style_itself_and_larger_elsewhere(distance):
    torch.manual_seed(0)
    net = RandomFilters(levels=2, maps=16)
    style = torch.rand(1, 3, 32, 32)
    style += 0.5 - luminance(style).mean()  # as light as a levelled photo
    loss = StyleLoss(net, style, StyleLossConfig(style_distance=distance, content_weight=0, colour_weight=1))
    same = loss(make_state(style, 4), torch.Generator().manual_seed(1))
    other = loss(make_state(torch.full((1, 3, 32, 32), 0.5), 4), torch.Generator().manual_seed(1))
    assert same["style"] < 1e-6 and same["colour"] < 1e-6 and same["texture"] < 1e-6
    assert other["style"] > 0.05 and other["colour"] > 0.05 and other["texture"] > 0.05
    assert set(same) == {"style", "texture", "colour", "overflow", "total"}


def test_colour_term_asks_for_the_palette_lighter_or_darker_where_the_photo_is():
    style = torch.rand(1, 3, 32, 32) * 0.5 + 0.25  # mean luminance 0.5
    loss = StyleLoss(RandomFilters(levels=2, maps=8), style, StyleLossConfig(content_weight=0))

    def colour(photo, result):
        state = make_state(photo, 4)
        state[:, 3:6] = result * 2 - 1
        return float(loss(state, torch.Generator().manual_seed(0))["colour"])

    dark, light = torch.full((1, 3, 32, 32), 0.3), torch.full((1, 3, 32, 32), 0.7)
    assert colour(dark, style - 0.2) < 0.1 * colour(dark, style)  # the palette, 0.2 darker
    assert colour(light, style + 0.2) < 0.1 * colour(light, style)
    assert colour(dark, style - 0.2) < 0.1 * colour(light, style - 0.2)


def test_content_term_measures_layout_change():
    net = RandomFilters(levels=2, maps=16)
    # a layout coarser than the term's blur (on pixel noise alone it has nothing to keep)
    photo = torch.nn.functional.interpolate(torch.rand(1, 3, 4, 4), size=(32, 32), mode="bilinear")
    loss = StyleLoss(net, torch.rand(1, 3, 32, 32), StyleLossConfig())
    s = make_state(photo, 4)
    assert loss(s)["content"] < 1e-6
    flipped = s.clone()
    flipped[:, 3:6] = s[:, 3:6].flip(-1)
    assert loss(flipped)["content"] > 0.1


def test_projected_quantiles_match_sorting_the_target_each_time():
    """The style's projections are sorted once (a bank of directions); a comparison draws from the
    bank and gives what sorting the whole target along those directions gives."""
    from ncaedit.style_loss import ProjectedQuantiles, sliced_wasserstein

    g = torch.Generator().manual_seed(0)
    target = torch.rand(3, 20000, generator=g) ** 2  # skewed, and larger than the kept quantiles
    q = ProjectedQuantiles(target, bank=16, quantiles=4096)
    x = torch.rand(2, 3, 1000, generator=g)
    pick = torch.randint(16, (8,), generator=torch.Generator().manual_seed(5))
    exact = sliced_wasserstein(x, torch.sort(q.directions[pick] @ target, dim=-1).values, q.directions[pick]) / q.scale
    assert q.distance(x, 8, torch.Generator().manual_seed(5)) == pytest.approx(float(exact), rel=1e-3)
    same = q.distance(target[:, torch.randperm(20000, generator=g)[:1000]][None], 8, g)
    shifted = q.distance((target[:, :1000] + 0.2)[None], 8, g)
    assert float(same) < 0.02 * float(shifted)


def test_style_loss_scores_each_crop_on_its_own():
    """What training side by side relies on (train.train_step's parts): every term of a batch is the
    mean of its crops' terms, given the same draws from the generator."""
    style = torch.rand(1, 3, 64, 64)
    config = StyleLossConfig(content="features", patch_weight=1.0, patch_guide=0.5, texture_weight=1.0, style_size=64)
    for distance in ("gram", "sw"):
        loss = StyleLoss(RandomFilters(levels=3, maps=8), style, StyleLossConfig(**vars(config) | {"style_distance": distance}))
        state = make_state(torch.rand(3, 3, 40, 40), 4, seed=1)
        state[:, 3:6] = torch.rand(3, 3, 40, 40) * 2 - 1
        whole = loss(state, torch.Generator().manual_seed(7))
        parts = [loss(state[i : i + 1], torch.Generator().manual_seed(7)) for i in range(3)]
        for k, v in whole.items():
            assert float(v) == pytest.approx(sum(float(p[k]) for p in parts) / 3, rel=1e-4), (distance, k)
