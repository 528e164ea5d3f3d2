"""Peak memory of `ncaedit apply` on a 48-megapixel photo, and images per second on a folder of
512-px photos, measured through the CLI exactly as a user runs it.

    python benchmarks/apply_at_scale.py [--rule R.nca] [--steps N] [--megapixels 48] [--photos 8] [--json out.json]

--megapixels 0 skips the big photo. Peak memory hardly depends on --steps (tiles are sized so the
pixels being run stay under a fixed budget), but the time grows with it: 48 MP at 24 steps takes
tens of minutes on 2 cores.

Without --rule, a rule with the `fast` preset's architecture and random weights is used: the cost of a
rollout depends only on the architecture. Peak memory is the child's maximum resident set size.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
NCAEDIT = [sys.executable, "-m", "ncaedit"]


def make_rule(path: Path, steps: int) -> Path:
    import torch

    from ncaedit.recipe import load_recipe
    from ncaedit.rule import Rule
    from ncaedit.nca_format import save_rule

    torch.manual_seed(0)
    rule = Rule(load_recipe("fast", {}).rule)
    torch.nn.init.normal_(rule.w2.weight, std=0.02)
    return save_rule(rule, path, {"default_steps": steps})


def run_measured(args: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of one CLI run."""
    start = time.perf_counter()
    proc = subprocess.Popen([*NCAEDIT, *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"ncaedit failed: {proc.stderr.read().decode()[-2000:]}")
    return seconds, usage.ru_maxrss / 1024


def photo(width: int, height: int) -> Image.Image:
    return Image.open(ROOT / "sample_images" / "coffee.jpg").convert("RGB").resize((width, height), Image.Resampling.BICUBIC)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rule", type=Path)
    ap.add_argument("--steps", type=int, default=24)
    ap.add_argument("--megapixels", type=float, default=48)
    ap.add_argument("--photos", type=int, default=8)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ncaedit-scale-"))
    try:
        rule = a.rule or make_rule(work / "rule.nca", a.steps)
        results = {"steps": a.steps}

        if a.megapixels > 0:
            width = int(round((a.megapixels * 1e6 * 4 / 3) ** 0.5))
            big = work / "big.jpg"
            photo(width, width * 3 // 4).save(big, quality=90)
            seconds, peak = run_measured(["apply", rule, big, "--out", work / "big-out", "--steps", a.steps, "--device", "cpu"])
            results |= {"big_megapixels": round(width * (width * 3 // 4) / 1e6, 1), "big_seconds": round(seconds, 1), "big_peak_rss_mb": round(peak)}
            print(f"{results['big_megapixels']} MP photo, {a.steps} steps: {seconds:.0f} s, peak RSS {peak:.0f} MB")

        folder = work / "photos"
        folder.mkdir()
        base = np.asarray(photo(1024, 768))
        for i in range(a.photos):
            y, x = (i * 37) % 256, (i * 61) % 512
            Image.fromarray(base[y : y + 512, x : x + 512]).save(folder / f"p{i}.jpg", quality=92)
        seconds, peak = run_measured(["apply", rule, folder, "--out", work / "photos-out", "--steps", a.steps, "--device", "cpu"])
        results |= {"photos": a.photos, "photos_seconds": round(seconds, 1), "images_per_second": round(a.photos / seconds, 3), "photos_peak_rss_mb": round(peak)}
        print(f"{a.photos} photos of 512x512, {a.steps} steps: {seconds:.1f} s, {a.photos / seconds:.3f} images/s (start-up included), peak RSS {peak:.0f} MB")
        if a.json:
            a.json.write_text(json.dumps(results, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
