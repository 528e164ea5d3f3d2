"""Choosing output paths that never clobber an input, and writing them atomically."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

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


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it: done once, at import, before any thread
    os.umask(mask)
    return mask


_UMASK = _umask()


@contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """A temporary file beside `path` to write to: renamed onto `path` when the block succeeds and
    removed when it fails, so an interrupted write never leaves a half-written `path`."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; outputs get the usual permissions
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
