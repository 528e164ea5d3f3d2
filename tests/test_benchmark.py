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
