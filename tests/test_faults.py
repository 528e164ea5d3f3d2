"""Training faults: non-finite numbers are recovered from or stop training cleanly; signals stop it
cleanly; checkpoints let an interrupted run continue."""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from ncaedit import train as train_module
from ncaedit.checkpoint import load_checkpoint
from ncaedit.cli import main
from ncaedit.errors import NcaError
from ncaedit.cli.job import Job, run_job
from ncaedit.lossnet import RandomFilters
from ncaedit.modes import Mode, ModeSetup
from ncaedit.rule import RuleConfig
from ncaedit.nca_format import load_rule
from ncaedit.style_loss import StyleLoss, StyleLossConfig
from ncaedit.train import MAX_RECOVERIES, Checkpointing, TrainConfig, lr_at, train_rule

from helpers import TINY_PRESET, smooth_photo, stripes, write_rgb

RULE = RuleConfig(hidden_channels=2, width=8)
CONFIG = dict(iterations=8, batch=1, crop=16, train_size=32, pool=2, steps_min=2, steps_max=3, grad_checkpoint_every=0, lr=1e-2)
PHOTOS = [smooth_photo(32, 32)]


@pytest.fixture(scope="module")
def style_loss():
    style = torch.from_numpy(stripes(32, 32)).permute(2, 0, 1)[None]
    return StyleLoss(RandomFilters(levels=2, maps=8), style, StyleLossConfig(style_size=32))


class Faulty:
    """A loss that goes wrong on chosen calls: 'loss' makes the total NaN, 'grad' keeps it finite
    but makes its gradient NaN, 'signal' sends this process a signal."""

    def __init__(self, loss, faults: dict):
        self.loss, self.faults, self.calls = loss, faults, 0

    def __call__(self, state, gen):
        self.calls += 1
        terms = self.loss(state, gen)
        fault = self.faults.get(self.calls)
        if fault == "loss":
            terms["total"] = terms["total"] * float("nan")
        elif fault == "grad":  # sqrt'(0) is infinite: a finite loss whose gradient is not
            terms["total"] = terms["total"] + torch.sqrt((state - state.detach()).abs().sum())
        elif fault in ("SIGINT", "SIGTERM"):
            os.kill(os.getpid(), getattr(signal, fault))
        elif fault == "SIGINT twice":
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
        return terms


def _finite(rule) -> bool:
    return all(torch.isfinite(p).all() for p in rule.parameters())


@pytest.mark.parametrize("fault", ["loss", "grad"])
def test_a_non_finite_loss_or_gradient_is_recovered(style_loss, fault):
    events = []
    config = TrainConfig(**CONFIG)
    result = train_rule(PHOTOS, Faulty(style_loss, {3: fault}), RULE, config, on_event=events.append)
    assert result.recoveries == 1 and not result.diverged
    assert len(events) == 1 and f"non-finite {'gradient' if fault == 'grad' else 'loss'} at iteration 3" in events[0]
    assert len(result.history) == config.iterations - 1  # the failed iteration is not recorded
    lrs = [h["lr"] for h in result.history]
    assert lrs[:2] == [lr_at(config, 0), lr_at(config, 1)]
    assert lrs[2] == pytest.approx(lr_at(config, 3) * 0.5)  # the learning rate was lowered from then on
    assert _finite(result.rule)


def test_a_non_finite_state_is_recovered(style_loss, monkeypatch):
    calls = []
    real = train_module.rollout

    def rollout(*args, **kwargs):
        out = real(*args, **kwargs)
        calls.append(1)
        return out * float("inf") if len(calls) == 2 else out

    monkeypatch.setattr(train_module, "rollout", rollout)
    events = []
    result = train_rule(PHOTOS, style_loss, RULE, TrainConfig(**CONFIG), on_event=events.append)
    assert result.recoveries == 1 and "non-finite state at iteration 2" in events[0]
    assert _finite(result.rule)


@pytest.fixture
def rules_made(monkeypatch):
    """Every Rule that train_rule builds, so a test can look at its weights from inside the loss."""
    made, real = [], train_module.Rule

    def make(config):
        made.append(real(config))
        return made[-1]

    monkeypatch.setattr(train_module, "Rule", make)
    return made


def _weights(rule):
    return {k: v.detach().clone() for k, v in rule.state_dict().items()}


def test_recovery_restores_the_last_good_weights(style_loss, rules_made):
    """After a fault, the next iteration runs on the weights of the last good one, not on what
    the failed iteration was given."""
    seen = []
    faulty = Faulty(style_loss, {4: "loss"})

    def recording(state, gen):
        seen.append(_weights(rules_made[0]))
        return faulty(state, gen)

    train_rule(PHOTOS, recording, RULE, TrainConfig(**CONFIG))
    # call 4 failed; call 5 must run on the weights that call 3 ran on
    assert all(torch.equal(seen[4][k], seen[2][k]) for k in seen[2])
    assert not all(torch.equal(seen[3][k], seen[2][k]) for k in seen[2])


def test_unrecoverable_divergence_stops_and_keeps_the_best_rule(style_loss):
    faults = {n: "loss" for n in range(3, 100)}
    result = train_rule(PHOTOS, Faulty(style_loss, faults), RULE, TrainConfig(**CONFIG | {"iterations": 20}))
    assert result.diverged and f"after {MAX_RECOVERIES} retries" in result.diverged
    assert result.recoveries == MAX_RECOVERIES + 1 and len(result.history) == 2
    assert _finite(result.rule)


def test_cli_divergence_saves_the_best_rule_and_fails_in_one_line(tmp_path, capfd, monkeypatch):
    photo = write_rgb(tmp_path / "photo.png", smooth_photo(48, 64))
    style = write_rgb(tmp_path / "style.png", stripes(64, 64))
    (tmp_path / "tiny.toml").write_text(TINY_PRESET)
    from ncaedit import limits

    monkeypatch.setitem(limits.BOUNDS, "lr", limits.Bound(0, 1e31, above_low=True))  # --lr 1e30 is refused otherwise; here it forces divergence
    monkeypatch.setattr(sys, "argv", ["ncaedit", "style", photo, "--style", style, "--preset", str(tmp_path / "tiny.toml"), "--lr", "1e30", "--iterations", "20"])
    with pytest.raises(SystemExit) as exit_:
        main()
    err = capfd.readouterr().err
    assert exit_.value.code == 2
    assert err.count("restored the last good weights") == MAX_RECOVERIES
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: training diverged") and "photo-style.nca" in last and "lower --lr" in last
    rf = load_rule(tmp_path / "photo-style.nca")  # the last good rule is kept, and it loads
    assert rf.metadata["diverged"] and _finite(rf.rule)
    assert not (tmp_path / "photo-style.png").exists()


def test_signal_stops_at_the_end_of_an_iteration_with_a_checkpoint(style_loss, tmp_path):
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    ckpt = Checkpointing(tmp_path / "run.ckpt", interval=100)
    events = []
    result = train_rule(PHOTOS, Faulty(style_loss, {3: "SIGTERM"}), RULE, TrainConfig(**CONFIG), checkpointing=ckpt, on_event=events.append)
    assert result.interrupted and result.stop_signal == signal.SIGTERM
    assert len(result.history) == 3  # the iteration that was running finished
    assert "SIGTERM: stopping after this iteration" in events[0]
    assert load_checkpoint(ckpt.path).iteration == 3
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before  # handlers given back


def test_a_second_signal_stops_at_once(style_loss):
    result = train_rule(PHOTOS, Faulty(style_loss, {3: "SIGINT twice"}), RULE, TrainConfig(**CONFIG))
    assert result.interrupted and result.stop_signal is None and len(result.history) == 2
    assert _finite(result.rule)


def test_resume_continues_where_the_checkpoint_left_off(style_loss, tmp_path, rules_made):
    config = TrainConfig(**CONFIG)
    path = tmp_path / "run.ckpt"
    first = train_rule(PHOTOS, Faulty(style_loss, {4: "SIGINT"}), RULE, config, checkpointing=Checkpointing(path, interval=2))
    saved = load_checkpoint(path)
    assert saved.iteration == 4 and len(saved.history) == 4

    starts, weights_at_start = [], []

    def loss(state, gen):
        if not weights_at_start:
            weights_at_start.append(_weights(rules_made[-1]))
        return style_loss(state, gen)

    resumed = train_rule(
        PHOTOS, loss, RULE, config, checkpointing=Checkpointing(path, interval=2, resume=True),
        on_iteration=lambda it, rec: starts.append(it),
    )
    assert resumed.resumed_at == 4 and starts[0] == 4
    assert all(torch.equal(weights_at_start[0][k], saved.rule[k]) for k in saved.rule)  # the saved weights
    assert len(resumed.history) == config.iterations and resumed.history[:4] == first.history
    assert resumed.seconds >= saved.seconds
    # the optimizer state continued too: Adam has now taken all 8 steps, not the 4 since resuming
    assert all(int(state["step"]) == config.iterations for state in load_checkpoint(path).optimizer["state"].values())


@pytest.mark.parametrize("change", ["photo", "config", "key"])
def test_a_checkpoint_from_another_run_is_refused(style_loss, tmp_path, change):
    path = tmp_path / "run.ckpt"
    train_rule(PHOTOS, Faulty(style_loss, {2: "SIGINT"}), RULE, TrainConfig(**CONFIG), checkpointing=Checkpointing(path, key="a"))
    photos = [smooth_photo(32, 32, seed=9)] if change == "photo" else PHOTOS
    config = TrainConfig(**CONFIG | ({"seed": 5} if change == "config" else {}))
    with pytest.raises(NcaError, match="belongs to another run"):
        train_rule(photos, style_loss, RULE, config, checkpointing=Checkpointing(path, resume=True, key="b" if change == "key" else "a"))


def _mode_with(loss_fn):
    def setup(recipe, photo, device, warn):
        return ModeSetup(loss_fn=loss_fn, metadata={"mode": "test"})

    return Mode(kind="style", name="test", setup=setup, progress_info=lambda rec: "")


class _Console:
    def __init__(self):
        self.lines = []

    def print(self, text, **options):
        self.lines.append(str(text))


def test_job_sigterm_saves_and_exits_then_resume_finishes(style_loss, tmp_path):
    """The whole flow through job.run_job, shared by every training mode."""
    class Bar:
        console = _Console()

        def __enter__(self):
            return self

        def __exit__(self, *a):
            pass

        def add_task(self, *a, **k):
            return 0

        def update(self, *a, **k):
            pass

        def advance(self, *a, **k):
            pass

    photo = Path(write_rgb(tmp_path / "photo.png", smooth_photo(48, 64)))
    (tmp_path / "tiny.toml").write_text(TINY_PRESET)
    # on the CPU, where the style_loss fixture's network is (auto would pick a GPU where there is one)
    job = Job(photo=photo, preset=str(tmp_path / "tiny.toml"), checkpoint_interval=1, overrides={"train": {"iterations": 6}}, device="cpu")
    console = _Console()
    with pytest.raises(SystemExit) as exit_:
        run_job(job, _mode_with(Faulty(style_loss, {3: "SIGTERM"})), console, Bar)
    assert exit_.value.code == 128 + signal.SIGTERM
    rule, ckpt, image = tmp_path / "photo-test.nca", tmp_path / "photo-test.ckpt", tmp_path / "photo-test.png"
    assert rule.is_file() and ckpt.is_file() and not image.exists()  # saved, and not applied
    assert load_rule(rule).metadata["interrupted"] and load_checkpoint(ckpt).iteration == 3
    assert any("--resume" in line for line in console.lines)

    # a new run without --resume does not touch the interrupted run's files
    job_fresh = Job(photo=photo, preset=str(tmp_path / "tiny.toml"), overrides={"train": {"iterations": 1}}, device="cpu")
    assert run_job(job_fresh, _mode_with(style_loss), _Console(), Bar)["out"].name == "photo-test-2.png"

    job.resume = True
    done = run_job(job, _mode_with(style_loss), console, Bar)
    assert done["out"] == image and image.is_file() and not ckpt.exists()
    assert done["result"].resumed_at == 3
    assert load_rule(rule).metadata["iterations_done"] == 6 and not load_rule(rule).metadata["interrupted"]


MICRO_PRESET = """
[rule]
hidden_channels = 2
width = 8
[train]
batch = 1
crop = 16
train_size = 32
pool = 2
steps_min = 2
steps_max = 3
grad_checkpoint_every = 0
[loss]
style_size = 32
"""


def test_sigterm_to_the_real_command(tmp_path):
    """A real signal to the command, mid-training: exit 143, no traceback, the best rule and a
    checkpoint on disk, no half-written files."""
    photo = write_rgb(tmp_path / "photo.png", smooth_photo(48, 64))
    style = write_rgb(tmp_path / "style.png", stripes(64, 64))
    (tmp_path / "tiny.toml").write_text(MICRO_PRESET)
    env = dict(os.environ, NCAEDIT_OFFLINE="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "ncaedit", "style", photo, "--style", style, "--preset", str(tmp_path / "tiny.toml"), "--iterations", "100000"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    ckpt = tmp_path / "photo-style.ckpt"
    deadline = time.time() + 240
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err and "SIGTERM" in err and "--resume" in err
    assert load_checkpoint(ckpt).iteration >= 10
    assert load_rule(tmp_path / "photo-style.nca").metadata["interrupted"]
    assert not (tmp_path / "photo-style.png").exists() and not list(tmp_path.glob(".*.part"))


def test_a_signal_ignored_by_the_parent_stays_ignored(monkeypatch):
    """Shells start background jobs with SIGINT ignored; training must not start listening to it."""
    from ncaedit.stop import StopOnSignals

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with StopOnSignals():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL  # SIGTERM is still handled
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_fault_in_one_part_of_a_batch_trained_side_by_side_is_recovered(style_loss):
    """workers=2: each iteration scores two parts on two threads; a NaN in either is one fault."""
    lock, calls = threading.Lock(), []

    def one_part_faulty(state, gen):
        with lock:
            calls.append(1)
            n = len(calls)
        terms = style_loss(state, gen)
        if n == 5:  # one of the two parts of iteration 3
            terms["total"] = terms["total"] * float("nan")
        return terms

    events = []
    config = TrainConfig(**CONFIG | {"batch": 2})
    result = train_rule(PHOTOS, one_part_faulty, RULE, config, on_event=events.append, workers=2)
    assert len(calls) == 2 * config.iterations
    assert result.recoveries == 1 and "non-finite loss at iteration 3" in events[0]
    assert len(result.history) == config.iterations - 1 and _finite(result.rule)
