"""Which offline style loss can express a style's motifs? Optimises the photo's pixels directly
(Gatys-style: Adam on the pixels, style + content + colour terms, no rule) with each candidate loss,
so the result is the best that loss can make of the pair, and scores it with the independent judges
(benchmarks/judges.py). Also times each candidate's forward+backward at training sizes, because the
loss runs inside every training iteration.

    python benchmarks/losses.py [--candidates a,b] [--pairs 4] [--steps 150] [--json out.json] [--sheets DIR]

Writes one contact sheet per pair (photo | style | one optimum per candidate, judges in the labels).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from judges import colour_distance, ssim, texture_distance
from ncaedit.image import fit_long_side, load_image
from ncaedit.lossnet import LossNet, RandomFilters, VGG19
from ncaedit.style_loss import StyleLoss, StyleLossConfig

ROOT = Path(__file__).resolve().parents[1]
PAIRS = [("coffee.jpg", "mosaic.png"), ("chelsea.jpg", "strokes.png"), ("astronaut.jpg", "mosaic.png"), ("rocket.jpg", "strokes.png")]


class WideRandom(LossNet):
    """Ustyuzhaninov et al. 2017: one layer of random filters of several sizes (3-23 px), hundreds of
    maps, at full resolution."""

    def __init__(self, sizes=(3, 5, 7, 11, 15, 23), maps=64):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        for i, k in enumerate(sizes):
            w = torch.randn(maps, 3, k, k, generator=g)
            w -= w.mean(dim=(1, 2, 3), keepdim=True)
            self.register_buffer(f"w{i}", w / w.flatten(1).norm(dim=1)[:, None, None, None])
        self.count = len(sizes)
        self.style_layers, self.style_weights, self.content_layers = tuple(range(self.count)), (1.0,) * self.count, (1,)
        self.name = f"wide{sizes}x{maps}"

    def features(self, rgb):
        x = rgb * 2 - 1
        return [torch.relu(F.conv2d(x, w, padding=w.shape[-1] // 2)) for w in (getattr(self, f"w{i}") for i in range(self.count))]


class Patches(LossNet):
    """GPDM (Elnekave & Weiss 2022): raw 7x7 RGB patches at every level of an image pyramid; compared
    with sliced Wasserstein, this matches the style's patch distribution at each scale."""

    def __init__(self, levels=4, size=7):
        super().__init__()
        self.levels, self.size = levels, size
        self.style_layers, self.style_weights, self.content_layers = tuple(range(levels)), (1.0,) * levels, (0,)
        self.name = f"patches(levels={levels},size={size})"

    def features(self, rgb):
        out, x = [], rgb
        for level in range(self.levels):
            if level:
                x = F.avg_pool2d(x, 2)
            h, w = x.shape[-2:]
            out.append(F.unfold(x, self.size, padding=self.size // 2).view(x.shape[0], -1, h, w))
        return out


def random_vgg19(seed=0) -> VGG19:
    """VGG19 with He-initialised random weights (He, Wang & Hopcroft 2016); StyleLoss already
    normalises each layer's term by the style's own Gram, which is their per-layer normalisation."""
    from torchvision.models.vgg import cfgs, make_layers

    torch.manual_seed(seed)
    body = make_layers(cfgs["E"])
    for m in body:
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            torch.nn.init.zeros_(m.bias)
    return VGG19({f"features.{k}": v for k, v in body.state_dict().items()})


class PlenopticPS(torch.nn.Module):
    """Reference Portilla-Simoncelli statistics from the `plenoptic` package (luminance), each
    statistic normalised by the style's own magnitude across the vector (for comparison only)."""

    def __init__(self, target_rgb):
        super().__init__()
        import plenoptic as po

        self.po, self.models = po, {}
        with torch.no_grad():
            t = self._stats(target_rgb)
        self.register_buffer("target", t)
        self.register_buffer("scale", (t**2).mean().clamp_min(1e-12))

    def _stats(self, rgb):
        grey = (rgb * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
        shape = tuple(grey.shape[-2:])
        if shape not in self.models:
            self.models[shape] = self.po.models.PortillaSimoncelli(shape, n_scales=4)
        return self.models[shape](grey).flatten(1)

    def forward(self, rgb):
        s = self._stats(rgb)
        return ((s - self.target) ** 2).mean() / self.scale


class ColourAxesStatistics(torch.nn.Module):
    """The package's steerable statistics (steerable.py) on each of the style's three principal colour
    axes instead of on luminance alone, averaged: whether the cells of a mosaic, which differ in hue
    more than in lightness, need their colour channels' statistics (for comparison only)."""

    def __init__(self, target_rgb):
        super().__init__()
        from ncaedit.steerable import TextureStatistics

        _, vectors = torch.linalg.eigh(torch.cov(target_rgb[0].flatten(1)))
        self.register_buffer("axes", vectors.T.flip(0).contiguous())  # largest variance first
        self.per_axis = torch.nn.ModuleList(TextureStatistics(self._channel(target_rgb, a)) for a in self.axes)

    @staticmethod
    def _channel(rgb, axis):
        # texture_statistics reads luminance; its weights sum to 1, so three equal copies read as this channel
        return (rgb * axis.view(1, 3, 1, 1)).sum(1, keepdim=True).expand(-1, 3, -1, -1)

    def forward(self, rgb):
        return sum(t(self._channel(rgb, a)) for t, a in zip(self.per_axis, self.axes)) / len(self.per_axis)


def candidates() -> dict:
    """name -> (loss network, config changes, the texture term to use instead of the package's, or None)"""
    texture = {"style_weight": 0.0, "texture_weight": 1.0}
    default = {"texture_weight": 1.0, "content": "layout"}
    return {
        "pyramid gram": (RandomFilters, {}, None),
        "wide 3-23px x384 gram": (WideRandom, {}, None),
        "patch sw (GPDM)": (Patches, {"style_distance": "sw", "projections": 64}, None),
        "random VGG19 gram": (random_vgg19, {}, None),
        "PS plenoptic": (RandomFilters, texture, PlenopticPS),
        "PS own": (RandomFilters, texture, None),
        "pyramid gram + PS own": (RandomFilters, {"texture_weight": 1.0}, None),
        "PS own + layout": (RandomFilters, texture | {"content": "layout"}, None),
        "pyramid gram + PS own + layout": (RandomFilters, default, None),
        "pyramid gram + PS own on colour axes + layout": (RandomFilters, default, ColourAxesStatistics),
        "pyramid gram + PS own x5 + layout": (RandomFilters, default | {"texture_weight": 5.0}, None),
        "pyramid gram + layout": (RandomFilters, {"content": "layout"}, None),
    }


def to_tensor(rgb):
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float()


def build(name, style_rgb, base: StyleLossConfig):
    make_net, changes, texture = candidates()[name]
    loss = StyleLoss(make_net(), style_rgb, replace(base, **changes))
    if texture is not None:
        loss.texture = texture(style_rgb)
    return loss


def optimise(loss: StyleLoss, photo, steps: int, lr: float, seed: int = 0) -> np.ndarray:
    """Adam on the pixels, starting from the photo; the state holds photo and working image."""
    src = photo * 2 - 1
    x = src.clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        opt.zero_grad()
        loss(torch.cat([src, x], 1), gen)["total"].backward()
        opt.step()
        with torch.no_grad():
            x.clamp_(-1, 1)
    return ((x.detach()[0].permute(1, 2, 0) + 1) / 2).numpy()


def cost(name, style_rgb, base, shapes=((2, 80), (4, 128))) -> dict:
    loss = build(name, style_rgb, base)
    out = {}
    for b, side in shapes:
        state = (torch.rand(b, 6, side, side) * 2 - 1).requires_grad_(True)
        try:
            loss(state)["total"].backward()
        except ValueError:  # plenoptic's PS refuses sizes not divisible by 2**scales
            out[f"{b}x{side}"] = float("nan")
            continue
        times = []
        for _ in range(5):  # the fastest of five: the least disturbed by other work on the machine
            t0 = time.perf_counter()
            loss(state)["total"].backward()
            times.append(time.perf_counter() - t0)
        out[f"{b}x{side}"] = min(times)
    return out


def judge(out, photo, style) -> dict:
    return {
        "colour": colour_distance(out, style) / colour_distance(photo, style),
        "texture": texture_distance(out, style) / texture_distance(photo, style),
        "ssim": ssim(photo, out),
    }


def sheet(tiles: list[tuple[str, np.ndarray]], path: Path, width: int = 256):
    from PIL import Image, ImageDraw

    imgs = [Image.fromarray((np.clip(t, 0, 1) * 255).astype(np.uint8)) for _, t in tiles]
    imgs = [im.resize((width, round(im.height * width / im.width))) for im in imgs]
    h = max(im.height for im in imgs) + 30
    cols = min(len(imgs), 6)
    rows = -(-len(imgs) // cols)
    canvas = Image.new("RGB", (cols * width, rows * h), "white")
    draw = ImageDraw.Draw(canvas)
    for i, ((label, _), im) in enumerate(zip(tiles, imgs)):
        x, y = (i % cols) * width, (i // cols) * h
        canvas.paste(im, (x, y + 30))
        for j, line in enumerate(label.split("\n")[:2]):
            draw.text((x + 3, y + 2 + 13 * j), line, fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--candidates", help="comma-separated names (default: all)")
    ap.add_argument("--pairs", type=int, default=len(PAIRS))
    ap.add_argument("--skip", type=int, default=0, help="start at this pair")
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--lr", type=float, default=0.02)
    ap.add_argument("--size", type=int, default=256, help="the photo's longer side")
    ap.add_argument("--content-weight", type=float, default=StyleLossConfig.content_weight)
    ap.add_argument("--texture-weight", type=float, help="override texture_weight where a candidate uses it")
    ap.add_argument("--cost-only", action="store_true", help="only time each candidate's forward+backward")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--sheets", type=Path, help="folder for one contact sheet per pair")
    args = ap.parse_args()
    torch.set_num_threads(1)  # the machine is shared; one thread per run, runs side by side
    names = args.candidates.split(",") if args.candidates else list(candidates())
    # Candidates are changes to the version-0.1 loss: random pyramid, Gram, feature content term, colour 10.
    base = StyleLossConfig(content_weight=args.content_weight, texture_weight=0.0, content="features", colour_weight=10.0)
    rows = {n: {"scores": [], "seconds": 0.0} for n in names}
    for photo_name, style_name in [] if args.cost_only else PAIRS[args.skip : args.skip + args.pairs]:
        photo = fit_long_side(load_image(ROOT / "sample_images" / photo_name).rgb, args.size)
        photo = photo[: photo.shape[0] // 16 * 16, : photo.shape[1] // 16 * 16]  # plenoptic's PS needs multiples of 2**scales
        style = fit_long_side(load_image(ROOT / "sample_images" / style_name).rgb, base.style_size)
        tiles = [(photo_name, photo), (style_name, style)]
        for name in names:
            loss = build(name, to_tensor(style), base)
            if args.texture_weight is not None and loss.config.texture_weight > 0:
                loss.config.texture_weight = args.texture_weight
            t0 = time.perf_counter()
            out = optimise(loss, to_tensor(photo), args.steps, args.lr)
            rows[name]["seconds"] += time.perf_counter() - t0
            score = judge(out, photo, style)
            rows[name]["scores"].append(score)
            tiles.append((f"{name}\ncol {score['colour']:.2f} tex {score['texture']:.2f} ssim {score['ssim']:.2f}", out))
            print(f"{photo_name:14s} {style_name:12s} {name:32s} " + " ".join(f"{k} {v:.3f}" for k, v in score.items()), flush=True)
        if args.sheets:
            sheet(tiles, args.sheets / f"{Path(photo_name).stem}-{Path(style_name).stem}.png")
    style = to_tensor(fit_long_side(load_image(ROOT / "sample_images" / "mosaic.png").rgb, base.style_size))
    print(f"\n{'candidate':32s} colour texture  ssim   (medians)  fwd+bwd s: 2x80  4x128")
    table = []
    for name in names:
        med = {k: float(np.median([s[k] for s in rows[name]["scores"]] or [np.nan])) for k in ("colour", "texture", "ssim")}
        c = cost(name, style, base)
        table.append({"candidate": name, **med, "cost_s": c, "optimise_s": rows[name]["seconds"], "pairs": rows[name]["scores"]})
        print(f"{name:32s} {med['colour']:.3f}  {med['texture']:.3f}  {med['ssim']:.3f}            {c['2x80']:.3f}  {c['4x128']:.3f}", flush=True)
    print("ratios are result/photo distance to the style (1.0 = unchanged, lower = closer); SSIM to the photo")
    if args.json:
        args.json.write_text(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
