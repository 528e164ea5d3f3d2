"""Training a rule: a pool of states cut from the photos, rollouts of random length, and a loss.

The parts: the pool (StatePool), the run's state (Run; `resume` and `save_progress` restore and
save it), one iteration (`train_step`, returning a loss record or a Fault; on a CPU's cores its batch
is rolled out and scored in parts side by side), recovery from faults
(`recover`), and the loop that ties them together (`train_rule`). Each iteration takes a batch from the pool, replaces some of it with fresh crops (so the rule
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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ncaedit.augment import Augment, augment_crop, crop_side
from ncaedit.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from ncaedit.config import CHECKPOINT_INTERVAL, TrainConfig
from ncaedit.device import one_thread_workers, torch_threads
from ncaedit.errors import NcaError
from ncaedit.rule import Rule, RuleConfig, rollout
from ncaedit.running_statistics import SCENE, RunningStatistics, StatisticsPart
from ncaedit.scenes import SCENES, scene
from ncaedit.state import levelled, make_state, photo_levels
from ncaedit.structure import structure_penalty
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
    """Random square crops (as (3, crop, crop) tensors in [0, 1]) from a list of photos, each levelled
    as a whole to `contrast` (state.photo_levels, as applying the rule does), augmented (augment.py);
    a `scene_share` of them from generated `scenes` (scenes.py) instead."""

    def __init__(
        self, photos: list[np.ndarray], crop: int, rng: random.Random, augment: Augment | None = None, contrast: float = 0.0,
        scenes: list[np.ndarray] = (), scene_share: float = 0.0,
    ):
        def level(p):
            return levelled(torch.from_numpy(p).permute(2, 0, 1), photo_levels(p, contrast)).contiguous()

        self.photos, self.scenes = [level(p) for p in photos], [level(p) for p in scenes]
        for p in self.photos + self.scenes:
            if min(p.shape[1:]) < crop:
                raise NcaError(f"a training photo is smaller than the {crop}-pixel crop; use a smaller --crop")
        self.crop, self.rng, self.augment, self.scene_share = crop, rng, augment or Augment(), scene_share

    def cut(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(n crops, which photo each is from: its index, or SCENE)."""
        out, sources = [], []
        for _ in range(n):
            from_scene = bool(self.scenes) and self.rng.random() < self.scene_share
            source = self.scenes if from_scene else self.photos
            k = self.rng.randrange(len(source))
            p = source[k]
            sources.append(SCENE if from_scene else k)
            side = crop_side(self.crop, self.augment, self.rng, min(p.shape[1:]))
            y = self.rng.randrange(p.shape[1] - side + 1)
            x = self.rng.randrange(p.shape[2] - side + 1)
            cut = p[:, y : y + side, x : x + side]
            out.append(augment_crop(cut, self.crop, self.augment, self.rng) if self.augment.active else cut)
        return torch.stack(out), torch.tensor(sources)


def objective(
    loss_fn: Callable, state: torch.Tensor, generator: torch.Generator, structure_weight: float, structure_power: float, running: StatisticsPart | None = None,
) -> dict[str, torch.Tensor]:
    """What training minimises: the loss's terms, plus the structure term (structure.py, each crop's
    charged as `structure_power` of it; weighted into "total") when structure_weight > 0. `running`
    goes to a loss that offers running statistics (StyleLoss.running_statistics: each crop asked for
    its share of the whole photo's style)."""
    terms = loss_fn(state, generator) if running is None else loss_fn(state, generator, running)
    if structure_weight > 0:
        terms["structure"] = structure_penalty(state, structure_power)
        terms["total"] = terms["total"] + structure_weight * terms["structure"]
    return terms


class StatePool:
    """The pool of partly edited training states: a batch is sampled from it (some replaced by fresh
    crops), rolled out, and committed back, so the rule also learns to stay stable when run longer."""

    def __init__(self, sample: CropSampler, hidden: int, size: int, rng: random.Random, device, regions: int = 0):
        self.sample, self.hidden, self.rng, self.device, self.regions = sample, hidden, rng, device, regions
        made = [self.fresh(1) for _ in range(size)]
        self.states, self.sources = torch.cat([s for s, _ in made]), torch.cat([k for _, k in made])  # sources: CropSampler.cut

    def fresh(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        crops, sources = self.sample.cut(n)
        return make_state(crops.to(self.device), self.hidden, seed=self.rng.randrange(2**31), regions=self.regions), sources

    def draw(self, batch: int, fresh: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(indices, states, sources): `batch` states from the pool, the first `fresh` of them new crops."""
        idx = torch.tensor(self.rng.sample(range(len(self.states)), batch))
        states, sources = self.states[idx.to(self.device)].clone(), self.sources[idx].clone()
        if fresh:
            states[:fresh], sources[:fresh] = self.fresh(fresh)
        return idx, states, sources

    def commit(self, idx: torch.Tensor, states: torch.Tensor, sources: torch.Tensor) -> None:
        self.states[idx.to(self.device)], self.sources[idx] = states.detach(), sources

    def replace(self, idx: torch.Tensor) -> None:
        """Fresh crops in place of states that went bad."""
        self.states[idx.to(self.device)], self.sources[idx] = self.fresh(len(idx))


@dataclass
class Run:
    """Everything a training run changes: what a checkpoint saves and a resume restores."""

    rule: Rule
    opt: torch.optim.Optimizer
    rng: random.Random  # crops, batches, rollout lengths and seeds
    gen: torch.Generator  # the loss's own randomness
    result: TrainResult
    best_state: dict | None = None  # the weights that gave the best smoothed loss
    ema: float | None = None  # the smoothed loss
    lr_scale: float = 1.0  # left by fault recoveries
    seconds_before: float = 0.0  # spent before a resume
    first: int = 0  # the iteration to start at
    good: tuple[dict, dict] | None = None  # the last weights and optimizer state that gave finite numbers


@dataclass
class Fault:
    kind: str  # "state", "loss" or "gradient": what was not finite
    idx: torch.Tensor  # the pool states that went bad
    lr: float


def new_run(rule_config: RuleConfig, config: TrainConfig, device) -> Run:
    rng = random.Random(config.seed)
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    rule = Rule(rule_config).to(device)
    return Run(rule, torch.optim.Adam(rule.parameters(), lr=config.lr), rng, gen, TrainResult(rule))


def _snapshot(run: Run) -> tuple[dict, dict]:
    return {k: v.detach().clone() for k, v in run.rule.state_dict().items()}, copy.deepcopy(run.opt.state_dict())


def resume(run: Run, path: Path, identity: str) -> None:
    """Continue `run` from the checkpoint at `path`, which must belong to the same run (`identity`)."""
    ck = load_checkpoint(path)
    if ck.identity != identity:
        raise NcaError(
            f"{path}: this checkpoint belongs to another run (other photos, settings or style); "
            "resume with the options of the interrupted run, or drop --resume to start over"
        )
    try:
        run.rule.load_state_dict(ck.rule)
        run.opt.load_state_dict(ck.optimizer)
        run.rng.setstate(ck.rng)
        run.gen.set_state(ck.generator)
        torch.set_rng_state(ck.torch_rng)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise NcaError(f"{path}: checkpoint is damaged; delete it and run without --resume to start over") from exc
    run.result.history, run.result.best_loss, run.result.recoveries = ck.history, ck.best_loss, ck.recoveries
    run.best_state, run.ema, run.lr_scale, run.seconds_before = ck.best, ck.ema, ck.lr_scale, ck.seconds
    run.first = run.result.resumed_at = ck.iteration


def save_progress(run: Run, path: Path, identity: str, iterations_done: int, seconds: float) -> None:
    ck = Checkpoint(
        identity=identity, iteration=iterations_done, rule=run.rule.state_dict(), best=run.best_state, optimizer=run.opt.state_dict(),
        rng=run.rng.getstate(), generator=run.gen.get_state(), torch_rng=torch.get_rng_state(), history=run.result.history,
        best_loss=run.result.best_loss, ema=run.ema, lr_scale=run.lr_scale, recoveries=run.result.recoveries, seconds=seconds,
    )
    save_checkpoint(path, ck)


@dataclass
class Scored:
    """Part of a batch rolled out and scored: what `score` hands back to `train_step`."""

    out: torch.Tensor  # the rolled-out states, detached
    terms: dict[str, torch.Tensor]  # the objective's terms, detached, times this part's share of the batch
    grads: tuple[torch.Tensor | None, ...] | None  # of the share-weighted total; None after a fault
    fault: str | None  # "state" or "loss" when that was not finite


def score(rule: Rule, states: torch.Tensor, steps: int, seed: int, loss_fn: Callable, generator: torch.Generator, config: TrainConfig, share: float, running: StatisticsPart | None = None) -> Scored:
    """Roll `states` out, score them, and take the gradient of their share of the batch's loss."""
    out = rollout(rule, states, steps, seed=seed, checkpoint_every=config.grad_checkpoint_every)
    terms = objective(loss_fn, out, generator, config.structure_weight, config.structure_power, running)
    fault = "state" if not torch.isfinite(out).all() else "loss" if not torch.isfinite(terms["total"]) else None
    grads = None if fault else torch.autograd.grad(terms["total"] * share, list(rule.parameters()), allow_unused=True)
    return Scored(out.detach(), {k: v.detach() * share for k, v in terms.items()}, grads, fault)


def train_step(
    run: Run, pool: StatePool, loss_fn: Callable, config: TrainConfig, it: int, parts: int = 1, executor: ThreadPoolExecutor | None = None,
    running: RunningStatistics | None = None,
) -> dict[str, float] | Fault:
    """One iteration: a batch from the pool, a rollout of random length, the loss, and an optimizer
    step. Returns the loss record, or the Fault that stopped it before anything was changed.
    With `parts` > 1 the batch is split into that many parts, each rolled out and scored on its own
    (side by side on `executor`'s threads): the loss must score each crop on its own, its terms
    means over the batch of each crop's. Every part draws the same numbers from the loss's
    generator, as the whole batch would, and reads the same `running` statistics, which take in the
    batch's crops only once it is scored, so the result is the whole batch's up to rounding."""
    lr = lr_at(config, it) * run.lr_scale
    for group in run.opt.param_groups:
        group["lr"] = lr
    idx, batch, sources = pool.draw(config.batch, config.fresh_per_batch)
    steps, seed = run.rng.randint(config.steps_min, config.steps_max), run.rng.randrange(2**31)
    chunks = batch.tensor_split(min(parts, len(batch)))
    gens = [run.gen] if len(chunks) == 1 else [torch.Generator().set_state(run.gen.get_state()) for _ in chunks]
    views = [None if running is None else running.part(part.tolist()) for part in sources.tensor_split(len(chunks))]
    scored = list((executor.map if executor else map)(
        lambda chunk, gen, view: score(run.rule, chunk, steps, seed, loss_fn, gen, config, len(chunk) / len(batch), view), chunks, gens, views
    ))
    run.gen.set_state(gens[0].get_state())
    fault = next((s.fault for s in scored if s.fault), None)
    if fault is None:
        grads = [None if g[0] is None else sum(g) for g in zip(*(s.grads for s in scored))]
        if not all(torch.isfinite(g).all() for g in grads if g is not None):
            fault = "gradient"
    if fault:
        return Fault(fault, idx, lr)
    terms = {k: sum(s.terms[k] for s in scored) for k in scored[0].terms}
    record = {k: float(v) for k, v in terms.items()} | {"steps": steps, "lr": lr}
    run.result.history.append(record)
    run.ema = record["total"] if run.ema is None else 0.9 * run.ema + 0.1 * record["total"]
    if run.ema < run.result.best_loss:  # these weights made this loss: keep them before stepping
        run.result.best_loss = run.ema
        run.best_state = {k: v.detach().clone() for k, v in run.rule.state_dict().items()}
    run.good = _snapshot(run)
    for p, g in zip(run.rule.parameters(), grads):  # per-parameter gradient normalisation: steady steps on any loss scale
        p.grad = None if g is None else g / (g.norm() + 1e-8)
    run.opt.step()
    pool.commit(idx, torch.cat([s.out for s in scored]), sources)
    if running is not None:
        running.commit(views)
    return record


def recover(run: Run, pool: StatePool, fault: Fault, it: int, tell: Callable[[str], None]) -> bool:
    """Back to the last good weights at a lower learning rate; False when there were too many faults."""
    run.result.recoveries += 1
    if run.result.recoveries > MAX_RECOVERIES:
        run.result.diverged = (
            f"training diverged (non-finite {fault.kind} at iteration {it + 1}) and did not recover after "
            f"{MAX_RECOVERIES} retries with lower learning rates"
        )
        return False
    run.rule.load_state_dict(run.good[0])
    run.opt.load_state_dict(run.good[1])
    run.lr_scale *= RECOVERY_LR_FACTOR
    pool.replace(fault.idx)  # the states that went bad leave the pool
    tell(f"non-finite {fault.kind} at iteration {it + 1}: restored the last good weights, learning rate now {fault.lr * RECOVERY_LR_FACTOR:.3g}")
    return True


def train_rule(
    photos: list[np.ndarray],
    loss_fn: Callable[[torch.Tensor, torch.Generator], dict[str, torch.Tensor]],
    rule_config: RuleConfig,
    config: TrainConfig,
    on_iteration: Callable[[int, dict[str, float]], bool | None] | None = None,
    checkpointing: Checkpointing | None = None,
    on_event: Callable[[str], None] | None = None,
    device: str | torch.device = "cpu",
    workers: int = 1,
) -> TrainResult:
    """Train a rule on crops of `photos` (float RGB arrays in [0, 1], already at training size).
    With `workers` > 1 each batch is split into that many parts, rolled out and scored side by side
    on as many threads of one torch thread each (a CPU's cores; the loss must score each crop on its
    own: see train_step). A loss with a `running_statistics()` method (StyleLoss) is given, as its
    third argument, its part of the running statistics that method returns (running_statistics.py).

    Faults: a non-finite loss, state or gradient restores the last good weights and optimizer state,
    lowers the learning rate and carries on (`on_event` is told); after MAX_RECOVERIES training
    stops with `diverged` set. SIGINT/SIGTERM stop training at the end of the current iteration
    (a second one at once), as does `on_iteration(iteration, record)` returning True. The best rule
    so far is returned either way.
    """
    config.validate()
    run = new_run(rule_config, config, device)
    scenes = [scene(config.train_size, run.rng).permute(1, 2, 0).numpy() for _ in range(SCENES if config.scenes else 0)]
    sample = CropSampler(photos, config.crop, run.rng, config.augment(), rule_config.photo_contrast, scenes, config.scenes)
    identity = run_identity(photos, rule_config, config, checkpointing.key) if checkpointing else ""
    if checkpointing and checkpointing.resume:
        resume(run, checkpointing.path, identity)
    tell = on_event or (lambda message: None)
    pool = StatePool(sample, rule_config.hidden_channels, config.pool, run.rng, device, rule_config.regions)
    running = loss_fn.running_statistics() if hasattr(loss_fn, "running_statistics") else None  # like the pool, not checkpointed
    run.good, start = _snapshot(run), time.perf_counter()
    with StopOnSignals(on_request=lambda name: tell(f"{name}: stopping after this iteration (send it again to stop at once)")) as stop, \
            torch_threads(1 if workers > 1 else None), one_thread_workers(workers) as executor:
        try:
            for it in range(run.first, config.iterations):
                outcome = train_step(run, pool, loss_fn, config, it, workers, executor, running)
                if isinstance(outcome, Fault):
                    if not recover(run, pool, outcome, it, tell):
                        break
                    continue
                asked = on_iteration is not None and on_iteration(it, outcome) is True  # the caller may ask to stop
                if checkpointing and (asked or stop.signal is not None or (it + 1) % checkpointing.interval == 0):
                    save_progress(run, checkpointing.path, identity, it + 1, run.seconds_before + time.perf_counter() - start)
                if asked or stop.signal is not None:
                    run.result.interrupted, run.result.stop_signal = True, stop.signal
                    break
        except KeyboardInterrupt:  # a second signal, or Ctrl-C where no handler could be installed
            run.result.interrupted = True
    run.result.seconds = run.seconds_before + time.perf_counter() - start
    # A run that completes keeps its last weights: the loss of a batch is too noisy a measure to pick
    # weights by (the pool's states grow harder as training goes on; on small runs the lowest running
    # mean was the untrained rule's). A stopped or diverged run keeps the best weights so far.
    if run.best_state is not None and (run.result.interrupted or run.result.diverged):
        run.rule.load_state_dict(run.best_state)
    run.result.rule = run.rule.cpu()
    return run.result
