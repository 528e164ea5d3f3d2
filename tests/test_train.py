"""Training end to end with the offline loss network: the result moves toward the style while the
photo's structure survives."""

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from ncaedit.apply import apply_rule
from ncaedit.image import Photo
from ncaedit.lossnet import RandomFilters
from ncaedit.rule import RuleConfig
from ncaedit.style_loss import StyleLoss, StyleLossConfig
from ncaedit.train import TrainConfig, train_rule

from helpers import smooth_photo, stripes


def colour_distance(a: np.ndarray, b: np.ndarray, n: int = 64) -> float:
    """Sliced Wasserstein-1 distance between two images' RGB distributions, fixed directions."""
    d = np.random.default_rng(0).normal(size=(n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    pa, pb = np.sort(a.reshape(-1, 3) @ d.T, axis=0), np.sort(b.reshape(-1, 3) @ d.T, axis=0)
    qa = pa[np.linspace(0, len(pa) - 1, 256).astype(int)]
    qb = pb[np.linspace(0, len(pb) - 1, 256).astype(int)]
    return float(np.abs(qa - qb).mean())


def luminance(rgb):
    return rgb @ np.array([0.299, 0.587, 0.114], np.float32)


TINY = dict(iterations=40, batch=2, crop=32, train_size=64, pool=8, steps_min=6, steps_max=10, lr=1e-2, grad_checkpoint_every=4)  # fast's lr


def train_tiny(photo, style, seed=0, iterations=TINY["iterations"]):
    torch.manual_seed(0)
    loss = StyleLoss(RandomFilters(levels=3, maps=32), torch.from_numpy(style).permute(2, 0, 1)[None], StyleLossConfig(content_weight=0.3))
    cfg = TrainConfig(**(TINY | {"seed": seed, "iterations": iterations}))
    return train_rule([photo], loss, RuleConfig(hidden_channels=6, width=24), cfg)


def test_training_moves_toward_the_style_and_keeps_structure():
    photo, style = smooth_photo(48, 64), stripes(64, 64)
    result = train_tiny(photo, style)
    assert len(result.history) == TINY["iterations"] and not result.interrupted
    out = apply_rule(result.rule, Photo(photo), steps=TINY["steps_max"]).rgb
    before, after = colour_distance(photo, style), colour_distance(out, style)
    ssim = structural_similarity(luminance(photo), luminance(out), data_range=1.0)
    print(f"colour distance {before:.3f} -> {after:.3f}, luminance SSIM {ssim:.3f}")
    assert after < 0.8 * before
    assert ssim > 0.3
    first, last = np.mean([h["total"] for h in result.history[:5]]), np.mean([h["total"] for h in result.history[-5:]])
    assert last < first


def test_same_seed_same_rule():
    photo, style = smooth_photo(48, 64), stripes(64, 64)
    a, b = train_tiny(photo, style, seed=3, iterations=3), train_tiny(photo, style, seed=3, iterations=3)
    c = train_tiny(photo, style, seed=4, iterations=3)
    assert all(torch.equal(p, q) for p, q in zip(a.rule.parameters(), b.rule.parameters()))
    assert not all(torch.equal(p, q) for p, q in zip(a.rule.parameters(), c.rule.parameters()))


def test_ctrl_c_keeps_the_best_rule_so_far():
    photo, style = smooth_photo(48, 64), stripes(64, 64)
    loss = StyleLoss(RandomFilters(levels=2, maps=8), torch.from_numpy(style).permute(2, 0, 1)[None], StyleLossConfig())
    calls = {"n": 0}

    def interrupting(state, gen):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return loss(state, gen)

    result = train_rule([photo], interrupting, RuleConfig(hidden_channels=4, width=8), TrainConfig(**(TINY | {"iterations": 20})))
    assert result.interrupted and len(result.history) == 3
    ema, emas = None, []
    for h in result.history:
        ema = h["total"] if ema is None else 0.9 * ema + 0.1 * h["total"]
        emas.append(ema)
    assert result.best_loss == min(emas)


def test_a_batch_trained_side_by_side_is_the_whole_batch():
    """workers: the batch's crops rolled out and scored in parts on threads give the rule the whole
    batch gives (up to rounding), with a loss whose every term is on, generator-drawn ones included."""
    photo, style = smooth_photo(48, 64), stripes(64, 64)
    config = StyleLossConfig(content="features", patch_weight=1.0, patch_guide=0.5, style_distance="sw")
    loss = StyleLoss(RandomFilters(levels=3, maps=16), torch.from_numpy(style).permute(2, 0, 1)[None], config)
    cfg = TrainConfig(**(TINY | {"iterations": 4, "batch": 3}))
    rules = [train_rule([photo], loss, RuleConfig(hidden_channels=4, width=16), cfg, workers=w) for w in (1, 2, 2)]
    for a, b in zip(rules[0].rule.parameters(), rules[1].rule.parameters()):
        assert torch.allclose(a, b, atol=1e-4), float((a - b).abs().max())
    assert [h["total"] for h in rules[0].history] == pytest.approx([h["total"] for h in rules[1].history], rel=1e-4)
    assert all(torch.equal(a, b) for a, b in zip(rules[1].rule.parameters(), rules[2].rule.parameters()))  # and deterministic


def test_training_threads_are_restored():
    before = torch.get_num_threads()
    photo, style = smooth_photo(48, 64), stripes(64, 64)
    loss = StyleLoss(RandomFilters(levels=2, maps=8), torch.from_numpy(style).permute(2, 0, 1)[None], StyleLossConfig())
    train_rule([photo], loss, RuleConfig(hidden_channels=2, width=8), TrainConfig(**(TINY | {"iterations": 2})), workers=2)
    assert torch.get_num_threads() == before
