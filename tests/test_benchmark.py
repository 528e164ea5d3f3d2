"""benchmarks/run.py: its reference implementation computes what the engine computes, and it runs."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import torch

from ncaedit.rule import Rule, RuleConfig, rollout
from ncaedit.state import make_state

ROOT = Path(__file__).resolve().parents[1]


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "benchmarks" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_reference_implementation_matches_the_engine():
    bench = load_bench()
    torch.manual_seed(0)
    rule = Rule(RuleConfig(hidden_channels=4, width=16))
    with torch.no_grad():
        rule.w2.weight.normal_(0, 0.3)
        s = make_state(torch.rand(1, 3, 20, 24), 4, seed=1)
        expected = bench.reference_rollout(bench.ReferenceRule(rule), rule, s, 6, seed=3)
        assert torch.allclose(rollout(rule, s, 6, seed=3), expected, atol=1e-5)
        assert torch.allclose(bench.run_inplace(rule, s, 6, seed=3, skip_idle=False), expected, atol=1e-5)
    assert not torch.allclose(expected, s)


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
