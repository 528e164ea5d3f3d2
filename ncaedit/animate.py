"""The rollout as an animation: the working RGB every `every` steps, as a looping GIF or an MP4."""

from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ncaedit.errors import NcaError
from ncaedit.image import to_samples
from ncaedit.inference import run_inplace
from ncaedit.paths import atomic_output
from ncaedit.rule import Rule
from ncaedit.state import make_state, photo_levels, require_finite, working_rgb

SUFFIXES = (".gif", ".mp4")
HOLD_LAST_MS = 1000  # a GIF rests on the finished edit before it loops
MAX_FRAME_BYTES = 2 << 30  # the frames are kept in memory until they are encoded
MAX_GIF_MS = 655_350  # a GIF frame's duration is 16 bits of hundredths of a second


@torch.no_grad()
def rollout_frames(
    rule: Rule, rgb: np.ndarray, steps: int, every: int, seed: int = 0, device: str = "cpu", on_steps: Callable[[int], None] | None = None
) -> list[np.ndarray]:
    """uint8 (H, W, 3) frames of the working RGB at steps 0, every, 2*every, ..., and at `steps`."""
    check_frame_memory(steps, every, rgb.shape[1], rgb.shape[0])
    rule = rule.to(device)
    levels = photo_levels(rgb, rule.config.photo_contrast)
    state = make_state(torch.from_numpy(rgb).permute(2, 0, 1)[None].to(device), rule.config.hidden_channels, seed=seed, levels=levels, regions=rule.config.regions)

    def frame():
        return to_samples(working_rgb(state)[0].permute(1, 2, 0).cpu().numpy(), np.uint8)

    frames = [frame()]
    for first in range(0, steps, every):
        n = min(every, steps - first)
        state = run_inplace(rule, state, n, seed=seed, first_step=first)
        require_finite(state, first + n)
        frames.append(frame())
        if on_steps:
            on_steps(n)
    return frames


def check_frame_memory(steps: int, every: int, width: int, height: int) -> None:
    """Refuse an animation whose frames would not fit in MAX_FRAME_BYTES (they are kept until encoded)."""
    count = -(-steps // every) + 1
    if count * width * height * 3 > MAX_FRAME_BYTES:
        raise NcaError(
            f"{steps} steps with a frame every {every} make {count:,} frames of {width}x{height}, "
            f"over {MAX_FRAME_BYTES >> 30} GB in memory; take a larger --every or a smaller --size"
        )


def write_animation(frames: list[np.ndarray], path: Path, fps: float) -> Path:
    """A looping GIF (one palette for all frames, so colours do not jump) or an H.264 MP4, written atomically."""
    suffix = path.suffix.lower()
    if suffix == ".mp4":
        from ncaedit.video import write_video

        write_video(path, frames, Fraction(fps).limit_denominator(1001))
        return path
    if suffix != ".gif":
        raise NcaError(f"{path}: animations are written as {' or '.join(SUFFIXES)}")
    from PIL import Image

    palette = Image.fromarray(np.concatenate([frames[0], frames[-1]])).quantize(256)
    images, durations = [], []
    for i, f in enumerate(frames):
        image, ms = Image.fromarray(f).quantize(palette=palette), HOLD_LAST_MS if i == len(frames) - 1 else round(1000 / fps)
        if images and image.tobytes() == images[-1].tobytes():  # Pillow would merge them, past what a GIF can say
            durations[-1] = min(durations[-1] + ms, MAX_GIF_MS)
        else:
            images.append(image)
            durations.append(ms)
    buf = io.BytesIO()
    images[0].save(buf, "GIF", save_all=True, append_images=images[1:], loop=0, duration=durations)
    with atomic_output(path) as tmp:
        tmp.write_bytes(buf.getvalue())
    return path
