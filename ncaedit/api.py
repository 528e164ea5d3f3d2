"""The Python API: train a rule, load and save it, apply it to images in memory or to files.

    import ncaedit
    rule = ncaedit.train_style("photo.jpg", "style.png", callback=print)
    rule.save("photo-style.nca")
    edited = ncaedit.Rule.load("photo-style.nca").apply(pil_image)   # same kind back: PIL, numpy, torch
    summary = ncaedit.apply_files(rule, ["holiday/"], "styled/")

Nothing here prints: progress and warnings reach the caller through callbacks, as data. The command
line (cli/commands.py, cli/job.py) is a layer over these functions that adds the console and the files' names.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from ncaedit.config import (
    DEFAULT_CLIP_MODEL,
    DEFAULT_DEVICE,
    DEFAULT_LOSS_NET,
    DEFAULT_PRESET,
    DEFAULT_SOURCE_PROMPT,
    DEFAULT_STEPS,
)
from ncaedit.errors import NcaError
from ncaedit.limits import checked
from ncaedit.modes import Mode


@dataclass(frozen=True)
class Iteration:
    """One finished training iteration, as a callback receives it."""

    iteration: int  # iterations done so far (1 after the first)
    total: int  # iterations the recipe asks for
    losses: dict[str, float]  # this iteration's loss terms ("total", "style", ...), its rollout "steps" and "lr"
    elapsed: float  # seconds since training started


@dataclass(frozen=True)
class Event:
    """Something a caller may want to show: a `warning` (a weaker loss network was chosen, ...), a
    `notice` from training (a recovered fault, a stop request) or a `status` (a slow step starts)."""

    message: str
    kind: str = "warning"


Callback = Callable[[Iteration | Event], Any]  # return True from an Iteration to stop: the best rule so far is kept


class Rule:
    """A trained rule: the network every cell runs (`network`, a rule.Rule module) and its metadata."""

    def __init__(self, network, metadata: dict | None = None, name: str = "rule"):
        """`network`: a rule.Rule module; `metadata`: as a .nca file holds it; `name`: for default output names."""
        self.network = network
        self.metadata = dict(metadata or {})
        self.name = name  # the file's stem: part of default output names
        self.path: Path | None = None  # the file it was loaded from, which no output may replace

    @classmethod
    def load(cls, path: str | Path) -> Rule:
        """Read a .nca file (checked: format, architecture, checksum, finite weights; never runs code)."""
        from ncaedit.nca_format import load_rule

        loaded = load_rule(path)
        rule = cls(loaded.rule, loaded.metadata, Path(path).stem)
        rule.path = Path(path)
        return rule

    def save(self, path: str | Path) -> Path:
        """Write the rule to `path` (.nca) atomically: a crash never leaves a half-written file."""
        from ncaedit.nca_format import save_rule

        return save_rule(self.network, path, self.metadata)

    @property
    def default_steps(self) -> int:
        """Steps `apply` runs by default: the longest rollout the rule was trained on."""
        return int(self.metadata.get("default_steps", DEFAULT_STEPS))

    @checked
    def apply(
        self,
        image: Any,
        *,
        steps: int | None = None,
        seed: int = 0,
        strength: float = 1.0,
        mask: Any = None,
        tile: int | None = None,
        device: str = DEFAULT_DEVICE,
    ) -> Any:
        """The edited image, of the kind given: a PIL image, a numpy array (HWC uint8, uint16 or float in
        [0, 1]; RGB or RGBA out), a torch tensor ((N,) C, H, W) or a path (then an image.Photo).

        The same result as `ncaedit apply` with the same options: tiled (memory stays bounded; the
        result does not depend on `tile`), `strength` blends with the source, `mask` (a path or an
        image, white: edit, black: keep) limits the edit to a region."""
        from ncaedit.apply import apply_rule, check_apply_options
        from ncaedit.device import resolve_device, tile_parallelism
        from ncaedit.image_types import convert

        steps = self.default_steps if steps is None else steps
        check_apply_options(steps)
        given = convert(image, keep_samples=True)
        device = resolve_device(device)
        edited = []
        with tile_parallelism(device) as workers:
            for photo in given.photos:
                weights = None if mask is None else _mask_for(mask, photo.size)
                edited.append(apply_rule(self.network, photo, steps, seed=seed, device=device, tile=tile, strength=strength, mask=weights, workers=workers))
        return given.restore(edited)

    def __repr__(self) -> str:
        return f"Rule({self.name!r}, {self.metadata.get('mode', '?')}, arch={self.network.arch()})"


def _mask_for(mask: Any, size: tuple[int, int]):
    """A mask (path or image) as uint8 (H, W) luminance at `size` (width, height)."""
    from ncaedit.mask import load_mask, mask_array

    if isinstance(mask, (str, Path)):
        return load_mask(Path(mask), size)
    from ncaedit.image_types import convert

    return mask_array(convert(mask).photos[0].rgb, size)


@dataclass
class Training:
    """What `train` gives the command line beyond the rule: the run's record and the photo."""

    rule: Rule
    result: Any  # train.TrainResult
    recipe: Any  # recipe.Recipe
    photo: Any  # image.Photo: the photo trained on, as float


def train(
    photo: Any,
    mode: Mode,
    *,
    preset: str = DEFAULT_PRESET,
    device: str = DEFAULT_DEVICE,
    callback: Callback | None = None,
    overrides: dict[str, dict[str, Any]] | None = None,
    train_on: Path | None = None,
    max_pixels: int | None = None,
    checkpoint: Path | None = None,
    checkpoint_interval: int = 10,
    resume: bool = False,
) -> Training:
    """Train a rule for `mode` (modes.style.style_mode, modes.prompt.prompt_mode) on `photo`. `overrides`
    are recipe keys by table ({"train": {"iterations": 10}}); with `checkpoint`, progress is saved
    there every `checkpoint_interval` iterations and `resume` continues from it."""
    from ncaedit.device import resolve_device, training_threads
    from ncaedit.image_types import convert
    from ncaedit.recipe import load_recipe
    from ncaedit.train import Checkpointing, train_rule

    device = resolve_device(device)
    recipe = load_recipe(preset, overrides, mode.kind)
    source = convert(photo, max_pixels).photos[0]
    t = recipe.train
    photos = training_photos(source.rgb, train_on, t.train_size, t.crop, max_pixels)
    tell = callback or (lambda update: None)
    if mode.status:
        tell(Event(mode.status, "status"))
    setup = mode.setup(recipe, source, device, lambda message: tell(Event(message, "warning")))
    recipe = setup.recipe or recipe
    if setup.notice:
        tell(Event(setup.notice, "notice"))
    key = json.dumps(setup.metadata, sort_keys=True, default=str)
    checkpointing = Checkpointing(checkpoint, checkpoint_interval, resume, key=key) if checkpoint else None
    start = time.perf_counter()
    with training_threads(device, setup.threads):
        result = train_rule(
            photos, setup.loss_fn, recipe.rule, t,
            on_iteration=lambda it, rec: tell(Iteration(it + 1, t.iterations, rec, time.perf_counter() - start)) is True,
            checkpointing=checkpointing,
            on_event=lambda message: tell(Event(message, "notice")),
            device=device,
            workers=setup.workers,
        )
    if not result.history:
        raise NcaError(f"{result.diverged or 'training stopped before the first iteration finished'}; nothing saved")
    metadata = setup.metadata | {
        "recipe": recipe.to_dict(),
        "preset": preset,
        "iterations_done": len(result.history),
        "interrupted": result.interrupted,
        "diverged": bool(result.diverged),
        "recoveries": result.recoveries,
        "final_losses": {k: v for k, v in result.history[-1].items() if k not in ("steps", "lr")},
        "best_loss": result.best_loss,
        "train_seconds": round(result.seconds, 1),
        "default_steps": t.steps_max,
    }
    return Training(Rule(result.rule, metadata, mode.name), result, recipe, source)


def training_photos(photo_rgb, folder: Path | None, train_size: int, crop: int, max_pixels: int | None = None) -> list:
    """The photo plus every image in `folder`, each at most `train_size` on its longer side."""
    from ncaedit.image import READ_SUFFIXES, fit_long_side, load_image

    photos = [photo_rgb]
    if folder is not None:
        folder = Path(folder)
        if not folder.is_dir():
            raise NcaError(f"{folder}: not a folder", param="train_on")
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in READ_SUFFIXES)
        if not files:
            raise NcaError(f"{folder}: no images found", param="train_on")
        photos += [load_image(f, max_pixels).rgb for f in files]  # a bad file is an error here: the user chose this set
    out = []
    for p in photos:
        if max(p.shape[:2]) > train_size:
            p = fit_long_side(p, train_size)
        if min(p.shape[:2]) < crop:
            raise NcaError(f"a training photo is {p.shape[1]}x{p.shape[0]} at training size, smaller than the {crop}-px crop; use --crop")
        out.append(p)
    return out


def _train_rule(photo, mode: Mode, preset: str, device: str, callback: Callback | None, train_on, overrides: dict) -> Rule:
    """train_style's and train_prompt's common end: recipe keys by name, training, a divergence told as an Event."""
    from ncaedit.recipe import nest_overrides

    training = train(photo, mode, preset=preset, device=device, callback=callback, overrides=nest_overrides(overrides, mode.kind), train_on=train_on)
    if training.result.diverged and callback:
        callback(Event(f"{training.result.diverged}; returning the best rule so far (try a lower lr)"))
    return training.rule


@checked
def train_style(
    photo: Any,
    style: Any,
    *,
    preset: str = DEFAULT_PRESET,
    device: str = DEFAULT_DEVICE,
    seed: int | None = None,
    callback: Callback | None = None,
    style_scale: float = 1.0,
    loss_net: str = DEFAULT_LOSS_NET,
    vgg_weights: Path | None = None,
    train_on: Path | None = None,
    **overrides: Any,
) -> Rule:
    """Train a rule that repaints `photo` in the style of `style` (each a path, PIL image or array).

    `preset` names a recipe (fast, balanced, quality, motifs, cells) or a .toml file; `overrides` set single recipe
    keys (iterations=50, crop=64, width=32, lr=3e-3, content_weight=0.5, ...). `callback` receives an
    Iteration after every training iteration (return True to stop: the best rule so far is
    returned) and Events (warnings, notices). Ctrl-C also stops at the end of an iteration."""
    from ncaedit.modes.style import style_mode

    mode = style_mode(style, style_scale=style_scale, loss_net=loss_net, vgg_weights=vgg_weights)
    return _train_rule(photo, mode, preset, device, callback, train_on, overrides | {"seed": seed})


@checked
def train_prompt(
    photo: Any,
    prompt: str,
    *,
    preset: str = DEFAULT_PRESET,
    device: str = DEFAULT_DEVICE,
    seed: int | None = None,
    callback: Callback | None = None,
    source_prompt: str = DEFAULT_SOURCE_PROMPT,
    clip_model: str = DEFAULT_CLIP_MODEL,
    pretrained: str | None = None,
    clip_weights: Path | None = None,
    aesthetic: float | None = None,
    aesthetic_weights: Path | None = None,
    loss_net: str = DEFAULT_LOSS_NET,
    vgg_weights: Path | None = None,
    train_on: Path | None = None,
    **overrides: Any,
) -> Rule:
    """Train a rule that edits `photo` toward a text `prompt` ("a pencil sketch", or weighted
    "a pencil sketch:1 | charcoal:0.5"), guided by CLIP. Options, overrides and callback as for
    `train_style`; CLIP weights come from the cache (see README, "CLIP weights") or `clip_weights`."""
    from ncaedit.modes.prompt import prompt_mode

    clip = {"model": clip_model, "pretrained": pretrained, "weights": clip_weights}
    mode = prompt_mode(
        prompt, source_prompt=source_prompt, clip=clip, aesthetic=aesthetic, aesthetic_weights=aesthetic_weights,
        loss_net=loss_net, vgg_weights=vgg_weights,
    )
    return _train_rule(photo, mode, preset, device, callback, train_on, overrides | {"seed": seed})


@dataclass
class BatchSummary:
    """What `apply_files` did, file by file (batch.Outcome: the input, its output, and why it was
    skipped or failed, or a note such as a video's flicker)."""

    done: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    failed: list = field(default_factory=list)
    seconds: float = 0.0
    notes: list = field(default_factory=list)  # one-line notes on the whole batch (say, a fallback it took)

    @property
    def outcomes(self) -> list:
        """Every file's outcome: done, then skipped, then failed."""
        return self.done + self.skipped + self.failed


@checked
def apply_files(
    rule: Rule | str | Path,
    inputs: Sequence[str | Path],
    out: str | Path | None = None,
    *,
    recursive: bool = False,
    overwrite: bool = False,
    fmt: str | None = None,
    steps: int | None = None,
    seed: int = 0,
    strength: float = 1.0,
    mask: str | Path | None = None,
    feather: float = 0.0,
    tile: int | None = None,
    carry: bool = False,
    temporal: str | None = None,
    refresh_steps: int | None = None,
    device: str = DEFAULT_DEVICE,
    max_pixels: int | None = None,
    on_start: Callable[[list], None] | None = None,
    on_file: Callable[[Any, float | None], None] | None = None,
    on_progress: Callable[[float], None] | None = None,
    on_outcome: Callable[[Any], None] | None = None,
) -> BatchSummary:
    """Apply `rule` (a Rule or a .nca path) to photos, videos, folders or globs, writing into the
    folder `out`; a single input file may instead be written to the file `out`, or beside itself
    when `out` is None. Existing outputs are skipped unless `overwrite`; a bad file is recorded in
    `failed` and the rest go on. The hooks report progress: `on_start(items)`, `on_file(item, total)`,
    `on_progress(amount)`, `on_outcome(outcome)`. Videos: `temporal` "flow" carries the edit along the
    motion (default where OpenCV is installed), "none" edits each frame afresh; `refresh_steps` per frame."""
    from ncaedit.apply import check_apply_options
    from ncaedit.batch import Settings, plan_batch, run_batch
    from ncaedit.device import resolve_device, tile_parallelism
    from ncaedit.video import video_temporal

    rule = Rule.load(rule) if isinstance(rule, (str, Path)) else rule
    steps = rule.default_steps if steps is None else steps
    check_apply_options(steps, mask)
    temporal, note = video_temporal(temporal, carry, refresh_steps, steps)
    device = resolve_device(device)
    items = plan_batch([str(i) for i in inputs], None if out is None else Path(out), rule.name, fmt, recursive, [rule.path, mask])
    if on_start:
        on_start(items)
    summary, started = BatchSummary(), time.perf_counter()
    with tile_parallelism(device) as workers:
        settings = Settings(
            steps, seed=seed, tile=tile, strength=strength, mask=None if mask is None else Path(mask), feather=feather,
            device=device, carry=carry, overwrite=overwrite, workers=workers, max_pixels=max_pixels, temporal=temporal,
            refresh_steps=refresh_steps,
        )
        for outcome in run_batch(rule.network, items, settings, on_file, on_progress):
            getattr(summary, outcome.status).append(outcome)
            if on_outcome:
                on_outcome(outcome)
    if note and any(o.item.is_video for o in summary.done):
        summary.notes.append(note)
    summary.seconds = time.perf_counter() - started
    return summary
