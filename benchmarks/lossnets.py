"""Which offline loss network should `ncaedit style` fall back to? Trains the `fast` preset with each
candidate on sample photo/style pairs and scores the results with judges that belong to none of them:

- colour: sliced Wasserstein-1 distance between result and style RGB distributions (lower is better)
- texture: L1 distance between multi-scale gradient-orientation/energy histograms of result and style
  (lower is better)
- structure: luminance SSIM between result and source photo (higher keeps more of the photo)

    python benchmarks/lossnets.py [--iterations N] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from judges import colour_distance, ssim, texture_distance
from ncaedit.apply import apply_rule
from ncaedit.image import Photo, fit_long_side, load_image, save_image
from ncaedit.lossnet import LossNet, RandomFilters
from ncaedit.recipe import load_recipe
from ncaedit.style_loss import StyleLoss
from ncaedit.train import train_rule

ROOT = Path(__file__).resolve().parents[1]
PAIRS = [("chelsea.jpg", "strokes.png"), ("astronaut.jpg", "mosaic.png")]


class PixelsOnly(LossNet):
    """Baseline: no features at all (style = colour statistics of raw pixels)."""

    name = "pixels"
    style_layers, style_weights, content_layers = (0,), (1.0,), (0,)

    def features(self, rgb):
        return [rgb]


class RandomVGG16(LossNet):
    """A VGG16 with random weights (untrained), tapped at relu1_1..relu5_1."""

    name = "random-vgg16"
    _TAPS = (1, 6, 11, 18, 25)
    style_layers, style_weights, content_layers = (0, 1, 2, 3, 4), (256.0, 64.0, 16.0, 4.0, 1.0), (3,)

    def __init__(self):
        super().__init__()
        from torchvision.models.vgg import cfgs, make_layers

        torch.manual_seed(0)
        self.body = make_layers(cfgs["D"])[:26].eval().requires_grad_(False)

    def features(self, rgb):
        x, out = rgb * 2 - 1, []
        for i, layer in enumerate(self.body):
            x = layer(x)
            if i in self._TAPS:
                out.append(x)
        return out


class SingleLayerRandom(LossNet):
    """Ustyuzhaninov et al.: one layer of random filters of several sizes at full resolution."""

    name = "single-layer(3,5,9,15)x32"
    style_layers, style_weights, content_layers = (0, 1, 2, 3), (1.0, 1.0, 1.0, 1.0), (0,)

    def __init__(self, sizes=(3, 5, 9, 15), maps=32):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        for i, k in enumerate(sizes):
            w = torch.randn(maps, 3, k, k, generator=g)
            w -= w.mean(dim=(1, 2, 3), keepdim=True)
            self.register_buffer(f"w{i}", w / w.flatten(1).norm(dim=1)[:, None, None, None])
        self.count = len(sizes)

    def features(self, rgb):
        x = rgb * 2 - 1
        return [torch.relu(torch.nn.functional.conv2d(x, w, padding=w.shape[-1] // 2)) for w in (getattr(self, f"w{i}") for i in range(self.count))]


def candidates():
    return {
        "random pyramid 5x5x64 (gram)": (RandomFilters(), "gram"),
        "random pyramid 5x5x64 (sw)": (RandomFilters(), "sw"),
        "single layer 3-15 px (gram)": (SingleLayerRandom(), "gram"),
        "random VGG16 (gram)": (RandomVGG16(), "gram"),
        "pixels only": (PixelsOnly(), "gram"),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iterations", type=int, default=None, help="override the fast preset's iterations")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--pairs", type=int, default=len(PAIRS), help="how many photo/style pairs to score on")
    ap.add_argument("--save", type=Path, help="folder to write each candidate's result images into")
    args = ap.parse_args()
    recipe = load_recipe("fast", {"train": {"iterations": args.iterations}})
    rows = []
    for name, (net, distance) in candidates().items():
        recipe.loss.style_distance = distance
        scores = []
        t0 = time.perf_counter()
        for photo_name, style_name in PAIRS[: args.pairs]:
            photo = load_image(ROOT / "sample_images" / photo_name)
            style = load_image(ROOT / "sample_images" / style_name).rgb
            style_t = torch.from_numpy(fit_long_side(style, recipe.loss.style_size)).permute(2, 0, 1)[None]
            loss = StyleLoss(net.to(args.device), style_t.to(args.device), recipe.loss)
            result = train_rule([fit_long_side(photo.rgb, recipe.train.train_size)], loss, recipe.rule, recipe.train, device=args.device)
            out = apply_rule(result.rule, photo, recipe.train.steps_max).rgb
            if args.save:
                args.save.mkdir(parents=True, exist_ok=True)
                tag = "".join(ch if ch.isalnum() else "_" for ch in name)
                save_image(Photo(out), args.save / f"{tag}-{Path(photo_name).stem}.png")
            scores.append((colour_distance(out, style) / colour_distance(photo.rgb, style),
                           texture_distance(out, style) / texture_distance(photo.rgb, style),
                           ssim(photo.rgb, out)))
        c, t, s = np.mean(scores, axis=0)
        rows.append({"candidate": name, "colour_ratio": c, "texture_ratio": t, "ssim": s, "seconds": time.perf_counter() - t0})
        print(f"{name:34s} colour {c:.3f}  texture {t:.3f}  ssim {s:.3f}  {rows[-1]['seconds']:.0f} s", flush=True)
    print("\nratios are result/source distance to the style (1.0 = unchanged, lower = closer to the style)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
