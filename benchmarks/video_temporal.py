"""Temporal coherence of video apply: per-frame rollouts vs the edit carried along the motion
(`--temporal flow`), on synthetic clips made from the bundled sample photos.

    python benchmarks/video_temporal.py [--rule R.nca] [--steps N] [--refresh 2,4,8] [--frames 60]
                                        [--long 300] [--clips pan,zoom,rotate,cut] [--json out.json]

Clips (640x360, made here, encoded as H.264 like a user's clip and decoded again, never stored):
  pan     a window sliding over a strip of photos at exactly 2 px a frame (the true motion is known)
  zoom    zooming into a photo by 0.4 % a frame
  rotate  a disk cut from another photo, turning 3 degrees and moving 2 px a frame over a still photo
  cut     a pan over one strip of photos, then a cut to another
  fade    a still photo darkening to 60 %: a change the motion does not explain
  long    the pan, `--long` frames, back and forth: does the carried edit (default refresh) drift?
Measured on each (in 1/255, outputs as 8-bit frames, not re-encoded):
  warped error  mean |O_t - warp(O_t-1)| over pixels seen in both frames, with the flow estimated on
                the input (the same flow for the input and both outputs); on the pan also with the true
                2-px shift ("exact")
  flicker       mean |O_t - O_t-1|
  change        mean |O_t - I_t|: how much of an edit each frame carries (per-frame = a photo's apply)
  frames/s      640x360 on this machine's cores, tiles side by side as `ncaedit apply` runs them
Without --rule, a rule is trained first with the `fast` preset (coffee.jpg in the style of mosaic.png,
about a minute): random weights would not show whether an edit holds.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SIZE = (640, 360)
PAN = 2  # pixels a frame


def _photo(name: str, height: int) -> np.ndarray:
    from PIL import Image

    img = Image.open(ROOT / "sample_images" / name).convert("RGB")
    return np.asarray(img.resize((round(img.width * height / img.height), height), Image.Resampling.BICUBIC))


def strip(names: list[str], height: int = SIZE[1]) -> np.ndarray:
    return np.concatenate([_photo(n, height) for n in names], axis=1)


def pan(canvas: np.ndarray, frames: int, start: int = 0) -> list[np.ndarray]:
    """A window moving right by PAN pixels a frame, back and forth when the canvas ends."""
    w = SIZE[0]
    span = canvas.shape[1] - w
    out = []
    for t in range(frames):
        x = (start + PAN * t) % (2 * span)
        x = x if x <= span else 2 * span - x
        out.append(canvas[: SIZE[1], x : x + w].copy())
    return out


def zoom(photo: np.ndarray, frames: int, rate: float = 1.004) -> list[np.ndarray]:
    import cv2

    h, w = photo.shape[:2]
    out = []
    for t in range(frames):
        s = rate**t * max(SIZE[0] / w, SIZE[1] / h)
        m = np.float32([[s, 0, SIZE[0] / 2 - s * w / 2], [0, s, SIZE[1] / 2 - s * h / 2]])
        out.append(cv2.warpAffine(photo, m, SIZE, flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT))
    return out


def rotate(background: np.ndarray, texture: np.ndarray, frames: int, radius: int = 90) -> list[np.ndarray]:
    import cv2

    bg = cv2.resize(background, SIZE, interpolation=cv2.INTER_AREA)
    tex = cv2.resize(texture, (2 * radius, 2 * radius), interpolation=cv2.INTER_AREA)
    yy, xx = np.mgrid[0 : 2 * radius, 0 : 2 * radius] - radius + 0.5
    disk = (xx**2 + yy**2 < radius**2)[..., None]
    out = []
    for t in range(frames):
        m = cv2.getRotationMatrix2D((radius, radius), 3.0 * t, 1.0)
        turned = cv2.warpAffine(tex, m, (2 * radius, 2 * radius), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
        frame = bg.copy()
        x0, y0 = 120 + PAN * t, SIZE[1] // 2 - radius
        window = frame[y0 : y0 + 2 * radius, x0 : x0 + 2 * radius]
        window[:] = np.where(disk, turned, window)
        out.append(frame)
    return out


def fade(photo: np.ndarray, frames: int, to: float = 0.6) -> list[np.ndarray]:
    """A still shot darkening to `to` of its brightness: a change the motion does not explain."""
    return [np.clip(photo * (1 - (1 - to) * t / max(1, frames - 1)), 0, 255).astype(np.uint8) for t in range(frames)]


def through_codec(frames: list[np.ndarray], folder: Path, name: str) -> tuple[list[np.ndarray], Path]:
    """The frames as a user's clip would give them: H.264 at the default quality, decoded again."""
    from ncaedit.video import read_frames, write_video

    path = folder / f"{name}.mp4"
    write_video(path, frames, Fraction(25))
    return list(read_frames(path)), path


def make_clips(frames: int, long: int) -> dict[str, list[np.ndarray]]:
    a, b = strip(["coffee.jpg", "rocket.jpg", "astronaut.jpg"]), strip(["chelsea.jpg", "astronaut.jpg", "rocket.jpg"])
    half = frames // 2
    clips = {
        "pan": pan(a, frames),
        "zoom": zoom(_photo("rocket.jpg", 342), frames),
        "rotate": rotate(_photo("coffee.jpg", 341), _photo("chelsea.jpg", 300), frames),
        "cut": pan(a, half) + pan(b, frames - half, start=200),
        "fade": fade(zoom(_photo("coffee.jpg", 341), 1)[0], frames),
    }
    if long:
        clips["long"] = pan(a, long)
    return clips


def edit_per_frame(rule, frames, steps, workers):
    from ncaedit.image import to_samples
    from ncaedit.state import levels_of
    from ncaedit.tiling import edit_tiles

    levels = levels_of(frames, rule.config.photo_contrast)  # all frames share them, as in video.apply_video
    for frame in frames:
        out = np.empty_like(frame)
        for t, edited, _ in edit_tiles(rule, frame, steps, workers=workers, levels=levels):
            out[t.core.slices()] = to_samples(edited, np.uint8)
        yield out


def edit_carried(rule, frames, steps, refresh, workers, stats=None):
    from ncaedit.image import to_samples
    from ncaedit.state import levels_of
    from ncaedit.temporal import FlowCarry

    carry = FlowCarry(rule, steps, refresh, workers=workers, levels=levels_of(frames, rule.config.photo_contrast))
    for frame in frames:
        out = np.empty_like(frame)
        for t, edited, _ in carry.edit(frame):
            out[t.core.slices()] = to_samples(edited, np.uint8)
        yield out
    if stats is not None:
        stats.update(cuts=carry.cuts, fresh=carry.fresh / max(1, len(frames) - 1))


def measure(frames, outputs, motions, exact_shift: int | None = None) -> dict:
    from ncaedit.flow import warped_error

    f = lambda x: x.astype(np.float32)  # noqa: E731
    warped = [warped_error(outputs[i - 1], outputs[i], motions[i - 1]) for i in range(1, len(frames))]
    out = {
        "warped": 255 * float(np.mean(warped)),
        "flicker": float(np.mean([np.abs(f(outputs[i]) - f(outputs[i - 1])).mean() for i in range(1, len(frames))])),
        "change": float(np.mean([np.abs(f(o) - f(i)).mean() for o, i in zip(outputs, frames)])),
    }
    if exact_shift:
        s = exact_shift
        out["exact"] = float(np.mean([np.abs(f(outputs[i][:, :-s]) - f(outputs[i - 1][:, s:])).mean() for i in range(1, len(frames))]))
    return out


def timed(gen):
    start = time.perf_counter()
    outputs = list(gen)
    return outputs, len(outputs) / (time.perf_counter() - start)


def train_rule(folder: Path) -> Path:
    rule = folder / "mosaic.nca"
    cmd = [sys.executable, "-m", "ncaedit", "style", ROOT / "sample_images" / "coffee.jpg", "--style", ROOT / "sample_images" / "mosaic.png",
           "-o", folder / "coffee-mosaic.png", "--rule", rule, "--seed", "0"]
    subprocess.run(list(map(str, cmd)), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return rule


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rule", type=Path)
    ap.add_argument("--steps", type=int)
    ap.add_argument("--refresh", default="2,4,8", help="refresh steps to measure, comma-separated")
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--long", type=int, default=300, help="frames of the drift clip (0: skip)")
    ap.add_argument("--clips", default="pan,zoom,rotate,cut,fade,long")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--sheet", type=Path, help="also write a PNG of a few frames side by side (input | per frame | carried)")
    ap.add_argument("--4k", dest="uhd", action="store_true", help="only measure peak memory and time of 3 carried 4K frames")
    a = ap.parse_args()

    import torch

    from ncaedit.device import tile_workers
    from ncaedit.flow import estimate_motion
    from ncaedit.nca_format import load_rule
    from ncaedit.temporal import REFRESH_STEPS

    workers = tile_workers("cpu")
    torch.set_num_threads(1)  # as `ncaedit apply` runs on the CPU: one tile per core
    folder = Path(tempfile.mkdtemp(prefix="ncaedit-video-"))
    rf = load_rule(a.rule or train_rule(folder))
    steps = a.steps or rf.metadata.get("default_steps", 24)
    if a.uhd:
        return measure_4k(rf.rule, steps, workers)
    refreshes = [int(r) for r in a.refresh.split(",")]
    wanted = a.clips.split(",")
    clips = {k: v for k, v in make_clips(a.frames, a.long if "long" in wanted else 0).items() if k in wanted}
    results = {"steps": steps, "workers": workers, "clips": {}}
    print(f"steps {steps}, {workers} workers; warped error, exact-pan error, flicker and change in 1/255")
    print("| clip | what | warped | exact | flicker | change | frames/s | note |")
    print("|---|---|---|---|---|---|---|---|")
    for name, raw in clips.items():
        frames, _ = through_codec(raw, folder, name)
        motions = [estimate_motion(frames[i - 1], frames[i]) for i in range(1, len(frames))]
        shift = PAN if name in ("pan", "long") else None
        rows = {"input": (frames, None, "")}
        if name != "long":  # the long clip only asks about drift
            outputs, fps = timed(edit_per_frame(rf.rule, frames, steps, workers))
            rows["per frame"] = (outputs, fps, "")
        for r in refreshes if name != "long" else [REFRESH_STEPS]:  # the long clip: the default only
            stats = {}
            outputs, fps = timed(edit_carried(rf.rule, frames, steps, r, workers, stats))
            rows[f"carried, refresh {r}"] = (outputs, fps, f"{stats['cuts']} cuts, {100 * stats['fresh']:.1f} % fresh pixels a frame")
        results["clips"][name] = {}
        for what, (outputs, fps, note) in rows.items():
            m = measure(frames, outputs, motions, shift)
            if name == "long":
                n = len(frames) // 10
                m["change_first"] = float(np.mean([np.abs(o.astype(np.float32) - i).mean() for o, i in zip(outputs[:n], frames[:n])]))
                m["change_last"] = float(np.mean([np.abs(o.astype(np.float32) - i).mean() for o, i in zip(outputs[-n:], frames[-n:])]))
                note = (note + "; " if note else "") + f"change first/last {n} frames {m['change_first']:.1f} / {m['change_last']:.1f}"
            m["fps"] = fps
            results["clips"][name][what] = m
            cells = [f"{m['warped']:.2f}", f"{m['exact']:.2f}" if "exact" in m else "", f"{m['flicker']:.2f}", f"{m['change']:.1f}" if what != "input" else "", f"{fps:.2f}" if fps else ""]
            print(f"| {name} ({len(frames)}) | {what} | {' | '.join(cells)} | {note} |", flush=True)
            if a.sheet and name == "rotate" and what != "input":
                results.setdefault("_sheet", {})[what] = outputs
        if a.sheet and name == "rotate":
            results.setdefault("_sheet", {})["input"] = frames
    if a.sheet and "_sheet" in results:
        write_sheet(results.pop("_sheet"), a.sheet)
    if a.json:
        a.json.write_text(json.dumps(results, indent=2))


def measure_4k(rule, steps: int, workers: int, frames: int = 3) -> None:
    """Peak resident memory of carrying the edit over a few 3840x2160 frames (a 2-px pan)."""
    import resource

    import cv2

    from ncaedit.temporal import REFRESH_STEPS

    canvas = cv2.resize(strip(["coffee.jpg", "rocket.jpg"]), None, fx=6, fy=6, interpolation=cv2.INTER_CUBIC)
    clip = [canvas[:2160, PAN * t : PAN * t + 3840] for t in range(frames)]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    seconds = list(timed_each(edit_carried(rule, clip, steps, REFRESH_STEPS, workers)))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"4K (3840x2160), {frames} frames, refresh {REFRESH_STEPS}: peak RSS {peak:.0f} MB (before the clip: {before:.0f} MB, "
          f"the clip's canvas {canvas.nbytes / 2**20:.0f} MB); seconds a frame: {', '.join(f'{s:.1f}' for s in seconds)}")


def timed_each(gen):
    start = time.perf_counter()
    for _ in gen:
        now = time.perf_counter()
        yield now - start
        start = now


def write_sheet(rows: dict, path: Path, picks=(20, 21, 22), box=(100, 150, 260, 390)) -> None:
    """Rows: input, per frame, carried (the first one measured); columns: frames `picks`, cut to
    `box` (top, left, bottom, right: the rotating disk's edge) at full size, 8-bit palette (small file)."""
    from PIL import Image

    top, left, bottom, right = box
    names = ["input", "per frame"] + [k for k in rows if k.startswith("carried")][:1]
    lines = [np.concatenate([rows[n][i][top:bottom, left:right] for i in picks], axis=1) for n in names if n in rows]
    Image.fromarray(np.concatenate(lines, axis=0)).quantize(256).save(path, optimize=True)


if __name__ == "__main__":
    main()
