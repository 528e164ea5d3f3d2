import os

# Tests never reach the network and never see weights cached on the developer's machine.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["NCAEDIT_OFFLINE"] = "1"
# As importing ncaedit does: idle torch threads sleep rather than spin (the suite ran 2.7x faster on a busy machine).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import sys

import pytest
import torch

from helpers import TINY_PRESET
from ncaedit.nca_format import save_rule
from ncaedit.rule import Rule, RuleConfig


@pytest.fixture(autouse=True)
def _isolated_caches(tmp_path_factory, monkeypatch):
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("TORCH_HOME", str(cache / "torch"))
    monkeypatch.setenv("HF_HOME", str(cache / "hf"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))


@pytest.fixture
def tiny_preset(tmp_path):
    p = tmp_path / "tiny.toml"
    p.write_text(TINY_PRESET)
    return str(p)


@pytest.fixture
def rule_file(tmp_path):
    torch.manual_seed(0)
    rule = Rule(RuleConfig(hidden_channels=4, width=16))
    torch.nn.init.normal_(rule.w2.weight, std=0.1)
    return save_rule(rule, tmp_path / "busy.nca", {"default_steps": 3})


@pytest.fixture
def cli(capsys, monkeypatch):
    """Run `ncaedit ARGS...` in this process: (exit code, stderr with its line wrapping undone)."""
    from ncaedit.cli import main

    def call(*args):
        monkeypatch.setattr(sys, "argv", ["ncaedit", *map(str, args)])
        capsys.readouterr()
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code or 0
        return code, " ".join(capsys.readouterr().err.split())

    threads = torch.get_num_threads()
    yield call
    torch.set_num_threads(threads)  # `apply` sets torch's threads for its tiles: leave other tests as they were
