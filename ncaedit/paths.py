"""Choosing output paths that never clobber an input."""

from __future__ import annotations

from pathlib import Path

from ncaedit.errors import NcaError


def free_name(path: Path) -> Path:
    """`path`, or `name-2.ext`, `name-3.ext`, ...: the first that does not exist yet."""
    n, candidate = 2, path
    while candidate.exists():
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
        n += 1
    return candidate


def check_output(out: Path, inputs: list[Path]) -> None:
    """Refuse an output that is one of the inputs, or whose folder does not exist."""
    for src in inputs:
        try:
            same = out.exists() and src.exists() and out.resolve() == src.resolve()
        except OSError:
            same = False
        if same:
            raise NcaError(f"{out}: output would overwrite the input {src}; choose another output path")
    if not out.parent.is_dir():
        raise NcaError(f"{out}: output folder {out.parent} does not exist")
