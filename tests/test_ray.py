"""`apply --ray` and `ncaedit.apply_on_ray` on a real Ray (started once for this module: 2 CPUs, a
small object store): the same outputs as local apply, resume, a worker killed mid-run, and an
object-store destination. The object store is played by an fsspec-backed pyarrow PyFileSystem rooted
in a temporary folder (SubTreeFileSystem): paths without a leading slash, no rename but `move`, and
folders that need not exist, as on S3; it goes through the same code as s3://, gs:// and abfs://."""

import logging
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ncaedit.api import apply_files
from ncaedit.image import load_image
from ncaedit.png16 import write_png16
from ncaedit.ray_apply import KILL_ONCE_ENV, VIDEO_SKIPPED, apply_on_ray
from ncaedit.cli.on_ray import bare_ray
from ncaedit.rule import Rule, RuleConfig
from ncaedit.nca_format import save_rule

from helpers import smooth_photo, write_rgb

ray = pytest.importorskip("ray", reason='the ray extra is not installed (pip install -e ".[dev]")')
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data")  # Ray Data's own settings, on import


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """One local Ray for the module. Its workers inherit KILL_ONCE_ENV, pointing at a file that exists:
    a test deletes it to have the next worker that writes an output kill itself."""
    marker = tmp_path_factory.mktemp("fault") / "killed"
    marker.touch()
    saved = os.environ.get(KILL_ONCE_ENV)
    os.environ[KILL_ONCE_ENV] = str(marker)
    ray.init(num_cpus=2, object_store_memory=128 << 20, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    yield marker
    ray.shutdown()
    if saved is None:
        del os.environ[KILL_ONCE_ENV]
    else:
        os.environ[KILL_ONCE_ENV] = saved


@pytest.fixture(scope="module")
def rule_file(tmp_path_factory):
    torch.manual_seed(0)
    rule = Rule(RuleConfig(hidden_channels=4, width=16))
    torch.nn.init.normal_(rule.w2.weight, std=0.1)
    return save_rule(rule, tmp_path_factory.mktemp("rule") / "busy.nca", {"default_steps": 4})


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """20 photos in three folders (JPEG, PNG, a 16-bit PNG, one with alpha, one clash of names), one
    corrupt file."""
    src = tmp_path_factory.mktemp("library") / "photos"
    for i in range(17):
        folder = src / ("", "2024", "2024/summer")[i % 3]
        folder.mkdir(parents=True, exist_ok=True)
        write_rgb(folder / f"p{i:02d}.{'jpg' if i % 2 else 'png'}", smooth_photo(24 + i, 40 - i, seed=i))
    write_rgb(src / "p00.jpg", smooth_photo(30, 30, seed=30))  # p00.png and p00.jpg: both keep their own suffix
    deep = (smooth_photo(28, 36, seed=40) * 65535).astype(np.uint16)
    (src / "2024" / "deep.png").write_bytes(write_png16(deep))
    rgba = np.dstack([smooth_photo(32, 32, seed=41), np.linspace(0, 1, 32 * 32).reshape(32, 32)])
    Image.fromarray((rgba * 255).astype(np.uint8), "RGBA").save(src / "alpha.png")
    (src / "broken.png").write_bytes((src / "alpha.png").read_bytes()[:80])
    return src


@pytest.fixture(scope="module")
def local_outputs(tmp_path_factory, rule_file, library):
    out = tmp_path_factory.mktemp("local") / "out"
    summary = apply_files(rule_file, [library], out, recursive=True, device="cpu")
    assert (len(summary.done), len(summary.failed)) == (20, 1)
    return out


def outputs(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))


def assert_same_images(expected: Path, got: Path) -> None:
    assert outputs(got) == outputs(expected)
    for name in outputs(expected):
        a, b = load_image(expected / name, keep_samples=True), load_image(got / name, keep_samples=True)
        assert (a.bit_depth, a.rgb.dtype, a.alpha is None) == (b.bit_depth, b.rgb.dtype, b.alpha is None), name
        assert np.abs(a.as_float().rgb - b.as_float().rgb).max() <= 1 / 255 + 1e-6, name
        if a.alpha is not None:
            assert np.array_equal(a.alpha, b.alpha), name


def test_same_outputs_as_local_apply_then_resume_and_overwrite(cluster, tmp_path, rule_file, library, local_outputs, capsys, monkeypatch):
    out = tmp_path / "out"
    summary = apply_on_ray(rule_file, [library], out, recursive=True, device="cpu")
    assert (len(summary.done), len(summary.skipped), len(summary.failed)) == (20, 0, 1)
    assert summary.failed[0].item.source == library / "broken.png" and "not a readable image" in summary.failed[0].detail
    assert_same_images(local_outputs, out)
    assert {"p00.png", "p00.jpg", "2024/deep.png", "2024/summer/p02.png"} <= set(outputs(out))

    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    seen = []  # keep_outcomes=False: only the failures stay in the summary (flat memory); the rest go by
    summary = apply_on_ray(rule_file, [library], out, recursive=True, device="cpu", keep_outcomes=False, on_outcome=seen.append)
    assert (len(summary.done), len(summary.skipped), len(summary.failed)) == (0, 0, 1)
    assert sorted(o.status for o in seen) == ["failed"] + ["skipped"] * 20
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == stamps  # nothing rewritten

    from ncaedit.cli import main  # --overwrite, through the command line: exit 1 for the corrupt file

    monkeypatch.setattr(sys, "argv", ["ncaedit", "apply", str(rule_file), str(library), "-r", "--out", str(out), "--ray", "--overwrite", "--device", "cpu"])
    with pytest.raises(SystemExit) as exit:
        main()
    said = " ".join(capsys.readouterr().err.split())
    assert exit.value.code == 1 and "20 done, 0 skipped, 1 failed" in said and f"failed {library / 'broken.png'}: not a readable image" in said
    assert all(p.stat().st_mtime_ns > stamps[p] for p in out.rglob("*") if p.is_file() and not p.name.startswith("."))
    assert_same_images(local_outputs, out)


def test_a_killed_worker_costs_a_retry_not_an_output(cluster, tmp_path, rule_file, library, local_outputs):
    cluster.unlink()  # the next worker to write an output dies between writing it and renaming it
    out = tmp_path / "out"
    summary = apply_on_ray(rule_file, [library], out, recursive=True, device="cpu")
    assert cluster.exists()  # a worker did die
    assert (len(summary.done), len(summary.skipped), len(summary.failed)) == (20, 0, 1)
    assert len({o.item.source for o in summary.outcomes}) == 21  # each photo reported once
    assert_same_images(local_outputs, out)


def test_object_store_in_and_out(cluster, tmp_path, rule_file, library, local_outputs):
    import fsspec
    from pyarrow.fs import FSSpecHandler, PyFileSystem, SubTreeFileSystem

    bucket = tmp_path / "bucket"
    shutil.copytree(library, bucket / "photos")
    (bucket / "photos" / "clip.mp4").write_bytes(b"not read: videos stay local")
    store = SubTreeFileSystem(str(bucket), PyFileSystem(FSSpecHandler(fsspec.filesystem("file", auto_mkdir=True))))
    summary = apply_on_ray(rule_file, ["photos"], "styled", filesystem=store, recursive=True, device="cpu")
    assert (len(summary.done), len(summary.failed)) == (20, 1)
    assert [o.detail for o in summary.skipped] == [VIDEO_SKIPPED]
    assert "photos/broken.png: not a readable image" in summary.failed[0].detail  # the store's name, not a scratch copy
    assert_same_images(local_outputs, bucket / "styled")


def test_listing_names_outputs_as_local_apply_does(tmp_path, library):
    """The listing stage runs in Ray tasks, one folder at a time; here it runs in this process."""
    from ncaedit.batch import plan_batch
    from ncaedit.ray_apply import plan_listing

    out = tmp_path / "out"
    listing = plan_listing([str(library)], out, None, True, "png", False)
    rows = [row for block in listing.rows(0) for row in zip(*block.values())]
    local = plan_batch([str(library)], out, "rule", "png", True, [])
    assert sorted((src, dst) for src, dst, _, _ in rows) == sorted((str(i.source), str(i.out)) for i in local)
    assert {"p00-png.png", "p00-jpg.png"} <= {Path(dst).name for _, dst, _, _ in rows}  # --format png makes them meet
    assert {status for *_, status, _ in rows} == {"todo"}

    twice = plan_listing([str(library / "2024" / "deep.png"), str(library), str(library / "2024"), str(library)], out, None, True, None, False)
    assert twice.inputs == ((str(library), "folder"),)  # inputs named twice are listed once

    copy = tmp_path / "copy"  # --out inside the input folder: earlier outputs are never inputs
    shutil.copytree(library, copy)
    (copy / "styled").mkdir()
    write_rgb(copy / "styled" / "p00.png", smooth_photo(16, 16))
    listing = plan_listing([str(copy)], copy / "styled", None, True, None, False)
    sources = [src for block in listing.rows(0) for src in block["source"]]
    assert len(sources) == 21 and not any("styled" in src for src in sources)


def test_ray_option_parsing_and_a_missing_extra(tmp_path, rule_file, library, capsys, monkeypatch):
    assert bare_ray(["apply", "r.nca", "--ray", "in/", "-o", "x"]) == ["apply", "r.nca", "--ray", "local", "in/", "-o", "x"]
    assert bare_ray(["apply", "r.nca", "in/", "--ray"])[-1] == "local"
    assert bare_ray(["apply", "--ray", "auto", "in/"]) == ["apply", "--ray", "auto", "in/"]
    assert bare_ray(["apply", "--ray", "ray://head:10001"]) == ["apply", "--ray", "ray://head:10001"]

    from ncaedit.cli import main

    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed
    monkeypatch.setattr(sys, "argv", ["ncaedit", "apply", str(rule_file), str(library), "--out", str(tmp_path / "o"), "--ray"])
    with pytest.raises(SystemExit) as exit:
        main()
    assert exit.value.code == 2
    assert capsys.readouterr().err.strip() == 'error: Ray is not installed; install it with: pip install "ncaedit[ray]"'
    assert not (tmp_path / "o").exists()
