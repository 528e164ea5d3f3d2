"""ncaedit: edit photos with Neural Cellular Automata.

Data flow, one file per step: photo (image.py) -> state (state.py) -> rollout (rule.py)
-> loss (style_loss.py, lossnet.py) -> training (train.py) -> rule file (rulefile.py)
-> apply (apply.py). The command line lives in cli.py.
"""

__version__ = "0.1.0"
