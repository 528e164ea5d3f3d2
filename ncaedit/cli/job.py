"""A training job on the command line, whatever the mode: inputs and output names checked ->
training (api.train) behind a progress bar -> rule file -> the rule applied to the photo ->
optional previews. Modes (modes/style.py, modes/prompt.py) supply the loss."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ncaedit.config import CHECKPOINT_INTERVAL, DEFAULT_DEVICE, DEFAULT_PRESET
from ncaedit.errors import NcaError
from ncaedit.modes import Mode
from ncaedit.paths import check_output, check_regular, free_name


@dataclass
class Job:
    photo: Path
    out: Path | None = None
    rule_path: Path | None = None
    preset: str = DEFAULT_PRESET
    steps: int | None = None
    train_on: Path | None = None
    preview: bool = False
    device: str = DEFAULT_DEVICE
    overrides: dict = field(default_factory=dict)  # {"train": {...}, "rule": {...}, "loss": {...}}; None values ignored
    max_pixels: int | None = None  # refuse input images above this many pixels; None: image.DEFAULT_MAX_PIXELS
    resume: bool = False  # continue the interrupted run from its checkpoint (OUT.ckpt)
    checkpoint_interval: int = CHECKPOINT_INTERVAL  # training iterations between checkpoint files


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


def run_job(job: Job, mode: Mode, console, progress) -> dict:
    """Run `job` for `mode` (modes.style.style_mode, ...): every input and output path is checked before
    anything slow happens, then api.train runs behind a progress bar.

    Training stopped by SIGINT or a second Ctrl-C still saves and applies the best rule; SIGTERM
    saves it and exits (code 143) without applying; either way a checkpoint lets --resume continue.
    Training that diverges beyond recovery saves the best rule, then fails with an NcaError."""
    import signal

    from ncaedit.api import train
    from ncaedit.apply import apply_rule
    from ncaedit.device import resolve_device
    from ncaedit.image import WRITE_SUFFIXES, save_image
    from ncaedit.nca_format import save_rule_or_rescue

    job.device = resolve_device(job.device)
    out, rule_path, ckpt = output_paths(job, f"{job.photo.stem}-{mode.name}")
    if rule_path.suffix.lower() != ".nca" or out.suffix.lower() == ".nca":
        raise NcaError("the image goes to --out and the rule (.nca) to --rule")
    check_output(out, [job.photo, *mode.inputs], WRITE_SUFFIXES)
    check_output(rule_path, [job.photo, *mode.inputs])

    with TrainingDisplay(console, progress, mode.progress_info) as display:
        training = train(
            job.photo, mode, preset=job.preset, device=job.device, callback=display, overrides=job.overrides, train_on=job.train_on,
            max_pixels=job.max_pixels, checkpoint=ckpt, checkpoint_interval=job.checkpoint_interval, resume=job.resume,
        )
    result, t = training.result, training.recipe.train
    if result.resumed_at:
        console.print(f"resumed from {ckpt} at iteration {result.resumed_at}", markup=False)  # names are not markup
    try:
        save_rule_or_rescue(training.rule.network, rule_path, training.rule.metadata)
    except NcaError as exc:
        kept = f"; the checkpoint {ckpt} is kept too (rerun with --resume once there is space)" if ckpt.exists() else ""
        raise NcaError(f"{exc}{kept}") from exc
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

    photo = training.photo
    steps = job.steps or t.steps_max
    with progress() as bar:
        task = bar.add_task("applying", total=steps, info=f"{photo.size[0]}x{photo.size[1]}")
        edited = apply_rule(result.rule, photo, steps, seed=t.seed, device=job.device, on_steps=lambda k: bar.advance(task, k))
    save_image(edited, out)
    written = [out, rule_path]
    if job.preview:
        from ncaedit.cli.preview import write_previews

        written += write_previews(out, photo.rgb, mode.preview_middle, edited.rgb, result.history)
    console.print(f"trained {len(result.history)} iterations in {result.seconds:.0f} s")
    for p in written:
        console.print(f"wrote {p}", markup=False)
    return {"out": out, "rule": rule_path, "result": result}


class TrainingDisplay:
    """api.train's callback on the console: a transient spinner while a slow step starts (loading
    CLIP), then one progress bar for the iterations with warnings printed above it. Nothing shows
    before the first report, so input errors come out alone."""

    def __init__(self, console, progress: Callable, progress_info: Callable[[dict], str]):
        self.console, self.progress, self.progress_info = console, progress, progress_info
        self.bar, self.task, self.spinner = None, None, None

    def __enter__(self) -> TrainingDisplay:
        return self

    def __exit__(self, *exc) -> None:
        self._stop_spinner()
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def _stop_spinner(self) -> None:
        if self.spinner is not None:
            self.spinner.stop()
            self.spinner = None

    def __call__(self, update) -> None:
        from ncaedit.api import Iteration

        self._stop_spinner()
        if getattr(update, "kind", "") == "status" and self.bar is None:
            self.spinner = self.console.status(update.message)
            self.spinner.start()
            return
        if self.bar is None:
            self.bar = self.progress().__enter__()
            self.task = self.bar.add_task("training", total=None, info="")
        if isinstance(update, Iteration):
            info = self.progress_info(update.losses)
            self.bar.update(self.task, total=update.total, completed=update.iteration, info=info)
        elif update.kind == "warning":
            self.bar.console.print(f"[yellow]warning:[/yellow] {update.message}")
        elif update.kind == "notice":
            self.bar.console.print(f"[yellow]{update.message}[/yellow]")
