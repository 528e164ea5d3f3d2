"""The command line, through the installed `ncaedit` console script."""

import os
import subprocess
import sys
import time

import numpy as np
import pytest

from helpers import NCAEDIT, run, smooth_photo, stripes, write_rgb


def test_help_is_instant_and_does_not_import_torch():
    t = time.perf_counter()
    r = run("--help")
    assert r.returncode == 0 and "style" in r.stdout and "apply" in r.stdout
    assert time.perf_counter() - t < 10
    probe = subprocess.run([sys.executable, "-c", "import sys, ncaedit.cli; print('torch' in sys.modules)"], capture_output=True, text=True)
    assert probe.stdout.strip() == "False"


def test_style_then_apply_to_another_photo(tmp_path, tiny_preset):
    photo = write_rgb(tmp_path / "photo.png", smooth_photo(48, 64))
    style = write_rgb(tmp_path / "style.png", stripes(64, 64))
    other = write_rgb(tmp_path / "other.jpg", smooth_photo(56, 40, seed=3))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    r = run("style", photo, "--style", style, "--preset", tiny_preset, "--preview", "--seed", "1")
    assert r.returncode == 0, r.stderr
    assert "warning" in r.stderr and "VGG19" in r.stderr  # offline: one clear fallback warning
    out, rule = tmp_path / "photo-style.png", tmp_path / "photo-style.nca"
    assert out.is_file() and rule.is_file()
    assert (tmp_path / "photo-style.preview.png").is_file() and (tmp_path / "photo-style.loss.png").is_file()
    for name, data in before.items():  # inputs untouched
        assert (tmp_path / name).read_bytes() == data

    info = run("info", rule)
    assert info.returncode == 0 and '"loss_net": "random' in info.stdout and '"mode": "style"' in info.stdout

    r = run("apply", rule, other, "-o", tmp_path / "styled.png", "--steps", "4")
    assert r.returncode == 0, r.stderr
    from ncaedit.image import load_image

    assert load_image(tmp_path / "styled.png").rgb.shape == (56, 40, 3)

    # a second run never overwrites the first result
    r = run("style", photo, "--style", style, "--preset", tiny_preset)
    assert r.returncode == 0 and (tmp_path / "photo-style-2.png").is_file()


@pytest.mark.parametrize(
    "args,pattern",
    [
        (["style", "{photo}", "--style", "{missing}"], "no such file"),
        (["style", "{photo}", "--style", "{photo}", "--preset", "nope"], "unknown preset"),
        (["apply", "{notrule}", "{photo}"], "not an ncaedit rule"),
        (["apply", "{missing}", "{photo}"], "no such rule"),
        (["info", "{photo}"], "not an ncaedit rule"),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path, args, pattern):
    paths = {
        "photo": write_rgb(tmp_path / "p.png", smooth_photo()),
        "missing": tmp_path / "missing.png",
        "notrule": tmp_path / "x.nca",
    }
    (tmp_path / "x.nca").write_bytes(b"garbage that is not a rule")
    r = run(*[a.format(**paths) for a in args])
    assert r.returncode == 2
    assert pattern in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
