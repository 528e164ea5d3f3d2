"""The `ncaedit` command line. Heavy imports (torch) happen inside the commands, so --help is instant."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ncaedit.config import (
    DEFAULT_CLIP_MODEL,
    DEFAULT_DEVICE,
    DEFAULT_LOSS_NET,
    DEFAULT_MAX_PIXELS,
    DEFAULT_PRESET,
    DEFAULT_SOURCE_PROMPT,
    DEFAULT_STEPS,
)
from ncaedit.errors import NcaError, printable
from ncaedit.limits import checked

MAX_PIXELS_HELP = f"Refuse input images with more pixels than this (decompression bombs) (default: {DEFAULT_MAX_PIXELS:,})."

FLAGS = {"fmt": "--format", "address": "--ray", "gpus_per_worker": "--ray-gpus-per-worker"}  # library parameters whose flag is not --the-same-name

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Edit photos with Neural Cellular Automata.")


def _console():
    from rich.console import Console

    class SafeConsole(Console):
        """Prints text with its control characters escaped (errors.printable): names can hold anything."""

        def print(self, *objects, **kwargs):
            super().print(*(printable(o) if isinstance(o, str) else o for o in objects), **kwargs)

    return SafeConsole(stderr=True)


def _progress(transient: bool = False):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    console = _console()
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
        transient=transient,
        disable=transient and not console.is_terminal,  # off a terminal, rich would leave a blank line where it was
    )


class _progress_later:
    """A progress bar that appears only once there is work (`start`), so that errors before it come out alone."""

    def __init__(self):
        self._bar = None

    def start(self, transient: bool = False) -> None:
        self._bar = _progress(transient).__enter__()

    def __getattr__(self, name: str):
        return getattr(self._bar, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)


# Options that `style` and `prompt` share, declared once.
Photo = Annotated[Path, typer.Argument(help="The photo to edit.")]
RulePath = Annotated[Optional[Path], typer.Option("--rule", help="Where to save the rule (default: the output's name with .nca).")]
Iterations = Annotated[Optional[int], typer.Option(help="Training iterations (preset train.iterations).")]
Seed = Annotated[Optional[int], typer.Option(help="Random seed; the same seed gives the same rule on the same machine.")]
TrainSteps = Annotated[Optional[int], typer.Option(help="Steps to run the rule on the photo (default: the longest training rollout).")]
ContentWeight = Annotated[Optional[float], typer.Option(help="How strongly to keep the photo's layout.")]
Width = Annotated[Optional[int], typer.Option(help="Hidden units of the rule's network.")]
Crop = Annotated[Optional[int], typer.Option(help="Side of the square training crops, in pixels.")]
Lr = Annotated[Optional[float], typer.Option(help="Learning rate.")]
VggWeights = Annotated[Optional[Path], typer.Option("--vgg-weights", help="Local VGG19 weights (.pth or .safetensors).")]
TrainOn = Annotated[Optional[Path], typer.Option("--train-on", help="Also train on the photos in this folder, so the rule generalises.")]
Device = Annotated[str, typer.Option(help="auto (CUDA, then MPS, then the CPU), cpu, cuda or mps.")]
Resume = Annotated[bool, typer.Option("--resume", help="Continue an interrupted run of the same command from its checkpoint.")]
MaxPixels = Annotated[Optional[int], typer.Option("--max-pixels", min=1, help=MAX_PIXELS_HELP)]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Redo outputs that already exist (a rerun skips them).")]
ApplySeed = Annotated[int, typer.Option(help="Seed of the stochastic cell updates.")]
RuleFile = Annotated[Path, typer.Argument(metavar="RULE", help="A .nca rule file.")]


@app.command()
@checked
def style(
    photo: Photo,
    style_image: Path = typer.Option(..., "--style", "-s", help="The style image whose colours and textures to take."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Edited image (default: PHOTO-STYLE.png beside the photo)."),
    rule_path: RulePath = None,
    preset: str = typer.Option(DEFAULT_PRESET, "--preset", "-p", help="Training recipe: fast, balanced, quality, motifs, cells, or a .toml path."),
    iterations: Iterations = None,
    seed: Seed = None,
    steps: TrainSteps = None,
    style_scale: float = typer.Option(1.0, "--style-scale", help="Size of the style's features: >1 bigger, <1 finer."),
    style_distance: Optional[str] = typer.Option(None, "--style-distance", help="gram or sw (sliced Wasserstein)."),
    texture_weight: Optional[float] = typer.Option(None, "--texture-weight", help="Weight of the steerable-pyramid shape statistics (0 = off)."),
    content_weight: ContentWeight = None,
    colour_weight: Optional[float] = typer.Option(None, "--colour-weight", help="How strongly to take the style's colours."),
    cells: Optional[str] = typer.Option(None, "--cells", help="Draw the style's cells with random regions: auto (where the style is flat patches in many hues, a mosaic), on, or off."),
    width: Width = None,
    crop: Crop = None,
    lr: Lr = None,
    loss_net: str = typer.Option(DEFAULT_LOSS_NET, "--loss-net", help="auto (VGG19 if its weights can be had), vgg19, or random."),
    vgg_weights: VggWeights = None,
    train_on: TrainOn = None,
    preview: bool = typer.Option(False, "--preview", help="Also write a source|style|result sheet and a loss curve."),
    device: Device = DEFAULT_DEVICE,
    resume: Resume = False,
    max_pixels: MaxPixels = None,
) -> None:
    """Train a rule that repaints PHOTO in the style of --style, then apply it to PHOTO."""
    from ncaedit.modes.style import style_mode

    mode = style_mode(style_image, style_scale=style_scale, loss_net=loss_net, vgg_weights=vgg_weights, max_pixels=max_pixels)
    _run_training(mode, locals(), style_distance=style_distance, texture_weight=texture_weight, content_weight=content_weight, colour_weight=colour_weight, cells=cells)


def _run_training(mode, options: dict, **loss) -> None:
    """What `style` and `prompt` share after building their mode: the job from their common options
    (`options`: the command's arguments), with `loss` the [loss] keys the command sets."""
    from ncaedit.cli.job import Job, run_job

    o = options
    job = Job(
        photo=o["photo"], out=o["out"], rule_path=o["rule_path"], preset=o["preset"], steps=o["steps"], train_on=o["train_on"],
        preview=o["preview"], device=o["device"], resume=o["resume"], max_pixels=o["max_pixels"],
        overrides={"train": {k: o[k] for k in ("iterations", "seed", "crop", "lr")}, "rule": {"width": o["width"]}, "loss": loss},
    )
    run_job(job, mode, _console(), _progress)


@app.command("apply")
@checked
def apply_cmd(
    rule_path: RuleFile,
    inputs: list[str] = typer.Argument(..., metavar="INPUT...", help="Photos, videos (.mp4, ...), folders or globs."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder (made if missing); for a single input, an output file may be named (default: IMAGE-RULE.ext beside it)."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Also take the images in subfolders of folder inputs."),
    fmt: Optional[str] = typer.Option(None, "--format", help="Output format of photos: png, jpg, webp or tif (default: as the input)."),
    overwrite: Overwrite = False,
    steps: Optional[int] = typer.Option(None, help="Steps to run: the strength of the edit (default: from the rule)."),
    seed: ApplySeed = 0,
    strength: float = typer.Option(1.0, help="Blend with the source: 0 keeps the source, 1 is the full edit."),
    mask: Optional[Path] = typer.Option(None, help="Edit only where this image is white (grey: partly); stretched to each photo."),
    feather: float = typer.Option(0.0, help="Soften the mask's edges by this many pixels."),
    tile: Optional[int] = typer.Option(None, help="Tile side in pixels: smaller needs less memory, same result (default: sized to the steps and cores)."),
    carry: bool = typer.Option(False, "--carry", help="Videos: start each frame from the previous frame's hidden state (with --temporal none)."),
    temporal: Optional[str] = typer.Option(None, "--temporal", help="Videos: flow carries the edit along the motion, none edits every frame from scratch (default: flow where OpenCV is installed)."),
    refresh_steps: Optional[int] = typer.Option(None, "--refresh-steps", help="Videos, --temporal flow: steps run on each frame over the carried edit, 0 to --steps (default: 4)."),
    device: Device = DEFAULT_DEVICE,
    max_pixels: MaxPixels = None,
    ray: Optional[str] = typer.Option(None, "--ray", metavar="[ADDRESS]", help='Edit the photos on Ray (pip install "ncaedit\\[ray]"): alone, Ray on this machine; auto, this machine\'s cluster; ray://HOST:10001, a remote one. INPUT and --out may then be s3://, gs:// or abfs:// URIs. Videos stay on the local path.'),
    ray_gpus_per_worker: Optional[float] = typer.Option(None, "--ray-gpus-per-worker", help="GPUs per Ray worker; a fraction shares one (default: 1 where the cluster has GPUs)."),
) -> None:
    """Run a trained rule on photos and videos of any size: files, folders or globs, into --out."""
    if ray is not None:  # the photos go to a Ray cluster: cli/on_ray.py
        from ncaedit.cli.on_ray import apply_on_ray_cli

        options = dict(recursive=recursive, overwrite=overwrite, fmt=fmt, steps=steps, seed=seed, strength=strength, mask=mask, feather=feather, tile=tile, device=device, max_pixels=max_pixels)
        return apply_on_ray_cli(rule_path, inputs, out, None if ray == "local" else ray, ray_gpus_per_worker, **options)
    from rich.markup import escape

    from ncaedit.api import Rule, apply_files

    rule = Rule.load(rule_path)
    console, counts, started = _console(), {"done": 0, "skipped": 0, "failed": 0}, []
    with _progress_later() as bar:

        def on_start(items):
            started.extend(items)
            bar.start(transient=len(items) == 1)
            bar.files = bar.add_task(f"applying {rule_path.name}", total=len(items), info="")
            bar.current = bar.add_task("", total=None, info="", visible=False)

        def on_file(item, total):
            bar.reset(bar.current, total=total, description=f"  {escape(printable(item.source.name))}", visible=True)

        def on_outcome(outcome):
            counts[outcome.status] += 1
            bar.update(bar.files, advance=1, info=", ".join(f"{v} {k}" for k, v in counts.items() if v))

        summary = apply_files(
            rule, inputs, out, recursive=recursive, overwrite=overwrite, fmt=fmt, steps=steps, seed=seed, strength=strength, mask=mask,
            feather=feather, tile=tile, carry=carry, temporal=temporal, refresh_steps=refresh_steps, device=device, max_pixels=max_pixels,
            on_start=on_start, on_file=on_file, on_progress=lambda x: bar.advance(bar.current, x), on_outcome=on_outcome,
        )
        bar.update(bar.current, visible=False)
    for note in summary.notes:
        console.print(note, soft_wrap=True, markup=False)
    _report_batch(summary, single=len(started) == 1, out=out, console=console)


def _report_batch(summary, single: bool, out: Optional[Path], console) -> None:
    """What `ncaedit apply` says when done: one line per written file where it matters, a summary line
    and one line per failure for a batch; exit code 1 when any file failed."""
    from rich.markup import escape

    from ncaedit.batch import OUTPUT_EXISTS

    if single and summary.failed:
        raise NcaError(summary.failed[0].message)
    for o in summary.outcomes:
        if o.status == "done" and (single or o.detail):
            console.print(f"wrote {o.item.out}" + (f" ({o.detail})" if o.detail else ""), soft_wrap=True, markup=False)
        elif o.status == "skipped" and (single or o.detail != OUTPUT_EXISTS):
            console.print(f"skipped {o.item.out if o.detail == OUTPUT_EXISTS else o.item.source}: {o.detail}", soft_wrap=True, markup=False)
    if not single:
        done, skipped, failed = len(summary.done), len(summary.skipped), len(summary.failed)
        console.print(f"{done} done, {skipped} skipped, {failed} failed in {summary.seconds:.1f} s -> {out}", soft_wrap=True, markup=False)
        for o in summary.failed:
            console.print(f"[red]failed[/red] {escape(o.message)}", soft_wrap=True, highlight=False)  # one line each: grep-able logs
    if summary.failed:
        raise SystemExit(1)  # some files failed (2 stays for "nothing was done": bad arguments)


@app.command()
def info(rule_path: RuleFile) -> None:
    """Print a rule file's metadata."""
    import json

    from ncaedit.nca_format import read_metadata

    print(json.dumps(read_metadata(rule_path), indent=2, sort_keys=True))


@app.command()
def export(
    rule_path: Path = typer.Argument(..., metavar="RULE", help="A .nca rule file."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="The .html file to write (default: RULE.html beside the rule)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace --out if it exists."),
) -> None:
    """Write RULE as one self-contained web page that runs it live on the viewer's GPU (WebGL2)."""
    from ncaedit.export import export_page

    _console().print(f"wrote {export_page(rule_path, out, overwrite)}", soft_wrap=True, markup=False)


@app.command()
@checked
def animate(
    rule_path: RuleFile,
    image: Photo,
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="A .gif (looping) or .mp4 (default: IMAGE-RULE.gif beside the image)."),
    steps: Optional[int] = typer.Option(None, help="Steps to run (default: from the rule)."),
    every: int = typer.Option(1, help="A frame every this many steps."),
    fps: float = typer.Option(12.0, help="Frames per second."),
    size: int = typer.Option(512, help="Longer side of the animation in pixels; 0 keeps the photo's size."),
    seed: ApplySeed = 0,
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace --out if it exists."),
    device: Device = DEFAULT_DEVICE,
) -> None:
    """Show the rule at work: the rollout on IMAGE as a looping GIF or an MP4."""
    from ncaedit.animate import SUFFIXES, check_frame_memory, rollout_frames, write_animation
    from ncaedit.device import resolve_device
    from ncaedit.image import MIN_SIDE, fit_long_side, load_image
    from ncaedit.nca_format import load_rule
    from ncaedit.paths import check_output, free_name

    rf = load_rule(rule_path)
    n = rf.metadata.get("default_steps", DEFAULT_STEPS) if steps is None else steps
    out = out or free_name(image.with_name(f"{image.stem}-{rule_path.stem}.gif"))
    if out.suffix.lower() not in SUFFIXES:
        raise NcaError(f"{out}: animations are written as {' or '.join(SUFFIXES)}")
    if out.exists() and not overwrite:
        raise NcaError(f"{out}: exists; choose another name or pass --overwrite")
    check_output(out, [image, rule_path])
    rgb = load_image(image).rgb
    if size and max(rgb.shape[:2]) > size:
        rgb = fit_long_side(rgb, size)
        if min(rgb.shape[:2]) < MIN_SIDE:
            raise NcaError(f"--size {size}: the animation would be {rgb.shape[1]}x{rgb.shape[0]}, under {MIN_SIDE} pixels a side; give a larger --size")
    check_frame_memory(n, every, rgb.shape[1], rgb.shape[0])
    with _progress() as bar:
        task = bar.add_task(f"animating {rule_path.name}", total=n, info=f"{rgb.shape[1]}x{rgb.shape[0]}")
        try:
            frames = rollout_frames(rf.rule, rgb, n, every, seed, resolve_device(device), on_steps=lambda k: bar.advance(task, k))
        except NcaError as exc:
            raise NcaError(f"{rule_path} on {image}: {exc}") from exc
    write_animation(frames, out, fps)
    _console().print(f"wrote {out} ({len(frames)} frames)")


@app.command()
@checked
def prompt(
    photo: Photo,
    text: str = typer.Argument(..., metavar="PROMPT", help='What the photo should become: "a pencil sketch", or weighted "a pencil sketch:1 | charcoal:0.5 | blurry:-0.3".'),
    source_prompt: str = typer.Option(DEFAULT_SOURCE_PROMPT, "--source-prompt", help="What the photo is now; the edit follows the change from this text to PROMPT."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Edited image (default: PHOTO-PROMPT.png beside the photo)."),
    rule_path: RulePath = None,
    preset: str = typer.Option(DEFAULT_PRESET, "--preset", "-p", help="Training recipe: fast, balanced, quality (presets/prompt-*.toml), or a .toml path."),
    iterations: Iterations = None,
    seed: Seed = None,
    steps: TrainSteps = None,
    cutouts: Optional[int] = typer.Option(None, help="Augmented views CLIP scores per training crop and iteration (cost grows with it)."),
    content_weight: ContentWeight = None,
    direction_weight: Optional[float] = typer.Option(None, help="How strongly the change must follow the text change from --source-prompt."),
    clip_model: str = typer.Option(DEFAULT_CLIP_MODEL, "--clip-model", help="open_clip architecture (ViT-B-32, ViT-B-16, ...), a model config .json, or hf-hub:ORG/REPO."),
    pretrained: Optional[str] = typer.Option(None, "--pretrained", help="open_clip weights tag, e.g. laion2b_s34b_b79k or openai (default: laion2b_s34b_b79k; with --clip-weights: the tag those weights are, if any)."),
    clip_weights: Optional[Path] = typer.Option(None, "--clip-weights", help="Local CLIP checkpoint for --clip-model (.safetensors, .bin, .pt)."),
    aesthetic: Optional[float] = typer.Option(None, help="Also push CLIP's aesthetic score (0-10) toward this target."),
    aesthetic_weight: Optional[float] = typer.Option(None, "--aesthetic-weight", help="Weight of the aesthetic term."),
    aesthetic_weights: Optional[Path] = typer.Option(None, "--aesthetic-weights", help="Local aesthetic head (a linear layer on the CLIP embedding)."),
    width: Width = None,
    crop: Crop = None,
    lr: Lr = None,
    loss_net: str = typer.Option(DEFAULT_LOSS_NET, "--loss-net", help="Network for the content term: auto (VGG19 if its weights can be had), vgg19, or random."),
    vgg_weights: VggWeights = None,
    train_on: TrainOn = None,
    preview: bool = typer.Option(False, "--preview", help="Also write a source|result sheet and a loss curve."),
    device: Device = DEFAULT_DEVICE,
    resume: Resume = False,
    max_pixels: MaxPixels = None,
) -> None:
    """Train a rule that edits PHOTO toward a text PROMPT (guided by CLIP), then apply it to PHOTO."""
    from ncaedit.modes.prompt import prompt_mode

    clip = {"model": clip_model, "pretrained": pretrained, "weights": clip_weights}
    mode = prompt_mode(
        text, source_prompt=source_prompt, clip=clip, aesthetic=aesthetic, aesthetic_weights=aesthetic_weights, loss_net=loss_net,
        vgg_weights=vgg_weights,
    )
    _run_training(mode, locals(), cutouts=cutouts, content_weight=content_weight, direction_weight=direction_weight, aesthetic_weight=aesthetic_weight)


def main() -> None:
    """Every failure the user can act on ends as one line, `error: ...`, and exit code 2."""
    try:
        from ncaedit.cli.on_ray import bare_ray

        code = app(bare_ray(sys.argv[1:]), standalone_mode=False)  # returns click's exit code when a command exits early
    except NcaError as exc:
        _fail(f"{FLAGS.get(exc.param, '--' + exc.param.replace('_', '-'))} {exc.detail}" if exc.param else str(exc))
    except KeyboardInterrupt:
        code = 130
    except OSError as exc:  # disk full, permissions, ... anywhere no check named the problem first
        _fail(f"{exc.filename}: {exc.strerror}" if exc.filename and exc.strerror else str(exc))
    except Exception as exc:
        import typer

        # Newer typer vendors its own copy of click, so find click's base error through typer.
        click_error = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
        if isinstance(exc, click_error):
            message, ctx = exc.format_message(), getattr(exc, "ctx", None)
            if not message:  # `ncaedit` alone: the help was shown
                sys.exit(0)
            _fail(f"{message} (see: {ctx.command_path} --help)" if ctx else message)
        if isinstance(exc, typer.Abort):
            code = 130
        else:
            raise
    if code == 130:
        print("interrupted", file=sys.stderr)
    sys.exit(code if isinstance(code, int) else 0)


def _fail(message: str) -> None:
    print(f"error: {printable(message)}", file=sys.stderr)
    sys.exit(2)
