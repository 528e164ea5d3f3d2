"""Property-based tests: whatever bytes a file holds, the loaders either load it or raise NcaError.

Never another exception type, never a crash or a hang. Inputs are arbitrary bytes, arbitrary
bytes behind real file signatures, and real files with bytes flipped, cut off or inserted (which
is what reaches the deeper parsers). Example counts are modest so the whole file runs in seconds.
"""

import io
import random
import tempfile
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from helpers import smooth_photo, with_metadata
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from ncaedit.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from ncaedit.errors import NcaError
from ncaedit.image import Photo, load_image
from ncaedit.nca_format import load_rule, read_metadata, save_rule
from ncaedit.png16 import write_png16
from ncaedit.rule import Rule, RuleConfig

FUZZ = settings(max_examples=80, deadline=timedelta(seconds=10), suppress_health_check=[HealthCheck.too_slow], derandomize=True)
LIMIT = 1 << 20  # a small pixel limit keeps mutated headers from asking for big (legal) decodes


def _sample_images() -> dict[str, bytes]:
    rgb = (smooth_photo(12, 16) * 255).astype(np.uint8)
    out = {}
    for fmt, suffix in [("PNG", ".png"), ("JPEG", ".jpg"), ("WEBP", ".webp"), ("BMP", ".bmp"), ("GIF", ".gif")]:
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, fmt)
        out[suffix] = buf.getvalue()
    buf = io.BytesIO()
    tifffile.imwrite(buf, rgb, photometric="rgb", compression="zlib")
    out[".tif"] = buf.getvalue()
    buf = io.BytesIO()
    tifffile.imwrite(buf, (rgb.astype(np.uint16) * 257), photometric="rgb")
    out[".tiff"] = buf.getvalue()
    out["16.png"] = write_png16(rgb.astype(np.uint16) * 257)
    return out


SAMPLES = _sample_images()
SIGNATURES = [b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\x00", b"MM\x00*", b"RIFF", b"BM", b"GIF89a", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"]


@st.composite
def mutated(draw, originals: list[bytes]) -> bytes:
    data = bytearray(draw(st.sampled_from(originals)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "overwrite"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[pos] ^= draw(st.integers(1, 255))
        elif kind == "cut":
            del data[pos:]
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        else:
            chunk = draw(st.binary(min_size=1, max_size=8))
            data[pos : pos + len(chunk)] = chunk
    return bytes(data)


def _check_image(data: bytes, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"x{suffix}"
        path.write_bytes(data)
        try:
            photo = load_image(path, max_pixels=LIMIT)
        except NcaError as exc:
            assert str(exc).startswith(str(path)) and "\n" not in str(exc)
            return
        assert isinstance(photo, Photo) and photo.rgb.dtype == np.float32 and photo.rgb.shape[2] == 3
        assert np.isfinite(photo.rgb).all() and photo.rgb.min() >= 0 and photo.rgb.max() <= 1


@FUZZ
@given(data=st.binary(max_size=512), suffix=st.sampled_from([".png", ".jpg", ".tif", ".webp", ".bmp"]))
def test_image_loader_on_arbitrary_bytes(data, suffix):
    _check_image(data, suffix)


@FUZZ
@given(head=st.sampled_from(SIGNATURES), tail=st.binary(max_size=512))
def test_image_loader_on_bytes_behind_real_signatures(head, tail):
    _check_image(head + tail, ".png")


@FUZZ
@given(data=mutated(list(SAMPLES.values())), suffix=st.sampled_from([".png", ".jpg", ".tif"]))
def test_image_loader_on_damaged_real_images(data, suffix):
    _check_image(data, suffix)


def _rule_bytes() -> bytes:
    torch.manual_seed(0)
    rule = Rule(RuleConfig(hidden_channels=2, width=4))
    with torch.no_grad():
        for p in rule.parameters():
            p.normal_()
    with tempfile.TemporaryDirectory() as folder:
        return save_rule(rule, Path(folder) / "r.nca", {"mode": "style"}).read_bytes()


RULE = _rule_bytes()


def _check_rule(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "r.nca"
        path.write_bytes(data)
        for load in (read_metadata, load_rule):
            try:
                load(path)
            except NcaError as exc:
                assert "\n" not in str(exc)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
ARCH_VALUES = st.integers(-(2**70), 2**70) | st.sampled_from([0, 1, 2, 3, 10**9, 10**15]) | JSON


@FUZZ
@given(data=st.binary(max_size=512))
def test_rule_loader_on_arbitrary_bytes(data):
    _check_rule(data)


@FUZZ
@given(data=mutated([RULE]))
def test_rule_loader_on_damaged_rules(data):
    _check_rule(data)


@FUZZ
@given(key=st.sampled_from(["hidden_channels", "width", "fire_rate", "padding", "extra"]), value=ARCH_VALUES)
def test_rule_loader_on_tampered_architecture(key, value):
    _check_rule(with_metadata(RULE, lambda m: m["arch"].update({key: value})))


@FUZZ
@given(key=st.sampled_from(["arch", "format", "format_version", "tensor_sha256"]), value=JSON)
def test_rule_loader_on_tampered_metadata(key, value):
    _check_rule(with_metadata(RULE, lambda m: m.update({key: value})))


def test_tampered_architecture_cannot_make_us_allocate_a_huge_network(tmp_path):
    """A header may claim any width; the loader must refuse it from the header, not try to build it."""
    path = tmp_path / "r.nca"
    for value in (10**6, 10**12):
        path.write_bytes(with_metadata(RULE, lambda m: m["arch"].update(width=value, hidden_channels=value)))
        with pytest.raises(NcaError, match="architecture"):
            load_rule(path)


def _checkpoint_bytes() -> bytes:
    rule = Rule(RuleConfig(hidden_channels=2, width=4))
    opt = torch.optim.Adam(rule.parameters())
    ck = Checkpoint(
        identity="x", iteration=3, rule=rule.state_dict(), best=rule.state_dict(), optimizer=opt.state_dict(),
        rng=random.Random(0).getstate(), generator=torch.Generator().get_state(), torch_rng=torch.get_rng_state(),
        history=[{"total": 1.0}], best_loss=1.0, ema=1.0, lr_scale=1.0, recoveries=0, seconds=1.0,
    )
    with tempfile.TemporaryDirectory() as folder:
        return save_checkpoint(Path(folder) / "c.ckpt", ck).read_bytes()


CHECKPOINT = _checkpoint_bytes()


@settings(FUZZ, max_examples=40)
@given(data=mutated([CHECKPOINT]) | st.binary(max_size=256))
def test_checkpoint_loader_on_damaged_files(data):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "c.ckpt"
        path.write_bytes(data)
        try:
            load_checkpoint(path)
        except NcaError as exc:
            assert "\n" not in str(exc)
