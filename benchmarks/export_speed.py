"""How fast does an exported page (`ncaedit export`) run a rule? Steps per second in headless chromium.

Exports a rule of the default architecture (18 channels, 96 hidden units, fire rate 0.5), opens the
page from a file:// URL, loads a photo of each size and times steps through the page's own step
function (which waits for the GPU by reading a pixel back). By default chromium renders with
SwiftShader, a CPU implementation of the GPU: that is what a machine without a GPU has, and it is
far slower than any real GPU. `--gl default` lets chromium pick (a GPU where it has one). For
comparison, the same steps on the CPU in ncaedit's own engine (inference.run_inplace, what
`ncaedit apply` runs).

    python benchmarks/export_speed.py [--sizes 512,2048] [--gl swiftshader|default] [--chromium PATH]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ncaedit.inference import run_inplace
from ncaedit.export import export_page
from ncaedit.rule import Rule, RuleConfig
from ncaedit.nca_format import save_rule
from ncaedit.state import make_state

GL_FLAGS = {"swiftshader": ["--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist"], "default": ["--ignore-gpu-blocklist"]}


def poll(page, expression: str, timeout: float = 600.0) -> None:
    end = time.monotonic() + timeout  # page.wait_for_function evaluates strings, which the page's CSP forbids
    while not page.evaluate(expression):
        if time.monotonic() > end:
            raise TimeoutError(expression)
        time.sleep(0.05)


def time_steps(page, min_seconds: float) -> tuple[int, float]:
    """(steps, seconds): about `min_seconds` of steps (one, where one step takes longer), after a warm-up step."""
    page.evaluate("window.ncaedit.run(1)")
    t = time.perf_counter()
    page.evaluate("window.ncaedit.run(1)")
    one = time.perf_counter() - t
    n = min(64, round(min_seconds / max(one, 1e-3)))
    if n < 2:
        return 1, one
    t = time.perf_counter()
    page.evaluate(f"window.ncaedit.run({n})")
    return n, time.perf_counter() - t


def cpu_steps_per_second(rule: Rule, side: int, min_seconds: float) -> float:
    state = make_state(torch.rand(1, 3, side, side), rule.config.hidden_channels)
    run_inplace(rule, state, 1)
    n, t = 0, time.perf_counter()
    while n < 2 or time.perf_counter() - t < min_seconds:
        run_inplace(rule, state, 1, first_step=n)
        n += 1
    return n / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="512,2048")
    ap.add_argument("--gl", choices=sorted(GL_FLAGS), default="swiftshader")
    ap.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser"))
    ap.add_argument("--seconds", type=float, default=5.0, help="about this long timing each size")
    args = ap.parse_args()
    if not args.chromium:
        raise SystemExit("no chromium found: apt-get install chromium, or pass --chromium PATH")
    from playwright.sync_api import sync_playwright

    torch.manual_seed(0)
    config = RuleConfig()
    rule = Rule(config)
    with torch.no_grad():
        rule.w2.weight.normal_(0, 0.02)
    macs = (4 * config.channels * config.scales * config.width + config.width * (config.channels - 3)) * config.fire_rate
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        tmp = Path(tmp)
        page_path = export_page(save_rule(rule, tmp / "bench.nca"))
        browser = p.chromium.launch(executable_path=args.chromium, args=GL_FLAGS[args.gl])
        page = browser.new_page()
        page.goto(page_path.as_uri())
        poll(page, "document.body.dataset.state")
        renderer = page.evaluate(
            "(() => { const gl = document.createElement('canvas').getContext('webgl2'); const i = gl && gl.getExtension('WEBGL_debug_renderer_info');"
            " return gl ? (i ? gl.getParameter(i.UNMASKED_RENDERER_WEBGL) : gl.getParameter(gl.RENDERER)) : 'no WebGL2'; })()"
        )
        print(f"chromium {browser.version}, WebGL2 renderer: {renderer}")
        print(f"rule: {config.channels} channels, {config.width} hidden units, fire rate {config.fire_rate}; {torch.get_num_threads()} CPU threads for the CPU column")
        print(f"{'size':>6} {'page steps/s':>13} {'s/step':>8} {'GFLOP/s':>8} {'CPU engine steps/s':>19}")
        for side in (int(s) for s in args.sizes.split(",")):
            photo = tmp / f"photo{side}.png"
            Image.fromarray(np.random.default_rng(side).integers(0, 256, (side, side, 3), dtype=np.uint8)).save(photo)
            page.set_input_files("#file", str(photo))
            poll(page, f"document.body.dataset.photo === 'photo{side}.png'")
            size = page.inner_text("#photo")
            if f"{side}×{side}" not in size:
                print(f"{side:>6} page scaled the photo: {size} {page.inner_text('#message')}")
                continue
            n, seconds = time_steps(page, args.seconds)
            cpu = cpu_steps_per_second(rule, side, args.seconds)
            gflops = n * side * side * macs * 2 / seconds / 1e9
            print(f"{side:>5}² {n / seconds:>13.3f} {seconds / n:>8.3f} {gflops:>8.1f} {cpu:>19.3f}")
        browser.close()


if __name__ == "__main__":
    main()
