"""The Python API (ncaedit.train_style, Rule, apply_files): the README's example, the kinds of image
`Rule.apply` takes and gives back, and that it matches the command line."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import ncaedit
from ncaedit.cli import main
from ncaedit.rule import Rule as Network, RuleConfig

from helpers import smooth_photo, stripes, write_rgb

ROOT = Path(__file__).resolve().parents[1]


def _random_rule() -> ncaedit.Rule:
    torch.manual_seed(0)
    net = Network(RuleConfig(hidden_channels=4, width=16))
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.3)
    return ncaedit.Rule(net, {"mode": "test", "default_steps": 6}, name="random")


def test_readme_example_runs_as_written(tmp_path, monkeypatch, capsys):
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Python API") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    shutil.copytree(ROOT / "sample_images", tmp_path / "sample_images")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
    printed = capsys.readouterr().out
    assert "20/20 loss" in printed or "stops" in printed
    assert "2 done, 0 skipped, 0 failed" in printed
    assert ncaedit.Rule.load("chelsea-strokes.nca").metadata["mode"] == "style"
    assert Image.open("chelsea-edited.png").size == Image.open("sample_images/chelsea.jpg").size
    assert sorted(p.name for p in Path("styled").iterdir()) == ["coffee.png", "rocket.png"]


def test_import_sets_thread_policy_and_loads_no_torch():
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    code = "import os, sys, ncaedit; ncaedit.__version__; import ncaedit.cli; print(os.environ['OMP_WAIT_POLICY'], 'torch' in sys.modules)"
    probe = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert probe.stdout.split() == ["PASSIVE", "False"], probe.stderr


def test_apply_equals_the_command_line(tmp_path):
    rule = _random_rule()
    rule.save(tmp_path / "r.nca")
    photo = write_rgb(tmp_path / "p.png", smooth_photo(40, 56))
    mask = write_rgb(tmp_path / "m.png", stripes(40, 56))
    with pytest.raises(SystemExit) as done:
        main_args = ["apply", str(tmp_path / "r.nca"), photo, "-o", str(tmp_path / "cli.png"), "--strength", "0.7", "--mask", mask, "--tile", "16"]
        sys.argv = ["ncaedit", *main_args]
        main()
    assert done.value.code == 0
    expected = np.asarray(Image.open(tmp_path / "cli.png"))
    loaded = ncaedit.Rule.load(tmp_path / "r.nca")
    got = loaded.apply(np.asarray(Image.open(photo)), strength=0.7, mask=mask)
    assert got.dtype == np.uint8 and np.array_equal(got, expected)
    assert np.array_equal(loaded.apply(np.asarray(Image.open(photo)), strength=0.7, mask=Image.open(mask)), expected)


def test_apply_gives_back_the_kind_it_was_given():
    rule = _random_rule()
    rgb = smooth_photo(24, 32)
    as_float = rule.apply(rgb, steps=4)
    assert as_float.dtype == np.float32 and as_float.shape == (24, 32, 3) and not np.allclose(as_float, rgb, atol=1e-3)
    as_u16 = rule.apply((rgb * 65535).round().astype(np.uint16), steps=4)
    assert as_u16.dtype == np.uint16 and np.abs(as_u16 / 65535 - as_float).max() < 1e-3
    rgba = np.concatenate([(rgb * 255).round().astype(np.uint8), np.full((24, 32, 1), 200, np.uint8)], axis=2)
    pil = rule.apply(Image.fromarray(rgba), steps=4)
    assert pil.mode == "RGBA" and np.array_equal(np.asarray(pil)[..., 3], rgba[..., 3])
    chw = torch.from_numpy(rgb).permute(2, 0, 1)
    out = rule.apply(chw, steps=4)
    assert isinstance(out, torch.Tensor) and out.shape == chw.shape and out.dtype == torch.float32
    assert torch.allclose(out, torch.from_numpy(as_float).permute(2, 0, 1))
    batch = rule.apply(torch.stack([chw, chw.flip(2)]), steps=4)
    assert batch.shape == (2, 3, 24, 32) and torch.equal(batch[0], out)
    with pytest.raises(ncaedit.NcaError, match="steps"):
        rule.apply(rgb, steps=0)


def test_train_style_stops_when_asked_and_never_prints(tmp_path, tiny_preset, capfd):
    seen = []

    def callback(update):
        seen.append(update)
        return isinstance(update, ncaedit.Iteration) and update.iteration == 2

    rule = ncaedit.train_style(smooth_photo(48, 64), stripes(48, 48), preset=tiny_preset, seed=3, loss_net="auto", callback=callback, iterations=6)
    iterations = [u for u in seen if isinstance(u, ncaedit.Iteration)]
    assert [u.iteration for u in iterations] == [1, 2] and iterations[0].total == 6 and "total" in iterations[0].losses
    assert any(isinstance(u, ncaedit.Event) and u.kind == "warning" and "VGG19" in u.message for u in seen)  # offline fallback, as data
    assert rule.metadata["iterations_done"] == 2 and rule.metadata["interrupted"] and rule.metadata["recipe"]["train"]["seed"] == 3
    assert capfd.readouterr() == ("", "")
    assert rule.apply(smooth_photo(16, 16)).shape == (16, 16, 3)
    with pytest.raises(ncaedit.NcaError, match="unknown option 'iteratoins'"):
        ncaedit.train_style(smooth_photo(48, 64), stripes(48, 48), preset=tiny_preset, iteratoins=3)


@pytest.mark.parametrize("wait_policy, expected", [("PASSIVE", 1), ("ACTIVE", 2)])
def test_style_training_runs_one_thread_per_op_unless_threads_spin(tiny_preset, monkeypatch, wait_policy, expected):
    """Style training's ops are small: one thread each on the CPU (ModeSetup.threads), unless threads
    spin between ops; torch's own setting is back afterwards."""
    monkeypatch.setenv("OMP_WAIT_POLICY", wait_policy)
    saved = torch.get_num_threads()
    torch.set_num_threads(2)
    seen = []
    try:
        ncaedit.train_style(smooth_photo(48, 64), stripes(48, 48), preset=tiny_preset, loss_net="random", device="cpu", iterations=2,
                            callback=lambda update: seen.append(torch.get_num_threads()) if isinstance(update, ncaedit.Iteration) else None)
        assert seen == [expected, expected] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(saved)


def test_apply_files_reports_done_skipped_failed(tmp_path):
    rule = _random_rule()
    folder = tmp_path / "in"
    folder.mkdir()
    write_rgb(folder / "a.png", smooth_photo(20, 24))
    write_rgb(folder / "b.png", smooth_photo(24, 20, seed=1))
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    summary = ncaedit.apply_files(rule, [folder], tmp_path / "out", steps=3)
    assert sorted(o.item.out.name for o in summary.done) == ["a.png", "b.png"]
    assert [(o.item.source.name, "not a readable image" in o.detail) for o in summary.failed] == [("broken.jpg", True)]
    again = ncaedit.apply_files(rule, [folder], tmp_path / "out", steps=3)
    assert len(again.skipped) == 2 and not again.done and "exists" in again.skipped[0].detail


def test_a_batch_of_photos_does_not_import_opencv(tmp_path):
    """OpenCV (about 0.2 s to import) is for videos; finding out whether it is installed must not load it."""
    _random_rule().save(tmp_path / "r.nca")
    write_rgb(tmp_path / "a.png", smooth_photo(16, 16))
    code = "import sys, ncaedit; ncaedit.apply_files(sys.argv[1], [sys.argv[2]], sys.argv[3], steps=2); print('cv2' in sys.modules)"
    probe = subprocess.run([sys.executable, "-c", code, str(tmp_path / "r.nca"), str(tmp_path / "a.png"), str(tmp_path / "out")], capture_output=True, text=True)
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == "False" and (tmp_path / "out" / "a.png").exists()


def test_library_messages_name_parameters_and_the_command_line_its_flags(tmp_path):
    rule = _random_rule()
    with pytest.raises(ncaedit.NcaError) as exc:
        rule.apply(smooth_photo(16, 16), strength=2)
    assert str(exc.value).startswith("strength must be") and exc.value.param == "strength"
    rule.save(tmp_path / "r.nca")
    photo = write_rgb(tmp_path / "p.png", smooth_photo(16, 16))
    r = subprocess.run([sys.executable, "-m", "ncaedit", "apply", str(tmp_path / "r.nca"), photo, "--strength", "2"], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.strip() == "error: --strength must be a number from 0 to 1, got 2.0"


def test_training_workers_split_a_cpu_batch_of_large_enough_crops():
    from ncaedit.device import tile_workers, training_workers

    assert training_workers("cuda", 4, 128) == 1
    assert training_workers("cpu", 2, 32) == 1  # parts this small train slower side by side
    assert training_workers("cpu", 2, 80) == min(2, tile_workers("cpu"))
    assert training_workers("cpu", 1, 128) == 1
