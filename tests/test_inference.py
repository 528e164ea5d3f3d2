"""The fast arithmetic (stencils, folded weights, the in-place engine) against the specification (reference.py)."""

import pytest
import torch
from helpers import random_rule

from ncaedit import inference
from ncaedit.reference import ReferenceRule, reference_rollout
from ncaedit.rule import PADDINGS, _SparseStep, fire_mask, rollout
from ncaedit.state import make_state


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("scales", [1, 3])
def test_step_matches_the_definition_with_gradients(padding, scales):
    rule = random_rule(1, padding=padding, hidden_channels=5, width=24, scales=scales)
    s = make_state(torch.rand(2, 3, 9, 11), 5, seed=2)
    masks = [fire_mask(rule, 3, i, 0, 0, 9, 11) for i in range(3)]  # several steps: gradients flow through the state too
    grads = []
    for step in (rule.step, ReferenceRule(rule)):
        rule.zero_grad()
        out = s
        for mask in masks:
            out = step(out, mask)
        out[:, 3:].pow(2).sum().backward()
        grads.append((out.detach(), [p.grad.clone() for p in rule.parameters()]))
    (a, ga), (b, gb) = grads
    assert torch.allclose(a, b, atol=1e-5)
    for x, y in zip(ga, gb):
        assert torch.allclose(x, y, rtol=1e-4, atol=1e-4)


def test_hand_written_backward_is_the_exact_gradient():
    torch.manual_seed(0)
    double = dict(dtype=torch.float64, requires_grad=True)
    padded, w1, b1, w2 = torch.randn(2, 6, 7, 5, **double), torch.randn(8, 20, **double), torch.randn(8, **double), torch.randn(2, 8, **double)
    rows = torch.tensor([0, 3, 5, 7, 19, 22, 29, 35, 38])  # some of the 2 * 4 * 5 cells
    assert torch.autograd.gradcheck(_SparseStep.apply, (padded, None, w1, b1, w2, rows))
    coarse, w1_wide = torch.randn(2, 4, 5, 40, **double), torch.randn(8, 60, **double)  # two coarse spacings' features
    assert torch.autograd.gradcheck(_SparseStep.apply, (padded, coarse, w1_wide, b1, w2, rows))


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("fire_rate", [0.5, 1.0])
@pytest.mark.parametrize("skip_idle", [True, False])
@pytest.mark.parametrize("scales", [1, 3])
def test_in_place_engine_matches_the_autograd_rollout(monkeypatch, padding, fire_rate, skip_idle, scales):
    monkeypatch.setattr(inference, "BAND_CELLS", 40)  # many bands of 3 rows, a short last band, two threads
    monkeypatch.setattr(inference, "COARSE_CELLS", 80)  # coarse features for two bands at a time, some chunks away from both edges
    rule = random_rule(2, padding=padding, fire_rate=fire_rate, hidden_channels=4, width=16, scales=scales)
    s = make_state(torch.rand(2, 3, 41, 13), 4, seed=5)  # tall enough for bands away from both edges (reach 7)
    with torch.enable_grad():
        expected = rollout(rule, s, 5, seed=7, top=3, left=2, first_step=4).detach()
    threads = torch.get_num_threads()
    with torch.no_grad():
        got = inference.run_inplace(rule, s, 5, seed=7, top=3, left=2, first_step=4, skip_idle=skip_idle)
    assert torch.get_num_threads() == threads  # the workers' thread setting does not leak
    assert torch.allclose(got, expected, atol=1e-4)  # float32 sums in another order; random rules reach values of ~40
    assert torch.equal(got[:, :3], s[:, :3])


def test_engine_runs_under_inference_mode_and_keeps_the_input():
    rule = random_rule(3, hidden_channels=4, width=16)
    s = make_state(torch.rand(1, 3, 20, 20), 4)
    before = s.clone()
    with torch.inference_mode():
        out = inference.run_inplace(rule, s, 3)
    assert torch.equal(s, before)
    assert not torch.equal(out, s)


def test_noise_values_do_not_change():
    """Masks and hidden noise come from these numbers: the same rule and seed give the same image
    across versions (and faster implementations of the hash must keep them)."""
    from ncaedit.noise import position_uniform

    expected = [[0.35620224475860596, 0.5489855408668518, 0.8018423914909363], [0.7397095561027527, 0.9429271817207336, 0.6852865219116211]]
    assert position_uniform(7, -3, 10, 20, 2, 3).tolist() == expected
    assert position_uniform(2**31 + 5, 11, 0, 0, 1, 2).tolist() == [[0.4450220465660095, 0.015269935131072998]]


@pytest.mark.parametrize("scales", [1, 2, 4])
def test_both_fast_paths_match_the_reference_rollout(scales):
    rule = random_rule(4, hidden_channels=4, width=16, scales=scales)
    s = make_state(torch.rand(1, 3, 20, 24), 4, seed=1)
    # this random rule's values reach about 80 in six steps: float32 sums taken in another order (another
    # CPU's vector width) differ by up to ~5e-5, a wrong stencil or mask by far more
    tol = {"atol": 1e-4}
    with torch.no_grad():
        expected = reference_rollout(ReferenceRule(rule), s, 6, seed=3, top=2, left=5, first_step=1)
        assert torch.allclose(inference.run_inplace(rule, s, 6, seed=3, top=2, left=5, first_step=1), expected, **tol)
        assert torch.allclose(inference.run_inplace(rule, s, 6, seed=3, top=2, left=5, first_step=1, skip_idle=False), expected, **tol)
    assert torch.allclose(rollout(rule, s, 6, seed=3, top=2, left=5, first_step=1).detach(), expected, **tol)
    assert not torch.allclose(expected, s)
