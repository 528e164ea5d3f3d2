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
