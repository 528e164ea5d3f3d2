"""ncaedit: edit photos with Neural Cellular Automata.

The Python API (api.py), imported lazily so that `import ncaedit` and `ncaedit --help` stay instant:

    rule = ncaedit.train_style(photo, style)          # or ncaedit.train_prompt(photo, "a pencil sketch")
    edited = rule.apply(image)                        # PIL, numpy or torch in, the same kind out
    rule.save("rule.nca"); rule = ncaedit.Rule.load("rule.nca")
    summary = ncaedit.apply_files(rule, ["photos/"], "styled/")

Data flow, one file per step: photo (image.py) -> state (state.py) -> rollout (rule.py)
-> loss (style_loss.py, lossnet.py) -> training (train.py) -> rule file (nca_format.py)
-> apply (apply.py). The command line lives in cli/ (commands.py, job.py, preview.py).
"""

import os

from ncaedit.config import VERSION as __version__

# Idle torch/BLAS threads sleep instead of spinning: on a busy machine spinning threads take the cores
# the work needs (training ran 7x slower on 2 shared cores; benchmarks/run.py). Set here, before torch
# loads, so it holds however ncaedit is entered (command line or library); a user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

_API = ("Rule", "train_style", "train_prompt", "apply_files", "Iteration", "Event", "BatchSummary", "NcaError")
__all__ = [*_API, "__version__"]


def __getattr__(name: str):
    if name == "NcaError":
        from ncaedit.errors import NcaError

        return NcaError
    if name in _API:
        from ncaedit import api

        return getattr(api, name)
    raise AttributeError(f"module 'ncaedit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
