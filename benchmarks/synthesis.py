"""Can the style loss draw a style's motifs at all? Synthesises each quality-benchmark style from noise
with the preset's loss and no content term (no photo, no rule: Adam on the pixels), and writes one
labelled sheet, a crop of each style beside its synthesis. A motif that does not appear here (the
mosaic's outlined cells, the closed rings) cannot appear in a rule trained with that loss either.

    python benchmarks/synthesis.py [--preset fast] [--set loss.patch_weight=4] [--pairs 1,3] [--size 192] [--steps 400] [--out synthesis.png]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from quality import PAIRS, ROOT, labelled_sheet, parse_sets, pixel_optimum, style_loss
from ncaedit.image import fit_long_side, load_image
from ncaedit.recipe import load_recipe


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override a preset key (TOML value)")
    ap.add_argument("--pairs", default=",".join(str(i) for i in range(len(PAIRS))), help="whose styles, by the quality benchmark's pair index")
    ap.add_argument("--size", type=int, default=192, help="side of the square synthesis")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--lr", type=float, default=0.03)
    ap.add_argument("--out", type=Path, default=Path("synthesis.png"))
    args = ap.parse_args()
    torch.set_num_threads(1)  # the machine is shared; one thread, as the other benchmarks
    overrides = parse_sets(args.set)
    recipe = load_recipe(args.preset, overrides | {"loss": overrides.get("loss", {}) | {"content_weight": 0.0}})
    noise = np.clip(0.5 + 0.1 * np.random.default_rng(0).standard_normal((args.size, args.size, 3)), 0, 1).astype(np.float32)
    tiles = []
    for style_name in (PAIRS[int(i)][1] for i in args.pairs.split(",")):
        style = fit_long_side(load_image(ROOT / "sample_images" / style_name).rgb, recipe.loss.style_size)
        t = time.perf_counter()
        synthesis = pixel_optimum(noise, style_loss(recipe, style), args.steps, args.lr)
        print(f"{style_name:12s} {time.perf_counter() - t:.0f} s", flush=True)
        tiles += [(f"{style_name} (crop)", style[: args.size, : args.size]), ("from noise", synthesis)]
    from PIL import Image

    Image.fromarray(labelled_sheet([tiles[i : i + 4] for i in range(0, len(tiles), 4)], height=args.size)).save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
