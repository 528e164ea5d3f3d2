"""The command-line application over the library: the commands and their options (commands.py), a
training job's flow on the console (job.py) and the preview images it writes (preview.py)."""

from ncaedit.cli.commands import app, main

__all__ = ["app", "main"]
