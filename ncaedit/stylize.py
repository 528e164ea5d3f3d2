"""`ncaedit style`, end to end: read inputs, build the loss, train, save the rule, apply it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from ncaedit.errors import NcaError
from ncaedit.paths import check_output, free_name


@dataclass
class StyleJob:
    photo: Path
    style: Path
    out: Path | None = None
    rule_path: Path | None = None
    preset: str = "fast"
    seed: int | None = None
    steps: int | None = None
    style_scale: float = 1.0
    loss_net: str = "auto"
    vgg_weights: Path | None = None
    train_on: Path | None = None
    preview: bool = False
    device: str = "cpu"
    overrides: dict = field(default_factory=dict)


def training_photos(photo_rgb, folder: Path | None, train_size: int, crop: int) -> list:
    """The photo plus every readable image in `folder`, each at most `train_size` on its longer side."""
    from ncaedit.image import READ_SUFFIXES, fit_long_side, load_image

    photos = [photo_rgb]
    if folder is not None:
        if not folder.is_dir():
            raise NcaError(f"--train-on {folder}: not a folder")
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in READ_SUFFIXES)
        if not files:
            raise NcaError(f"--train-on {folder}: no images found")
        for f in files:
            photos.append(load_image(f).rgb)  # a bad file here is an error: the user chose this set
    out = []
    for p in photos:
        if max(p.shape[:2]) > train_size:
            p = fit_long_side(p, train_size)
        if min(p.shape[:2]) < crop:
            raise NcaError(f"a training photo is {p.shape[1]}x{p.shape[0]} at training size, smaller than the {crop}-px crop; use --crop")
        out.append(p)
    return out


def run_style_job(job: StyleJob, console, progress) -> dict:
    import torch

    from ncaedit.apply import apply_rule
    from ncaedit.image import Photo, fit_long_side, load_image, save_image
    from ncaedit.lossnet import load_loss_net
    from ncaedit.recipe import load_recipe
    from ncaedit.rulefile import save_rule
    from ncaedit.style_loss import StyleLoss
    from ncaedit.train import train_rule

    if job.style_scale <= 0:
        raise NcaError("--style-scale must be > 0")
    if job.steps is not None and job.steps < 1:
        raise NcaError("--steps must be at least 1")
    recipe = load_recipe(job.preset, job.overrides)
    photo = load_image(job.photo)
    style = load_image(job.style)
    out = job.out or free_name(job.photo.with_name(f"{job.photo.stem}-{job.style.stem}.png"))
    rule_path = job.rule_path or out.with_suffix(".nca")
    for target in (out, rule_path):
        check_output(target, [job.photo, job.style])
    if out.suffix.lower() == ".nca" or rule_path.suffix.lower() != ".nca":
        raise NcaError("the image goes to --out and the rule (.nca) to --rule")

    choice = load_loss_net(job.loss_net, job.vgg_weights)
    if choice.warning:
        console.print(f"[yellow]warning:[/yellow] {choice.warning}")
    net = choice.net.to(job.device)
    t, r = recipe.train, recipe.rule
    style_px = max(16, round(recipe.loss.style_size * job.style_scale))
    style_rgb = torch.from_numpy(fit_long_side(style.rgb, style_px)).permute(2, 0, 1)[None].to(job.device)
    loss = StyleLoss(net, style_rgb, recipe.loss)
    photos = training_photos(photo.rgb, job.train_on, t.train_size, t.crop)

    with progress() as bar:
        task = bar.add_task("training", total=t.iterations, info="")

        def report(it, rec):
            bar.update(task, completed=it + 1, info=f"loss {rec['total']:.4f} style {rec['style']:.4f}")

        result = train_rule(photos, lambda s, g: loss(s, g), r, t, on_iteration=report)
    if result.interrupted:
        console.print(f"[yellow]interrupted[/yellow] after {len(result.history)} iterations; saving the best rule so far")
    if not result.history:
        raise NcaError("training stopped before the first iteration finished; nothing saved")

    steps = job.steps or t.steps_max
    final = {k: v for k, v in result.history[-1].items() if k not in ("steps", "lr")}
    metadata = {
        "mode": "style",
        "style_image": job.style.name,
        "style_sha256": hashlib.sha256(job.style.read_bytes()).hexdigest(),
        "style_scale": job.style_scale,
        "recipe": recipe.to_dict(),
        "preset": job.preset,
        "loss_net": net.name,
        "iterations_done": len(result.history),
        "interrupted": result.interrupted,
        "final_losses": final,
        "best_loss": result.best_loss,
        "train_seconds": round(result.seconds, 1),
        "default_steps": t.steps_max,
    }
    save_rule(result.rule, rule_path, metadata)

    with progress() as bar:
        task = bar.add_task("applying", total=steps, info=f"{photo.size[0]}x{photo.size[1]}")
        edited = apply_rule(result.rule, photo, steps, seed=t.seed, device=job.device, on_steps=lambda k: bar.advance(task, k))
    save_image(edited, out)
    written = [out, rule_path]
    if job.preview:
        from ncaedit.preview import write_previews

        written += write_previews(out, photo.rgb, style.rgb, edited.rgb, result.history)
    console.print(f"trained {len(result.history)} iterations in {result.seconds:.0f} s with loss network {net.name}")
    for p in written:
        console.print(f"wrote {p}")
    return {"out": out, "rule": rule_path, "result": result}

