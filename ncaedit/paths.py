"""Choosing output paths that never clobber an input, and writing files atomically."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ncaedit.errors import NcaError


def free_name(path: Path, siblings: tuple[str, ...] = ()) -> Path:
    """`path`, or `name-2.ext`, `name-3.ext`, ...: the first that does not exist yet, nor does it
    with any of the `siblings` suffixes (the rule and checkpoint that go beside an image)."""
    n, candidate = 2, path
    while any(candidate.with_suffix(s).exists() for s in (path.suffix, *siblings)):
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
        n += 1
    return candidate


def check_output(out: Path, inputs: list[Path], suffixes: set[str] | None = None) -> None:
    """Refuse, before any slow work, an output that is one of the inputs, is a folder, has a suffix
    outside `suffixes`, or whose folder is missing or not writable."""
    for src in inputs:
        try:
            same = out.exists() and src.exists() and out.resolve() == src.resolve()
        except OSError:
            same = False
        if same:
            raise NcaError(f"{out}: output would overwrite the input {src}; choose another output path")
    if out.is_dir():
        raise NcaError(f"{out}: is a folder; give a file name for the output")
    if suffixes is not None and out.suffix.lower() not in suffixes:
        raise NcaError(f"{out}: unknown output format {out.suffix!r} (use one of {', '.join(sorted(suffixes))})")
    folder = out.parent
    if not folder.is_dir():
        raise NcaError(f"{out}: output folder {folder} does not exist")
    try:  # a real probe: permission bits say nothing for root, read-only mounts or ACLs
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as exc:
        raise NcaError(f"{out}: output folder {folder} is not writable ({exc.strerror})") from exc


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it: done once, at import, before any thread
    os.umask(mask)
    return mask


_UMASK = _umask()


@contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """A temporary file beside `path` to write to: flushed to disk and renamed onto `path` when the
    block succeeds, removed when it fails, so a crash or a full disk never leaves a half-written `path`."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    except OSError as exc:
        raise NcaError(f"{path}: cannot write ({exc.strerror or exc})") from exc
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; outputs get the usual permissions
    try:
        yield Path(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:  # no permission, disk full, ...
        raise NcaError(f"{path}: cannot write ({exc.strerror or exc})") from exc
    finally:
        Path(tmp).unlink(missing_ok=True)


def write_atomic(path: Path, data: bytes) -> Path:
    """Write `data` to `path` through atomic_output."""
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)
