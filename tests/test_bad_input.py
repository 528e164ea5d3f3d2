"""Bad input through the command line: one line `error: ...`, exit code 2, no traceback, nothing written.

The commands run in-process through `cli.main` (the console script's entry point) so that the
many cases take seconds; test_cli.py runs the installed script itself. stderr is captured at the
file-descriptor level, so messages that C libraries print around Python would show up too.
"""

import os
import pickle
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from ncaedit.cli import main
from ncaedit.rule import Rule, RuleConfig
from ncaedit.nca_format import FORMAT_VERSION, save_rule

from helpers import TINY_PRESET, rewrite_metadata, smooth_photo, stripes, write_rgb


class _Pickled:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def _png_claiming(width: int, height: int) -> bytes:
    """A valid little PNG whose header claims a huge size: a decompression bomb's calling card."""

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 4096)) + chunk(b"IEND", b"")


def _unwritable_folder(tmp_path: Path) -> Path:
    """A folder this user cannot create files in: permission bits for a normal user; root ignores
    those, so for root a kernel file system that refuses new files."""
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/sys")
    folder = tmp_path / "readonly"
    folder.mkdir()
    folder.chmod(0o555)
    return folder


@pytest.fixture
def files(tmp_path):
    f = {"dir": tmp_path}
    f["photo"] = Path(write_rgb(tmp_path / "photo.png", smooth_photo(48, 64)))
    f["style"] = Path(write_rgb(tmp_path / "style.png", stripes(64, 64)))
    f["missing"] = tmp_path / "missing.png"
    f["folder"] = tmp_path / "folder"
    f["folder"].mkdir()
    (tmp_path / "empty_folder").mkdir()
    f["empty"] = tmp_path / "empty.png"
    f["empty"].write_bytes(b"")
    f["trunc"] = tmp_path / "trunc.png"
    f["trunc"].write_bytes(f["photo"].read_bytes()[:120])
    f["corrupt"] = tmp_path / "corrupt.jpg"
    f["corrupt"].write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4)
    f["text"] = tmp_path / "notes.jpg"
    f["text"].write_text("a shopping list, not a photo\n")
    f["tiny"] = Path(write_rgb(tmp_path / "tiny.png", smooth_photo(4, 4)))
    f["bomb"] = tmp_path / "bomb.png"
    f["bomb"].write_bytes(_png_claiming(100_000, 100_000))
    f["int32"] = tmp_path / "int32.tif"
    tifffile.imwrite(f["int32"], np.zeros((32, 32, 3), np.int32), photometric="rgb")
    f["readonly"] = _unwritable_folder(tmp_path)

    rule = Rule(RuleConfig(hidden_channels=4, width=8))
    f["rule"] = save_rule(rule, tmp_path / "rule.nca", {"mode": "style", "default_steps": 3})
    data = f["rule"].read_bytes()
    for name, content in [("trunc_rule", data[:-10]), ("garbage_rule", b"not a rule at all" * 10), ("empty_rule", b"")]:
        f[name] = tmp_path / f"{name}.nca"
        f[name].write_bytes(content)
    f["png_rule"] = tmp_path / "png_rule.nca"
    f["png_rule"].write_bytes(f["photo"].read_bytes())
    from safetensors.torch import save_file

    f["plain_rule"] = tmp_path / "plain_rule.nca"
    save_file({"x": torch.zeros(3)}, str(f["plain_rule"]))
    f["arch_rule"] = tmp_path / "arch_rule.nca"
    f["arch_rule"].write_bytes(data)
    rewrite_metadata(f["arch_rule"], lambda m: m["arch"].update(width=9))
    f["edited_rule"] = tmp_path / "edited_rule.nca"
    f["edited_rule"].write_bytes(data[:-4] + bytes(b ^ 0x55 for b in data[-4:]))
    f["newer_rule"] = tmp_path / "newer_rule.nca"
    f["newer_rule"].write_bytes(data)
    rewrite_metadata(f["newer_rule"], lambda m: m.update(format_version=FORMAT_VERSION + 1))
    f["pickle_rule"] = tmp_path / "pickle_rule.nca"
    f["pickle_rule"].write_bytes(pickle.dumps(_Pickled()))

    f["tiny_preset"] = tmp_path / "tiny.toml"
    f["tiny_preset"].write_text(TINY_PRESET)
    for name, text in [
        ("badkey", "[train]\nfoo = 1\n"),
        ("badtable", "[nope]\nx = 1\n"),
        ("badtoml", "[train\niterations = \n"),
        ("badtype", '[train]\niterations = "many"\n'),
        ("nanlr", "[train]\nlr = nan\n"),
    ]:
        f[name] = tmp_path / f"{name}.toml"
        f[name].write_text(text)
    yield f
    if f["readonly"] != Path("/sys"):
        f["readonly"].chmod(0o755)


STYLE = ["style", "{photo}", "--style", "{style}", "--preset", "{tiny_preset}"]
APPLY = ["apply", "{rule}", "{photo}"]

CASES = {
    # images: the photo, the style image, the photo given to apply
    "photo missing": (["style", "{missing}", "--style", "{style}"], "no such file"),
    "photo is a folder": (["style", "{folder}", "--style", "{style}"], "is a folder"),
    "photo empty": (["style", "{empty}", "--style", "{style}"], "file is empty"),
    "photo truncated": (["style", "{trunc}", "--style", "{style}"], "damaged or truncated"),
    "photo corrupt": (["style", "{corrupt}", "--style", "{style}"], "not a readable image"),
    "photo is text": (["style", "{text}", "--style", "{style}"], "not a readable image"),
    "photo too small": (["style", "{tiny}", "--style", "{style}"], "too small"),
    "photo is a bomb": (["style", "{bomb}", "--style", "{style}"], "pixel limit"),
    "photo above --max-pixels": (STYLE + ["--max-pixels", "1000"], "above the 1,000-pixel limit"),
    "photo in an unsupported sample type": (["style", "{int32}", "--style", "{style}"], "int32 samples are not supported"),
    "style missing": (["style", "{photo}", "--style", "{missing}"], "no such file"),
    "style empty": (["style", "{photo}", "--style", "{empty}"], "file is empty"),
    "style above --max-pixels": (["style", "{photo}", "--style", "{bomb}"], "pixel limit"),
    "apply image missing": (["apply", "{rule}", "{missing}"], "no such file"),
    "apply image is a folder": (["apply", "{rule}", "{folder}"], "is a folder"),
    "apply image truncated": (["apply", "{rule}", "{trunc}"], "damaged or truncated"),
    "apply image is text": (["apply", "{rule}", "{text}"], "not a readable image"),
    "apply image too small": (["apply", "{rule}", "{tiny}"], "too small"),
    "apply image is a bomb": (["apply", "{rule}", "{bomb}"], "pixel limit"),
    "apply image above --max-pixels": (APPLY + ["--max-pixels", "100"], "pixel limit"),
    # presets
    "unknown preset": (["style", "{photo}", "--style", "{style}", "--preset", "nope"], "unknown preset 'nope'"),
    "preset file missing": (["style", "{photo}", "--style", "{style}", "--preset", "{dir}/none.toml"], "does not exist"),
    "unknown preset key": (["style", "{photo}", "--style", "{style}", "--preset", "{badkey}"], "unknown key train.foo"),
    "unknown preset table": (["style", "{photo}", "--style", "{style}", "--preset", "{badtable}"], "unknown table [nope]"),
    "preset not TOML": (["style", "{photo}", "--style", "{style}", "--preset", "{badtoml}"], "not valid TOML"),
    "preset value of the wrong type": (["style", "{photo}", "--style", "{style}", "--preset", "{badtype}"], "train.iterations must be int"),
    "preset value not finite": (["style", "{photo}", "--style", "{style}", "--preset", "{nanlr}"], "train.lr must be a finite number"),
    # option values
    "zero iterations": (STYLE + ["--iterations", "0"], "iterations"),
    "negative iterations": (STYLE + ["--iterations", "-3"], "iterations"),
    "zero steps": (STYLE + ["--steps", "0"], "--steps must be a whole number from 1"),
    "zero crop": (STYLE + ["--crop", "0"], "--crop must be a whole number from 16"),
    "zero width": (STYLE + ["--width", "0"], "--width must be a whole number from 1"),
    "zero lr": (STYLE + ["--lr", "0"], "--lr must be a number above 0"),
    "nan lr": (STYLE + ["--lr", "nan"], "--lr must be a number above 0 and at most 1, got nan"),
    "negative seed": (STYLE + ["--seed", "-1"], "--seed must be a whole number from 0 to 2**63 - 1"),
    "zero style scale": (STYLE + ["--style-scale", "0"], "--style-scale must be"),
    "infinite style scale": (STYLE + ["--style-scale", "inf"], "--style-scale must be"),
    "negative content weight": (STYLE + ["--content-weight", "-1"], "--content-weight must be a number from 0"),
    "unknown style distance": (STYLE + ["--style-distance", "cosine"], "style_distance must be one of"),
    "unknown loss net": (STYLE + ["--loss-net", "alexnet"], "unknown loss network"),
    "unknown device": (STYLE + ["--device", "quantum"], "unknown device 'quantum'"),
    "zero max pixels": (STYLE + ["--max-pixels", "0"], "--max-pixels"),
    "not a number": (STYLE + ["--iterations", "many"], "Invalid value for '--iterations'"),
    "unknown option": (STYLE + ["--colour", "red"], "No such option: --colour"),
    "missing --style": (["style", "{photo}"], "Missing option '--style'"),
    "missing argument": (["apply", "{rule}"], "Missing argument"),
    "unknown command": (["paint", "{photo}"], "No such command 'paint'"),
    "train-on is a file": (STYLE + ["--train-on", "{photo}"], "not a folder"),
    "train-on has no images": (STYLE + ["--train-on", "{dir}/empty_folder"], "no images found"),
    "vgg weights missing": (STYLE + ["--vgg-weights", "{dir}/vgg.pth"], "--vgg-weights"),
    "resume without a checkpoint": (STYLE + ["--resume"], "no checkpoint"),
    "apply zero steps": (APPLY + ["--steps", "0"], "--steps must be a whole number from 1"),
    "apply negative steps": (APPLY + ["--steps", "-2"], "--steps must be a whole number from 1"),
    "apply unknown device": (APPLY + ["--device", "quantum"], "unknown device"),
    # outputs
    "out folder missing": (STYLE + ["--out", "{dir}/nowhere/x.png"], "does not exist"),
    "out folder read-only": (STYLE + ["--out", "{readonly}/x.png"], "is not writable"),
    "out is a folder": (STYLE + ["--out", "{folder}"], "is a folder"),
    "out format unknown": (STYLE + ["--out", "{dir}/x.gif"], "unknown output format '.gif'"),
    "rule without .nca": (STYLE + ["--rule", "{dir}/x.txt"], "--rule"),
    "out is the input": (STYLE + ["--out", "{photo}"], "would overwrite the input"),
    "apply out folder missing": (APPLY + ["-o", "{dir}/nowhere/x.png"], "does not exist"),
    "apply out folder read-only": (APPLY + ["-o", "{readonly}/x.png"], "is not writable"),
    "apply out format unknown": (APPLY + ["-o", "{dir}/x.gif"], "unknown output format"),
    "apply out is the input": (APPLY + ["-o", "{photo}"], "would overwrite the input"),
    # rule files, for apply and info
    **{
        f"{command} {label}": ([command, "{%s}" % key] + (["{photo}"] if command == "apply" else []), pattern)
        for command in ("apply", "info")
        for label, key, pattern in [
            ("rule missing", "missing", "no such rule file"),
            ("rule is a folder", "folder", "is a folder"),
            ("rule empty", "empty_rule", "not an ncaedit rule file (too short)"),
            ("rule truncated", "trunc_rule", "truncated"),
            ("rule is garbage", "garbage_rule", "not an ncaedit rule file"),
            ("rule is a PNG", "png_rule", "not an ncaedit rule file"),
            ("rule is plain safetensors", "plain_rule", "not an ncaedit rule file"),
            ("rule is a pickle", "pickle_rule", "not an ncaedit rule file"),
            ("rule of a newer format", "newer_rule", "newer than this ncaedit understands"),
        ]
    },
    "apply rule architecture tampered": (["apply", "{arch_rule}", "{photo}"], "rule settings (arch, default_steps) do not match their checksum"),
    "apply rule tensors edited": (["apply", "{edited_rule}", "{photo}"], "checksum"),
}


def _listing(folder: Path) -> dict:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_and_exit_2(case, files, capfd, monkeypatch):
    args, pattern = CASES[case]
    monkeypatch.chdir(files["dir"])
    before = _listing(files["dir"])
    monkeypatch.setattr(sys, "argv", ["ncaedit", *[a.format(**files) for a in args]])
    with pytest.raises(SystemExit) as exit_:
        main()
    err = capfd.readouterr().err
    lines = err.strip().splitlines()
    assert exit_.value.code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert pattern in lines[0], err
    assert _listing(files["dir"]) == before  # nothing written, no temporary left behind
    assert not (files["dir"] / "PWNED").exists()


def test_rule_files_are_never_unpickled(files, monkeypatch):
    """Point 3 of the issue, directly: while rule files of every kind are loaded, no unpickler
    runs at all (not merely 'the payload did no harm')."""
    import pickle as pickle_module

    from ncaedit.errors import NcaError
    from ncaedit.nca_format import load_rule, read_metadata

    calls = []

    def forbidden(*args, **kwargs):
        calls.append(args)
        raise AssertionError("a rule file was unpickled")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle_module, name, forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr(np, "load", forbidden)
    torch_pickle = files["dir"] / "torch_pickle.nca"
    torch.save({"w1.weight": torch.zeros(2)}, torch_pickle)  # torch's zip format, a pickle inside
    for path in (files["pickle_rule"], torch_pickle):
        for load in (load_rule, read_metadata):
            with pytest.raises(NcaError, match="not an ncaedit rule file"):
                load(path)
    assert load_rule(files["rule"]).rule is not None  # a real rule still loads with pickle gone
    assert not calls
