"""`ncaedit style`: the loss that pulls a photo toward a style image (see job.py for the rest)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from ncaedit.errors import NcaError
from ncaedit.job import Job, ModeSetup, run_job


def run_style_job(job: Job, style_path: Path, style_scale: float, loss_net: str, vgg_weights: Path | None, console, progress) -> dict:
    from ncaedit.image import load_image
    from ncaedit.limits import check_number

    check_number("style_scale", style_scale)
    style = load_image(style_path, job.max_pixels)

    def setup(recipe, photo) -> ModeSetup:
        import torch

        from ncaedit.image import fit_long_side
        from ncaedit.lossnet import load_loss_net
        from ncaedit.style_loss import StyleLoss

        choice = load_loss_net(loss_net, vgg_weights)
        if choice.warning:
            console.print(f"[yellow]warning:[/yellow] {choice.warning}")
        net = choice.net.to(job.device)
        side = max(16, round(recipe.loss.style_size * style_scale))
        style_rgb = torch.from_numpy(fit_long_side(style.rgb, side)).permute(2, 0, 1)[None].to(job.device)
        loss = StyleLoss(net, style_rgb, recipe.loss)
        return ModeSetup(
            loss_fn=loss,
            metadata={
                "mode": "style",
                "style_image": style_path.name,
                "style_sha256": hashlib.sha256(style_path.read_bytes()).hexdigest(),
                "style_scale": style_scale,
                "loss_net": net.name,
            },
            progress_info=lambda rec: f"loss {rec['total']:.4f} style {rec['style']:.4f}",
            preview_middle=style.rgb,
        )

    return run_job(job, f"{job.photo.stem}-{style_path.stem}", [style_path], setup, console, progress)
