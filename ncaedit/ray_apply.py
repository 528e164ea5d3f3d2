"""Applying a rule to a photo library on a Ray cluster: `apply_on_ray`, the engine of `apply --ray`.

Ray Data runs two stages. The listing stage walks each input (a local folder, file or glob, or an
object-store prefix) one folder at a time inside Ray tasks, names every output below DEST as local
apply does (batch.plan_outputs), and marks the outputs that exist already; the driver only sees
one row per photo as it finishes. The editing stage is a pool of actors that each load the rule once
and edit photo after photo: read, tile and roll out (apply.apply_rule: same tiles and seed as local
apply), encode, write atomically. A photo that fails is reported in its row and the batch goes on.
An actor that dies is restarted by Ray and its photos are retried; an output already written by the
first attempt counts as done, and a half-written one never exists (filesystems.write_atomic).

Videos are one sequential job each and stay on the local path (`ncaedit apply` without --ray).
"""

from __future__ import annotations

import os
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

from ncaedit.errors import NcaError
from ncaedit.filesystems import Place
from ncaedit.limits import checked

BLOCK_ROWS = 8  # photos per Ray task: small enough to spread a few big photos, large enough to amortise a task
EMBEDDED_OBJECT_STORE = 256 << 20  # rows are paths, photos never enter the object store: a small one suffices
INSTALL = 'Ray is not installed; install it with: pip install "ncaedit[ray]"'
VIDEO_SKIPPED = "a video: videos run on the local path (ncaedit apply without --ray)"
KILL_ONCE_ENV = "NCAEDIT_RAY_KILL_ONCE"  # tests: a file path; the first worker to write an output kills itself (once)


@dataclass(frozen=True)
class RayJob:
    """Everything an editing actor needs, sent to it once; the rule and mask travel as bytes so that
    workers on other machines need no access to the driver's files."""

    rule_bytes: bytes
    steps: int
    seed: int
    strength: float
    tile: int | None
    device: str
    cpus_per_worker: float
    overwrite: bool
    max_pixels: int | None
    source_fs: object
    dest_fs: object
    mask_bytes: bytes | None = None
    mask_suffix: str = ".png"
    feather: float = 0.0


@dataclass(frozen=True)
class Listing:
    """The inputs of one batch and where their outputs go; `rows` expands one input inside a Ray task."""

    inputs: tuple[tuple[str, str], ...]  # (path, "file" | "folder" | "glob") on `source`'s filesystem
    base: str  # outputs mirror the inputs below this folder
    source: Place
    dest: Place
    recursive: bool
    fmt: str | None
    overwrite: bool

    def rows(self, index: int) -> Iterator[dict[str, list]]:
        """Blocks of rows (source, out, status, detail) for input `index`: status "todo" or "skipped"
        (the output exists, or a video)."""
        from ncaedit.filesystems import glob_matches, walk

        path, what = self.inputs[index]
        if what == "file":
            groups: Iterator[list[str]] = iter([[path]])
        elif what == "glob":
            groups = _by_folder(glob_matches(self.source, path, self.recursive))
        else:
            skip = self.dest.path if self.dest.fs.equals(self.source.fs) else None
            groups = (files for _, files in walk(Place(self.source.fs, path), self.recursive, skip))
        block: dict[str, list] = {"source": [], "out": [], "status": [], "detail": []}
        for files in groups:
            for row in self._name(files):
                for k, v in zip(block, row):
                    block[k].append(v)
                if len(block["source"]) >= BLOCK_ROWS:
                    yield block
                    block = {k: [] for k in block}
        if block["source"]:
            yield block

    def _name(self, files: list[str]) -> list[tuple[str, str, str, str]]:
        """Rows for the files of one folder: names as local apply gives them (plan_outputs; clashes
        of names can only happen inside one folder), and whether each output exists."""
        from ncaedit.batch import plan_outputs
        from ncaedit.filesystems import existing_names, hidden
        from ncaedit.image import READ_SUFFIXES
        from ncaedit.video import VIDEO_SUFFIXES

        wanted = [f for f in files if Path(f).suffix.lower() in READ_SUFFIXES | VIDEO_SUFFIXES and not hidden(f)]
        if self.dest.fs.equals(self.source.fs):
            wanted = [f for f in wanted if not _inside(f, self.dest.path)]  # earlier outputs are never inputs
        if not wanted:
            return []
        try:
            items = plan_outputs([(Path(f), Path(self.base)) for f in wanted], Path(self.dest.path), self.fmt)
        except NcaError as exc:
            raise NcaError(f"{self.source.show(os.path.dirname(wanted[0]))}: {exc}") from None
        present = existing_names(Place(self.dest.fs, str(items[0].out.parent)))
        rows = []
        for item in items:
            src, out = str(item.source), str(item.out)
            if item.is_video:
                rows.append((src, out, "skipped", VIDEO_SKIPPED))
            elif item.out.name in present and not self.overwrite:
                rows.append((src, out, "skipped", "output exists (--overwrite redoes it)"))
            else:
                rows.append((src, out, "todo", ""))
        return rows


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _by_folder(files: list[str]) -> Iterator[list[str]]:
    groups: dict[str, list[str]] = {}
    for f in files:
        groups.setdefault(os.path.dirname(f), []).append(f)
    yield from groups.values()


class PhotoEditor:
    """A Ray actor: loads the rule once, then edits the photos of each block it is given."""

    def __init__(self, job: RayJob):
        import torch

        from ncaedit.api import Rule
        from ncaedit.device import resolve_device

        self.job = job
        self.device = resolve_device(job.device)  # "auto": the GPU Ray gave this actor, if any
        self.workers = max(1, int(job.cpus_per_worker)) if self.device == "cpu" else 1
        torch.set_num_threads(1)  # one torch thread per tile running (tiling.edit_tiles)
        self.scratch = tempfile.TemporaryDirectory(prefix="ncaedit-ray-")
        rule_path = Path(self.scratch.name) / "rule.nca"
        rule_path.write_bytes(job.rule_bytes)
        self.rule = Rule.load(rule_path).network.to(self.device)
        self.mask_path = None
        if job.mask_bytes is not None:
            self.mask_path = Path(self.scratch.name) / f"mask{job.mask_suffix}"
            self.mask_path.write_bytes(job.mask_bytes)

    def __call__(self, block: dict) -> dict:
        from ncaedit.batch import _attempt

        rows = block.to_pydict()  # a pyarrow table of BLOCK_ROWS rows
        for i, status in enumerate(rows["status"]):
            if status == "todo":
                note, error = _attempt(lambda: self.edit(rows["source"][i], rows["out"][i]))
                rows["status"][i], rows["detail"][i] = ("failed", error) if error else ("done", note)
        return rows

    def edit(self, source: str, out: str) -> str:
        """Read, edit and write one photo; returns a note ("" normally). The edit is Rule.apply's own
        (apply.apply_rule), with this actor's share of the CPUs rather than the machine's cores."""
        from ncaedit.apply import apply_rule
        from ncaedit.filesystems import exists, write_atomic
        from ncaedit.image import encode_image
        from ncaedit.mask import load_mask

        job, dest = self.job, Place(self.job.dest_fs, out)
        if not job.overwrite and exists(dest):  # the listing saw no output: an earlier attempt at this block wrote it
            return "written by an earlier attempt"
        photo = self.read(Place(job.source_fs, source))
        mask = None if self.mask_path is None else load_mask(self.mask_path, photo.size, job.feather)
        edited = apply_rule(self.rule, photo, job.steps, job.seed, self.device, None, job.tile, job.strength, mask, self.workers)
        del photo, mask
        write_atomic(dest, encode_image(edited, Path(out).suffix.lower()), before_rename=_kill_once)
        return ""

    def read(self, place: Place):
        from ncaedit.filesystems import read_to
        from ncaedit.image import load_image

        if place.local:
            return load_image(place.path, self.job.max_pixels, keep_samples=True)
        copy = Path(self.scratch.name) / Path(place.path).name
        try:
            read_to(place, str(copy))
            return load_image(copy, self.job.max_pixels, keep_samples=True)
        except NcaError as exc:  # name the photo, not the scratch copy
            raise NcaError(str(exc).replace(str(copy), place.show())) from None
        finally:
            copy.unlink(missing_ok=True)


def _kill_once() -> None:
    """Fault injection for tests: with NCAEDIT_RAY_KILL_ONCE=FILE, the first worker to get here
    makes FILE and dies at once (SIGKILL: no cleanup, as a lost node), between writing an output's
    temporary file and renaming it."""
    marker = os.environ.get(KILL_ONCE_ENV)
    if not marker:
        return
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return
    import signal

    os.kill(os.getpid(), signal.SIGKILL)


@checked
def apply_on_ray(
    rule,
    inputs: Sequence[str | Path],
    out: str | Path,
    *,
    address: str | None = None,
    filesystem=None,
    recursive: bool = False,
    overwrite: bool = False,
    fmt: str | None = None,
    steps: int | None = None,
    seed: int = 0,
    strength: float = 1.0,
    mask: str | Path | None = None,
    feather: float = 0.0,
    tile: int | None = None,
    device: str = "auto",
    max_pixels: int | None = None,
    workers: int | None = None,
    cpus_per_worker: float = 1.0,
    gpus_per_worker: float | None = None,
    keep_outcomes: bool = True,
    on_outcome: Callable | None = None,
):
    """Apply `rule` (a Rule or a .nca path) to the photos of `inputs` (files, folders, globs; local
    paths or s3://, gs://, abfs:// URIs) on Ray, writing into the folder `out` (local or a URI) with
    the names, resume, atomic writes and per-photo results of `apply_files`. Returns a BatchSummary.

    `address`: None starts Ray on this machine for the run, "auto" joins this machine's cluster,
    "ray://HOST:10001" a remote one (an already initialised Ray is used as it is). `filesystem`: a
    pyarrow FileSystem for inputs and `out` given as plain paths. `workers` editing actors (default:
    as many as the cluster's CPUs, or GPUs, hold), each with `cpus_per_worker` CPUs and
    `gpus_per_worker` GPUs (default: 1 where the cluster has GPUs and `device` allows, a fraction
    shares one). `on_outcome(outcome)` sees each photo as it finishes; `keep_outcomes=False` keeps
    only the failures in the summary, so that the driver's memory stays flat over millions of photos.
    Videos are listed as skipped: they run on the local path."""
    ray = require_ray()
    from ncaedit.api import BatchSummary
    from ncaedit.batch import Item, Outcome

    rule_bytes, rule = _rule_bytes(rule)
    steps = rule.default_steps if steps is None else steps
    _check_options(steps, device, gpus_per_worker)
    mask_bytes = None
    if mask is not None:
        try:
            mask_bytes = Path(mask).read_bytes()
        except OSError as exc:
            raise NcaError(f"{mask}: cannot read ({exc.strerror})", param="mask") from None
    listing = plan_listing(inputs, out, filesystem, recursive, fmt, overwrite)
    summary, started, listed = BatchSummary(), time.perf_counter(), 0
    with _ray_session(address):
        if listing.dest.local:  # made once Ray is up, so that a failed start leaves nothing behind
            try:
                Path(listing.dest.path).mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise NcaError(f"{out}: cannot make the folder ({exc.strerror})", param="out") from None
        gpus, pool = _placement(ray.cluster_resources(), device, cpus_per_worker, gpus_per_worker, workers)
        job = RayJob(
            rule_bytes, steps, seed, strength, tile, device, cpus_per_worker, overwrite, max_pixels, listing.source.fs,
            listing.dest.fs, mask_bytes, Path(mask).suffix if mask else ".png", feather,
        )
        photos = ray.data.read_datasource(_datasource(listing), num_cpus=0).map_batches(
            PhotoEditor, fn_constructor_kwargs={"job": job}, batch_size=None, batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=pool), num_cpus=cpus_per_worker, num_gpus=gpus,
        )
        for block in _results(photos):
            for source, target, status, detail in zip(*block.to_pydict().values()):
                listed += 1
                outcome = Outcome(Item(Path(listing.source.show(source)), Path(listing.dest.show(target))), status, detail)
                if keep_outcomes or status == "failed":
                    getattr(summary, status).append(outcome)
                if on_outcome:
                    on_outcome(outcome)
    summary.seconds = time.perf_counter() - started
    if not listed:
        raise NcaError(f"no images or videos found in {' '.join(map(str, inputs))}")
    return summary


def _results(photos) -> Iterator:
    """The dataset's blocks as they finish. A listing that fails (a folder that cannot be read, two
    inputs that would get one name) stops the batch as local apply does, with its own message
    rather than Ray's traceback."""
    try:
        yield from photos.iter_batches(batch_size=None, batch_format="pyarrow")
    except Exception as exc:
        seen = exc
        while seen is not None:
            if type(seen) is NcaError:  # Ray Data appends advice on retries to the message: keep our line
                raise NcaError(str(seen).splitlines()[0]) from exc
            seen = getattr(seen, "cause", None) or seen.__cause__
        raise


def require_ray():
    """The ray module, or the one line that says how to install it."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise NcaError(INSTALL) from None
    return ray


def plan_listing(inputs, out, filesystem, recursive: bool, fmt: str | None, overwrite: bool) -> Listing:
    """Look up each input once (a file, a folder or a glob) and the output folder; lists and makes nothing."""
    import glob

    from ncaedit.batch import FORMATS, _glob_root
    from ncaedit.filesystems import kind, open_place
    from ncaedit.image import WRITE_SUFFIXES
    from ncaedit.video import VIDEO_SUFFIXES

    if fmt is not None and fmt.lower().lstrip(".") not in FORMATS:
        raise NcaError(f"{fmt}: unknown format (use one of {', '.join(FORMATS)})", param="fmt")
    if not inputs:
        raise NcaError("no inputs given")
    places = [open_place(str(i), filesystem) for i in inputs]
    source, dest = places[0], open_place(str(out), filesystem)
    if any(type(p.fs) is not type(source.fs) or not p.fs.equals(source.fs) for p in places):
        raise NcaError("all inputs must be on one filesystem (one bucket, or all local); run once per filesystem")
    if Path(dest.path).suffix.lower() in WRITE_SUFFIXES | VIDEO_SUFFIXES or kind(dest) == "file":
        raise NcaError(f"{out}: Ray writes into an output folder, not a file", param="out")
    entries, roots = [], []
    for arg, place in zip(inputs, places):
        what = kind(place)
        if what == "missing" and glob.has_magic(place.path):
            what, root = "glob", str(_glob_root(place.path))
        elif what == "folder":
            if place.fs.equals(dest.fs) and place.path.rstrip("/") == dest.path.rstrip("/"):
                raise NcaError(f"{arg}: the input folder is also --out; choose a separate output folder")
            root = place.path
        elif what == "file":
            root = os.path.dirname(place.path)
        else:
            raise NcaError(f"{arg}: no such file or folder")
        entries.append((place.path, what))
        roots.append(root)
    folders = [path for path, what in entries if what == "folder"]

    def listed_elsewhere(path: str, what: str) -> bool:  # a file or folder named beside a folder input that lists it
        parent = os.path.dirname(path)
        return what != "glob" and any(path != f and _inside(path, f) and (recursive or (what == "file" and parent == f)) for f in folders)

    # Only whole inputs are de-duplicated here (the listing is lazy): the rare file matched by two globs is edited twice.
    kept = tuple(e for e in dict.fromkeys(entries) if not listed_elsewhere(*e))
    return Listing(kept, os.path.commonpath(roots), source, dest, recursive, fmt, overwrite)


def _rule_bytes(rule) -> tuple[bytes, object]:
    """The rule as a .nca file's bytes, and as an api.Rule: a path is loaded (and checked) here on the
    driver, so a bad rule fails before Ray starts; workers get bytes, not the driver's files."""
    from ncaedit.api import Rule

    if isinstance(rule, (str, Path)):
        rule = Rule.load(rule)
    with tempfile.TemporaryDirectory() as scratch:
        return Path(rule.save(Path(scratch) / "rule.nca")).read_bytes(), rule


def _check_options(steps, device, gpus_per_worker) -> None:
    """What limits.checked (on apply_on_ray) cannot see: the step count after the rule's default, and the device."""
    from ncaedit.apply import check_apply_options

    check_apply_options(steps)
    if device not in ("auto", "cpu", "cuda"):  # each actor sees only the GPU Ray gave it: no cuda:N, no mps on clusters
        raise NcaError(f"{device}: on Ray use auto, cpu or cuda", param="device")
    if device == "cpu" and gpus_per_worker:
        raise NcaError("needs the device auto or cuda", param="gpus_per_worker")


def _placement(resources: dict, device: str, cpus_per_worker: float, gpus_per_worker: float | None, workers: int | None) -> tuple[float, int]:
    """(GPUs per actor, number of actors) for the cluster's resources."""
    cluster_gpus = resources.get("GPU", 0)
    if gpus_per_worker is None:
        gpus_per_worker = 1.0 if cluster_gpus and device != "cpu" else 0.0
    if device.startswith("cuda") and not gpus_per_worker:
        raise NcaError("cuda: the Ray cluster has no GPUs", param="device")
    fit = cluster_gpus / gpus_per_worker if gpus_per_worker else resources.get("CPU", 1) / cpus_per_worker
    return gpus_per_worker, workers or max(1, int(fit))


@contextmanager
def _ray_session(address: str | None) -> Iterator[None]:
    """Ray for one run: the caller's if it has started one, else a new local one (`address` None,
    shut down afterwards) or a connection to a cluster. Ray's own progress bars and logs are
    silenced: the caller reports progress."""
    import logging

    import ray
    from ray.data import DataContext

    context = DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    loggers = [logging.getLogger(name) for name in ("ray", "ray.data")]  # Ray's notices and tracebacks: failures raise
    levels = [log.level for log in loggers]
    for log in loggers:
        log.setLevel(logging.CRITICAL)
    started = not ray.is_initialized()
    try:
        if started:
            quiet = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
            try:
                if address is None:
                    ray.init(object_store_memory=EMBEDDED_OBJECT_STORE, **quiet)
                else:
                    ray.init(address=address, **quiet)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise NcaError(f"{address or 'local'}: cannot start or reach Ray ({exc})", param="address") from None
        yield
    finally:
        for log, level in zip(loggers, levels):
            log.setLevel(level)
        if started and ray.is_initialized():
            ray.shutdown()


def _datasource(listing: Listing):
    """A Ray Data source with one read task per input; each yields its rows as it lists them."""
    import pyarrow as pa
    from ray.data.block import BlockMetadata
    from ray.data.datasource import Datasource, ReadTask

    class PhotoListing(Datasource):
        def estimate_inmemory_data_size(self):
            return None

        def get_read_tasks(self, parallelism, per_task_row_limit=None, data_context=None):
            def read(i: int):
                return (pa.table(block) for block in listing.rows(i))

            unknown = BlockMetadata(num_rows=None, size_bytes=None, input_files=None, exec_stats=None)
            return [ReadTask(lambda i=i: read(i), unknown) for i in range(len(listing.inputs))]

        def get_name(self):
            return "ListPhotos"

    return PhotoListing()
