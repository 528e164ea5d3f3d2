"""The `ncaedit` command line. Heavy imports (torch) happen inside the commands, so --help is instant."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import typer

from ncaedit.errors import NcaError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Edit photos with Neural Cellular Automata.")


def _console():
    from rich.console import Console

    return Console(stderr=True)


def _progress():
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
        transient=False,
    )


@app.command()
def style(
    photo: Path = typer.Argument(..., help="The photo to edit."),
    style_image: Path = typer.Option(..., "--style", "-s", help="The style image whose colours and textures to take."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Edited image [default: PHOTO-STYLE.png beside the photo]."),
    rule_path: Optional[Path] = typer.Option(None, "--rule", help="Where to save the rule [default: the output's name with .nca]."),
    preset: str = typer.Option("fast", "--preset", "-p", help="Training recipe: fast, balanced, quality, or a .toml path."),
    iterations: Optional[int] = typer.Option(None, help="Training iterations (preset train.iterations)."),
    seed: Optional[int] = typer.Option(None, help="Random seed; the same seed gives the same rule on the same machine."),
    steps: Optional[int] = typer.Option(None, help="Steps to run the rule on the photo [default: the longest training rollout]."),
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
) -> None:
    """Train a rule that repaints PHOTO in the style of --style, then apply it to PHOTO."""
    from ncaedit.job import Job
    from ncaedit.stylize import run_style_job

    job = Job(
        photo=photo, out=out, rule_path=rule_path, preset=preset, steps=steps, train_on=train_on, preview=preview, device=device,
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
    image: Path = typer.Argument(..., help="The photo to edit."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output image [default: IMAGE-RULE.ext beside the image]."),
    steps: Optional[int] = typer.Option(None, help="Steps to run: the strength of the edit [default: from the rule]."),
    seed: int = typer.Option(0, help="Seed of the stochastic cell updates."),
    device: str = typer.Option("cpu", help="cpu, cuda or mps."),
) -> None:
    """Run a trained rule on a photo of any size."""
    from ncaedit.apply import apply_rule
    from ncaedit.image import load_image, save_image
    from ncaedit.paths import check_output, free_name
    from ncaedit.rulefile import load_rule

    rf = load_rule(rule_path)
    n = rf.metadata.get("default_steps", 32) if steps is None else steps
    if n < 1:
        raise NcaError("--steps must be at least 1")
    photo = load_image(image)
    out = out or free_name(image.with_name(f"{image.stem}-{rule_path.stem}{image.suffix}"))
    check_output(out, [image, rule_path])
    with _progress() as bar:
        task = bar.add_task(f"applying {rule_path.name}", total=n, info=f"{photo.size[0]}x{photo.size[1]}")
        result = apply_rule(rf.rule, photo, n, seed=seed, device=device, on_steps=lambda k: bar.advance(task, k))
    save_image(result, out)
    _console().print(f"wrote {out}")


@app.command()
def info(rule_path: Path = typer.Argument(..., metavar="RULE", help="A .nca rule file.")) -> None:
    """Print a rule file's metadata."""
    import json

    from ncaedit.rulefile import read_metadata

    print(json.dumps(read_metadata(rule_path), indent=2, sort_keys=True))


def main() -> None:
    # Idle torch/BLAS threads sleep instead of spinning: on a busy machine spinning threads take the
    # cores the work needs (training ran 7x slower on 2 shared cores; benchmarks/run.py). Set before
    # torch loads; a user's own setting wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        app(standalone_mode=False)
    except NcaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:  # click's own usage errors, and anything we did not foresee
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Exit):
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Abort):
            sys.exit(130)
        raise
