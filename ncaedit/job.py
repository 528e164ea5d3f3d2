"""A training job, whatever the mode: inputs -> recipe -> training with a progress bar -> rule file
-> the rule applied to the photo -> optional previews. Modes (stylize.py, ...) supply the loss."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ncaedit.errors import NcaError
from ncaedit.limits import check_number
from ncaedit.paths import check_output, check_regular, free_name


@dataclass
class Job:
    photo: Path
    out: Path | None = None
    rule_path: Path | None = None
    preset: str = "fast"
    steps: int | None = None
    train_on: Path | None = None
    preview: bool = False
    device: str = "cpu"
    mode: str = "style"  # which kind of preset (recipe.LOSS_CONFIGS)
    overrides: dict = field(default_factory=dict)  # {"train": {...}, "rule": {...}, "loss": {...}}; None values ignored
    max_pixels: int | None = None  # refuse input images above this many pixels; None: image.DEFAULT_MAX_PIXELS
    resume: bool = False  # continue the interrupted run from its checkpoint (OUT.ckpt)
    checkpoint_every: int = 10  # training iterations between checkpoints


@dataclass
class ModeSetup:
    """What a mode adds to a job once the recipe and photo are known."""

    loss_fn: Callable  # (state, generator) -> dict of loss terms with "total"
    metadata: dict  # mode-specific rule metadata ("mode", hashes, prompts, loss network, ...)
    progress_info: Callable[[dict], str]  # one iteration's loss record -> text for the progress bar
    preview_middle: object = None  # image shown between source and result on the preview sheet


def training_photos(photo_rgb, folder: Path | None, train_size: int, crop: int, max_pixels: int | None = None) -> list:
    """The photo plus every image in `folder`, each at most `train_size` on its longer side."""
    from ncaedit.image import READ_SUFFIXES, fit_long_side, load_image

    photos = [photo_rgb]
    if folder is not None:
        if not folder.is_dir():
            raise NcaError(f"--train-on {folder}: not a folder")
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in READ_SUFFIXES)
        if not files:
            raise NcaError(f"--train-on {folder}: no images found")
        photos += [load_image(f, max_pixels).rgb for f in files]  # a bad file is an error here: the user chose this set
    out = []
    for p in photos:
        if max(p.shape[:2]) > train_size:
            p = fit_long_side(p, train_size)
        if min(p.shape[:2]) < crop:
            raise NcaError(f"a training photo is {p.shape[1]}x{p.shape[0]} at training size, smaller than the {crop}-px crop; use --crop")
        out.append(p)
    return out


def output_paths(job: Job, default_name: str) -> tuple[Path, Path, Path]:
    """(image, rule, checkpoint). A new run takes the first default name with none of the three
    on disk; --resume takes the first one with a checkpoint, so it finishes that run in place."""
    first = job.photo.with_name(f"{default_name}.png")
    if job.out is not None:
        if job.out.is_dir() or not job.out.name:
            raise NcaError(f"--out {job.out}: is a folder; give a file name for the edited image")
        out = job.out
    elif job.resume and job.rule_path is None:  # the first default name that has a checkpoint
        out, n = first, 2
        while not out.with_suffix(".ckpt").exists() and any(out.with_suffix(s).exists() for s in (".png", ".nca")):
            out, n = first.with_name(f"{default_name}-{n}.png"), n + 1
    else:
        out = free_name(first, siblings=(".nca", ".ckpt"))
    rule_path = job.rule_path or out.with_suffix(".nca")
    checkpoint = rule_path.with_suffix(".ckpt")
    if job.resume:  # a FIFO or device there is refused now, before training starts
        check_regular(checkpoint, "a checkpoint", "no checkpoint to continue (--resume); run without --resume to start over")
    return out, rule_path, checkpoint


def run_job(job: Job, default_name: str, extra_inputs: list[Path], setup: Callable, console, progress) -> dict:
    """Run `job`. `setup(recipe, photo) -> ModeSetup` builds the mode's loss; it runs after all
    inputs and output paths are checked, so bad input fails before anything slow happens.

    Training stopped by SIGINT or a second Ctrl-C still saves and applies the best rule; SIGTERM
    saves it and exits (code 143) without applying; either way a checkpoint lets --resume continue.
    Training that diverges beyond recovery saves the best rule, then fails with an NcaError."""
    import json
    import signal

    from ncaedit.apply import apply_rule
    from ncaedit.device import resolve_device
    from ncaedit.image import WRITE_SUFFIXES, load_image, save_image
    from ncaedit.recipe import load_recipe
    from ncaedit.rulefile import save_rule_or_rescue
    from ncaedit.train import Checkpointing, train_rule

    check_number("steps", job.steps)
    job.device = resolve_device(job.device)
    recipe = load_recipe(job.preset, job.overrides, job.mode)
    photo = load_image(job.photo, job.max_pixels)
    out, rule_path, ckpt = output_paths(job, default_name)
    if rule_path.suffix.lower() != ".nca" or out.suffix.lower() == ".nca":
        raise NcaError("the image goes to --out and the rule (.nca) to --rule")
    check_output(out, [job.photo, *extra_inputs], WRITE_SUFFIXES)
    check_output(rule_path, [job.photo, *extra_inputs])
    t = recipe.train
    photos = training_photos(photo.rgb, job.train_on, t.train_size, t.crop, job.max_pixels)
    mode = setup(recipe, photo)
    checkpointing = Checkpointing(ckpt, job.checkpoint_every, job.resume, key=json.dumps(mode.metadata, sort_keys=True, default=str))

    with progress() as bar:
        task = bar.add_task("training", total=t.iterations, info="")
        result = train_rule(
            photos, mode.loss_fn, recipe.rule, t,
            on_iteration=lambda it, rec: bar.update(task, completed=it + 1, info=mode.progress_info(rec)),
            checkpointing=checkpointing,
            on_event=lambda message: bar.console.print(f"[yellow]{message}[/yellow]"),
            device=job.device,
        )
    if result.resumed_at:
        console.print(f"resumed from {ckpt} at iteration {result.resumed_at}", markup=False)  # names are not markup
    if not result.history:
        raise NcaError(f"{result.diverged or 'training stopped before the first iteration finished'}; nothing saved")

    metadata = mode.metadata | {
        "recipe": recipe.to_dict(),
        "preset": job.preset,
        "iterations_done": len(result.history),
        "interrupted": result.interrupted,
        "diverged": bool(result.diverged),
        "recoveries": result.recoveries,
        "final_losses": {k: v for k, v in result.history[-1].items() if k not in ("steps", "lr")},
        "best_loss": result.best_loss,
        "train_seconds": round(result.seconds, 1),
        "default_steps": t.steps_max,
    }
    try:
        save_rule_or_rescue(result.rule, rule_path, metadata)
    except NcaError as exc:
        kept = f"; the checkpoint {ckpt} is kept too (rerun with --resume once there is space)" if ckpt.exists() else ""
        raise NcaError(f"{exc}{kept}") from None
    resume_hint = f"; continue it with the same command and --resume (checkpoint {ckpt})" if ckpt.exists() else ""
    if result.diverged:
        raise NcaError(f"{result.diverged}; the best rule so far is saved in {rule_path}; train again with a lower --lr")
    if result.interrupted:
        name = signal.Signals(result.stop_signal).name if result.stop_signal else "interrupted"
        console.print(f"[yellow]{name}[/yellow]: stopped after {len(result.history)} iterations; saved the best rule so far to {rule_path}{resume_hint}")
        if result.stop_signal == signal.SIGTERM:  # asked to go away: don't start applying
            raise SystemExit(128 + signal.SIGTERM)
    else:
        ckpt.unlink(missing_ok=True)  # the finished rule replaces it

    steps = job.steps or t.steps_max
    with progress() as bar:
        task = bar.add_task("applying", total=steps, info=f"{photo.size[0]}x{photo.size[1]}")
        edited = apply_rule(result.rule, photo, steps, seed=t.seed, device=job.device, on_steps=lambda k: bar.advance(task, k))
    save_image(edited, out)
    written = [out, rule_path]
    if job.preview:
        from ncaedit.preview import write_previews

        written += write_previews(out, photo.rgb, mode.preview_middle, edited.rgb, result.history)
    console.print(f"trained {len(result.history)} iterations in {result.seconds:.0f} s")
    for p in written:
        console.print(f"wrote {p}", markup=False)
    return {"out": out, "rule": rule_path, "result": result}
