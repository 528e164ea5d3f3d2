"""Edit quality: do the style's motifs appear, on the training photo and on photos the rule never saw?

For each photo x style pair (bundled images, styles with motifs from ~4 px to ~40 px) this measures
- optimum: the photo's pixels optimised directly for the same loss (what the loss can express at best),
- optimum with the structure term: the same with training's structure term added (structure.py), the
           rule's whole objective (what a rule trained with it can reach at best: the gap between the
           two optima is that term's price),
- rule:    a rule trained with the preset on the photo, applied to that photo,
- unseen:  the same rule applied to the other bundled photos,
with judges that share nothing with the training losses (benchmarks/judges.py): colour and texture
distances to the style as ratios against the unedited photo's (1.0 = unchanged, lower = closer to the
style) and luminance SSIM to the photo (higher keeps more layout), that also over the photo's flat,
middle and busy thirds (judges.by_detail: where layout is lost). Everything is judged at the
loss's scale: photos at the preset's train_size, the style at its style_size. It writes a JSON file
and one labelled contact sheet per pair; look at the sheets, numbers alone have misled before.
With --optima-only it trains no rule: it gives the two optima of the loss as --set changes it, with
their texture as a multiple of the preset's own optimum's, to place a loss on the trade first.

    python benchmarks/quality.py [--preset fast] [--set train.iterations=300 ...] [--pairs 0,1] [--out DIR]
    python benchmarks/quality.py --optima-only --set train.structure_weight=0.5 [--pairs 0,1]
    python benchmarks/quality.py --pool run-seed0 run-seed1 [--out DIR]

With --pool it trains nothing: it averages each pair's numbers over earlier runs (one recipe, several
training seeds, e.g. two runs side by side under `taskset -c 0` and `-c 1` with `--set train.seed=1`)
and gives the pooled medians, since a second seed moves them about as much as most changes do.

`--device cuda` trains, optimises and applies on a GPU (the judges run on the CPU): a run is then a
few minutes, not a quarter of an hour a pair, and its numbers differ from the CPU's only by float
rounding.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import time
import tomllib
from pathlib import Path

import numpy as np
import torch

from judges import by_detail, colour_distance, ssim, texture_distance, texture_parts
from ncaedit import structure
from ncaedit.apply import apply_rule
from ncaedit.cell_style import with_cells
from ncaedit.device import training_workers
from ncaedit.image import Photo, fit_long_side, load_image
from ncaedit.recipe import load_recipe
from ncaedit.state import HIDDEN, WORKING, make_state, photo_levels, working_rgb
from ncaedit.train import objective, train_rule

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ("chelsea.jpg", "coffee.jpg", "astronaut.jpg", "rocket.jpg")
PAIRS = (("chelsea.jpg", "strokes.png"), ("coffee.jpg", "mosaic.png"), ("astronaut.jpg", "hatch.png"), ("rocket.jpg", "rings.png"))
TARGETS = "training photo: texture <= 1.25 x optimum's, colour <= 0.6, SSIM >= 0.35; unseen: texture and colour <= 1.2 x training photo's, SSIM >= 0.35"


def parse_sets(items: list[str]) -> dict:
    """["train.iterations=300", "loss.content_weight=0.5"] -> {"train": {"iterations": 300}, "loss": {...}}"""
    out: dict = {}
    for item in items:
        key, _, value = item.partition("=")
        section, _, name = key.partition(".")
        out.setdefault(section, {})[name] = tomllib.loads(f"v = {value}")["v"]
    return out


def style_loss(recipe, style_rgb: np.ndarray, device: str = "cpu"):
    """The loss `ncaedit style` trains with (offline loss network), for a style already at style_size."""
    from ncaedit.lossnet import load_loss_net
    from ncaedit.style_loss import StyleLoss

    style_t = torch.from_numpy(style_rgb).permute(2, 0, 1)[None].to(device)
    return StyleLoss(load_loss_net("random").net.to(device), style_t, recipe.loss)


def pixel_optimum(
    photo: np.ndarray, loss_fn, steps: int, lr: float = 0.02, contrast: float = 0.0, structure_weight: float = 0.0, structure_power: float = 1.0,
    regions: int = 0, device: str = "cpu",
) -> np.ndarray:
    """The photo's pixels optimised by Adam for the loss (the working RGB of a state; hidden channels
    unused but for the random regions, `regions` pixels across, seed 0, as applying the rule makes
    them), from the photo levelled to `contrast` as the rule reads it (the recipe's photo_contrast;
    0: as it is), which the loss also compares with, as in training. With `structure_weight` the
    objective also has training's structure term (train.objective): the rule's whole objective."""
    rgb = torch.from_numpy(photo).permute(2, 0, 1)[None].to(device)
    state = make_state(rgb, 2 if regions else 0, levels=photo_levels(photo, contrast), regions=regions)
    pixels = state[:, WORKING].clone().requires_grad_(True)
    opt = torch.optim.Adam([pixels], lr=lr)
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        x = torch.cat([state[:, :3], pixels, state[:, HIDDEN]], dim=1)
        loss = objective(loss_fn, x, gen, structure_weight, structure_power)["total"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return working_rgb(torch.cat([state[:, :3], pixels], dim=1))[0].permute(1, 2, 0).cpu().numpy()


def judge(out: np.ndarray, photo: np.ndarray, style: np.ndarray) -> dict:
    """The three judges; `texture_parts` is the texture distance to the style (not a ratio) split by
    statistic and pyramid level, to show at which scale two results differ; `by_detail` SSIM and the
    result's local spread over the photo's flattest, middle and busiest thirds, to show where."""
    parts = texture_parts(out, style)
    return {
        "colour": colour_distance(out, style) / colour_distance(photo, style),
        "texture": sum(parts.values()) / texture_distance(photo, style),
        "ssim": ssim(photo, out),
        "texture_parts": parts,
        "by_detail": by_detail(photo, out),
    }


def widest_gaps(result: dict, reference: dict, n: int = 3) -> str:
    """The texture statistics where `result` is furthest behind `reference` (judge() records)."""
    gap = {k: v - reference["texture_parts"][k] for k, v in result["texture_parts"].items()}
    return ", ".join(f"{k} +{v:.2f}" for k, v in sorted(gap.items(), key=lambda kv: -kv[1])[:n] if v > 0)


def thirds(result: dict, name: str) -> str:
    d = result["by_detail"]
    return f"{name} SSIM {'/'.join(f'{v:.2f}' for v in d['ssim'])}, spread {'/'.join(f'{v:.2f}' for v in d['spread'])}"


def labelled_sheet(rows: list[list[tuple[str, np.ndarray]]], height: int = 200, gap: int = 6) -> np.ndarray:
    """Rows of (label, image) tiles at a common height, each label written above its tile."""
    from PIL import Image, ImageDraw

    label_h = 14
    rows = [[(label, fit_long_side(img, round(max(img.shape[:2]) * height / img.shape[0]))) for label, img in row] for row in rows]
    width = max(sum(img.shape[1] + gap for _, img in row) + gap for row in rows)
    sheet = Image.new("RGB", (width, len(rows) * (height + label_h + gap) + gap), "white")
    draw = ImageDraw.Draw(sheet)
    y = gap
    for row in rows:
        x = gap
        for label, img in row:
            draw.text((x, y), label, fill="black")
            sheet.paste(Image.fromarray((img * 255 + 0.5).astype(np.uint8)), (x, y + label_h))
            x += img.shape[1] + gap
        y += height + label_h + gap
    return np.asarray(sheet)


def cached_optimum(photo_name: str, style_name: str, photo: np.ndarray, loss_fn, recipe, steps: int, cache: Path, structure_weight: float, device: str = "cpu") -> np.ndarray:
    """pixel_optimum, kept in `cache`: it depends on the rule's recipe only through the loss, the levelling,
    the structure term's weight and power and the random regions."""
    contrast, power, regions = recipe.rule.photo_contrast, recipe.train.structure_power, recipe.rule.regions
    # crop_share is training's alone (the optimum is the whole photo); each part of the key is left out
    # where it is off, so optima cached before it existed keep their keys
    # (`cells` is in the key as the regions and patch keys it set)
    loss = {k: v for k, v in dataclasses.asdict(recipe.loss).items() if k not in ("crop_share", "cells") and not (k == "patch_hue" and v == 0)}
    term = ["structure", structure_weight, structure.RADIUS, structure.RIDGE, structure.FLOOR] + ([power, structure.REFERENCE] if power != 1 else [])
    key = [photo_name, style_name, recipe.train.train_size, steps, contrast, loss] + (term if structure_weight else []) + ([["regions", regions]] if regions else [])
    cached = cache / f"optimum-{hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]}.npy"
    if not cached.exists():
        np.save(cached, pixel_optimum(photo, loss_fn, steps, contrast=contrast, structure_weight=structure_weight, structure_power=power, regions=regions, device=device))
    return np.load(cached)


def pair_images(photo_name: str, style_name: str, recipe, *others) -> tuple[dict[str, np.ndarray], np.ndarray, list]:
    """Every bundled photo at the recipe's train_size, the style at its style_size, and the recipe
    and `others` as `ncaedit style` fits them to the style as it is (cell_style.with_cells)."""
    photos = {n: fit_long_side(load_image(ROOT / "sample_images" / n).rgb, recipe.train.train_size) for n in PHOTOS}
    style = load_image(ROOT / "sample_images" / style_name).rgb
    return photos, fit_long_side(style, recipe.loss.style_size), [with_cells(r, style)[0] for r in (recipe, *others)]


def run_optima(photo_name: str, style_name: str, recipe, yardstick_recipe, steps: int, cache: Path, device: str = "cpu") -> dict:
    """The pixel optima alone, without training a rule (--optima-only): the recipe's loss with and
    without its structure term, judged beside the yardstick, the loss-only optimum of `yardstick_recipe`
    (the preset as it is), so a changed loss or structure weight shows where it sits on the trade between
    texture and layout in a few minutes a pair instead of a quarter of an hour."""
    photos, style, (recipe, yardstick_recipe) = pair_images(photo_name, style_name, recipe, yardstick_recipe)
    photo = photos[photo_name]
    loss_fn = style_loss(recipe, style, device)  # one loss for both of the recipe's optima

    def optimum(r, loss, weight):
        return judge(cached_optimum(photo_name, style_name, photo, loss, r, steps, cache, weight, device), photo, style)

    return {
        "photo": photo_name, "style": style_name, "yardstick": optimum(yardstick_recipe, style_loss(yardstick_recipe, style, device), 0.0),
        "optimum": optimum(recipe, loss_fn, 0.0), "objective_optimum": optimum(recipe, loss_fn, recipe.train.structure_weight),
    }


def run_pair(photo_name: str, style_name: str, recipe, optimum_steps: int, out_dir: Path, cache: Path, device: str = "cpu") -> dict:
    from PIL import Image

    photos, style, (recipe,) = pair_images(photo_name, style_name, recipe)
    photo = photos[photo_name]
    loss_fn = style_loss(recipe, style, device)
    t0 = time.perf_counter()
    optimum = cached_optimum(photo_name, style_name, photo, loss_fn, recipe, optimum_steps, cache, 0.0, device)
    objective = cached_optimum(photo_name, style_name, photo, loss_fn, recipe, optimum_steps, cache, recipe.train.structure_weight, device)
    t1 = time.perf_counter()
    t = recipe.train
    trained = train_rule([photo], loss_fn, recipe.rule, t, device=device, workers=training_workers(device, t.batch, t.crop))  # as `ncaedit style` trains
    t2 = time.perf_counter()
    edited = {n: apply_rule(trained.rule, Photo(p), t.steps_max, seed=t.seed, device=device).rgb for n, p in photos.items()}
    rec = {
        "photo": photo_name, "style": style_name,
        "optimum": judge(optimum, photo, style),
        "objective_optimum": judge(objective, photo, style),
        "rule": judge(edited[photo_name], photo, style),
        "unseen": {n: judge(edited[n], photos[n], style) for n in PHOTOS if n != photo_name},
        "seconds": {"optimum": round(t1 - t0, 1), "train": round(t2 - t1, 1), "train_iterations": len(trained.history)},
        "loss_first_last_10": [float(np.mean([h["total"] for h in trained.history[:10]])), float(np.mean([h["total"] for h in trained.history[-10:]]))],
    }

    def tag(r):
        return f"c{r['colour']:.2f} t{r['texture']:.2f} s{r['ssim']:.2f}"

    top = [
        ("style", style), (f"photo {photo_name}", photo), (f"optimum {tag(rec['optimum'])}", optimum),
        (f"optimum+structure {tag(rec['objective_optimum'])}", objective), (f"rule {tag(rec['rule'])}", edited[photo_name]),
    ]
    bottom = [(f"unseen {n.split('.')[0]} {tag(rec['unseen'][n])}", edited[n]) for n in PHOTOS if n != photo_name]
    sheet = labelled_sheet([top, bottom])
    path = out_dir / f"{Path(photo_name).stem}-{Path(style_name).stem}.png"
    Image.fromarray(sheet).save(path)
    rec["sheet"] = str(path)
    return rec


def summary(records: list[dict]) -> dict:
    """Medians over pairs, and which targets are met."""
    med = lambda xs: float(np.median(xs))  # noqa: E731
    train = {k: med([r["rule"][k] for r in records]) for k in ("colour", "texture", "ssim")}
    optimum = {k: med([r["optimum"][k] for r in records]) for k in ("colour", "texture", "ssim")}
    objective = {k: med([r["objective_optimum"][k] for r in records]) for k in ("colour", "texture", "ssim")}
    unseen = {k: med([u[k] for r in records for u in r["unseen"].values()]) for k in ("colour", "texture", "ssim")}
    # unseen relative to training photo: per pair, the mean over unseen photos divided by the training photo's
    rel = {k: med([np.mean([u[k] for u in r["unseen"].values()]) / r["rule"][k] for r in records]) for k in ("colour", "texture")}
    texture_vs_optimum = med([r["rule"]["texture"] / r["optimum"]["texture"] for r in records])
    return {
        "optimum": optimum, "objective_optimum": objective, "rule": train, "unseen": unseen,
        "rule_texture_over_optimum": texture_vs_optimum, "unseen_over_rule": rel,
        "objective_optimum_texture_over_optimum": med([r["objective_optimum"]["texture"] / r["optimum"]["texture"] for r in records]),
        "targets": {
            "train_texture_within_25pct_of_optimum": texture_vs_optimum <= 1.25,
            "train_colour_le_0.6": train["colour"] <= 0.6,
            "train_ssim_ge_0.35": train["ssim"] >= 0.35,
            "unseen_texture_within_20pct": rel["texture"] <= 1.2,
            "unseen_colour_within_20pct": rel["colour"] <= 1.2,
            "unseen_ssim_ge_0.35": unseen["ssim"] >= 0.35,
        },
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override a preset key (TOML value)")
    ap.add_argument("--pairs", default=",".join(str(i) for i in range(len(PAIRS))), help="which pairs, by index")
    ap.add_argument("--optimum-steps", type=int, default=200)
    ap.add_argument("--optima-only", action="store_true", help="only the pixel optima of the loss as changed by --set, with and without the structure term, against the preset's own (no rule is trained)")
    ap.add_argument("--pool", type=Path, nargs="+", metavar="DIR", help="train nothing: pool the quality.json of earlier runs (the same recipe, other seeds) and give their medians")
    ap.add_argument("--device", default="cpu", help="where optima, training and the rules run: cpu or cuda")
    ap.add_argument("--out", type=Path, default=Path("quality-out"))
    ap.add_argument("--cache", type=Path, default=Path("quality-out/optimum-cache"), help="where pixel optima are kept (they depend only on the photo, style and loss)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.pool:
        missing = [str(d) for d in args.pool if not (d / "quality.json").is_file()]
        if missing:
            ap.error(f"no quality.json in {', '.join(missing)}")
        try:
            return pool_runs(args.pool, args.out)
        except ValueError as e:
            ap.error(str(e))
        except (KeyError, TypeError, IndexError) as e:
            ap.error(f"a quality.json to pool is not one this script wrote ({type(e).__name__}: {e})")
    args.cache.mkdir(parents=True, exist_ok=True)
    if args.optima_only:
        changed, preset = load_recipe(args.preset, parse_sets(args.set)), load_recipe(args.preset)
        if (changed.train.train_size, changed.loss.style_size) != (preset.train.train_size, preset.loss.style_size):
            ap.error("--optima-only compares losses on the same images: leave train.train_size and loss.style_size as the preset has them")
        return optima_only(args, changed, preset)
    records = []
    for i in (int(s) for s in args.pairs.split(",")):
        recipe = load_recipe(args.preset, parse_sets(args.set))
        rec = run_pair(*PAIRS[i], recipe, args.optimum_steps, args.out, args.cache, args.device)
        records.append(rec)
        u = {k: np.mean([x[k] for x in rec["unseen"].values()]) for k in ("colour", "texture", "ssim")}
        print(
            f"{rec['photo']:14s} {rec['style']:12s} optimum c{rec['optimum']['colour']:.2f} t{rec['optimum']['texture']:.2f} s{rec['optimum']['ssim']:.2f} | "
            f"with structure c{rec['objective_optimum']['colour']:.2f} t{rec['objective_optimum']['texture']:.2f} s{rec['objective_optimum']['ssim']:.2f} | "
            f"rule c{rec['rule']['colour']:.2f} t{rec['rule']['texture']:.2f} s{rec['rule']['ssim']:.2f} | "
            f"unseen c{u['colour']:.2f} t{u['texture']:.2f} s{u['ssim']:.2f} | train {rec['seconds']['train']:.0f} s\n"
            f"{'':27s} rule behind the optimum most in: {widest_gaps(rec['rule'], rec['optimum']) or 'nothing'}\n"
            f"{'':27s} flat / middle / busy thirds of the photo: {thirds(rec['rule'], 'rule')}; {thirds(rec['objective_optimum'], 'with structure')}",
            flush=True,
        )
    result = {"preset": args.preset, "overrides": parse_sets(args.set), "pairs": records, "summary": summary(records), "targets": TARGETS}
    (args.out / "quality.json").write_text(json.dumps(result, indent=2))
    print(summary_lines(result["summary"]))


def summary_lines(s: dict) -> str:
    return (
        f"medians: optimum with structure texture/optimum {s['objective_optimum_texture_over_optimum']:.2f}, ssim {s['objective_optimum']['ssim']:.2f}; "
        f"rule texture/optimum {s['rule_texture_over_optimum']:.2f}, rule colour {s['rule']['colour']:.2f}, ssim {s['rule']['ssim']:.3f}; "
        f"unseen/rule colour {s['unseen_over_rule']['colour']:.2f} texture {s['unseen_over_rule']['texture']:.2f}, unseen ssim {s['unseen']['ssim']:.2f}\n"
        "targets met: " + ", ".join(f"{k}={'yes' if v else 'NO'}" for k, v in s["targets"].items())
    )


def pooled(runs: list[dict]) -> list[dict]:
    """Each pair's judged numbers averaged over several runs' quality.json (the same recipe trained with
    different seeds), one record a pair as summary() reads them: one seed moves the medians by about
    as much as most changes do (README, "Edit quality"), so a change is judged on the pooled runs."""
    pairs = [(r["photo"], r["style"]) for r in runs[0]["pairs"]]
    if any([(r["photo"], r["style"]) for r in run["pairs"]] != pairs for run in runs):
        raise ValueError("runs to pool must hold the same pairs, in the same order")
    mean = lambda recs: {k: float(np.mean([r[k] for r in recs])) for k in ("colour", "texture", "ssim")}  # noqa: E731
    return [
        {
            "photo": photo, "style": style,
            **{k: mean([run["pairs"][i][k] for run in runs]) for k in ("optimum", "objective_optimum", "rule")},
            "unseen": {n: mean([run["pairs"][i]["unseen"][n] for run in runs]) for n in runs[0]["pairs"][i]["unseen"]},
        }
        for i, (photo, style) in enumerate(pairs)
    ]


def pool_runs(dirs: list[Path], out: Path) -> None:
    """--pool: each run's medians, then the pooled runs' (pooled()), written to out/pooled.json."""
    runs = [json.loads((d / "quality.json").read_text()) for d in dirs]
    for d, run in zip(dirs, runs):
        print(f"{d}: {run['overrides'] or 'the preset as it is'}\n{summary_lines(summary(run['pairs']))}")
    result = {"runs": [str(d) for d in dirs], "pairs": pooled(runs)}
    result["summary"] = summary(result["pairs"])
    (out / "pooled.json").write_text(json.dumps(result, indent=2))
    print(f"pooled over {len(runs)} runs:\n{summary_lines(result['summary'])}")


def optima_only(args, recipe, preset) -> None:
    records = []
    for i in (int(s) for s in args.pairs.split(",")):
        rec = run_optima(*PAIRS[i], recipe, preset, args.optimum_steps, args.cache, args.device)
        records.append(rec)
        ratio = {k: rec[k]["texture"] / rec["yardstick"]["texture"] for k in ("optimum", "objective_optimum")}
        print(
            f"{rec['photo']:14s} {rec['style']:12s} yardstick t{rec['yardstick']['texture']:.3f} s{rec['yardstick']['ssim']:.2f} | "
            f"optimum {ratio['optimum']:.2f} x s{rec['optimum']['ssim']:.2f} c{rec['optimum']['colour']:.2f} | "
            f"with structure {ratio['objective_optimum']:.2f} x s{rec['objective_optimum']['ssim']:.2f} c{rec['objective_optimum']['colour']:.2f}",
            flush=True,
        )
    med = {
        k: {"texture_over_yardstick": float(np.median([r[k]["texture"] / r["yardstick"]["texture"] for r in records])), "ssim": float(np.median([r[k]["ssim"] for r in records]))}
        for k in ("optimum", "objective_optimum")
    }
    (args.out / "optima.json").write_text(json.dumps({"preset": args.preset, "overrides": parse_sets(args.set), "pairs": records, "medians": med}, indent=2))
    print("medians, texture x the preset's optimum / SSIM: " + ", ".join(f"{k} {v['texture_over_yardstick']:.2f} / {v['ssim']:.3f}" for k, v in med.items()))


if __name__ == "__main__":
    main()
