"""Local folders and object stores behind one interface (pyarrow.fs), for batches that run on a cluster.

A place is a pyarrow FileSystem and a path on it: `s3://bucket/photos`, `gs://...`, `abfs://...`
and `file://...` URIs open their filesystem; a plain path is local. Listing is lazy, one folder at a
time, so a library of millions of photos is never held as one list. Writes are atomic everywhere: a
local file through paths.atomic_output, elsewhere a hidden temporary object that is moved into
place, so a crash leaves no half-written output under its final name.
"""

from __future__ import annotations

import glob
import os
import posixpath
import uuid
from dataclasses import dataclass
from typing import Iterator

from ncaedit.errors import NcaError


@dataclass(frozen=True)
class Place:
    fs: object  # pyarrow.fs.FileSystem
    path: str

    @property
    def local(self) -> bool:
        from pyarrow.fs import LocalFileSystem

        return isinstance(self.fs, LocalFileSystem)

    def show(self, path: str | None = None) -> str:
        """The path as the user wrote it: plain for local files, with the scheme for object stores."""
        path = self.path if path is None else path
        scheme = {"s3": "s3://", "gcs": "gs://", "abfs": "abfs://", "hdfs": "hdfs://"}.get(self.fs.type_name, "")
        return path if self.local or not scheme else scheme + path


def open_place(where: str, filesystem=None) -> Place:
    """`where` on `filesystem`, or on the filesystem its URI names, or on the local disk."""
    from pyarrow import ArrowException
    from pyarrow.fs import FileSystem, LocalFileSystem

    if filesystem is not None:
        return Place(filesystem, where)
    if "://" in where:
        try:
            fs, path = FileSystem.from_uri(where)
        except (ArrowException, ValueError, OSError) as exc:
            raise NcaError(f"{where}: cannot open this location ({exc})") from None
        return Place(fs, path)
    return Place(LocalFileSystem(), os.path.abspath(where))


def kind(place: Place) -> str:
    """"file", "folder" or "missing"."""
    from pyarrow import ArrowException
    from pyarrow.fs import FileType

    try:
        info = place.fs.get_file_info(place.path)
    except (ArrowException, OSError) as exc:
        raise NcaError(f"{place.show()}: cannot look it up ({exc})") from None
    return {FileType.File: "file", FileType.Directory: "folder"}.get(info.type, "missing")


def hidden(name: str) -> bool:
    return posixpath.basename(name).startswith(".")


def walk(place: Place, recursive: bool, skip: str | None = None) -> Iterator[tuple[str, list[str]]]:
    """(folder, its visible files, sorted) for `place` and, `recursive`, every visible folder below it,
    one folder at a time. `skip` is a folder never entered (the output folder, when it lies inside)."""
    from pyarrow.fs import FileSelector, FileType

    stack = [place.path]
    while stack:
        folder = stack.pop()
        try:
            infos = place.fs.get_file_info(FileSelector(folder, allow_not_found=True))
        except OSError as exc:
            raise NcaError(f"{place.show(folder)}: cannot list the folder ({exc})") from None
        visible = [i for i in infos if not hidden(i.path)]
        yield folder, sorted(i.path for i in visible if i.type == FileType.File)
        if recursive:
            stack += sorted((i.path for i in visible if i.type == FileType.Directory and i.path != skip), reverse=True)


def glob_matches(place: Place, pattern: str, recursive: bool) -> list[str]:
    """The files a glob matches: Python's glob on the local disk; on an object store, wildcards only
    in the last part of the path (`s3://bucket/photos/*.jpg`)."""
    import fnmatch

    if place.local:
        return sorted(m for m in glob.glob(pattern, recursive=recursive) if os.path.isfile(m))
    folder, name = posixpath.split(pattern)
    if glob.has_magic(folder):
        raise NcaError(f"{place.show(pattern)}: wildcards in folder names work only for local paths")
    files = next(walk(Place(place.fs, folder), recursive=False))[1]
    return [f for f in files if fnmatch.fnmatchcase(posixpath.basename(f), name)]


def existing_names(place: Place) -> set[str]:
    """The names of the files in a folder (none when it does not exist yet): one listing per folder
    rather than one lookup per photo, which object stores charge for."""
    return {posixpath.basename(f) for f in next(walk(place, recursive=False))[1]}


def exists(place: Place) -> bool:
    return kind(place) != "missing"


def read_to(place: Place, local_path: str) -> None:
    """Copy a file from `place` to a local file (decoders want a file; photos are read once)."""
    import shutil

    from pyarrow import ArrowException

    try:
        with place.fs.open_input_stream(place.path) as src, open(local_path, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    except (ArrowException, OSError) as exc:
        raise NcaError(f"{place.show()}: cannot read ({exc})") from None


def write_atomic(place: Place, data: bytes, before_rename=None) -> None:
    """Write `data` to `place`, making its folder; nothing appears under the final name until all
    of it is written. `before_rename()` runs between the two (a hook for fault-injection tests)."""
    from pathlib import Path

    from pyarrow import ArrowException

    from ncaedit.paths import atomic_output

    if place.local:
        try:
            Path(place.path).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise NcaError(f"{place.path}: cannot make its folder ({exc.strerror})") from None
        with atomic_output(Path(place.path)) as tmp:
            tmp.write_bytes(data)
            if before_rename:
                before_rename()
        return
    folder, name = posixpath.split(place.path)
    tmp = f"{folder}/.{name}.{uuid.uuid4().hex[:8]}.part"
    try:
        place.fs.create_dir(folder, recursive=True)
        with place.fs.open_output_stream(tmp) as out:
            out.write(data)
        if before_rename:
            before_rename()
        place.fs.move(tmp, place.path)
    except (ArrowException, OSError) as exc:
        try:
            place.fs.delete_file(tmp)
        except (ArrowException, OSError):
            pass  # it was never made, or the store is gone; the error below is the one to report
        raise NcaError(f"{place.show()}: cannot write ({exc})") from None
