"""benchmarks/run.py runs and writes its table (its reference is ncaedit/reference.py, tested in test_inference.py)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_script_prints_a_table_and_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    r = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--only", "cli", "--json", str(out)], capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stderr
    assert "| start-up | `ncaedit --help` wall time |" in r.stdout
    rows = {row["what"]: row["value"] for row in json.loads(out.read_text())["rows"]}
    assert rows["importing the CLI imports torch"] == "False"
    assert 0 < rows["`ncaedit --help` wall time"] < 10


@pytest.mark.parametrize("presets", ["fast,nope", " , "])
def test_unknown_or_no_style_preset_is_a_usage_error(presets):
    r = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--only", "style", "--style-presets", presets], capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 2
    assert "unknown or no presets in --style-presets" in r.stderr and "balanced" in r.stderr


def test_quality_optima_only_places_a_changed_loss_against_the_presets_optimum(tmp_path):
    """--optima-only trains no rule; its yardstick is the preset's own optimum, shared through the cache."""
    cmd = [sys.executable, str(ROOT / "benchmarks" / "quality.py"), "--optima-only", "--pairs", "0", "--optimum-steps", "2", "--out", str(tmp_path), "--cache", str(tmp_path / "cache")]
    r = subprocess.run([*cmd, "--set", "loss.content_weight=1.0"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    changed = json.loads((tmp_path / "optima.json").read_text())
    assert changed["overrides"] == {"loss": {"content_weight": 1.0}}
    assert len(list((tmp_path / "cache").glob("optimum-*.npy"))) == 3  # yardstick, and the changed loss with and without TV
    assert "medians, texture x the preset's optimum" in r.stdout
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    same = json.loads((tmp_path / "optima.json").read_text())
    assert len(list((tmp_path / "cache").glob("optimum-*.npy"))) == 4  # the preset's loss reused its yardstick; only its TV optimum was new
    pair = same["pairs"][0]
    assert pair["optimum"] == pair["yardstick"] == changed["pairs"][0]["yardstick"]
    assert same["medians"]["optimum"]["texture_over_yardstick"] == 1.0
    assert pair["objective_optimum"] != pair["optimum"]
    r = subprocess.run([*cmd, "--set", "train.train_size=128"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "leave train.train_size" in r.stderr  # a yardstick at another size would not compare


def load_judges():
    import importlib.util

    spec = importlib.util.spec_from_file_location("judges", ROOT / "benchmarks" / "judges.py")
    judges = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(judges)
    return judges


def test_texture_judge_splits_by_scale():
    """The texture judge's parts sum to it, and a one-pixel checkerboard shows at the finest level only."""
    import numpy as np

    judges = load_judges()
    y, x = np.mgrid[0:64, 0:96] / 64.0
    smooth = np.stack([0.5 + 0.3 * np.sin(3 * x), 0.5 + 0.3 * np.cos(2 * y), 0.4 + 0.2 * x * y], -1).astype(np.float32)
    checker = ((np.indices((64, 96)).sum(0) % 2) * 2 - 1)[..., None] * 0.1
    noisy = (smooth + checker).astype(np.float32)  # stays inside [0, 1]
    parts = judges.texture_parts(noisy, smooth)
    assert sum(parts.values()) == pytest.approx(judges.texture_distance(noisy, smooth))
    assert set(parts) == {f"{k}{s}" for s in range(3) for k in ("orientation", "energy", "lbp")} | {"lbp3"}
    assert min(parts["orientation0"], parts["energy0"], parts["lbp0"]) > 0.05
    assert max(v for k, v in parts.items() if not k.endswith("0")) < 0.01  # 2x2 means cancel the checkerboard


def test_ssim_by_detail_says_where_layout_is_lost():
    """SSIM split over the photo's flat, middle and busy thirds averages to the whole SSIM, and grain
    over the photo's flat half costs SSIM there, not where the photo is busy."""
    import numpy as np

    judges = load_judges()
    rng = np.random.default_rng(0)
    photo = np.full((64, 96, 3), 0.5, np.float32)
    photo[:, 48:] += 0.2 * rng.standard_normal((64, 48, 3)).astype(np.float32)  # right half busy
    photo = photo.clip(0, 1)
    grainy = photo.copy()
    grainy[:, :48] += 0.05 * rng.standard_normal((64, 48, 3)).astype(np.float32)  # grain on the flat half
    d = judges.by_detail(photo, grainy)
    assert np.mean(d["ssim"]) == pytest.approx(judges.ssim(photo, grainy), abs=0.01)
    assert d["ssim"][0] < 0.6 and d["ssim"][2] > 0.9
    assert d["spread"][0] > 0.02 and judges.by_detail(photo, photo)["spread"][0] < 0.01


def test_quality_pool_averages_each_pair_over_runs_before_the_medians(tmp_path):
    """--pool trains nothing: each pair's numbers are averaged over the runs, then the medians taken."""

    def judged(colour, texture, ssim):
        return {"colour": colour, "texture": texture, "ssim": ssim}

    def run(name, rule_texture, unseen_colour):
        pair = {
            "photo": "a.jpg", "style": "s.png", "optimum": judged(0.1, 0.2, 0.3), "objective_optimum": judged(0.1, 0.3, 0.4),
            "rule": judged(0.2, rule_texture, 0.4), "unseen": {"b.jpg": judged(unseen_colour, 0.4, 0.5), "c.jpg": judged(0.2, 0.4, 0.3)},
        }
        (tmp_path / name).mkdir()
        (tmp_path / name / "quality.json").write_text(json.dumps({"overrides": {}, "pairs": [pair], "summary": {}}))
        return tmp_path / name

    runs = [run("seed0", 0.24, 0.2), run("seed1", 0.28, 0.4)]
    cmd = [sys.executable, str(ROOT / "benchmarks" / "quality.py"), "--out", str(tmp_path / "out"), "--pool"]
    r = subprocess.run([*cmd, *map(str, runs)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    s = json.loads((tmp_path / "out" / "pooled.json").read_text())["summary"]
    assert s["rule_texture_over_optimum"] == pytest.approx(1.3)  # (0.24 + 0.28) / 2 over 0.2
    assert s["unseen_over_rule"]["colour"] == pytest.approx(1.25)  # unseen colours 0.3 and 0.2 over the rule's 0.2
    assert s["targets"]["train_texture_within_25pct_of_optimum"] is False and s["targets"]["train_ssim_ge_0.35"] is True
    assert "pooled over 2 runs" in r.stdout
    r = subprocess.run([*cmd, str(runs[0]), str(tmp_path / "nothing")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "no quality.json in" in r.stderr
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "quality.json").write_text(json.dumps({"pairs": [{"photo": "a.jpg", "style": "s.png"}]}))  # parses, lacks the numbers
    r = subprocess.run([*cmd, str(runs[0]), str(tmp_path / "other")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "not one this script wrote" in r.stderr and "Traceback" not in r.stderr
