"""`ncaedit prompt` through the installed console script: a known answer with a hand-set open_clip
model (tests/helpers.py), and the paths where weights are missing."""

import os
from pathlib import Path

import numpy as np
from skimage.metrics import structural_similarity

from ncaedit.image import load_image
from ncaedit.nca_format import read_metadata

from helpers import redness, redness_clip, run, smooth_photo, write_rgb

PROMPT_PRESET = """
mode = "prompt"
[rule]
hidden_channels = 4
width = 16
[train]
iterations = 10
batch = 2
crop = 32
train_size = 64
pool = 4
steps_min = 6
steps_max = 10
lr = 4e-3
grad_checkpoint_every = 0
[loss]
cutouts = 2
"""


def luminance(rgb):
    return rgb @ np.array([0.299, 0.587, 0.114], np.float32)


def test_red_makes_the_photo_redder_and_keeps_its_structure(tmp_path):
    config, weights = redness_clip(tmp_path)
    preset = tmp_path / "tiny.toml"
    preset.write_text(PROMPT_PRESET)  # only training size; the loss weights are prompt mode's defaults
    photo = write_rgb(tmp_path / "photo.png", smooth_photo(48, 64))
    r = run("prompt", photo, "red", "--preset", preset, "--clip-model", config, "--clip-weights", weights, "--loss-net", "random", "--seed", "1")
    assert r.returncode == 0, r.stderr
    assert "clip sim" in r.stderr  # the progress bar reports CLIP similarity
    source, edited = load_image(photo).rgb, load_image(tmp_path / "photo-red.png").rgb
    ssim = structural_similarity(luminance(source), luminance(edited), data_range=1.0)
    print(f"redness {redness(source):.3f} -> {redness(edited):.3f}, luminance SSIM {ssim:.3f}")
    assert redness(edited) > redness(source) + 0.04
    assert ssim > 0.8

    info = read_metadata(tmp_path / "photo-red.nca")
    assert info["mode"] == "prompt" and info["prompts"] == [["red", 1.0]] and info["source_prompt"] == "a photo"
    assert info["clip_model"] == "tiny-redness-clip" and info["clip_weights"] == "tiny-redness-clip.safetensors"
    assert info["recipe"]["loss"]["direction_weight"] == 1.0 and info["recipe"]["loss"]["cutouts"] == 2
    assert "similarity" in info["final_losses"]


def test_missing_clip_weights_say_what_to_do_and_write_nothing(tmp_path):
    photo = write_rgb(tmp_path / "photo.png", smooth_photo())
    before = sorted(tmp_path.rglob("*"))
    r = run("prompt", photo, "a pencil sketch", "--crop", "32")
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    for needed in ("offline", "open_clip_model.safetensors", "huggingface.co/laion/CLIP-ViT-B-32-laion2B-s34B-b79K", "--clip-weights"):
        assert needed in r.stderr
    assert sorted(tmp_path.rglob("*")) == before


def test_clip_weights_are_looked_up_in_the_hugging_face_cache(tmp_path):
    repo = Path(os.environ["HF_HOME"]) / "hub" / "models--laion--CLIP-ViT-B-32-laion2B-s34B-b79K"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abc")
    (repo / "snapshots" / "0123abc").mkdir(parents=True)
    (repo / "snapshots" / "0123abc" / "open_clip_model.safetensors").write_bytes(b"not really weights")
    photo = write_rgb(tmp_path / "photo.png", smooth_photo())
    r = run("prompt", photo, "a pencil sketch", "--crop", "32")
    assert r.returncode == 2 and "could not load" in r.stderr and "snapshots/0123abc/open_clip_model.safetensors" in r.stderr


def test_missing_aesthetic_weights_are_an_error_only_when_used(tmp_path):
    photo = write_rgb(tmp_path / "photo.png", smooth_photo())
    before = sorted(tmp_path.rglob("*"))
    r = run("prompt", photo, "a pencil sketch", "--crop", "32", "--aesthetic", "8")  # found missing before CLIP loads
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "sa_0_4_vit_b_32_linear.pth" in r.stderr and "--aesthetic-weights" in r.stderr
    r = run("prompt", photo, "a pencil sketch", "--crop", "32", "--aesthetic", "8", "--aesthetic-weights", tmp_path / "no.pth")
    assert r.returncode == 2 and "no such file" in r.stderr
    r = run("prompt", photo, "red:0")
    assert r.returncode == 2 and "non-zero" in r.stderr
    assert sorted(tmp_path.rglob("*")) == before
