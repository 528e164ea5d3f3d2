"""Hardening by class (issue 13): untrusted rule metadata, special files, bounds on every number,
the output folder, leftovers, messages. Every case runs the real command line in-process (cli.main)
on tiny inputs; anything that could hang runs under an alarm, and special files are refused before
a byte is read, so no case can take more than seconds or grow memory."""

import contextlib
import inspect
import io
import json
import math
import os
import signal
import struct
import subprocess
import sys
import typing
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ncaedit import limits
from ncaedit.cli import app, main
from ncaedit.errors import NcaError
from ncaedit.image import load_image
from ncaedit.rule import Rule, RuleConfig
from ncaedit.nca_format import load_rule, save_rule

from helpers import TINY_PRESET, smooth_photo, stripes, with_metadata, write_rgb

ALARM_SECONDS = 20


@contextlib.contextmanager
def alarm(what: str):
    """Run the block under an alarm: a read that blocks (a FIFO) fails the test instead of hanging it."""

    def hung(signum, frame):
        raise TimeoutError(f"{what} did not finish in {ALARM_SECONDS} s")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(ALARM_SECONDS)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def cli(*args, cwd: Path | None = None) -> tuple[int, str]:
    """(exit code, stderr) of `ncaedit ARGS`, run in-process under an alarm."""
    err, old_argv, old_cwd = io.StringIO(), sys.argv, os.getcwd()
    sys.argv = ["ncaedit", *map(str, args)]
    try:
        if cwd:
            os.chdir(cwd)
        with alarm(f"ncaedit {' '.join(map(str, args))}"), contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                main()
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 0
    finally:
        sys.argv = old_argv
        os.chdir(old_cwd)
    return code, err.getvalue()


def one_error(code: int, err: str, *patterns: str) -> str:
    """The single `error: ...` line of a refused command (exit 2), checked for `patterns`."""
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("error: "), repr(err)  # one line, no blank line before it
    for p in patterns:
        assert p in err, err
    return err


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def _metadata_of(data: bytes) -> tuple[dict, dict, int]:
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    return header, json.loads(header["__metadata__"]["ncaedit"]), n


def replaced_metadata(data: bytes, meta: dict) -> bytes:
    """A rule file's bytes with `meta` as its metadata (NaN and Infinity written as JSON allows them)."""
    return with_metadata(data, lambda m: (m.clear(), m.update(meta)))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    d = tmp_path_factory.mktemp("world")
    w = {"dir": d, "photo": Path(write_rgb(d / "photo.png", smooth_photo(32, 40))), "style": Path(write_rgb(d / "style.png", stripes(32, 32)))}
    torch.manual_seed(0)
    rule = Rule(RuleConfig(hidden_channels=2, width=8))
    with torch.no_grad():
        rule.w2.weight.normal_(0, 0.05)
    w["rule"] = save_rule(rule, d / "rule.nca", {"mode": "style", "default_steps": 3})
    with torch.no_grad():
        for p in rule.parameters():
            p.normal_(0, 1e5)  # finite, but the state overflows within a few steps
    w["unstable"] = save_rule(rule, d / "unstable.nca", {"mode": "style", "default_steps": 30})
    w["preset"] = d / "tiny.toml"
    w["preset"].write_text(TINY_PRESET)
    w["fifo"] = d / "fifo.png"
    os.mkfifo(w["fifo"])
    w["zero"] = d / "zero.png"
    w["zero"].symlink_to("/dev/zero")
    return w


# --- 1. rule files are untrusted input, all of it ------------------------------------------------

RULE_BYTES = None
ODD_VALUES = [None, True, "3", [3], {"a": 1}, math.nan, math.inf, -math.inf, -1, 0, 2, 10**30, -(10**30), 1e300, 0.5, 3.0, "replicate", ""]


def _rule_bytes() -> bytes:
    global RULE_BYTES
    if RULE_BYTES is None:
        import tempfile

        torch.manual_seed(1)
        rule = Rule(RuleConfig(hidden_channels=2, width=8))
        with torch.no_grad():
            rule.w2.weight.normal_(0, 0.05)
        with tempfile.TemporaryDirectory() as folder:
            RULE_BYTES = save_rule(rule, Path(folder) / "r.nca", {"mode": "style", "default_steps": 4}).read_bytes()
    return RULE_BYTES


FIELDS = ["format", "format_version", "ncaedit_version", "arch", "tensor_sha256", "settings_sha256", "default_steps", "mode",
          "arch.hidden_channels", "arch.width", "arch.fire_rate", "arch.padding"]


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(field=st.sampled_from(FIELDS), value=st.sampled_from(ODD_VALUES + ["<missing>"]) | st.integers(-(2**70), 2**70) | st.floats(),
       checksum=st.sampled_from(["kept", "recomputed", "removed"]))
def test_every_metadata_field_mutated_is_refused_in_one_line_or_works(field, value, checksum, tmp_path_factory, monkeypatch):
    """Any value (wrong type, NaN, huge, negative, missing) in any field, with the settings checksum
    left stale, recomputed by a careful forger, or removed as in an ncaedit 0.1 file: `apply` exits 2
    with one line naming the file, or writes a correct image. The step bound is lowered to 40 so that
    an accepted default_steps runs in milliseconds (the check is the same at any bound)."""
    from ncaedit import nca_format as rulefile

    monkeypatch.setitem(limits.BOUNDS, "steps", limits.Bound(1, 40, integer=True))
    d = tmp_path_factory.mktemp("meta")
    photo = write_rgb(d / "p.png", smooth_photo(8, 10))
    _, meta, _ = _metadata_of(_rule_bytes())
    target, key = (meta["arch"], field[5:]) if field.startswith("arch.") else (meta, field)
    if value == "<missing>":
        target.pop(key, None)
    else:
        target[key] = value
    if checksum == "recomputed" and isinstance(meta.get("arch"), dict):
        with contextlib.suppress(ValueError, TypeError):
            meta["settings_sha256"] = rulefile._settings_checksum(meta)
    elif checksum == "removed":
        meta.pop("settings_sha256", None)
    path = d / "r.nca"
    path.write_bytes(replaced_metadata(_rule_bytes(), meta))
    out = d / "out.png"
    code, err = cli("apply", path, photo, "-o", out)
    if code == 2:
        one_error(code, err, str(path))
        assert not out.exists()
    else:
        assert code == 0, err
        steps = meta.get("default_steps", 32)
        assert type(steps) is int and 1 <= steps <= 40
        assert load_image(out).rgb.shape == (8, 10, 3)


@pytest.mark.parametrize("value", ["3", None, [3], math.nan, math.inf, 10**30])
def test_the_issues_default_steps_examples(world, value, tmp_path):
    """The examples from the issue: a string, null, a list, NaN, Infinity or 10^30 in default_steps."""
    _, meta, _ = _metadata_of(world["rule"].read_bytes())
    meta["default_steps"] = value
    path = tmp_path / "shared.nca"
    path.write_bytes(replaced_metadata(world["rule"].read_bytes(), meta))
    for command in (["apply", path, world["photo"], "-o", tmp_path / "o.png"], ["animate", path, world["photo"], "-o", tmp_path / "o.gif"], ["info", path]):
        one_error(*cli(*command), "default_steps")
    assert not list(tmp_path.glob("o.*"))


def test_edited_settings_are_caught_by_their_checksum(world, tmp_path):
    _, meta, _ = _metadata_of(world["rule"].read_bytes())
    meta["arch"]["fire_rate"] = 1.0  # a valid value, but not the one the rule was trained with
    path = tmp_path / "edited.nca"
    path.write_bytes(replaced_metadata(world["rule"].read_bytes(), meta))
    one_error(*cli("apply", path, world["photo"], "-o", tmp_path / "o.png"), "do not match their checksum")
    del meta["settings_sha256"]  # a file from ncaedit 0.1: no settings checksum, fields still checked
    path.write_bytes(replaced_metadata(world["rule"].read_bytes(), meta))
    assert load_rule(path).rule.config.fire_rate == 1.0


def test_a_rollout_that_goes_non_finite_fails_and_writes_nothing(world, tmp_path):
    code, err = cli("apply", world["unstable"], world["photo"], "-o", tmp_path / "o.png")
    one_error(code, err, str(world["photo"]), "infinite or NaN")
    code, err = cli("animate", world["unstable"], world["photo"], "-o", tmp_path / "o.gif")
    assert code == 2 and "infinite or NaN" in err.splitlines()[-1]
    folder = tmp_path / "in"
    folder.mkdir()
    write_rgb(folder / "a.png", smooth_photo(16, 16))
    write_rgb(folder / "b.png", smooth_photo(16, 16, seed=1))
    code, err = cli("apply", world["unstable"], folder, "--out", tmp_path / "out")
    assert code == 1 and "2 failed" in err and err.count("infinite or NaN") == 2
    assert files_under(tmp_path) == {"in", "in/a.png", "in/b.png", "out"}


# --- 2. special files ------------------------------------------------------------------------------


def _prompt_args(world, tmp_path):
    from helpers import random_clip

    config, weights = random_clip(tmp_path)
    preset = tmp_path / "p.toml"
    preset.write_text('mode = "prompt"\n' + TINY_PRESET.split("[loss]")[0])
    return config, weights, preset


READERS = {
    # command line, with {special} where the special file goes
    "apply rule": ["apply", "{special}", "{photo}", "-o", "{out}/o.png"],
    "apply input": ["apply", "{rule}", "{special}"],
    "apply input, batch": ["apply", "{rule}", "{special}", "{photo}", "--out", "{out}/batch"],
    "apply video": ["apply", "{rule}", "{special_mp4}"],
    "apply --mask": ["apply", "{rule}", "{photo}", "-o", "{out}/o.png", "--mask", "{special}"],
    "info": ["info", "{special}"],
    "animate rule": ["animate", "{special}", "{photo}", "-o", "{out}/o.gif"],
    "animate image": ["animate", "{rule}", "{special}", "-o", "{out}/o.gif"],
    "style photo": ["style", "{special}", "--style", "{style}", "--preset", "{preset}"],
    "style --style": ["style", "{photo}", "--style", "{special}", "--preset", "{preset}"],
    "style --preset": ["style", "{photo}", "--style", "{style}", "--preset", "{special_toml}"],
    "style --vgg-weights": ["style", "{photo}", "--style", "{style}", "--preset", "{preset}", "--vgg-weights", "{special}"],
    "style --train-on": ["style", "{photo}", "--style", "{style}", "--preset", "{preset}", "--train-on", "{special_folder}"],
    "style --resume": ["style", "{photo}", "--style", "{style}", "--preset", "{preset}", "--resume", "--out", "{out}/r.png"],
    "prompt photo": ["prompt", "{special}", "red", "--preset", "{prompt_preset}", "--clip-model", "{clip_config}", "--clip-weights", "{clip_weights}"],
    "prompt --clip-weights": ["prompt", "{photo}", "red", "--preset", "{prompt_preset}", "--clip-model", "{clip_config}", "--clip-weights", "{special}"],
    "prompt --aesthetic-weights": ["prompt", "{photo}", "red", "--preset", "{prompt_preset}", "--clip-model", "{clip_config}", "--clip-weights", "{clip_weights}", "--aesthetic", "5", "--aesthetic-weights", "{special}"],
}


@pytest.mark.parametrize("kind", ["fifo", "device"])
@pytest.mark.parametrize("reader", list(READERS))
def test_special_files_are_refused_by_type_everywhere(reader, kind, world, tmp_path):
    """Every command and option that reads a path refuses a FIFO (which would block) and a symlink
    to /dev/zero (which has no end) by their type, at once, in one line."""
    special = tmp_path / f"special-{kind}"
    special.mkdir()
    names = {"special": "x.png", "special_mp4": "x.mp4", "special_toml": "x.toml", "special_folder": "folder/x.png"}
    paths = {}
    for key, name in names.items():
        p = special / name
        p.parent.mkdir(exist_ok=True)
        if kind == "fifo":
            os.mkfifo(p)
        else:
            p.symlink_to("/dev/zero")
        paths[key] = p
    paths["special_folder"] = paths["special_folder"].parent
    out = tmp_path / "out"
    out.mkdir()
    (out / "r.ckpt").symlink_to(paths["special"]) if reader == "style --resume" else None
    fill = {**world, **paths, "out": out, "prompt_preset": "", "clip_config": "", "clip_weights": ""}
    if reader.startswith("prompt"):
        fill["clip_config"], fill["clip_weights"], fill["prompt_preset"] = _prompt_args(world, tmp_path)
    code, err = cli(*[a.format(**fill) for a in READERS[reader]])
    expected = "FIFO (named pipe)" if kind == "fifo" else "character device"
    one_error(code, err, expected, "not a regular file")
    assert files_under(out) == ({"r.ckpt"} if reader == "style --resume" else set())


def test_a_special_file_in_a_batch_folder_is_reported_and_the_rest_done(world, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    write_rgb(folder / "a.png", smooth_photo(16, 16))
    os.mkfifo(folder / "b.png")
    (folder / "c.png").symlink_to("/dev/zero")
    code, err = cli("apply", world["rule"], folder, "--out", tmp_path / "out")
    assert code == 1, err
    assert "1 done, 0 skipped, 2 failed" in err
    assert "b.png: is a FIFO" in err and "c.png: is a character device" in err
    assert (tmp_path / "out" / "a.png").exists()


WRITERS = {
    "apply -o": ["apply", "{rule}", "{photo}", "-o", "{target}"],
    "animate -o": ["animate", "{rule}", "{photo}", "-o", "{target_gif}", "--overwrite"],
    "style --out": ["style", "{photo}", "--style", "{style}", "--preset", "{preset}", "--out", "{target}"],
    "style --rule": ["style", "{photo}", "--style", "{style}", "--preset", "{preset}", "--rule", "{target_nca}"],
}


@pytest.mark.parametrize("kind", ["fifo", "device"])
@pytest.mark.parametrize("writer", list(WRITERS))
def test_outputs_never_replace_a_special_file(writer, kind, world, tmp_path):
    """The write is a rename onto the output's name: over a FIFO or a device (as root, `-o /dev/null`)
    it would replace the special file itself. Refused, as for reads."""
    targets = {}
    for key, name in (("target", "t.png"), ("target_gif", "t.gif"), ("target_nca", "t.nca")):
        targets[key] = tmp_path / name
        os.mkfifo(targets[key]) if kind == "fifo" else targets[key].symlink_to("/dev/null")
    code, err = cli(*[a.format(**world, **targets) for a in WRITERS[writer]])
    one_error(code, err, "FIFO" if kind == "fifo" else "character device", "outputs replace only regular files")
    assert all(p.is_fifo() if kind == "fifo" else p.is_symlink() for p in targets.values())
    assert Path("/dev/null").is_char_device()


def test_reads_are_bounded_by_the_limit_not_the_reported_size(tmp_path):
    from ncaedit.paths import read_limited

    big = tmp_path / "big.nca"
    big.write_bytes(b"x" * 1001)
    with pytest.raises(NcaError, match="far too large"):
        read_limited(big, 1000)
    assert read_limited(big, 1001) == b"x" * 1001


# --- 3. unbounded work: every numeric option --------------------------------------------------------


def _numeric_options():
    for command in app.registered_commands:
        fn = inspect.unwrap(command.callback)
        name = command.name or fn.__name__
        for option, hint in typing.get_type_hints(fn).items():  # the declared types, through the shared Annotated aliases
            kinds = set(typing.get_args(hint) or (hint,)) - {type(None)}
            if kinds in ({int}, {float}):
                yield name, option, kinds == {float}


NUMERIC = list(_numeric_options())


def test_every_numeric_option_of_every_command_has_a_bound():
    """The class, not the instances: a numeric option added later without a bound fails here."""
    assert len(NUMERIC) > 25
    assert [f"{c} --{o}" for c, o, _ in NUMERIC if o not in limits.BOUNDS] == []
    for command in {c for c, _, _ in NUMERIC}:
        callback = next(r.callback for r in app.registered_commands if (r.name or r.callback.__name__) == command)
        assert hasattr(callback, "__wrapped__"), f"{command}: not decorated with limits.checked"


def _bad_values(name: str, is_float: bool) -> list[str]:
    b = limits.BOUNDS[name]
    values = [str(b.high * 10 + 1 if b.high < 2**62 else 2**64), str(b.low - 1 if b.integer else b.low - 0.5 * max(1, abs(b.low)) - 1e-9)]
    if b.above_low:
        values.append(str(b.low))
    if is_float:
        values += ["nan", "inf", "-inf", "1e308"]
    return values


BASE_ARGS = {
    "style": ["style", "{photo}", "--style", "{style}", "--preset", "{preset}", "-o", "{out}/s.png"],
    "apply": ["apply", "{rule}", "{photo}", "-o", "{out}/a.png"],
    "animate": ["animate", "{rule}", "{photo}", "-o", "{out}/a.gif"],
    "prompt": ["prompt", "{photo}", "red", "-o", "{out}/p.png"],
}


@pytest.mark.parametrize("command,option,is_float", NUMERIC, ids=[f"{c}--{o}" for c, o, _ in NUMERIC])
def test_every_numeric_option_rejects_nan_inf_and_out_of_range(command, option, is_float, world, tmp_path):
    flag = "--" + option.replace("_", "-")
    for value in _bad_values(option, is_float):
        args = [a.format(**world, out=tmp_path) for a in BASE_ARGS[command]] + [flag, value]
        code, err = cli(*args)
        one_error(code, err, flag)
    assert files_under(tmp_path) == set()


def test_the_issues_examples_of_unbounded_work(world, tmp_path):
    big = write_rgb(tmp_path / "big.png", smooth_photo(256, 192))
    for args, pattern in [
        (["apply", world["rule"], world["photo"], "--steps", "100000000000000000000"], "--steps must be a whole number from 1 to 100,000"),
        (["animate", world["rule"], world["photo"], "--steps", "100000000000000000000"], "--steps"),
        (["animate", world["rule"], world["photo"], "--every", "0"], "--every"),
        (["animate", world["rule"], world["photo"], "--fps", "1e-300"], "--fps"),
        (["animate", world["rule"], world["photo"], "--size", "1"], "--size"),
        (["animate", world["rule"], world["photo"], "--size", "9"], "under 8 pixels a side"),
        (["apply", world["rule"], world["photo"], "--feather", "nan"], "--feather"),
        (["animate", world["rule"], big, "--steps", "100000", "--size", "0"], "take a larger --every"),
    ]:
        one_error(*cli(*args, "-o", tmp_path / "o.gif" if args[0] == "animate" else tmp_path / "o.png"), pattern)


def test_preset_values_follow_the_same_bounds(world, tmp_path):
    preset = tmp_path / "huge.toml"
    preset.write_text("[train]\niterations = 100000000000000\n")
    one_error(*cli("style", world["photo"], "--style", world["style"], "--preset", preset), "train.iterations must be a whole number")


def test_video_frames_follow_the_rules_of_photos(world, tmp_path):
    from fractions import Fraction

    from ncaedit.video import write_video

    tiny = tmp_path / "tiny.mp4"
    write_video(tiny, [np.zeros((4, 4, 3), np.uint8)] * 3, Fraction(5))
    one_error(*cli("apply", world["rule"], tiny, "-o", tmp_path / "t-out.mp4"), "too small")
    clip = tmp_path / "clip.mp4"
    write_video(clip, [np.zeros((32, 48, 3), np.uint8)] * 3, Fraction(5))
    one_error(*cli("apply", world["rule"], clip, "-o", tmp_path / "c-out.mp4", "--max-pixels", "1000"), "1,000-pixel limit")


# --- 4. the output folder ---------------------------------------------------------------------------


@pytest.fixture
def batch(tmp_path, world):
    (tmp_path / "in").mkdir()
    for name in ("a", "b"):
        write_rgb(tmp_path / "in" / f"{name}.png", smooth_photo(16, 16, seed=ord(name)))
    return tmp_path


def test_out_that_is_the_input_folder_through_a_symlink_is_refused(batch, world):
    (batch / "link").symlink_to("in")
    before = files_under(batch)
    one_error(*cli("apply", world["rule"], "in", "--out", "link", cwd=batch), "also --out", "following links")
    one_error(*cli("apply", world["rule"], "in/a.png", "in/b.png", "--out", "link", cwd=batch), "its own folder")
    one_error(*cli("apply", world["rule"], "*.png", "--out", ".", cwd=batch / "in"), "its own folder")
    assert files_under(batch) == before


def test_out_inside_a_recursive_input_folder_is_never_read_back(batch, world):
    for _ in range(2):
        code, err = cli("apply", world["rule"], "in", "-r", "--out", "in/edited", cwd=batch)
        assert code == 0, err
    assert files_under(batch / "in") == {"a.png", "b.png", "edited", "edited/a.png", "edited/b.png"}
    assert "0 done, 2 skipped" in err


def test_a_link_and_its_target_are_edited_once_and_said_so(batch, world):
    (batch / "in" / "c.png").symlink_to("a.png")
    code, err = cli("apply", world["rule"], "in", "--out", "out", cwd=batch)
    assert code == 0, err
    assert "the same file as in/a.png" in err and "2 done, 1 skipped" in err
    assert files_under(batch / "out") == {"a.png", "b.png"}


def test_batch_problems_found_up_front_exit_2_before_any_folder_is_made(batch, world):
    bad_mask = batch / "mask.png"
    bad_mask.write_text("not an image")
    one_error(*cli("apply", world["rule"], "in", "--out", "out", "--mask", bad_mask, cwd=batch), "--mask", "not a readable image")
    assert not (batch / "out").exists()
    if os.geteuid() == 0:
        readonly = Path("/proc/ncaedit-out")  # root ignores permission bits; /proc takes no new files
    else:
        readonly = batch / "ro" / "out"
        (batch / "ro").mkdir(mode=0o555)
    one_error(*cli("apply", world["rule"], "in", "--out", readonly, cwd=batch), "not writable")
    assert not readonly.exists()


# --- 5. leftovers and losses ------------------------------------------------------------------------

WRITER = """
import sys, time
from pathlib import Path
from ncaedit.paths import atomic_output
with atomic_output(Path(sys.argv[1])) as tmp:
    tmp.write_bytes(b"half an image")
    print("writing", flush=True)
    time.sleep(60)
"""


def test_a_temporary_left_by_kill_9_is_removed_by_the_next_run(batch, world):
    out = batch / "out"
    out.mkdir()
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(out / "a.png")], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline() == "writing\n"
        alive = list(out.glob(".a.png.*.part"))
        assert len(alive) == 1
        code, _ = cli("apply", world["rule"], "in", "--out", out, cwd=batch)  # the writer still runs: its file is kept
        assert alive[0].exists()
        writer.kill()  # kill -9 during the write
        writer.wait(10)
    finally:
        writer.kill()
    assert alive[0].exists()  # what kill -9 leaves behind
    code, err = cli("apply", world["rule"], "in", "--out", out, "--overwrite", cwd=batch)
    assert code == 0, err
    assert files_under(out) == {"a.png", "b.png"}


def test_a_rule_that_cannot_be_written_is_kept_and_its_place_named(world, tmp_path, monkeypatch):
    import tempfile

    from ncaedit import nca_format as rulefile

    rescue = tmp_path / "tmp"
    rescue.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(rescue))
    real_write = rulefile.write_atomic

    def full_disk(path, data):
        if Path(path).parent != rescue:
            raise NcaError(f"{path}: cannot write (No space left on device)")
        return real_write(path, data)

    monkeypatch.setattr(rulefile, "write_atomic", full_disk)
    out = tmp_path / "out"
    out.mkdir()
    code, err = cli("style", world["photo"], "--style", world["style"], "--preset", world["preset"], "--iterations", "2", "--crop", "16",
                    "--out", out / "e.png", "--loss-net", "random")
    line = one_error(code, err.splitlines()[-1] + "\n", "No space left on device", "saved to")
    saved = Path(line.split("saved to ")[1].split(" instead")[0])
    assert saved.parent == rescue and load_rule(saved).rule is not None


def test_an_unreadable_subfolder_is_a_failure_not_a_silence(batch, world, monkeypatch):
    (batch / "in" / "locked").mkdir()
    write_rgb(batch / "in" / "locked" / "c.png", smooth_photo(16, 16))
    real_scandir = os.scandir

    def scandir(path="."):  # as root, permissions cannot lock a folder: refuse it here instead
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    code, err = cli("apply", world["rule"], "in", "-r", "--out", "out", cwd=batch)
    assert code == 1, err
    assert "2 done, 0 skipped, 1 failed" in err and "in/locked: cannot list this folder (Permission denied)" in err


# --- 6. messages ------------------------------------------------------------------------------------


def test_names_with_terminal_escapes_are_printed_escaped(world, tmp_path):
    evil = tmp_path / "a\x1b[31mred\nline.png"
    evil.write_bytes(world["photo"].read_bytes())
    code, err = cli("apply", world["rule"], evil)
    assert code == 0 and "\x1b" not in err and "\\x1b[31mred\\nline" in err and err.count("\n") == 1
    code, err = cli("apply", world["rule"], tmp_path / "gone\x1b]0;title\x07.png")
    one_error(code, err, "\\x1b]0;title\\x07", "no such file")


def test_lone_special_input_and_out_dot_say_the_real_reason(world, tmp_path):
    one_error(*cli("apply", world["rule"], world["fifo"]), "FIFO")
    (tmp_path / "in").mkdir()
    write_rgb(tmp_path / "in" / "a.png", smooth_photo(16, 16))
    one_error(*cli("apply", world["rule"], "in/a.png", "--out", "in", cwd=tmp_path), "its own folder")
    code, err = cli("apply", world["rule"], "in", "--out", ".", cwd=tmp_path)  # the folder's parent is fine
    assert code == 0 and (tmp_path / "a.png").exists(), err


# --- 7. the Python API: the same checks as the command line ------------------------------------------


def test_the_api_refuses_special_files_and_altered_rules(world, tmp_path):
    import ncaedit

    _, meta, _ = _metadata_of(world["rule"].read_bytes())
    meta["default_steps"] = math.inf
    altered = tmp_path / "altered.nca"
    altered.write_bytes(replaced_metadata(world["rule"].read_bytes(), meta))
    rule = ncaedit.Rule.load(world["rule"])
    photo = smooth_photo(16, 16)
    attempts = [
        (lambda: ncaedit.Rule.load(world["fifo"]), "FIFO"),
        (lambda: ncaedit.Rule.load(world["zero"]), "character device"),
        (lambda: ncaedit.Rule.load(altered), "default_steps"),
        (lambda: rule.apply(world["fifo"]), "FIFO"),
        (lambda: rule.apply(photo, mask=world["zero"]), "character device"),
        (lambda: ncaedit.apply_files(rule, [world["fifo"]], tmp_path / "o.png"), "FIFO"),
        (lambda: ncaedit.apply_files(rule, [world["photo"]], tmp_path / "o.png", mask=world["fifo"]), "FIFO"),
        (lambda: ncaedit.apply_files(world["unstable"], [world["photo"]], tmp_path / "o.png"), "infinite or NaN"),
    ]
    for attempt, pattern in attempts:
        with alarm("the API call"), pytest.raises(NcaError, match=pattern):
            result = attempt()
            if isinstance(result, ncaedit.api.BatchSummary):  # a file that fails in a batch is an outcome
                raise NcaError(result.failed[0].message)
    assert not (tmp_path / "o.png").exists()


def test_the_api_checks_numbers_against_the_same_table(world, tmp_path):
    """Library parameters follow limits.BOUNDS too; the error names the parameter (NcaError.param),
    where the command line names the flag."""
    import ncaedit

    rule, photo = ncaedit.Rule.load(world["rule"]), smooth_photo(16, 16)
    attempts = [
        (lambda: rule.apply(photo, steps=10**20), "steps"),
        (lambda: rule.apply(photo, strength=math.nan), "strength"),
        (lambda: rule.apply(photo, tile=4), "tile"),
        (lambda: ncaedit.apply_files(rule, [world["photo"]], tmp_path / "o.png", feather=-1), "feather"),
        (lambda: ncaedit.apply_files(rule, [world["photo"]], tmp_path / "o.png", max_pixels=0), "max_pixels"),
        (lambda: ncaedit.train_style(photo, photo, style_scale=math.inf), "style_scale"),
        (lambda: ncaedit.train_style(photo, photo, iterations=0), "iterations"),
        (lambda: ncaedit.train_style(photo, photo, crop_share=0.0), "crop_share"),
        (lambda: ncaedit.train_prompt(photo, "red", aesthetic=11.0), "aesthetic"),
    ]
    for attempt, param in attempts:
        with pytest.raises(NcaError) as caught:
            attempt()
        assert caught.value.param == param and str(caught.value).startswith(f"{param} must be "), caught.value
    assert not (tmp_path / "o.png").exists()
