import os

# Tests never reach the network and never see weights cached on the developer's machine.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["NCAEDIT_OFFLINE"] = "1"
# As the CLI does (cli.main): idle torch threads sleep rather than spin (the suite ran 2.7x faster on a busy machine).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(autouse=True)
def _isolated_caches(tmp_path_factory, monkeypatch):
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("TORCH_HOME", str(cache / "torch"))
    monkeypatch.setenv("HF_HOME", str(cache / "hf"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))


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


@pytest.fixture
def tiny_preset(tmp_path):
    p = tmp_path / "tiny.toml"
    p.write_text(TINY_PRESET)
    return str(p)
