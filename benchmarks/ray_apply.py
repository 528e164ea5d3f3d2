"""Batch apply on Ray (`ncaedit apply --ray`) against local apply, the driver's memory, and a paper
estimate for a million 12-MP photos.

    nice -n 5 python benchmarks/ray_apply.py [--photos 16] [--steps 24] [--tiny 10000] [--json out.json]

1. photos/s on a folder of 512x512 photos: local apply (`apply_files`) vs `apply_on_ray` with an
   embedded Ray, each in its own process, start-up included and steady (first to last photo).
2. the driver's peak memory over `--tiny` 16x16 photos, against a tenth of them, with the
   settings `apply --ray` uses (keep_outcomes=False): flat means the same peak for both.
3. per-core costs of one 12-MP photo (decode, rollout, encode; the rollout measured on a 1-MP crop
   and scaled, which tiling makes exact up to halos), turned into hours for 1,000,000 photos.

Each part runs in a child process so that the numbers do not mix. Without --rule, a random-weight
rule with the `fast` preset's architecture is used: the cost depends only on the architecture.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from apply_at_scale import make_rule, photo, photo_folder  # noqa: E402

MEGAPIXELS = 12
FILE_MB = 5.0  # a typical 12-MP camera JPEG (the synthetic one made here compresses better): for read bandwidth
GPU_FLOPS = 10e12  # assumed effective fp32 rate of one data-centre GPU on this rollout (not measured here)


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS")) / 1024


def child_throughput(mode: str, rule: str, folder: str, out: str, steps: int) -> dict:
    """One batch, local or on Ray: wall time with start-up, and when the first result came (Ray reports
    a block of photos at a time, so a rate between first and last result would mislead)."""
    import ncaedit

    times: list[float] = []
    start = time.perf_counter()
    run = ncaedit.apply_files if mode == "local" else ncaedit.apply_on_ray
    summary = run(rule, [folder], out, steps=steps, device="cpu", on_outcome=lambda o: times.append(time.perf_counter()))
    wall = time.perf_counter() - start
    assert not summary.failed, summary.failed
    n = len(times)
    return {"photos": n, "wall_s": wall, "per_s": n / wall, "first_result_s": times[0] - start}


def child_memory(rule: str, folder: str, out: str) -> dict:
    """Driver RSS while `apply_on_ray` streams results, as `apply --ray` runs it."""
    import resource

    import ncaedit

    samples, count = [], 0

    def on_outcome(outcome) -> None:
        nonlocal count
        count += 1
        if count % 500 == 0:
            samples.append((count, round(rss_mb())))

    start = time.perf_counter()
    summary = ncaedit.apply_on_ray(rule, [folder], out, recursive=True, steps=2, device="cpu", keep_outcomes=False, on_outcome=on_outcome)
    return {
        "photos": count, "failed": len(summary.failed), "seconds": time.perf_counter() - start,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "rss_mb_by_photos": samples,
    }


def child_costs(rule: str, work: str, steps: int) -> dict:
    """Seconds per 12-MP photo on one core: JPEG decode, rollout, JPEG encode."""
    import torch

    from ncaedit.api import Rule
    from ncaedit.apply import apply_rule
    from ncaedit.image import encode_image, load_image

    torch.set_num_threads(1)  # one Ray worker per core
    width = int(round((MEGAPIXELS * 1e6 * 4 / 3) ** 0.5))
    big = Path(work) / "12mp.jpg"
    photo(width, width * 3 // 4).save(big, quality=90)
    start = time.perf_counter()
    full = load_image(big, keep_samples=True)
    decode = time.perf_counter() - start
    start = time.perf_counter()
    encode_image(full, ".jpg")
    encode = time.perf_counter() - start
    crop = type(full)(np.ascontiguousarray(full.rgb[:1000, :1000]), None, full.bit_depth)
    network = Rule.load(rule).network
    start = time.perf_counter()
    apply_rule(network, crop, steps, workers=1)
    per_mp = time.perf_counter() - start
    pixels = full.rgb.shape[0] * full.rgb.shape[1]
    return {
        "megapixels": pixels / 1e6, "file_mb": big.stat().st_size / 1e6, "decode_s": decode, "encode_s": encode,
        "rollout_s": per_mp * pixels / 1e6, "cell_updates_per_s": 1e6 * steps / per_mp,
        "macs_per_cell_step": sum(p.numel() for p in network.parameters()),  # a 1x1-conv MLP: one multiply-add per weight
    }


def in_child(*args: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"child {args[0]} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def estimate(costs: dict, steps: int, photos: float = 1e6, cell_rate: float | None = None) -> list[str]:
    """Hours for `photos` 12-MP photos on N nodes, from the measured per-core costs (`cell_rate`:
    cell-updates/s of one core instead of the one measured, e.g. a quiet machine's)."""
    if cell_rate:
        costs = costs | {"cell_updates_per_s": cell_rate, "rollout_s": costs["megapixels"] * 1e6 * steps / cell_rate}
    per_photo_core_s = costs["decode_s"] + costs["rollout_s"] + costs["encode_s"]
    lines = [
        f"one 12-MP photo on one core: decode {costs['decode_s']:.2f} s + rollout {costs['rollout_s']:.1f} s "
        f"({steps} steps, {costs['cell_updates_per_s'] / 1e6:.2f} M cell-updates/s) + encode {costs['encode_s']:.2f} s "
        f"= {per_photo_core_s:.1f} core-s; the rollout is {costs['rollout_s'] / per_photo_core_s:.0%} of it",
    ]
    for nodes, cores in ((1, 32), (10, 32), (100, 32)):
        hours = photos * per_photo_core_s / (nodes * cores) / 3600
        read_gbps = photos * FILE_MB * 8 / 1e3 / (hours * 3600)
        lines.append(f"CPU: {nodes:>3} nodes x {cores} cores: {hours:,.0f} h ({read_gbps:.2f} Gbit/s of object-store reads in all)")
    # GPU: not measured (no GPU on this machine): arithmetic with an assumed effective rate. The rule's
    # 1x1 convolutions on 18 channels are memory-bound, so assume 10 TFLOP/s of an H100's fp32, not its peak.
    flop = 2 * costs["macs_per_cell_step"] * costs["megapixels"] * 1e6 * steps
    gpu_rollout = flop / GPU_FLOPS
    cpu_side = costs["decode_s"] + costs["encode_s"]
    lines.append(f"GPU rollout of one 12-MP photo: {flop / 1e12:.2f} TFLOP -> {gpu_rollout:.2f} s at an assumed {GPU_FLOPS / 1e12:.0f} TFLOP/s")
    for nodes, gpus, cores in ((1, 8, 64), (10, 8, 64)):
        per_s = min(nodes * gpus / gpu_rollout, nodes * cores / cpu_side)
        lines.append(
            f"GPU: {nodes:>3} nodes x {gpus} GPUs, {cores} cores: {photos / per_s / 3600:,.1f} h "
            f"(limit: {'decode+encode on the CPU cores' if nodes * cores / cpu_side < nodes * gpus / gpu_rollout else 'rollout'}; "
            f"{photos * FILE_MB * 8 / 1e3 / (photos / per_s):.1f} Gbit/s of reads)"
        )
    return lines


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        kind, *rest = sys.argv[2:]
        result = {"throughput": lambda: child_throughput(rest[0], rest[1], rest[2], rest[3], int(rest[4])),
                  "memory": lambda: child_memory(*rest), "costs": lambda: child_costs(rest[0], rest[1], int(rest[2]))}[kind]()
        print(json.dumps(result))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rule", type=Path)
    ap.add_argument("--photos", type=int, default=16)
    ap.add_argument("--steps", type=int, default=24)
    ap.add_argument("--tiny", type=int, default=10_000)
    ap.add_argument("--only", default="throughput,memory,estimate")
    ap.add_argument("--cell-rate", type=float, help="cell-updates/s of one core for the estimate (default: measured now)")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ncaedit-ray-bench-"))
    rule = str(a.rule or make_rule(work / "rule.nca", a.steps))
    results: dict = {"steps": a.steps, "cores": len(os.sched_getaffinity(0)), "load_average_start": os.getloadavg()[0]}
    only = a.only.split(",")

    if "throughput" in only:
        folder = photo_folder(work / "photos", a.photos)
        for mode in ("local", "ray"):
            r = results[f"throughput_{mode}"] = in_child("throughput", mode, rule, str(folder), str(work / f"out-{mode}"), str(a.steps))
            print(f"{mode:>5}: {r['photos']} photos of 512x512, {a.steps} steps: {r['per_s']:.3f} photos/s with start-up "
                  f"({r['wall_s']:.1f} s, first result after {r['first_result_s']:.1f} s)", flush=True)

    if "memory" in only:
        for n in (a.tiny // 10, a.tiny):
            folder = work / f"tiny-{n}"
            for i in range(n):
                sub = folder / f"{i // 1000:03d}"
                sub.mkdir(parents=True, exist_ok=True)
                Image.fromarray(np.full((16, 16, 3), i % 256, np.uint8)).save(sub / f"t{i:05d}.png")
            r = results[f"memory_{n}"] = in_child("memory", rule, str(folder), str(work / f"tiny-out-{n}"))
            print(f"driver, {r['photos']:,} tiny photos: peak RSS {r['peak_rss_mb']:.0f} MB, {r['seconds']:.0f} s "
                  f"({r['photos'] / r['seconds']:.0f} photos/s); RSS by photos done: {r['rss_mb_by_photos']}", flush=True)

    if "estimate" in only:
        costs = results["costs"] = in_child("costs", rule, str(work), str(a.steps))
        results["estimate"] = estimate(costs, a.steps, cell_rate=a.cell_rate)
        print("\n".join(results["estimate"]))
    results["load_average_end"] = os.getloadavg()[0]
    if a.json:
        a.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
