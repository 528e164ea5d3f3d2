"""The `ncaedit` command line. Heavy imports (torch) happen inside the commands, so --help is instant."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import typer

from ncaedit.errors import NcaError

MAX_PIXELS_HELP = "Refuse input images with more pixels than this (decompression bombs) (default: 200,000,000)."

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Edit photos with Neural Cellular Automata.")


def _console():
    from rich.console import Console

    return Console(stderr=True)


def _progress(transient: bool = False):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=_console(),
        transient=transient,
    )


@app.command()
def style(
    photo: Path = typer.Argument(..., help="The photo to edit."),
    style_image: Path = typer.Option(..., "--style", "-s", help="The style image whose colours and textures to take."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Edited image (default: PHOTO-STYLE.png beside the photo)."),
    rule_path: Optional[Path] = typer.Option(None, "--rule", help="Where to save the rule (default: the output's name with .nca)."),
    preset: str = typer.Option("fast", "--preset", "-p", help="Training recipe: fast, balanced, quality, or a .toml path."),
    iterations: Optional[int] = typer.Option(None, help="Training iterations (preset train.iterations)."),
    seed: Optional[int] = typer.Option(None, help="Random seed; the same seed gives the same rule on the same machine."),
    steps: Optional[int] = typer.Option(None, help="Steps to run the rule on the photo (default: the longest training rollout)."),
    style_scale: float = typer.Option(1.0, "--style-scale", help="Size of the style's features: >1 bigger, <1 finer."),
    style_distance: Optional[str] = typer.Option(None, "--style-distance", help="gram or sw (sliced Wasserstein)."),
    content_weight: Optional[float] = typer.Option(None, help="How strongly to keep the photo's layout."),
    colour_weight: Optional[float] = typer.Option(None, "--colour-weight", help="How strongly to take the style's colours."),
    width: Optional[int] = typer.Option(None, help="Hidden units of the rule's network."),
    crop: Optional[int] = typer.Option(None, help="Side of the square training crops, in pixels."),
    lr: Optional[float] = typer.Option(None, help="Learning rate."),
    loss_net: str = typer.Option("auto", "--loss-net", help="auto (VGG19 if its weights can be had), vgg19, or random."),
    vgg_weights: Optional[Path] = typer.Option(None, "--vgg-weights", help="Local VGG19 weights (.pth or .safetensors)."),
    train_on: Optional[Path] = typer.Option(None, "--train-on", help="Also train on the photos in this folder, so the rule generalises."),
    preview: bool = typer.Option(False, "--preview", help="Also write a source|style|result sheet and a loss curve."),
    device: str = typer.Option("cpu", help="cpu, cuda or mps."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run of the same command from its checkpoint."),
    max_pixels: Optional[int] = typer.Option(None, "--max-pixels", min=1, help=MAX_PIXELS_HELP),
) -> None:
    """Train a rule that repaints PHOTO in the style of --style, then apply it to PHOTO."""
    from ncaedit.job import Job
    from ncaedit.stylize import run_style_job

    job = Job(
        photo=photo, out=out, rule_path=rule_path, preset=preset, steps=steps, train_on=train_on, preview=preview, device=device,
        resume=resume, max_pixels=max_pixels,
        overrides={
            "train": {"iterations": iterations, "seed": seed, "crop": crop, "lr": lr},
            "rule": {"width": width},
            "loss": {"style_distance": style_distance, "content_weight": content_weight, "colour_weight": colour_weight},
        },
    )
    run_style_job(job, style_image, style_scale, loss_net, vgg_weights, _console(), _progress)


@app.command("apply")
def apply_cmd(
    rule_path: Path = typer.Argument(..., metavar="RULE", help="A .nca rule file."),
    inputs: list[str] = typer.Argument(..., metavar="INPUT...", help="Photos, videos (.mp4, ...), folders or globs."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder (made if missing); for a single input, an output file may be named (default: IMAGE-RULE.ext beside it)."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Also take the images in subfolders of folder inputs."),
    fmt: Optional[str] = typer.Option(None, "--format", help="Output format of photos: png, jpg, webp or tif (default: as the input)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Redo outputs that already exist (a rerun skips them)."),
    steps: Optional[int] = typer.Option(None, help="Steps to run: the strength of the edit (default: from the rule)."),
    seed: int = typer.Option(0, help="Seed of the stochastic cell updates."),
    strength: float = typer.Option(1.0, help="Blend with the source: 0 keeps the source, 1 is the full edit."),
    mask: Optional[Path] = typer.Option(None, help="Edit only where this image is white (grey: partly); stretched to each photo."),
    feather: float = typer.Option(0.0, help="Soften the mask's edges by this many pixels."),
    tile: Optional[int] = typer.Option(None, help="Tile side in pixels: smaller needs less memory, same result (default: sized to the steps and cores)."),
    carry: bool = typer.Option(False, "--carry", help="Videos: start each frame from the previous frame's hidden state (with --temporal none)."),
    temporal: Optional[str] = typer.Option(None, "--temporal", help="Videos: flow carries the edit along the motion, none edits every frame from scratch (default: flow where OpenCV is installed)."),
    refresh_steps: Optional[int] = typer.Option(None, "--refresh-steps", help="Videos, --temporal flow: steps run on each frame over the carried edit, 0 to --steps (default: 4)."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or mps."),
    max_pixels: Optional[int] = typer.Option(None, "--max-pixels", min=1, help=MAX_PIXELS_HELP),
) -> None:
    """Run a trained rule on photos and videos of any size: files, folders or globs, into --out."""
    import time

    from rich.markup import escape

    from ncaedit.batch import Item, Settings, find_inputs, output_suffix, plan_outputs, run_batch
    from ncaedit.device import resolve_device, tile_workers
    from ncaedit.image import WRITE_SUFFIXES
    from ncaedit.paths import check_output, free_name
    from ncaedit.rulefile import load_rule
    from ncaedit.video import VIDEO_SUFFIXES, video_temporal

    rf = load_rule(rule_path)
    n = rf.metadata.get("default_steps", 32) if steps is None else steps
    if n < 1:
        raise NcaError("--steps must be at least 1")
    if not 0 <= strength <= 1:
        raise NcaError("--strength must be between 0 and 1")
    if tile is not None and tile < 16:
        raise NcaError("--tile must be at least 16 pixels")
    if feather < 0:
        raise NcaError("--feather must be 0 or more")
    if mask is not None and not mask.is_file():
        raise NcaError(f"--mask {mask}: no such file")
    temporal, note = video_temporal(temporal, carry, refresh_steps, n)
    device = resolve_device(device)
    workers = tile_workers(device)
    if workers > 1:
        import torch

        torch.set_num_threads(1)  # the cores go to tiles running side by side (tiling.edit_tiles)
    settings = Settings(n, seed, tile, strength, mask, feather, device, carry, overwrite, workers, max_pixels, temporal, refresh_steps)

    single = Path(inputs[0])
    if len(inputs) == 1 and not any(ch in inputs[0] for ch in "*?["):
        if not single.exists():
            raise NcaError(f"{single}: no such file")
        if single.is_dir() and out is None:
            raise NcaError(f"{single}: is a folder; give an output folder with --out DIR")
    if len(inputs) == 1 and single.is_file() and (out is None or (out.suffix and not out.is_dir())):
        target = out or free_name(single.with_name(f"{single.stem}-{rule_path.stem}{output_suffix(single, fmt)}"))
        writable = {".mp4"} if Item(single, target).is_video else WRITE_SUFFIXES
        if target.suffix.lower() not in writable:
            raise NcaError(f"{target}: unknown output format {target.suffix!r} for this input (use {', '.join(sorted(writable))})")
        check_output(target, [single, rule_path, *([mask] if mask else [])])
        items = [Item(single, target)]
    else:
        if out is None:
            raise NcaError("several inputs or a folder: give an output folder with --out DIR")
        if (out.exists() and not out.is_dir()) or out.suffix.lower() in WRITE_SUFFIXES | VIDEO_SUFFIXES:
            raise NcaError(f"--out {out}: several inputs or a folder need an output folder, not a file")
        items = plan_outputs(find_inputs(inputs, recursive, out), out, fmt)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise NcaError(f"--out {out}: cannot make the folder ({exc.strerror})") from None

    outcomes, started = [], time.perf_counter()
    console = _console()
    if note and any(i.is_video for i in items):
        console.print(note, soft_wrap=True, markup=False)
    with _progress(transient=len(items) == 1) as bar:
        files = bar.add_task(f"applying {rule_path.name}", total=len(items), info="")
        current = bar.add_task("", total=None, info="", visible=False)

        def on_file(item, total):
            bar.reset(current, total=total, description=f"  {escape(item.source.name)}", visible=True)

        for outcome in run_batch(rf.rule, items, settings, on_file, lambda x: bar.advance(current, x)):
            outcomes.append(outcome)
            counts = {k: sum(o.status == k for o in outcomes) for k in ("done", "skipped", "failed")}
            bar.update(files, advance=1, info=", ".join(f"{v} {k}" for k, v in counts.items() if v))
        bar.update(current, visible=False)
    seconds = time.perf_counter() - started
    failed = [o for o in outcomes if o.status == "failed"]
    if len(items) == 1 and failed:
        raise NcaError(failed[0].detail)
    for o in outcomes:
        if o.status == "done" and (len(items) == 1 or o.detail):
            console.print(f"wrote {o.item.out}" + (f" ({o.detail})" if o.detail else ""), soft_wrap=True, markup=False)
        elif o.status == "skipped" and len(items) == 1:
            console.print(f"skipped {o.item.out}: {o.detail}", soft_wrap=True, markup=False)
    if len(items) > 1:
        done = sum(o.status == "done" for o in outcomes)
        console.print(f"{done} done, {len(outcomes) - done - len(failed)} skipped, {len(failed)} failed in {seconds:.1f} s -> {out}", soft_wrap=True, markup=False)
        for o in failed:
            detail = o.detail if o.detail.startswith(str(o.item.source)) else f"{o.item.source}: {o.detail}"
            console.print(f"[red]failed[/red] {escape(detail)}", soft_wrap=True, highlight=False)  # one line each: grep-able logs
    if failed:
        raise SystemExit(1)  # some files failed (2 stays for "nothing was done": bad arguments)


@app.command()
def info(rule_path: Path = typer.Argument(..., metavar="RULE", help="A .nca rule file.")) -> None:
    """Print a rule file's metadata."""
    import json

    from ncaedit.rulefile import read_metadata

    print(json.dumps(read_metadata(rule_path), indent=2, sort_keys=True))


@app.command()
def animate(
    rule_path: Path = typer.Argument(..., metavar="RULE", help="A .nca rule file."),
    image: Path = typer.Argument(..., help="The photo to edit."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="A .gif (looping) or .mp4 (default: IMAGE-RULE.gif beside the image)."),
    steps: Optional[int] = typer.Option(None, help="Steps to run (default: from the rule)."),
    every: int = typer.Option(1, help="A frame every this many steps."),
    fps: float = typer.Option(12.0, help="Frames per second."),
    size: int = typer.Option(512, help="Longer side of the animation in pixels; 0 keeps the photo's size."),
    seed: int = typer.Option(0, help="Seed of the stochastic cell updates."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace --out if it exists."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or mps."),
) -> None:
    """Show the rule at work: the rollout on IMAGE as a looping GIF or an MP4."""
    from ncaedit.animate import SUFFIXES, rollout_frames, write_animation
    from ncaedit.device import resolve_device
    from ncaedit.image import fit_long_side, load_image
    from ncaedit.paths import check_output, free_name
    from ncaedit.rulefile import load_rule

    rf = load_rule(rule_path)
    n = rf.metadata.get("default_steps", 32) if steps is None else steps
    if n < 1 or every < 1 or fps <= 0 or size < 0:
        raise NcaError("--steps and --every must be at least 1, --fps above 0 and --size 0 or more")
    out = out or free_name(image.with_name(f"{image.stem}-{rule_path.stem}.gif"))
    if out.suffix.lower() not in SUFFIXES:
        raise NcaError(f"{out}: animations are written as {' or '.join(SUFFIXES)}")
    if out.exists() and not overwrite:
        raise NcaError(f"{out}: exists; choose another name or pass --overwrite")
    check_output(out, [image, rule_path])
    rgb = load_image(image).rgb
    if size and max(rgb.shape[:2]) > size:
        rgb = fit_long_side(rgb, size)
    with _progress() as bar:
        task = bar.add_task(f"animating {rule_path.name}", total=n, info=f"{rgb.shape[1]}x{rgb.shape[0]}")
        frames = rollout_frames(rf.rule, rgb, n, every, seed, resolve_device(device), on_steps=lambda k: bar.advance(task, k))
    write_animation(frames, out, fps)
    _console().print(f"wrote {out} ({len(frames)} frames)")


@app.command()
def prompt(
    photo: Path = typer.Argument(..., help="The photo to edit."),
    text: str = typer.Argument(..., metavar="PROMPT", help='What the photo should become: "a pencil sketch", or weighted "a pencil sketch:1 | charcoal:0.5 | blurry:-0.3".'),
    source_prompt: str = typer.Option("a photo", "--source-prompt", help="What the photo is now; the edit follows the change from this text to PROMPT."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Edited image (default: PHOTO-PROMPT.png beside the photo)."),
    rule_path: Optional[Path] = typer.Option(None, "--rule", help="Where to save the rule (default: the output's name with .nca)."),
    preset: str = typer.Option("fast", "--preset", "-p", help="Training recipe: fast, balanced, quality (presets/prompt-*.toml), or a .toml path."),
    iterations: Optional[int] = typer.Option(None, help="Training iterations (preset train.iterations)."),
    seed: Optional[int] = typer.Option(None, help="Random seed; the same seed gives the same rule on the same machine."),
    steps: Optional[int] = typer.Option(None, help="Steps to run the rule on the photo (default: the longest training rollout)."),
    cutouts: Optional[int] = typer.Option(None, help="Augmented views CLIP scores per training crop and iteration (cost grows with it)."),
    content_weight: Optional[float] = typer.Option(None, help="How strongly to keep the photo's layout."),
    direction_weight: Optional[float] = typer.Option(None, help="How strongly the change must follow the text change from --source-prompt."),
    clip_model: str = typer.Option("ViT-B-32", "--clip-model", help="open_clip architecture (ViT-B-32, ViT-B-16, ...), a model config .json, or hf-hub:ORG/REPO."),
    pretrained: Optional[str] = typer.Option(None, "--pretrained", help="open_clip weights tag, e.g. laion2b_s34b_b79k or openai (default: laion2b_s34b_b79k; with --clip-weights: the tag those weights are, if any)."),
    clip_weights: Optional[Path] = typer.Option(None, "--clip-weights", help="Local CLIP checkpoint for --clip-model (.safetensors, .bin, .pt)."),
    aesthetic: Optional[float] = typer.Option(None, help="Also push CLIP's aesthetic score (0-10) toward this target."),
    aesthetic_weight: Optional[float] = typer.Option(None, "--aesthetic-weight", help="Weight of the aesthetic term."),
    aesthetic_weights: Optional[Path] = typer.Option(None, "--aesthetic-weights", help="Local aesthetic head (a linear layer on the CLIP embedding)."),
    width: Optional[int] = typer.Option(None, help="Hidden units of the rule's network."),
    crop: Optional[int] = typer.Option(None, help="Side of the square training crops, in pixels."),
    lr: Optional[float] = typer.Option(None, help="Learning rate."),
    loss_net: str = typer.Option("auto", "--loss-net", help="Network for the content term: auto (VGG19 if its weights can be had), vgg19, or random."),
    vgg_weights: Optional[Path] = typer.Option(None, "--vgg-weights", help="Local VGG19 weights (.pth or .safetensors)."),
    train_on: Optional[Path] = typer.Option(None, "--train-on", help="Also train on the photos in this folder, so the rule generalises."),
    preview: bool = typer.Option(False, "--preview", help="Also write a source|result sheet and a loss curve."),
    device: str = typer.Option("cpu", help="cpu, cuda or mps."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run of the same command from its checkpoint."),
    max_pixels: Optional[int] = typer.Option(None, "--max-pixels", min=1, help=MAX_PIXELS_HELP),
) -> None:
    """Train a rule that edits PHOTO toward a text PROMPT (guided by CLIP), then apply it to PHOTO."""
    from ncaedit.job import Job
    from ncaedit.prompting import run_prompt_job

    job = Job(
        photo=photo, out=out, rule_path=rule_path, preset=preset, steps=steps, train_on=train_on, preview=preview, device=device, mode="prompt",
        resume=resume, max_pixels=max_pixels,
        overrides={
            "train": {"iterations": iterations, "seed": seed, "crop": crop, "lr": lr},
            "rule": {"width": width},
            "loss": {"cutouts": cutouts, "content_weight": content_weight, "direction_weight": direction_weight, "aesthetic_weight": aesthetic_weight},
        },
    )
    clip = {"model": clip_model, "pretrained": pretrained, "weights": clip_weights}
    run_prompt_job(job, text, source_prompt, clip, aesthetic, aesthetic_weights, loss_net, vgg_weights, _console(), _progress)


def main() -> None:
    """Every failure the user can act on ends as one line, `error: ...`, and exit code 2."""
    # Idle torch/BLAS threads sleep instead of spinning: on a busy machine spinning threads take the
    # cores the work needs (training ran 7x slower on 2 shared cores; benchmarks/run.py). Set before
    # torch loads; a user's own setting wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        code = app(standalone_mode=False)  # returns click's exit code when a command exits early
    except NcaError as exc:
        _fail(str(exc))
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
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)
