import os

# Tests never reach the network and never see weights cached on the developer's machine.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["NCAEDIT_OFFLINE"] = "1"
# As importing ncaedit does: idle torch threads sleep rather than spin (the suite ran 2.7x faster on a busy machine).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest

from helpers import TINY_PRESET


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
