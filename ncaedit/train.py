"""Training a rule: a pool of states cut from the photos, rollouts of random length, and a loss.

Each iteration takes a batch from the pool, replaces some of it with fresh crops (so the rule
learns to edit from the very first step), runs the rule for a random number of steps, scores the
result with the loss, and writes the states back to the pool (so it also learns to stay stable when
run for longer than it was trained for).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ncaedit.config import CHECKPOINT_INTERVAL, TrainConfig
from ncaedit.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from ncaedit.errors import NcaError
from ncaedit.rule import Rule, RuleConfig, rollout
from ncaedit.state import make_state
from ncaedit.stop import StopOnSignals


@dataclass
class TrainResult:
    rule: Rule
    history: list[dict[str, float]] = field(default_factory=list)  # per iteration
    best_loss: float = math.inf
    interrupted: bool = False  # stopped early by Ctrl-C or SIGTERM
    stop_signal: int | None = None  # which signal stopped it (None for a second, immediate Ctrl-C)
    diverged: str = ""  # why training stopped on numbers it could not recover from; "" if it did not
    recoveries: int = 0  # times a non-finite loss, state or gradient was recovered from
    resumed_at: int = 0  # iterations that a resumed checkpoint had already done
    seconds: float = 0.0


@dataclass
class Checkpointing:
    """Where train_rule saves its progress (see checkpoint.py), how often, and whether it continues
    from there. `key` names what the loss depends on beyond the photos and recipe (mode, style
    image hash, prompt, ...), so that a checkpoint is only ever continued by the same run."""

    path: Path
    interval: int = CHECKPOINT_INTERVAL  # iterations between saves; also saved when a signal stops training
    resume: bool = False
    key: str = ""


MAX_RECOVERIES = 5  # non-finite numbers recovered from before training gives up
RECOVERY_LR_FACTOR = 0.5  # each recovery multiplies the learning rate by this


def lr_at(config: TrainConfig, iteration: int) -> float:
    """The step schedule: lr, times lr_decay at each fraction of the run in lr_decay_at."""
    milestones = {max(1, int(f * config.iterations)) for f in config.lr_decay_at}
    return config.lr * config.lr_decay ** sum(iteration >= m for m in milestones)


def run_identity(photos: list[np.ndarray], rule_config: RuleConfig, config: TrainConfig, key: str) -> str:
    h = hashlib.sha256(json.dumps([key, dataclasses.asdict(rule_config), dataclasses.asdict(config)], sort_keys=True).encode())
    for p in photos:
        h.update(str(p.shape).encode())
        h.update(np.ascontiguousarray(p).tobytes())
    return h.hexdigest()


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
    on_iteration: Callable[[int, dict[str, float]], bool | None] | None = None,
    checkpointing: Checkpointing | None = None,
    on_event: Callable[[str], None] | None = None,
    device: str | torch.device = "cpu",
) -> TrainResult:
    """Train a rule on crops of `photos` (float RGB arrays in [0, 1], already at training size).

    Faults: a non-finite loss, state or gradient restores the last good weights and optimizer state,
    lowers the learning rate and carries on (`on_event` is told); after MAX_RECOVERIES training
    stops with `diverged` set. SIGINT/SIGTERM stop training at the end of the current iteration
    (a second one at once), as does `on_iteration(iteration, record)` returning True. The best rule
    so far is returned either way.
    """
    config.validate()
    rng = random.Random(config.seed)
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    rule = Rule(rule_config).to(device)
    sample = CropSampler(photos, config.crop, rng)
    hidden = rule_config.hidden_channels
    opt = torch.optim.Adam(rule.parameters(), lr=config.lr)
    result = TrainResult(rule)
    best_state, ema, lr_scale, seconds_before, first = None, None, 1.0, 0.0, 0
    identity = run_identity(photos, rule_config, config, checkpointing.key) if checkpointing else ""
    if checkpointing and checkpointing.resume:
        ck = load_checkpoint(checkpointing.path)
        if ck.identity != identity:
            raise NcaError(
                f"{checkpointing.path}: this checkpoint belongs to another run (other photos, settings or style); "
                "resume with the options of the interrupted run, or drop --resume to start over"
            )
        try:
            rule.load_state_dict(ck.rule)
            opt.load_state_dict(ck.optimizer)
            rng.setstate(ck.rng)
            gen.set_state(ck.generator)
            torch.set_rng_state(ck.torch_rng)
        except (KeyError, TypeError, ValueError, RuntimeError):
            raise NcaError(f"{checkpointing.path}: checkpoint is damaged; delete it and run without --resume to start over") from None
        result.history, result.best_loss, result.recoveries = ck.history, ck.best_loss, ck.recoveries
        best_state, ema, lr_scale, seconds_before = ck.best, ck.ema, ck.lr_scale, ck.seconds
        first = result.resumed_at = ck.iteration

    def fresh(n: int) -> torch.Tensor:
        return make_state(sample(n).to(device), hidden, seed=rng.randrange(2**31))

    def snapshot() -> tuple[dict, dict]:
        return {k: v.detach().clone() for k, v in rule.state_dict().items()}, copy.deepcopy(opt.state_dict())

    def save(iterations_done: int) -> None:
        ck = Checkpoint(
            identity=identity, iteration=iterations_done, rule=rule.state_dict(), best=best_state, optimizer=opt.state_dict(),
            rng=rng.getstate(), generator=gen.get_state(), torch_rng=torch.get_rng_state(), history=result.history,
            best_loss=result.best_loss, ema=ema, lr_scale=lr_scale, recoveries=result.recoveries,
            seconds=seconds_before + time.perf_counter() - start,
        )
        save_checkpoint(checkpointing.path, ck)

    def stop_requested(name: str) -> None:
        if on_event:
            on_event(f"{name}: stopping after this iteration (send it again to stop at once)")

    pool = torch.cat([fresh(1) for _ in range(config.pool)])
    good = snapshot()  # the last weights and optimizer state that gave finite numbers
    start = time.perf_counter()
    with StopOnSignals(on_request=stop_requested) as stop:
        try:
            for it in range(first, config.iterations):
                lr = lr_at(config, it) * lr_scale
                for group in opt.param_groups:
                    group["lr"] = lr
                idx = torch.tensor(rng.sample(range(config.pool), config.batch), device=device)
                batch = pool[idx].clone()
                if config.fresh_per_batch:
                    batch[: config.fresh_per_batch] = fresh(config.fresh_per_batch)
                steps = rng.randint(config.steps_min, config.steps_max)
                out = rollout(rule, batch, steps, seed=rng.randrange(2**31), checkpoint_every=config.grad_checkpoint_every)
                terms = loss_fn(out, gen)
                loss = terms["total"]
                fault = "state" if not torch.isfinite(out).all() else "loss" if not torch.isfinite(loss) else None
                if fault is None:
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    if not all(torch.isfinite(p.grad).all() for p in rule.parameters() if p.grad is not None):
                        fault = "gradient"
                if fault:
                    result.recoveries += 1
                    if result.recoveries > MAX_RECOVERIES:
                        result.diverged = (
                            f"training diverged (non-finite {fault} at iteration {it + 1}) and did not recover after "
                            f"{MAX_RECOVERIES} retries with lower learning rates"
                        )
                        break
                    rule.load_state_dict(good[0])
                    opt.load_state_dict(good[1])
                    lr_scale *= RECOVERY_LR_FACTOR
                    pool[idx] = fresh(config.batch)  # the states that went bad leave the pool
                    if on_event:
                        lowered = lr * RECOVERY_LR_FACTOR
                        on_event(f"non-finite {fault} at iteration {it + 1}: restored the last good weights, learning rate now {lowered:.3g}")
                    continue
                record = {k: float(v.detach()) for k, v in terms.items()} | {"steps": steps, "lr": lr}
                result.history.append(record)
                ema = record["total"] if ema is None else 0.9 * ema + 0.1 * record["total"]
                if ema < result.best_loss:  # these weights made this loss: keep them before stepping
                    result.best_loss = ema
                    best_state = {k: v.detach().clone() for k, v in rule.state_dict().items()}
                good = snapshot()
                with torch.no_grad():
                    for p in rule.parameters():  # per-parameter gradient normalisation: steady steps on any loss scale
                        if p.grad is not None:
                            p.grad /= p.grad.norm() + 1e-8
                opt.step()
                pool[idx] = out.detach()
                asked = on_iteration is not None and on_iteration(it, record) is True  # the caller may ask to stop
                if asked or stop.signal is not None or (checkpointing and (it + 1) % checkpointing.interval == 0):
                    if checkpointing:
                        save(it + 1)
                    if asked or stop.signal is not None:
                        result.interrupted, result.stop_signal = True, stop.signal
                        break
        except KeyboardInterrupt:  # a second signal, or Ctrl-C where no handler could be installed
            result.interrupted = True
    result.seconds = seconds_before + time.perf_counter() - start
    if best_state is not None:
        rule.load_state_dict(best_state)
    result.rule = rule.cpu()
    return result
