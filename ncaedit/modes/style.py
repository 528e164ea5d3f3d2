"""The style mode: the loss that pulls a photo toward a style image (see modes/__init__.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ncaedit.config import DEFAULT_LOSS_NET
from ncaedit.modes import Mode, ModeSetup


def style_mode(
    style: Any, *, style_scale: float = 1.0, loss_net: str = DEFAULT_LOSS_NET, vgg_weights: Path | None = None, max_pixels: int | None = None
) -> Mode:
    """`style`: a path, PIL image or array (image_types.py). Bad input fails here, before torch work."""
    from ncaedit.image_types import convert
    from ncaedit.limits import check_number

    check_number("style_scale", style_scale)
    source = convert(style, max_pixels)
    style_rgb_full = source.photos[0].rgb

    def setup(recipe, photo, device: str, warn) -> ModeSetup:
        import torch

        from ncaedit.cell_style import with_cells
        from ncaedit.device import training_workers
        from ncaedit.image import fit_long_side
        from ncaedit.lossnet import load_loss_net
        from ncaedit.style_loss import StyleLoss

        recipe, cells = with_cells(recipe, style_rgb_full)
        choice = load_loss_net(loss_net, vgg_weights)
        if choice.warning:
            warn(choice.warning)
        net = choice.net.to(device)
        side = max(16, round(recipe.loss.style_size * style_scale))
        style_rgb = torch.from_numpy(fit_long_side(style_rgb_full, side)).permute(2, 0, 1)[None].to(device)
        metadata = {
            "mode": "style",
            "style_image": source.path.name if source.path else source.name,
            "style_sha256": source.sha256(),
            "style_scale": style_scale,
            "loss_net": net.name,
        }
        # Torch threads per op for training on the CPU, one per 16k cells of a batch: waking a sleeping
        # thread costs more than it saves on small ops. `fast` (2 crops of 80 px) trained 1.2-1.4x faster on
        # one thread than on two, `balanced` (4 of 96) and `quality` (4 of 128) 1.3x and 1.1x slower
        # (2-core machine, benchmarks/run.py; README, Speed). Where the batch's crops train side by side
        # instead (training_workers; StyleLoss scores each crop on its own), each part runs one thread.
        t = recipe.train
        threads = max(1, t.batch * t.crop**2 // 16_384)
        workers = training_workers(device, t.batch, t.crop)
        notice = "the style looks like cells in many hues (a mosaic): drawing them with random regions (--cells off: not)" if cells and recipe.loss.cells == "auto" else ""
        return ModeSetup(loss_fn=StyleLoss(net, style_rgb, recipe.loss), metadata=metadata, threads=threads, workers=workers, recipe=recipe, notice=notice)

    return Mode(
        kind="style",
        name=source.name,
        setup=setup,
        progress_info=lambda rec: f"loss {rec['total']:.4f} style {rec['style']:.4f}",
        inputs=[source.path] if source.path else [],
        preview_middle=style_rgb_full,
    )
