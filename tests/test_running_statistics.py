import pytest
import torch
from helpers import smooth_photo, stripes

from ncaedit.errors import NcaError
from ncaedit.lossnet import RandomFilters
from ncaedit.rule import RuleConfig
from ncaedit.running_statistics import SCENE, RunningStatistics
from ncaedit.state import make_state
from ncaedit.style_loss import StyleLoss, StyleLossConfig
from ncaedit.train import TrainConfig, train_rule

TINY = dict(batch=2, crop=32, train_size=64, pool=8, steps_min=2, steps_max=4)


def style_and_loss(share: float):
    style = torch.rand(1, 3, 48, 48, generator=torch.Generator().manual_seed(0))
    return style, StyleLoss(RandomFilters(levels=2, maps=8), style, StyleLossConfig(style_size=48, crop_share=share))


def test_parts_read_one_mean_and_fold_in_their_crops_in_order():
    running = RunningStatistics(share=0.5, decay=0.5)
    a, b = running.part([0, 0]), running.part([0])
    x1 = torch.tensor([[1.0], [3.0]], requires_grad=True)
    mixed = a("k", x1)
    assert torch.equal(mixed, x1)  # no mean yet: each crop is compared as it is...
    mixed.sum().backward()
    assert torch.equal(x1.grad, torch.full((2, 1), 0.5))  # ...at `share` of the gradient (the loss divides by share)
    b("k", torch.tensor([[8.0]]))
    assert running.means == {}  # nothing folded in while the batch is scored
    running.commit([a, b])
    assert torch.equal(running.means["k", 0], torch.tensor([4.0]))  # the mean of the batch's three crops
    c = running.part([0])
    assert torch.equal(c("k", torch.tensor([[0.0]])), torch.tensor([[2.0]]))  # half the crop, half the mean
    running.commit([c])
    assert torch.equal(running.means["k", 0], torch.tensor([2.0]))  # decay 0.5 between the old mean and the new crop


def test_each_photo_has_its_own_means_and_scenes_are_asked_for_all_of_the_style():
    running = RunningStatistics(share=0.5, decay=0.5)
    first = running.part([0, 1, SCENE])
    first("k", torch.tensor([[2.0], [6.0], [100.0]]))
    running.commit([first])
    assert running.means == {("k", 0): torch.tensor([2.0]), ("k", 1): torch.tensor([6.0])}  # the scene is in neither
    x = torch.tensor([[0.0], [0.0], [0.0]], requires_grad=True)
    mixed = running.part([0, 1, SCENE])("k", x)
    assert mixed.tolist() == [[1.0], [3.0], [0.0]]  # each photo's crop with its photo's mean; the scene's alone
    with pytest.raises(ValueError):
        running.part([0])("k", x)  # one source for each crop


def test_a_crop_is_asked_for_its_share_once_recent_crops_have_the_style():
    style, loss = style_and_loss(0.25)
    running = loss.running_statistics()
    like_style = running.part([0])  # recent crops that match the style's statistics exactly
    loss(make_state(style, 2), torch.Generator().manual_seed(1), like_style)
    running.commit([like_style])
    flat = make_state(torch.full((1, 3, 48, 48), 0.5), 2)
    alone = loss(flat, torch.Generator().manual_seed(1))
    shared = loss(flat, torch.Generator().manual_seed(1), running.part([0]))
    # mixed - style's = share (crop's - style's): the squared distance share^2 as large, divided by share
    assert float(shared["style"]) == pytest.approx(0.25 * float(alone["style"]), rel=1e-3)
    assert float(shared["texture"]) < 0.5 * float(alone["texture"])
    for k in ("colour", "content", "overflow"):  # the other terms are the crop's own
        assert float(shared[k]) == pytest.approx(float(alone[k]), rel=1e-6)


def test_until_there_is_a_mean_a_crop_is_pushed_as_hard_as_alone():
    style, loss = style_and_loss(0.2)
    state = make_state(torch.rand(2, 3, 40, 40, generator=torch.Generator().manual_seed(2)), 2)
    grads = []
    for running in (None, loss.running_statistics().part([0, 0])):
        x = state.clone().requires_grad_(True)
        total = loss(x, torch.Generator().manual_seed(3), running)["total"]
        grads.append(torch.autograd.grad(total, x)[0])
    assert torch.allclose(grads[0], grads[1], rtol=1e-4, atol=1e-7)


def test_crop_share_one_asks_every_crop_for_all_of_the_style_and_outside_it_is_refused():
    assert style_and_loss(1.0)[1].running_statistics() is None
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(NcaError, match="crop_share"):
            StyleLossConfig(crop_share=bad).validate()


def test_training_scores_every_crop_against_the_running_mean():
    seen, sources = [], []

    class Recording(StyleLoss):
        def forward(self, state, generator=None, running=None):
            seen.append(None if running is None else {k: v.clone() for k, v in running.owner.means.items()})
            sources.append(None if running is None else running.sources)
            return super().forward(state, generator, running)

    style = torch.from_numpy(stripes(48, 48)).permute(2, 0, 1)[None]
    loss = Recording(RandomFilters(levels=2, maps=8), style, StyleLossConfig(style_size=48))
    train_rule([smooth_photo(48, 64)], loss, RuleConfig(hidden_channels=2, width=8), TrainConfig(**(TINY | {"iterations": 6, "scenes": 0.5})))
    assert len(seen) == 6 and None not in seen
    later = [means for means in seen if means]
    assert seen[0] == {} and len(later) >= 2  # the first batch had no mean; later ones do...
    assert any(not torch.equal(later[0][k], later[-1][k]) for k in later[0])  # ...and it follows the crops
    assert {s for batch in sources for s in batch} == {0, SCENE}  # crops of the photo and of scenes...
    assert all(key[1] == 0 for means in later for key in means)  # ...and only the photo's go into its means
