"""Training a rule: a pool of states cut from the photos, rollouts of random length, and a loss.

Each iteration takes a batch from the pool, replaces some of it with fresh crops (so the rule
learns to edit from the very first step), runs the rule for a random number of steps, scores the
result with the loss, and writes the states back to the pool (so it also learns to stay stable when
run for longer than it was trained for).
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from ncaedit.errors import NcaError
from ncaedit.rule import Rule, RuleConfig, rollout
from ncaedit.state import make_state


@dataclass
class TrainConfig:
    iterations: int = 300
    batch: int = 4
    crop: int = 96  # side of the square training crops
    train_size: int = 256  # photos are resized so their longer side is this before cropping
    pool: int = 64
    steps_min: int = 16
    steps_max: int = 32
    fresh_per_batch: int = 1  # fresh crops injected into every batch
    lr: float = 2e-3
    lr_decay_at: tuple[float, ...] = (0.5, 0.8)  # fractions of the run where the LR is multiplied by lr_decay
    lr_decay: float = 0.3
    checkpoint_every: int = 8  # steps per gradient-checkpoint segment; 0 keeps all activations
    seed: int = 0

    def validate(self) -> None:
        if self.iterations < 1 or self.batch < 1 or self.pool < self.batch:
            raise NcaError("train: iterations and batch must be >= 1 and pool >= batch")
        if self.crop < 16 or self.train_size < self.crop:
            raise NcaError("train: crop must be >= 16 and train_size >= crop")
        if not 1 <= self.steps_min <= self.steps_max:
            raise NcaError("train: need 1 <= steps_min <= steps_max")
        if not 0 <= self.fresh_per_batch <= self.batch:
            raise NcaError("train: fresh_per_batch must be between 0 and batch")
        if self.lr <= 0 or self.checkpoint_every < 0:
            raise NcaError("train: lr must be > 0 and checkpoint_every >= 0")


@dataclass
class TrainResult:
    rule: Rule
    history: list[dict[str, float]] = field(default_factory=list)  # per iteration
    best_loss: float = math.inf
    interrupted: bool = False
    seconds: float = 0.0


class CropSampler:
    """Random square crops (as (3, crop, crop) tensors in [0, 1]) from a list of photos."""

    def __init__(self, photos: list[np.ndarray], crop: int, rng: random.Random):
        self.photos = [torch.from_numpy(p).permute(2, 0, 1).contiguous() for p in photos]
        for p in self.photos:
            if min(p.shape[1:]) < crop:
                raise NcaError(f"a training photo is smaller than the {crop}-pixel crop; use a smaller --crop")
        self.crop, self.rng = crop, rng

    def __call__(self, n: int) -> torch.Tensor:
        out = []
        for _ in range(n):
            p = self.photos[self.rng.randrange(len(self.photos))]
            y = self.rng.randrange(p.shape[1] - self.crop + 1)
            x = self.rng.randrange(p.shape[2] - self.crop + 1)
            out.append(p[:, y : y + self.crop, x : x + self.crop])
        return torch.stack(out)


def train_rule(
    photos: list[np.ndarray],
    loss_fn: Callable[[torch.Tensor, torch.Generator], dict[str, torch.Tensor]],
    rule_config: RuleConfig,
    config: TrainConfig,
    on_iteration: Callable[[int, dict[str, float]], None] | None = None,
    device: str | torch.device = "cpu",
) -> TrainResult:
    """Train a rule on crops of `photos` (float RGB arrays in [0, 1], already at training size).

    Ctrl-C (KeyboardInterrupt) ends training early; the best rule so far is returned either way.
    """
    config.validate()
    rng = random.Random(config.seed)
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    rule = Rule(rule_config).to(device)
    sample = CropSampler(photos, config.crop, rng)
    hidden = rule_config.hidden_channels

    def fresh(n: int) -> torch.Tensor:
        return make_state(sample(n).to(device), hidden, seed=rng.randrange(2**31))

    pool = torch.cat([fresh(1) for _ in range(config.pool)])
    opt = torch.optim.Adam(rule.parameters(), lr=config.lr)
    milestones = sorted({max(1, int(f * config.iterations)) for f in config.lr_decay_at})
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones, gamma=config.lr_decay)
    result = TrainResult(rule)
    best_state, ema = None, None
    start = time.perf_counter()
    try:
        for it in range(config.iterations):
            idx = torch.tensor(rng.sample(range(config.pool), config.batch), device=device)
            batch = pool[idx].clone()
            if config.fresh_per_batch:
                batch[: config.fresh_per_batch] = fresh(config.fresh_per_batch)
            steps = rng.randint(config.steps_min, config.steps_max)
            out = rollout(rule, batch, steps, seed=rng.randrange(2**31), checkpoint_every=config.checkpoint_every)
            terms = loss_fn(out, gen)
            loss = terms["total"]
            if not torch.isfinite(loss):
                raise NcaError(f"training diverged at iteration {it + 1} (loss is {loss.item()}); try a lower --lr")
            record = {k: float(v.detach()) for k, v in terms.items()} | {"steps": steps, "lr": sched.get_last_lr()[0]}
            result.history.append(record)
            ema = record["total"] if ema is None else 0.9 * ema + 0.1 * record["total"]
            if ema < result.best_loss:  # these weights made this loss: keep them before stepping
                result.best_loss = ema
                best_state = {k: v.detach().clone() for k, v in rule.state_dict().items()}
            opt.zero_grad(set_to_none=True)
            loss.backward()
            with torch.no_grad():
                for p in rule.parameters():  # per-parameter gradient normalisation: steady steps on any loss scale
                    if p.grad is not None:
                        p.grad /= p.grad.norm() + 1e-8
            opt.step()
            sched.step()
            pool[idx] = out.detach()
            if on_iteration:
                on_iteration(it, record)
    except KeyboardInterrupt:
        result.interrupted = True
    result.seconds = time.perf_counter() - start
    if best_state is not None:
        rule.load_state_dict(best_state)
    result.rule = rule.cpu()
    return result
