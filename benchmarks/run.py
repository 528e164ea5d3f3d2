"""How fast is ncaedit? One run measures everything side by side and prints one table.

- rollout: cell-updates per second at 512^2 and 2048^2 of ncaedit's engine against a reference written
  the usual way (NCHW, depthwise conv2d perception, 1x1 Conv2d layers), same rule, steps, masks and
  resolution; the largest relative difference between their results; the engine's GFLOP/s (counting
  the MLP's multiply-adds) as a fraction of a large float32 matrix product timed in the same run.
  "same arithmetic" computes every cell like the reference; "default" leaves out the cells that don't
  fire in a step (same result, half the products at fire_rate 0.5).
- training: iterations per second of each preset at its training size, on the CPU as the style mode
  trains (its crops side by side, ModeSetup.workers, or its threads, ModeSetup.threads) and, side by
  side in the same run, the whole batch at once on one thread and on all of torch's; how an iteration splits
  between the rollout (forward and backward) and the loss network (forward and backward);
  `ncaedit style` on a 512-px sample photo, end to end, with the fast preset (`--style-presets` for others).
- memory: peak RSS of training with the quality preset's longest rollout, and of applying a rule to a
  48-megapixel image; images per second applying a rule to a folder of 512-px photos (both through
  the batch `ncaedit apply RULE INPUT... --out DIR`).
- start-up: wall time of `ncaedit --help`, and whether importing the CLI imports torch.

    python benchmarks/run.py [--json out.json] [--device cpu|cuda] [--only rollout,train,style,memory,batch,cli] [--style-presets fast,balanced]

Runs offline (HF_HUB_OFFLINE=1): the loss network is VGG19 if its weights are cached, else the
offline random-filter network; the table says which.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as importing ncaedit sets it (ncaedit/__init__.py), before torch loads

import numpy as np
import torch
import torch.nn.functional as F

from ncaedit.device import training_threads
from ncaedit.image import Photo, fit_long_side, load_image, save_image
from ncaedit.inference import run_inplace
from ncaedit.modes.style import style_mode
from ncaedit.nca_format import save_rule
from ncaedit.recipe import load_recipe, preset_names
from ncaedit.reference import ReferenceRule, reference_rollout
from ncaedit.rule import Rule, RuleConfig, rollout
from ncaedit.state import make_state
from ncaedit.train import train_rule

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_images"
SECTIONS = ("rollout", "train", "style", "memory", "batch", "cli")
NEEDS_BATCH = "n/a (needs batch apply)"


class Table:
    def __init__(self):
        self.rows: list[dict] = []

    def add(self, section: str, what: str, value, unit: str = "", note: str = "") -> None:
        self.rows.append({"section": section, "what": what, "value": value, "unit": unit, "note": note})
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        print(f"  {section:9s} {what}: {shown} {unit} {note}", file=sys.stderr, flush=True)

    def markdown(self) -> str:
        lines = ["| section | measurement | value | unit | note |", "|---|---|---|---|---|"]
        for r in self.rows:
            v = r["value"]
            shown = f"{v:.3g}" if isinstance(v, float) and abs(v) < 1 else (f"{v:,.1f}" if isinstance(v, float) else str(v))
            lines.append(f"| {r['section']} | {r['what']} | {shown} | {r['unit']} | {r['note']} |")
        return "\n".join(lines)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def best_time(fn, device, repeats: int, warmup: int = 0) -> float:
    """The shortest of `repeats` timed calls, after `warmup` untimed ones (first calls pay one-time
    costs: allocator growth, kernel selection, autograd's checkpointing set-up)."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        t = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - t)
    return best


def bench_rule(seed: int = 0) -> Rule:
    """The reference recipe's rule shape (18 channels, width 96) with weights of a trained rule's scale."""
    torch.manual_seed(seed)
    rule = Rule(RuleConfig(width=96, hidden_channels=12))
    with torch.no_grad():
        rule.w2.weight.normal_(0, 0.02)
    return rule.eval()


def photo_state(side: int, device: torch.device, hidden: int) -> torch.Tensor:
    rgb = torch.from_numpy(load_image(SAMPLES / "astronaut.jpg").rgb).permute(2, 0, 1)[None]
    rgb = F.interpolate(rgb, size=(side, side), mode="bilinear", align_corners=False).clamp(0, 1)
    return make_state(rgb.to(device), hidden, seed=1)


def section_rollout(table: Table, device: torch.device) -> None:
    rule = bench_rule().to(device)
    ref = ReferenceRule(rule).to(device)
    c, width = rule.config.channels, rule.config.width
    flops_per_cell = 2 * (4 * c * rule.config.scales * width + width * (c - 3))  # the two products; coarse perception's shifted adds not counted
    n = 2048 if device.type == "cpu" else 8192
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    torch.backends.cuda.matmul.allow_tf32 = False  # the float32 peak
    plan = [(512, 8, 3), (2048, 2, 1)] if device.type == "cpu" else [(512, 32, 5), (2048, 16, 5)]
    for side, steps, repeats in plan:
        state = photo_state(side, device, rule.config.hidden_channels)
        cells = side * side * steps
        runs = {
            "matrix product": lambda: a @ b,
            "reference": lambda: reference_rollout(ref, state, steps, seed=3),
            "same arithmetic": lambda: run_inplace(rule, state, steps, seed=3, skip_idle=False),
            "default": lambda: run_inplace(rule, state, steps, seed=3),
        }
        if device.type == "cpu" and side == 512:  # the engine's threading against torch's own intra-op threads
            runs["same arithmetic, intra-op threads"] = lambda: run_inplace(rule, state, steps, seed=3, skip_idle=False, threads=1)
        times = {k: float("inf") for k in runs}
        cpu_times = dict(times)  # CPU seconds of all threads: a busy machine inflates wall time more than these
        results = {}
        with torch.no_grad():
            a @ b
            for _ in range(repeats):  # interleaved, best of each: the machine may be busy
                for name, fn in runs.items():
                    sync(device)
                    t, cpu = time.perf_counter(), time.process_time()
                    results[name] = fn()
                    sync(device)
                    times[name] = min(times[name], time.perf_counter() - t)
                    cpu_times[name] = min(cpu_times[name], time.process_time() - cpu)
        peak = 2 * n**3 / times.pop("matrix product") / 1e9
        peak_cpu = 2 * n**3 / cpu_times.pop("matrix product") / 1e9
        where = f"{device.type}, {torch.get_num_threads()} threads" + (f", {peak_cpu:.0f} per CPU-second" if device.type == "cpu" else "")
        table.add(f"rollout {side}", f"float32 {n}^2 matrix product (peak)", peak, "GFLOP/s", where)
        expected = results["reference"]
        for name, t in times.items():
            rate = cells / t
            note = f"{steps} steps"
            if name != "reference":
                err = ((results[name] - expected).abs().max() / expected.abs().max()).item()
                note += f", x{times['reference'] / t:.2f} the reference"
                if device.type == "cpu":
                    note += f" (in CPU time x{cpu_times['reference'] / cpu_times[name]:.2f})"
                note += f", max rel. error {err:.1e}"
            table.add(f"rollout {side}", f"{name}: cell-updates/s", rate / 1e6, "M/s", note)
            if name in ("reference", "same arithmetic"):
                gflops = rate * flops_per_cell / 1e9
                note = f"{gflops / peak:.0%} of the matrix-product peak"
                if device.type == "cpu":
                    note += f" ({cells * flops_per_cell / cpu_times[name] / 1e9 / peak_cpu:.0%} in CPU time)"
                table.add(f"rollout {side}", f"{name}: MLP GFLOP/s", gflops, "GFLOP/s", note)


def style_setup(recipe, device: torch.device):
    """The style mode's loss for the strokes sample, its loss network's name, and the torch threads
    and side-by-side parts it trains with on the CPU (ModeSetup.threads, .workers)."""
    setup = style_mode(SAMPLES / "strokes.png").setup(recipe, None, device.type, lambda message: None)
    return setup.loss_fn, setup.metadata["loss_net"], setup.threads, setup.workers


def section_train(table: Table, device: torch.device) -> None:
    photo = load_image(SAMPLES / "astronaut.jpg").rgb
    iterations = {"fast": 4, "balanced": 3, "quality": 1}
    for preset in preset_names():
        n = iterations.get(preset, 2)
        recipe = load_recipe(preset, {"train": {"iterations": n + 1}})
        t = recipe.train
        loss, net_name, threads, workers = style_setup(recipe, device)
        size = f"batch {t.batch} x {t.crop}^2, {t.steps_min}-{t.steps_max} steps, width {recipe.rule.width}"
        if device.type == "cpu":  # train_rule runs on the CPU
            # as ncaedit trains (the style mode's crops side by side or threads), and the whole batch at
            # once on one thread and on all of torch's, side by side
            used, cores = min(threads, torch.get_num_threads()), torch.get_num_threads()
            runs = [(f"{workers} parts side by side, as ncaedit trains", 1, workers)] if workers > 1 else [(f"{used} thread(s), as ncaedit trains", threads, 1)]
            runs += [("whole batch, 1 thread", 1, 1)] if workers > 1 else []
            runs += [(f"whole batch, all {cores} threads", None, 1)] if used < cores or workers > 1 else []
            for label, wanted, parts in runs:
                ends = []
                with training_threads("cpu", wanted):
                    train_rule([fit_long_side(photo, t.train_size)], loss, recipe.rule, t, on_iteration=lambda it, rec: ends.append(time.perf_counter()), workers=parts)
                table.add("training", f"{preset}: iterations/s, {label}", n / (ends[-1] - ends[0]), "it/s", f"{size}; after 1 warm-up iteration")
        # one iteration's parts at the preset's mean rollout length
        torch.manual_seed(0)
        rule = Rule(recipe.rule).to(device)
        with torch.no_grad():
            rule.w2.weight.normal_(0, 0.02)
        crops = torch.rand(t.batch, 3, t.crop, t.crop, device=device)
        state = make_state(crops, recipe.rule.hidden_channels)
        steps = (t.steps_min + t.steps_max) // 2
        gen = torch.Generator().manual_seed(0)

        def rollout_part():
            rule.zero_grad()
            rollout(rule, state, steps, checkpoint_every=t.grad_checkpoint_every)[:, 3:].square().mean().backward()

        out = rollout(rule, state, steps).detach()

        def loss_part():
            x = out.clone().requires_grad_(True)
            loss(x, gen)["total"].backward()

        t_roll = best_time(rollout_part, device, 2, warmup=1)
        t_loss = best_time(loss_part, device, 2, warmup=1)
        share = t_roll / (t_roll + t_loss)
        table.add(
            "training", f"{preset}: rollout / loss-network split", f"{share:.0%} / {1 - share:.0%}", "",
            f"{steps} steps fwd+bwd {t_roll:.2f} s, loss net ({net_name.split('(')[0]}) fwd+bwd {t_loss:.2f} s, {device.type}",
        )


def ncaedit_cmd() -> list[str]:
    return [sys.executable, "-m", "ncaedit"]


# Starts the command and writes its peak RSS. A child's peak RSS includes the memory of the process it
# was forked from (Linux keeps the pre-exec high-water mark), so this small launcher stands between
# the command and this (large) benchmark process.
_PEAK_RSS_LAUNCHER = (
    "import os, subprocess, sys\n"
    "child = subprocess.Popen(sys.argv[2:])\n"
    "_, status, usage = os.wait4(child.pid, 0)\n"
    "open(sys.argv[1], 'w').write(str(usage.ru_maxrss))\n"
    "sys.exit(os.waitstatus_to_exitcode(status))\n"
)


def run_measured(cmd: list[str], timeout: float = 900) -> tuple[int, float, float, str]:
    """(exit code, wall seconds, peak RSS in MB, last line of stderr) of `cmd`, run offline."""
    env = os.environ | {"HF_HUB_OFFLINE": "1"}
    with tempfile.TemporaryDirectory() as scratch:
        rss, err = Path(scratch) / "rss", Path(scratch) / "stderr"
        t = time.perf_counter()
        with err.open("wb") as fh:
            proc = subprocess.Popen(
                [sys.executable, "-c", _PEAK_RSS_LAUNCHER, str(rss), *cmd], stdout=subprocess.DEVNULL, stderr=fh, env=env, start_new_session=True
            )
            try:
                code = proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # the launcher and the command
                code = proc.wait()
        wall = time.perf_counter() - t
        peak = int(rss.read_text()) / 1024 if rss.exists() else float("nan")  # ru_maxrss is in KB on Linux
        tail = (err.read_text(errors="replace").strip().splitlines() or [""])[-1]
    return code, wall, peak, tail


def section_style(table: Table, tmp: Path, presets: list[str]) -> None:
    photo = SAMPLES / "astronaut.jpg"  # 512 x 512
    for preset in presets:
        out = tmp / f"styled-{preset}.png"
        code, wall, rss, tail = run_measured([*ncaedit_cmd(), "style", str(photo), "--style", str(SAMPLES / "strokes.png"), "--preset", preset, "--out", str(out)])
        what = f"`ncaedit style` {preset}, 512 px: wall time"
        if code != 0:
            table.add("style", what, "failed", "", tail)
            continue
        iterations = load_recipe(preset).train.iterations
        table.add("style", what, wall, "s", f"end to end ({iterations} iterations, apply, write); peak RSS {rss:.0f} MB")


def section_memory(table: Table, tmp: Path, rule_path: Path, batch_apply: bool) -> None:
    snippet = (
        "import sys; from ncaedit.recipe import load_recipe; from benchmarks.run import style_setup, SAMPLES;"
        "from ncaedit.image import load_image, fit_long_side; from ncaedit.train import train_rule; import torch;"
        "r = load_recipe('quality', {'train': {'iterations': 1}}); t = r.train; t.steps_min = t.steps_max;"
        "loss, _, _, workers = style_setup(r, torch.device('cpu'));"
        "train_rule([fit_long_side(load_image(SAMPLES / 'astronaut.jpg').rgb, t.train_size)], loss, r.rule, t, workers=workers)"
    )
    q = load_recipe("quality").train
    code, wall, rss, tail = run_measured([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(ROOT)!r}); {snippet}"])
    what = f"training, quality preset at its longest rollout ({q.steps_max} steps, batch {q.batch} x {q.crop}^2): peak RSS"
    table.add("memory", what, rss if code == 0 else "failed", "MB" if code == 0 else "", f"checkpoint every {q.grad_checkpoint_every} steps" if code == 0 else tail)

    what = "apply to a 48-megapixel photo (8000 x 6000): peak RSS"
    if not batch_apply:
        table.add("memory", what, NEEDS_BATCH)
        return
    big = tmp / "big.jpg"
    rgb = load_image(SAMPLES / "astronaut.jpg").rgb
    from PIL import Image

    Image.fromarray((rgb * 255).round().astype(np.uint8)).resize((8000, 6000), Image.BILINEAR).save(big, quality=90)
    steps = 8
    code, wall, rss, tail = run_measured([*ncaedit_cmd(), "apply", str(rule_path), str(big), "--out", str(tmp / "big-out"), "--steps", str(steps)])
    if code != 0:
        table.add("memory", what, "failed", "", tail)
        return
    table.add("memory", what, rss, "MB", f"{steps} steps, default tiling, {wall:.0f} s")


def section_batch(table: Table, tmp: Path, rule_path: Path, batch_apply: bool) -> None:
    what = "apply to a folder of 512-px photos"
    if not batch_apply:
        table.add("batch", what, NEEDS_BATCH)
        return
    folder = tmp / "photos"
    folder.mkdir()
    names = ["astronaut.jpg", "coffee.jpg", "rocket.jpg", "chelsea.jpg"]
    count = 0
    for copy in range(4):
        for name in names:
            save_image(Photo(fit_long_side(load_image(SAMPLES / name).rgb, 512)), folder / f"{copy}-{Path(name).stem}.jpg")
            count += 1
    steps = 24
    code, wall, rss, tail = run_measured([*ncaedit_cmd(), "apply", str(rule_path), str(folder), "--out", str(tmp / "batch-out"), "--steps", str(steps)])
    if code != 0:
        table.add("batch", what, "failed", "", tail)
        return
    table.add("batch", what, count / wall, "images/s", f"{count} photos (long side 512 px), {steps} steps, {wall:.1f} s including start-up")


def section_cli(table: Table) -> None:
    walls = []
    for _ in range(3):
        t = time.perf_counter()
        subprocess.run([*ncaedit_cmd(), "--help"], capture_output=True, check=True)
        walls.append(time.perf_counter() - t)
    table.add("start-up", "`ncaedit --help` wall time", min(walls), "s", "best of 3")
    probe = subprocess.run([sys.executable, "-c", "import sys, ncaedit.cli; print('torch' in sys.modules)"], capture_output=True, text=True)
    table.add("start-up", "importing the CLI imports torch", probe.stdout.strip() or probe.stderr.strip()[-80:])


def has_batch_apply() -> bool:
    """The batch interface (`ncaedit apply RULE INPUT... --out DIR`, with --tile) is there."""
    r = subprocess.run([*ncaedit_cmd(), "apply", "--help"], capture_output=True, text=True)
    return "--tile" in r.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, help="also write the table as JSON here")
    parser.add_argument("--device", default="cpu", help="where rollouts and the training split run: cpu or cuda")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections ({', '.join(SECTIONS)})")
    parser.add_argument("--style-presets", default="fast", help="comma-separated presets the style section runs end to end (e.g. fast,balanced)")
    args = parser.parse_args()
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {', '.join(sorted(unknown))}")
    style_presets = [p.strip() for p in args.style_presets.split(",") if p.strip()]
    if not style_presets or set(style_presets) - set(preset_names()):
        parser.error(f"unknown or no presets in --style-presets (choose from {', '.join(preset_names())})")
    device = torch.device(args.device)
    table = Table()
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    machine = {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__, "gpu": gpu, "load_average": os.getloadavg()}
    print(f"machine: {machine}", file=sys.stderr)
    start = time.perf_counter()
    batch_apply = has_batch_apply() if {"memory", "batch"} & set(sections) else False
    with tempfile.TemporaryDirectory(prefix="ncaedit-bench-") as tmp_name:
        tmp = Path(tmp_name)
        rule_path = save_rule(bench_rule(), tmp / "bench.nca", {"default_steps": 24})
        for section in sections:
            print(f"[{section}]", file=sys.stderr, flush=True)
            if section == "rollout":
                section_rollout(table, device)
            elif section == "train":
                section_train(table, device)
            elif section == "style":
                section_style(table, tmp, style_presets)
            elif section == "memory":
                section_memory(table, tmp, rule_path, batch_apply)
            elif section == "batch":
                section_batch(table, tmp, rule_path, batch_apply)
            elif section == "cli":
                section_cli(table)
    machine["seconds"] = round(time.perf_counter() - start, 1)
    machine["load_average_after"] = os.getloadavg()
    print(f"\n{machine['cpu']}, {machine['cores']} cores, torch {machine['torch']}" + (f", {gpu}" if gpu else "") + f"; {machine['seconds']:.0f} s\n")
    print(table.markdown())
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "rows": table.rows}, indent=2))


if __name__ == "__main__":
    main()
