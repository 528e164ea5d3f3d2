"""Applying a rule to many files: finding the inputs, naming the outputs, and running the batch.

Output names mirror the inputs below their common folder, so two inputs never map to one output;
files whose names differ only by extension keep it in the name (`a-jpg.png`, `a-png.png`) when
`--format` would make them meet. A rerun skips outputs that exist; every write is atomic. One bad
file is reported and the batch goes on. The next photo decodes and the last one encodes in a small
thread pool while the rule runs, so a folder of small photos keeps the cores on the rollout.
"""

from __future__ import annotations

import glob
import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from ncaedit.errors import NcaError
from ncaedit.image import READ_SUFFIXES, WRITE_SUFFIXES
from ncaedit.paths import check_regular, check_writable_folder
from ncaedit.video import VIDEO_SUFFIXES

FORMATS = ("png", "jpg", "jpeg", "webp", "tif", "tiff")
OVERLAP_PIXELS = 16_000_000  # photos above this are loaded, edited and written one at a time: bounded memory


@dataclass(frozen=True)
class Item:
    source: Path
    out: Path

    @property
    def is_video(self) -> bool:
        return self.source.suffix.lower() in VIDEO_SUFFIXES


@dataclass
class Outcome:
    item: Item
    status: str  # "done", "skipped" or "failed"
    detail: str = ""  # why it was skipped or failed; what was measured when done

    @property
    def message(self) -> str:
        """The detail, naming the input file."""
        source = str(self.item.source)
        return self.detail if self.detail.startswith(source) else f"{source}: {self.detail}"


@dataclass
class Settings:
    steps: int
    seed: int = 0
    tile: int | None = None
    strength: float = 1.0
    mask: Path | None = None
    feather: float = 0.0
    device: str = "cpu"
    carry: bool = False  # videos: start each frame from the previous frame's hidden state
    overwrite: bool = False
    workers: int = 1  # tiles run at once
    max_pixels: int | None = None  # refuse bigger photos (image.DEFAULT_MAX_PIXELS when None)
    temporal: str = "none"  # videos: "flow" carries the edit along the motion (temporal.py)
    refresh_steps: int | None = None  # videos, temporal "flow": steps a frame (None: temporal.REFRESH_STEPS)


OUTPUT_EXISTS = "output exists (--overwrite redoes it)"


def _wanted(path: Path) -> bool:
    """An image or video by its name. Not only regular files: a FIFO or device named like a photo is
    taken, so that it is reported as a failure (paths.open_regular says why) instead of ignored."""
    return not path.is_dir() and not path.name.startswith(".") and path.suffix.lower() in READ_SUFFIXES | VIDEO_SUFFIXES


def _folder_entries(folder: Path, recursive: bool) -> tuple[list[Path], list[Path]]:
    """The files of `folder` (`recursive`: and of its subfolders, symlinked ones not followed), and
    the subfolders that cannot be listed: run_batch reports those as failures rather than skip them."""
    if not recursive:
        return sorted(p for p in folder.iterdir() if not p.is_dir()), []
    files, unreadable = [], []
    for top, _, names in os.walk(folder, onerror=unreadable.append):
        files += [Path(top, name) for name in names]
    unreadable = [Path(exc.filename) for exc in unreadable]
    if folder in unreadable:
        raise _unreadable_error(folder)
    return sorted(files), sorted(unreadable)


def _unreadable_error(folder: Path) -> OSError:
    try:
        os.scandir(folder).close()
    except OSError as exc:
        return exc
    return PermissionError(13, "could not be listed when the batch started", str(folder))


def _visible(path: Path, folder: Path) -> bool:
    """No dot-file or dot-folder from `folder` down to `path` (.git, .thumbnails, unfinished .part files)."""
    return not any(part.startswith(".") for part in path.relative_to(folder).parts)


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


def find_inputs(args: list[str], recursive: bool, out_dir: Path | None = None) -> list[tuple[Path, Path]]:
    """(file, root) for every input, in a stable order: a file named directly, every image or video in
    a folder (`recursive`: and below), or the matches of a glob. The root is the folder the output
    mirrors from. Paths are compared after following links. Files inside `out_dir` where it lies in a
    scanned folder are never inputs, so results are not fed back on a rerun. A name given twice is
    taken once; two names of one file (a link and its target) are both kept, and run_batch edits it
    once and says so."""
    out_real = _real(out_dir) if out_dir else None
    found: list[tuple[Path, Path]] = []
    for arg in args:
        path = Path(arg)
        if path.is_dir():
            if out_real and _real(path) == out_real:
                raise NcaError(f"{arg}: the input folder is also --out {out_dir} (after following links); choose a separate output folder")
            try:
                files, unreadable = _folder_entries(path, recursive)
            except OSError as exc:
                raise NcaError(f"{arg}: cannot list the folder ({exc.strerror})") from exc
            found += [(f, path) for f in sorted(files + unreadable) if _visible(f, path) and (_wanted(f) or f in unreadable)]
        elif path.exists() or path.is_symlink():
            check_regular(path, "an image or video")  # named directly: a FIFO or device is a bad argument
            found.append((path, path.parent))
        elif glob.has_magic(arg):
            matches = sorted(Path(m) for m in glob.glob(arg, recursive=recursive))
            found += [(m, _glob_root(arg)) for m in matches if _wanted(m)]
            if not matches:
                raise NcaError(f"{arg}: no files match")
        else:
            raise NcaError(f"{arg}: no such file or folder")
    seen, unique = set(), []
    for f, root in found:
        key = os.path.abspath(f)
        fed_back = out_real is not None and _inside(_real(f), out_real) and _real(root) in out_real.parents
        if key not in seen and not fed_back:
            seen.add(key)
            unique.append((f, root))
    if not unique:
        where = f" (files inside --out {out_dir} are outputs, not inputs)" if found else ""
        raise NcaError(f"no images or videos found in {' '.join(args)}{where}")
    return unique


def _glob_root(pattern: str) -> Path:
    """The folder part of a glob before its first wildcard: `photos/**/*.jpg` -> `photos`."""
    parts = Path(pattern).parts
    fixed = []
    for part in parts[:-1]:
        if glob.has_magic(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def output_suffix(source: Path, fmt: str | None) -> str:
    """Videos become .mp4; photos take `fmt` (png, jpg, ...) or keep their own format where it can be written."""
    if fmt is not None and fmt.lower().lstrip(".") not in FORMATS:
        raise NcaError(f"{fmt}: unknown format (use one of {', '.join(FORMATS)})", param="fmt")
    suffix = source.suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        return ".mp4"
    if fmt:
        return "." + fmt.lower().lstrip(".")
    return suffix if suffix in WRITE_SUFFIXES else ".png"


def plan_outputs(inputs: list[tuple[Path, Path]], out_dir: Path, fmt: str | None = None) -> list[Item]:
    """Mirror each input below the common folder of all roots into `out_dir`."""
    base = Path(os.path.commonpath([os.path.abspath(root) for _, root in inputs]))
    rel = [Path(os.path.abspath(f)).relative_to(base) for f, _ in inputs]
    names = [r.with_suffix(output_suffix(f, fmt)) for (f, _), r in zip(inputs, rel)]
    counts: dict[str, int] = {}
    for n in names:
        counts[str(n).lower()] = counts.get(str(n).lower(), 0) + 1  # lower: case-insensitive file systems
    for i, ((f, _), r) in enumerate(zip(inputs, rel)):
        if counts[str(names[i]).lower()] > 1:
            names[i] = r.with_name(f"{r.stem}-{r.suffix.lstrip('.').lower()}{names[i].suffix}")
    if len({str(n).lower() for n in names}) != len(names):
        raise NcaError("two inputs would get the same output name; rename one of them")
    items = [Item(f, out_dir / n) for (f, _), n in zip(inputs, names)]
    for item in items:  # --out the inputs' own folder, also through a link: a rerun would edit the edits
        if _real(item.out.parent) == _real(item.source.parent):
            raise NcaError(
                f"--out {out_dir}: would put the output of {item.source} in its own folder (after following links), "
                "among the inputs and named like them; choose a separate output folder"
            )
    return items


def plan_batch(inputs: list[str], out: Path | None, rule_name: str, fmt: str | None, recursive: bool, protect: list) -> list[Item]:
    """What `ncaedit apply` writes where. One input file goes to the file `out`, or beside itself
    (IMAGE-RULE.ext) when `out` is None; anything else (several inputs, folders, globs) goes into
    the folder `out`, mirrored (plan_outputs). `protect`: further files no output may replace (the
    rule, the mask; None entries are ignored)."""
    from ncaedit.paths import check_output, free_name

    single = Path(inputs[0])
    if len(inputs) == 1 and (single.exists() or single.is_symlink() or not glob.glob(inputs[0], recursive=recursive)):
        if single.is_dir():
            if out is None:
                raise NcaError(f"{single}: is a folder; give an output folder with --out DIR")
        else:  # one file, named as is (a name may hold *?[ )
            missing = "no such file" if single.is_symlink() or not glob.has_magic(inputs[0]) else "no such file, and no files match it"
            check_regular(single, "an image or video", missing)
    if len(inputs) == 1 and single.is_file() and (out is None or (out.suffix and not out.is_dir())):
        target = out or free_name(single.with_name(f"{single.stem}-{rule_name}{output_suffix(single, fmt)}"))
        writable = {".mp4"} if Item(single, target).is_video else WRITE_SUFFIXES
        if target.suffix.lower() not in writable:
            raise NcaError(f"{target}: unknown output format {target.suffix!r} for this input (use {', '.join(sorted(writable))})")
        check_output(target, [single, *(Path(p) for p in protect if p is not None)])
        return [Item(single, target)]
    if out is None:
        raise NcaError("several inputs or a folder: give an output folder with --out DIR")
    if (out.exists() and not out.is_dir()) or out.suffix.lower() in WRITE_SUFFIXES | VIDEO_SUFFIXES:
        raise NcaError(f"{out}: several inputs or a folder need an output folder, not a file", param="out")
    items = plan_outputs(find_inputs(inputs, recursive, out), out, fmt)
    try:  # before any work, and before making it
        check_writable_folder(out, f"{out}: folder")
    except NcaError as exc:
        raise NcaError(str(exc), param="out") from exc
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NcaError(f"{out}: cannot make the folder ({exc.strerror})", param="out") from exc
    return items


def _attempt(fn: Callable) -> tuple[object, str | None]:
    """(fn(), None), or (None, why) when it raised: one bad file must not stop the batch."""
    try:
        return fn(), None
    except NcaError as exc:
        return None, str(exc)
    except Exception as exc:  # a decoder's or torch's own error: report it, go on with the next file
        return None, f"{type(exc).__name__}: {exc}"


def _load(item: Item, settings: Settings):
    from ncaedit.image import load_image
    from ncaedit.mask import load_mask

    photo = load_image(item.source, settings.max_pixels, keep_samples=True)
    return photo, None if settings.mask is None else load_mask(settings.mask, photo.size, settings.feather)


def _save(photo, out: Path) -> None:
    from ncaedit.image import save_image

    out.parent.mkdir(parents=True, exist_ok=True)
    save_image(photo, out)


def _edit_video(rule, item: Item, settings: Settings, on_file, on_progress) -> str:
    from ncaedit.image import check_image_size
    from ncaedit.video import apply_video, probe_video

    info = probe_video(item.source)
    check_image_size(info.width, info.height, settings.max_pixels, item.source)  # frames follow the rules of photos
    if on_file:
        on_file(item, info.frames or None)
    item.out.parent.mkdir(parents=True, exist_ok=True)
    s = settings
    result = apply_video(
        rule, item.source, item.out, s.steps, s.seed, s.device, s.tile, s.strength, s.mask, s.feather, s.carry,
        on_frame=(lambda done, total: on_progress(1)) if on_progress else None, workers=s.workers,
        temporal=s.temporal, refresh_steps=s.refresh_steps,
    )
    cuts = f", {result.cuts} scene cut{'s' * (result.cuts != 1)}" if result.cuts else ""
    return f"{result.frames} frames, flicker {result.flicker_in * 255:.2f} -> {result.flicker_out * 255:.2f} /255{cuts}"


def _not_to_do(items: list[Item], overwrite: bool, todo: list[Item]) -> Iterator[Outcome]:
    """Outcomes for the items that must not or need not run; the others are appended to `todo`."""
    inputs = {os.path.realpath(i.source) for i in items}
    first_of: dict[str, Item] = {}
    for item in items:
        real = os.path.realpath(item.source)
        if item.source.is_dir():  # a subfolder that could not be listed (find_inputs)
            yield Outcome(item, "failed", f"cannot list this folder ({_unreadable_error(item.source).strerror}); the files in it were not edited")
        elif real in first_of:
            first = first_of[real]
            yield Outcome(item, "skipped", f"the same file as {first.source} (a link); edited once, into {first.out}")
        elif os.path.realpath(item.out) in inputs:
            yield Outcome(item, "failed", "the output would overwrite an input")
        elif item.out.exists() and not overwrite:
            yield Outcome(item, "skipped", OUTPUT_EXISTS)
        else:
            todo.append(item)
        first_of.setdefault(real, item)


def run_batch(
    rule,
    items: list[Item],
    settings: Settings,
    on_file: Callable[[Item, float | None], None] | None = None,
    on_progress: Callable[[float], None] | None = None,
) -> Iterator[Outcome]:
    """Edit every item; yields one Outcome per item as it finishes. `on_file(item, total)` starts a
    file's progress (in steps, or frames for a video) and `on_progress(x)` advances it."""
    from ncaedit.apply import apply_rule

    todo: list[Item] = []
    yield from _not_to_do(items, settings.overwrite, todo)
    s = settings
    io = ThreadPoolExecutor(max_workers=2, thread_name_prefix="ncaedit-io")
    loads: dict[int, Future] = {}
    writes: deque[tuple[Item, Future]] = deque()

    def load_ahead(i: int) -> None:
        if i < len(todo) and i not in loads and not todo[i].is_video:
            loads[i] = io.submit(_load, todo[i], s)

    def finished_writes(keep: int) -> Iterator[Outcome]:
        while len(writes) > keep:
            item, future = writes.popleft()
            _, error = _attempt(future.result)
            yield Outcome(item, "failed", error) if error else Outcome(item, "done")

    try:
        load_ahead(0)
        for i, item in enumerate(todo):
            if item.is_video:
                yield from finished_writes(0)
                note, error = _attempt(lambda: _edit_video(rule, item, s, on_file, on_progress))
                yield Outcome(item, "failed", error) if error else Outcome(item, "done", note)
                load_ahead(i + 1)
                continue
            loaded, error = _attempt(loads.pop(i).result)
            if error:
                load_ahead(i + 1)
                yield Outcome(item, "failed", error)
                continue
            photo, mask = loaded
            small = photo.rgb.shape[0] * photo.rgb.shape[1] <= OVERLAP_PIXELS
            if small:
                load_ahead(i + 1)  # the next photo decodes while this one is edited
            else:
                yield from finished_writes(0)  # a big photo has the memory to itself
            if on_file:
                on_file(item, s.steps)
            edited, error = _attempt(lambda: apply_rule(rule, photo, s.steps, s.seed, s.device, on_progress, s.tile, s.strength, mask, s.workers))
            del photo, mask, loaded
            if error:
                yield Outcome(item, "failed", error)
            else:
                writes.append((item, io.submit(_save, edited, item.out)))
                del edited
                yield from finished_writes(1 if small else 0)  # one write may overlap the next edit
            load_ahead(i + 1)
        yield from finished_writes(0)
    finally:
        io.shutdown(wait=True, cancel_futures=True)
