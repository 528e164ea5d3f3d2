"""The CUDA paths against the CPU's: the same rule, state and seed give the same result on both.

These need a CUDA GPU, so `python -m pytest -q` leaves them out (the `cuda` marker, deselected in
pyproject.toml); on a machine with one, `python -m pytest -q -m cuda` runs them. There the rest of
the suite runs on CUDA too wherever it uses the default device, `auto`.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers import random_rule, smooth_photo, stripes, write_rgb
from ncaedit.apply import apply_rule
from ncaedit.image import Photo, load_image
from ncaedit.inference import run_inplace
from ncaedit.nca_format import load_rule
from ncaedit.rule import rollout
from ncaedit.state import make_state

pytestmark = pytest.mark.cuda


@pytest.fixture(autouse=True)
def _needs_cuda():
    if not torch.cuda.is_available():
        pytest.fail("these tests check the CUDA paths: run them on a machine with a CUDA GPU (-m cuda)")


@pytest.mark.parametrize("scales", [1, 3])
def test_training_rollout_and_its_gradients_match_the_cpu(scales):
    rule_cpu = random_rule(scales=scales, hidden_channels=4, width=16)
    rule_gpu = random_rule(scales=scales, hidden_channels=4, width=16).cuda()
    state = make_state(torch.from_numpy(smooth_photo(40, 56)).permute(2, 0, 1)[None], 4, seed=3)
    results = []
    for rule, x in ((rule_cpu, state), (rule_gpu, state.cuda())):
        out = rollout(rule, x, 6, seed=5, checkpoint_every=2)
        out[:, 3:6].square().mean().backward()
        results.append((out.detach().cpu(), rule.w1.weight.grad.cpu(), rule.w2.weight.grad.cpu()))
    (out_c, g1_c, g2_c), (out_g, g1_g, g2_g) = results
    assert torch.allclose(out_c, out_g, atol=1e-4, rtol=1e-4)
    assert torch.allclose(g1_c, g1_g, atol=1e-5, rtol=1e-3) and torch.allclose(g2_c, g2_g, atol=1e-5, rtol=1e-3)
    assert g2_g.abs().sum() > 0


@pytest.mark.parametrize("scales", [1, 3])
def test_engine_on_cuda_matches_the_cpu_engine_and_the_rollout(scales):
    rule = random_rule(scales=scales, hidden_channels=4, width=16)
    state = make_state(torch.from_numpy(smooth_photo(50, 70)).permute(2, 0, 1)[None], 4, seed=1)
    on_cpu = run_inplace(rule, state.clone(), 8, seed=2).clone()
    rule_gpu = random_rule(scales=scales, hidden_channels=4, width=16).cuda()
    on_gpu = run_inplace(rule_gpu, state.cuda(), 8, seed=2).cpu()
    with torch.no_grad():
        rolled = rollout(rule_gpu, state.cuda(), 8, seed=2).cpu()
    assert (on_gpu - state).abs().max() > 0.05  # the rule does change the state
    assert torch.allclose(on_gpu, on_cpu, atol=1e-4)
    assert torch.allclose(on_gpu, rolled, atol=1e-4)


def test_apply_rule_on_cuda_gives_the_cpu_result_with_tiles():
    rule = random_rule(scales=3, hidden_channels=4, width=16)
    photo = Photo(smooth_photo(90, 120), None, 8)
    on_cpu = apply_rule(rule, photo, 6, seed=4, device="cpu").rgb
    on_gpu = apply_rule(rule, photo, 6, seed=4, device="cuda", tile=48).rgb  # several tiles and their halos
    assert np.abs(on_gpu.astype(np.float32) - on_cpu.astype(np.float32)).max() <= 1e-3
    assert np.abs(on_cpu - photo.rgb).mean() > 0.01


def test_style_trains_on_cuda_and_the_rule_file_applies_on_the_cpu(tmp_path, tiny_preset, cli):
    photo, style = write_rgb(tmp_path / "p.png", smooth_photo()), write_rgb(tmp_path / "s.png", stripes())
    code, err = cli("style", photo, "--style", style, "--preset", tiny_preset, "--device", "cuda", "--out", tmp_path / "out.png", "--rule", tmp_path / "r.nca")
    assert code == 0, err
    rule = load_rule(tmp_path / "r.nca").rule
    assert all(p.device.type == "cpu" and torch.isfinite(p).all() for p in rule.parameters())
    on_gpu = load_image(tmp_path / "out.png").rgb
    code, err = cli("apply", tmp_path / "r.nca", photo, "--device", "cpu", "--out", tmp_path / "cpu.png")
    assert code == 0, err
    assert np.abs(load_image(tmp_path / "cpu.png").rgb.astype(np.float32) - on_gpu.astype(np.float32)).max() <= 1 / 255 + 1e-6
