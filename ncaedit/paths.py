"""Choosing output paths that never clobber an input, and writing files atomically."""

from __future__ import annotations

import os
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator

from ncaedit.errors import NcaError


_SPECIAL = {stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device", stat.S_IFSOCK: "a socket"}


def _not_regular(path: Path, mode: int, expected: str) -> str:
    if stat.S_ISDIR(mode):
        try:
            os.listdir(path)
        except OSError as exc:
            return f"{path}: is a folder that cannot be listed ({exc.strerror}), expected {expected}"
        return f"{path}: is a folder, expected {expected}"
    kind = _SPECIAL.get(stat.S_IFMT(mode), "not a regular file")
    return f"{path}: is {kind}, not a regular file; only regular files are read"


def open_regular(path: str | Path, expected: str = "a file", missing: str = "no such file") -> BinaryIO:
    """`path` opened for binary reading, if it is a regular file (symlinks followed). Folders, devices
    (/dev/zero), FIFOs and sockets are refused by type before any byte is read: a device has no end
    and a FIFO blocks. The type is checked before opening (opening a device can have effects) and
    again on the open file, which was opened without blocking, so a swap in between cannot hang us."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode):
            raise NcaError(_not_regular(path, mode, expected))
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise NcaError(f"{path}: {missing}") from exc
    except OSError as exc:
        raise NcaError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise NcaError(_not_regular(path, mode, expected))
    os.set_blocking(fd, True)
    fh = os.fdopen(fd, "rb")
    fh.raw.name = str(path)  # readers (tifffile) want a name, not the descriptor number
    return fh


def check_regular(path: str | Path, expected: str = "a file", missing: str = "no such file", param: str | None = None) -> Path:
    """`path`, after checking that it is a readable regular file (open_regular), for readers that
    take a file name (PyAV, safetensors, torch.load). `param`: the parameter that gave the path, named
    by the error (NcaError.param)."""
    try:
        open_regular(path, expected, missing).close()
    except NcaError as exc:
        if param is None:
            raise
        raise NcaError(str(exc), param=param) from exc
    return Path(path)


def read_limited(path: str | Path, limit: int, expected: str = "a file", missing: str = "no such file") -> bytes:
    """The bytes of the regular file `path`, refused when there are more than `limit` of them. The
    limit bounds the read itself, not a size reported beforehand (which a file can outgrow)."""
    with open_regular(path, expected, missing) as fh:
        try:
            data = fh.read(limit + 1)
        except OSError as exc:
            raise NcaError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if len(data) > limit:
        raise NcaError(f"{path}: far too large for {expected} (over {limit:,} bytes)")
    return data


def check_writable_folder(folder: Path, label: str) -> None:
    """Refuse, before any work and without creating anything, a folder (or, when it does not exist
    yet, its nearest existing parent) that cannot take new files. `label` starts the message."""
    probe = Path(os.path.abspath(folder))
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise NcaError(f"{label} {probe} is not a folder")
    try:  # a real probe: permission bits say nothing for root, read-only mounts or ACLs
        tempfile.TemporaryFile(dir=probe).close()
    except OSError as exc:
        raise NcaError(f"{label} {probe} is not writable ({exc.strerror})") from exc


def free_name(path: Path, siblings: tuple[str, ...] = ()) -> Path:
    """`path`, or `name-2.ext`, `name-3.ext`, ...: the first that does not exist yet, nor does it
    with any of the `siblings` suffixes (the rule and checkpoint that go beside an image)."""
    n, candidate = 2, path
    while any(candidate.with_suffix(s).exists() for s in (path.suffix, *siblings)):
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
        n += 1
    return candidate


def check_replaceable(path: Path) -> None:
    """Refuse to write over anything but a regular file: the rename would replace a device node
    (`-o /dev/null` as root), a FIFO or a socket with our file."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return  # nothing there (or a dangling link, which the rename replaces)
    if not stat.S_ISREG(mode):
        raise NcaError(_not_regular(path, mode, "a file").replace("only regular files are read", "outputs replace only regular files"))


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
    check_replaceable(out)
    if suffixes is not None and out.suffix.lower() not in suffixes:
        raise NcaError(f"{out}: unknown output format {out.suffix!r} (use one of {', '.join(sorted(suffixes))})")
    folder = out.parent
    if not folder.is_dir():
        raise NcaError(f"{out}: output folder {folder} does not exist")
    check_writable_folder(folder, f"{out}: output folder")


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
    check_replaceable(path)
    remove_stale_parts(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".part")
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


STALE_LEGACY_SECONDS = 3600  # temporaries without a process id (ncaedit 0.1) count as stale after this


def remove_stale_parts(path: Path) -> list[Path]:
    """Remove the temporaries that earlier runs writing `path` left behind when they were killed
    (`.NAME.PID.XXXX.part`, PID no longer running). A temporary of a running process is kept."""
    import time

    removed = []
    prefix = f".{path.name}."
    try:
        candidates = [p for p in path.parent.iterdir() if p.name.startswith(prefix) and p.name.endswith(".part")]
    except OSError:
        return removed
    for tmp in candidates:
        pid = tmp.name[len(prefix) :].split(".", 1)[0]
        try:
            stale = not _running(int(pid)) if pid.isdigit() else time.time() - tmp.lstat().st_mtime > STALE_LEGACY_SECONDS
            if stale and tmp.is_file() and not tmp.is_symlink():
                tmp.unlink()
                removed.append(tmp)
        except OSError:
            continue  # gone already, or not ours to remove
    return removed


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # someone else's process (or not a pid at all): leave its file alone
    return True


def write_atomic(path: Path, data: bytes) -> Path:
    """Write `data` to `path` through atomic_output."""
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)
