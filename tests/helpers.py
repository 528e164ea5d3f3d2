"""Helpers shared by the tests: small photos, tiny presets and rules, rule-file surgery, and small
open_clip models.

Small open_clip models are written as a config .json plus a .safetensors checkpoint, so
`ncaedit prompt --clip-model CONFIG.json --clip-weights WEIGHTS.safetensors` loads them through the
same open_clip code path as real CLIP weights. open_clip's tokenizer ships its vocabulary, so no
download is involved anywhere.

- `random_clip`: a tiny CLIP with random weights: arbitrary, but a real model to optimise against.
- `redness_clip`: a hand-set CLIP whose embeddings know one thing, redness. An image embeds as
  (redness, REDNESS_OFFSET) on a 2-d circle, where redness = mean R - (mean G + mean B) / 2; any
  text containing the word "red" embeds as (1, 0), any other text as nothing (0, 0). So its
  similarity to "red" rises exactly as the image gets redder: a known answer.
"""

from __future__ import annotations

import colorsys
import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ncaedit.rule import Rule, RuleConfig


def smooth_photo(h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    """A small photo-like image: smooth gradients plus a few shapes, float RGB in [0, 1]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.stack([0.3 + 0.5 * xx, 0.4 + 0.4 * yy, 0.6 - 0.3 * xx * yy], axis=2)
    for _ in range(4):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(4, 10)
        disk = (np.mgrid[0:h, 0:w][0] - cy) ** 2 + (np.mgrid[0:h, 0:w][1] - cx) ** 2 < r * r
        img[disk] = rng.uniform(0.1, 0.9, 3)
    return img.astype(np.float32)


def stripes(h: int = 64, w: int = 64) -> np.ndarray:
    """A colourful texture unlike smooth_photo: red/yellow diagonal stripes."""
    yy, xx = np.mgrid[0:h, 0:w]
    band = ((xx + yy) // 4) % 2 == 0
    img = np.where(band[..., None], [0.95, 0.1, 0.1], [0.95, 0.85, 0.1])
    return img.astype(np.float32)


def cell_mosaic(size: int = 128, cell: int = 16, seed: int = 0, grey: bool = False, outline: float = 0.05) -> np.ndarray:
    """Flat cells, each in a random hue (or a random grey), with dark outlines where neighbours meet."""
    from ncaedit.noise import regions

    angle = np.arctan2(*regions(cell, seed, 0, 0, size, size).numpy()[::-1]) % (2 * np.pi)
    hues = angle / (2 * np.pi)
    rgb = np.array([[(h,) * 3 if grey else colorsys.hsv_to_rgb(h, 0.9, 0.95) for h in row] for row in hues], np.float32)
    border = np.zeros((size, size), bool)
    border[1:] |= hues[1:] != hues[:-1]
    border[:, 1:] |= hues[:, 1:] != hues[:, :-1]
    rgb[border] = outline
    return rgb


def descended(loss, x: torch.Tensor, steps: int = 40, lr: float = 0.05) -> torch.Tensor:
    """`x` after `steps` of Adam on loss(x): what a loss term pulls an image towards."""
    x = x.clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        loss(x).backward()
        opt.step()
    return x.detach()


def write_rgb(path, arr: np.ndarray) -> str:
    Image.fromarray((np.clip(arr, 0, 1) * 255).round().astype(np.uint8)).save(path)
    return str(path)


TINY_PRESET = """
description = "test preset: seconds, not minutes"
[rule]
hidden_channels = 4
width = 16
[train]
iterations = 4
batch = 2
crop = 24
train_size = 64
pool = 4
steps_min = 3
steps_max = 5
grad_checkpoint_every = 2
[loss]
style_size = 48
"""


def random_rule(seed=0, **kw) -> Rule:
    """A rule with random (not zero) weights, so that it changes what it runs on."""
    torch.manual_seed(seed)
    rule = Rule(RuleConfig(**kw))
    with torch.no_grad():
        for p in rule.parameters():
            p.normal_(0, 0.3)
    return rule


def rewrite_metadata(path: Path, change) -> None:
    """Edit a rule file's JSON metadata in place with `change(meta)`, leaving its tensors as they are."""
    path.write_bytes(with_metadata(path.read_bytes(), change))


def with_metadata(data: bytes, change) -> bytes:
    """A rule file's bytes with its JSON metadata edited by `change(meta)`."""
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    meta = json.loads(header["__metadata__"]["ncaedit"])
    change(meta)
    header["__metadata__"]["ncaedit"] = json.dumps(meta)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + data[8 + n :]


REDNESS_OFFSET = 0.3

RANDOM_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}

REDNESS_CONFIG = {
    "embed_dim": 2,
    # one 16x16 patch, no attention: the image embedding is a linear function of the mean colour
    "vision_cfg": {"image_size": 16, "layers": 0, "width": 4, "head_width": 4, "patch_size": 16, "pool_type": "avg", "no_ln_pre": True},
    # one attention layer that averages the tokens: the word "red" anywhere reaches the pooled token
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 4, "heads": 1, "layers": 1},
}


def _build(config: dict, folder: Path, name: str):
    import open_clip

    path = folder / f"{name}.json"
    path.write_text(json.dumps(config))
    open_clip.add_model_config(path)
    return path, open_clip.create_model(name)


def _save(model, path: Path) -> Path:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def random_clip(folder: Path, seed: int = 0, name: str = "tiny-random-clip") -> tuple[Path, Path]:
    torch.manual_seed(seed)
    config, model = _build(RANDOM_CONFIG, folder, name)
    return config, _save(model, folder / f"{name}.safetensors")


def redness_clip(folder: Path, name: str = "tiny-redness-clip") -> tuple[Path, Path]:
    from open_clip import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD, SimpleTokenizer

    config, model = _build(REDNESS_CONFIG, folder, name)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        for ln in (model.visual.ln_post, model.ln_final, model.transformer.resblocks[0].ln_1, model.transformer.resblocks[0].ln_2):
            ln.weight.fill_(1.0)
        # Feature 0 = redness of the raw pixels, undoing CLIP's input normalisation; feature 1 = -feature 0;
        # features 2, 3 = +-REDNESS_OFFSET. Zero-mean features survive the LayerNorms up to scale.
        k = torch.tensor([1.0, -0.5, -0.5])
        std, mean = torch.tensor(OPENAI_DATASET_STD), torch.tensor(OPENAI_DATASET_MEAN)
        per_pixel = (k * std / 256).view(3, 1, 1).expand(3, 16, 16)
        model.visual.conv1.weight[0], model.visual.conv1.weight[1] = per_pixel, -per_pixel
        constant = float((k * mean).sum())
        model.visual.positional_embedding[1] = torch.tensor([constant, -constant, REDNESS_OFFSET, -REDNESS_OFFSET])
        to_2d = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
        model.visual.proj.copy_(to_2d)
        model.text_projection.copy_(to_2d)
        red = SimpleTokenizer().encoder["red</w>"]
        model.token_embedding.weight[red] = torch.tensor([1.0, -1.0, 0.0, 0.0])
        attn = model.transformer.resblocks[0].attn  # queries and keys 0: uniform attention; values and output identity
        attn.in_proj_weight[8:12] = torch.eye(4)
        attn.out_proj.weight.copy_(torch.eye(4))
    return config, _save(model, folder / f"{name}.safetensors")


def redness(rgb) -> float:
    """The quantity redness_clip embeds: mean R - (mean G + mean B) / 2 of an (H, W, 3) array."""
    m = rgb.reshape(-1, 3).mean(0)
    return float(m[0] - (m[1] + m[2]) / 2)


# The installed console script, for tests about the process itself (exit codes, signals, start-up):
# the one beside this interpreter (a virtual environment's), else the one on PATH.
NCAEDIT = shutil.which("ncaedit", path=os.path.dirname(sys.executable)) or shutil.which("ncaedit")


def run(*args, cwd=None):
    assert NCAEDIT, "the ncaedit console script is not installed (pip install -e '.[dev]')"
    return subprocess.run([NCAEDIT, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300)
