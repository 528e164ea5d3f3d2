"""Training checkpoints: everything `train_rule` needs to continue an interrupted run.

A checkpoint is a safetensors file (data only, like a rule file): the tensors of the rule, of the
best rule so far, of the optimizer state and of the random generators, plus JSON metadata with
the loss history, the counters and an identity hash of the run (photos, recipe, mode), so that a
checkpoint is never continued with other inputs. The pool of partly edited training states is
not saved (it is most of a run's memory, up to hundreds of megabytes): a resumed run draws a fresh
pool, which costs a short re-settling of long-rollout training but none of the learned rule.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from ncaedit.errors import NcaError
from ncaedit.paths import check_regular, write_atomic

FORMAT = "ncaedit-checkpoint"
FORMAT_VERSION = 1


@dataclass
class Checkpoint:
    identity: str  # hash of what the run depends on; see train.run_identity
    iteration: int  # iterations done
    rule: dict[str, torch.Tensor]
    best: dict[str, torch.Tensor] | None  # the best rule so far (None before the first iteration)
    optimizer: dict  # torch optimizer state_dict
    rng: tuple  # random.Random state
    generator: torch.Tensor  # state of the torch.Generator passed to the loss
    torch_rng: torch.Tensor  # torch's global generator
    history: list[dict[str, float]]
    best_loss: float
    ema: float | None
    lr_scale: float  # learning-rate factor left by fault recoveries
    recoveries: int
    seconds: float


def save_checkpoint(path: str | Path, ck: Checkpoint) -> Path:
    from safetensors.torch import save

    tensors = {f"rule/{k}": v for k, v in ck.rule.items()}
    tensors |= {f"best/{k}": v for k, v in (ck.best or {}).items()}
    tensors |= {"rng/generator": ck.generator, "rng/torch": ck.torch_rng}
    opt_state: dict[str, dict] = {}
    for pid, entries in ck.optimizer["state"].items():
        for key, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"optim/{pid}/{key}"] = value
            else:
                opt_state.setdefault(str(pid), {})[key] = value
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "identity": ck.identity,
        "iteration": ck.iteration,
        "has_best": ck.best is not None,
        "optimizer": {"state": opt_state, "param_groups": ck.optimizer["param_groups"]},
        "rng": ck.rng,
        "history": ck.history,
        "best_loss": ck.best_loss,
        "ema": ck.ema,
        "lr_scale": ck.lr_scale,
        "recoveries": ck.recoveries,
        "seconds": ck.seconds,
    }
    tensors = {k: v.detach().cpu().clone() for k, v in tensors.items()}  # clones: safetensors refuses shared storage
    return write_atomic(Path(path), save(tensors, metadata={"ncaedit": json.dumps(meta)}))


def load_checkpoint(path: str | Path) -> Checkpoint:
    from safetensors import safe_open

    path = check_regular(path, "a checkpoint", "no checkpoint to resume from (run without --resume to start over)")
    damaged = f"{path}: checkpoint is damaged; delete it and run without --resume to start over"
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads(f.metadata()["ncaedit"])
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:
        raise NcaError(damaged) from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise NcaError(f"{path}: not an ncaedit checkpoint")
    if not isinstance(meta.get("format_version"), int) or meta["format_version"] > FORMAT_VERSION:
        raise NcaError(f"{path}: checkpoint format is newer than this ncaedit understands; upgrade ncaedit")
    try:
        state: dict[int, dict] = {}
        for name, value in tensors.items():
            if name.startswith("optim/"):
                _, pid, key = name.split("/", 2)
                state.setdefault(int(pid), {})[key] = value
        for pid, entries in meta["optimizer"]["state"].items():
            state.setdefault(int(pid), {}).update(entries)
        version, internal, gauss = meta["rng"]
        return Checkpoint(
            identity=str(meta["identity"]),
            iteration=int(meta["iteration"]),
            rule={k[5:]: v for k, v in tensors.items() if k.startswith("rule/")},
            best={k[5:]: v for k, v in tensors.items() if k.startswith("best/")} if meta["has_best"] else None,
            optimizer={"state": state, "param_groups": meta["optimizer"]["param_groups"]},
            rng=(version, tuple(internal), gauss),
            generator=tensors["rng/generator"],
            torch_rng=tensors["rng/torch"],
            history=list(meta["history"]),
            best_loss=float(meta["best_loss"]),
            ema=None if meta["ema"] is None else float(meta["ema"]),
            lr_scale=float(meta["lr_scale"]),
            recoveries=int(meta["recoveries"]),
            seconds=float(meta["seconds"]),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise NcaError(damaged) from exc
