"""Edit quality on images that are not in this repository: a rule trained on one photo and style (any
files), applied to other photo files, judged as benchmarks/quality.py judges (colour and texture
ratios against the unedited photo, luminance SSIM to it), with one labelled contact sheet.

    python benchmarks/outside.py PHOTO STYLE OTHER... [--preset fast] [--set section.key=value] [--out DIR]

scikit-image ships a few such images (its data folder: camera.png, hubble_deep_field.jpg, retina.jpg,
ihc.png, motorcycle_left.png; brick.png, grass.png, gravel.png as styles).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from ncaedit.apply import apply_rule
from ncaedit.cell_style import with_cells
from ncaedit.image import Photo, fit_long_side, load_image
from ncaedit.recipe import load_recipe
from ncaedit.train import train_rule
from quality import judge, labelled_sheet, parse_sets, style_loss


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("photo", type=Path)
    ap.add_argument("style", type=Path)
    ap.add_argument("others", type=Path, nargs="+")
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override a preset key (TOML value)")
    ap.add_argument("--out", type=Path, default=Path("outside-out"))
    args = ap.parse_args()
    from PIL import Image

    args.out.mkdir(parents=True, exist_ok=True)
    recipe = load_recipe(args.preset, parse_sets(args.set))
    size = recipe.train.train_size
    photos = {p.name: fit_long_side(load_image(p).rgb, size) for p in (args.photo, *args.others)}
    style_full = load_image(args.style).rgb
    recipe = with_cells(recipe, style_full)[0]  # as `ncaedit style` fits it to the style
    style = fit_long_side(style_full, recipe.loss.style_size)
    t0 = time.perf_counter()
    trained = train_rule([photos[args.photo.name]], style_loss(recipe, style), recipe.rule, recipe.train)
    seconds = time.perf_counter() - t0
    edited = {n: apply_rule(trained.rule, Photo(p), recipe.train.steps_max, seed=recipe.train.seed).rgb for n, p in photos.items()}
    judged = {n: judge(edited[n], photos[n], style) for n in photos}
    for n, r in judged.items():
        print(f"{n:24s} c{r['colour']:.2f} t{r['texture']:.2f} s{r['ssim']:.2f}{'  (training photo)' if n == args.photo.name else ''}")
    tiles = [(f"{Path(n).stem} c{r['colour']:.2f} t{r['texture']:.2f} s{r['ssim']:.2f}", edited[n]) for n, r in judged.items()]
    top = [("style", style), *[(f"photo {Path(n).stem}", p) for n, p in photos.items()]]
    sheet = args.out / f"{args.photo.stem}-{args.style.stem}-outside.png"
    Image.fromarray(labelled_sheet([top, tiles])).save(sheet)
    record = {"photo": str(args.photo), "style": str(args.style), "preset": args.preset, "overrides": parse_sets(args.set),
              "train_seconds": round(seconds, 1), "judged": judged, "sheet": str(sheet)}
    (args.out / f"{args.photo.stem}-{args.style.stem}-outside.json").write_text(json.dumps(record, indent=2))
    print(f"sheet: {sheet}")


if __name__ == "__main__":
    main()
