"""`ncaedit apply --ray`: the console side of ray_apply.apply_on_ray (one progress bar, the summary)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from ncaedit.errors import NcaError

_ADDRESS = re.compile(r"^(auto|local|[a-z]+://.+|[\w.-]+:\d+)$")


def bare_ray(args: list[str]) -> list[str]:
    """`--ray` takes an optional ADDRESS, which the parser cannot express: give a bare `--ray` (one
    followed by an option, an input or nothing) the value `local`, Ray on this machine."""
    out = []
    for i, arg in enumerate(args):
        out.append(arg)
        if arg == "--ray" and (i + 1 == len(args) or not _ADDRESS.match(args[i + 1])):
            out.append("local")
    return out


def as_uri(path: Path | None) -> str | None:
    """The --out the user typed: a Path option turns `s3://bucket/x` into `s3:/bucket/x`."""
    return None if path is None else re.sub(r"^([a-z0-9+]+):/(?!/)", r"\1://", str(path))


def apply_on_ray_cli(rule_path: Path, inputs: list[str], out: Path | None, address: str | None, gpus_per_worker: float | None, **options) -> None:
    from rich.markup import escape

    from ncaedit.cli.commands import _console, _progress
    from ncaedit.ray_apply import VIDEO_SKIPPED, apply_on_ray, require_ray

    if out is None:
        raise NcaError("--ray writes into an output folder: give --out DIR (a local folder or an s3://, gs://, abfs:// URI)")
    require_ray()  # before the progress bar shows
    counts = {"done": 0, "skipped": 0, "failed": 0}
    videos = 0
    with _progress(transient=True) as bar:  # the summary line replaces it; an error leaves no half-drawn bar
        task = bar.add_task(f"applying {rule_path.name} on Ray", total=None, info="starting Ray")

        def on_outcome(outcome) -> None:
            nonlocal videos
            counts[outcome.status] += 1
            videos += outcome.detail == VIDEO_SKIPPED
            bar.update(task, advance=1, info=", ".join(f"{v} {k}" for k, v in counts.items() if v))

        summary = apply_on_ray(
            rule_path, inputs, as_uri(out), address=address, gpus_per_worker=gpus_per_worker, keep_outcomes=False, on_outcome=on_outcome, **options
        )
    console = _console()
    console.print(
        f"{counts['done']} done, {counts['skipped']} skipped, {counts['failed']} failed in {summary.seconds:.1f} s -> {as_uri(out)}",
        soft_wrap=True, markup=False,
    )
    if videos:
        console.print(f"{videos} videos skipped: videos run on the local path (ncaedit apply without --ray)", soft_wrap=True, markup=False)
    for o in summary.failed:
        detail = o.detail if o.detail.startswith(str(o.item.source)) else f"{o.item.source}: {o.detail}"
        console.print(f"[red]failed[/red] {escape(detail)}", soft_wrap=True, highlight=False)  # one line each: grep-able logs
    if summary.failed:
        raise SystemExit(1)
