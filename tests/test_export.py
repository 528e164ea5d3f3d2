"""`ncaedit export`: the page it writes, and the page at work in a real browser.

The browser is Debian's chromium, headless, driven by playwright (no browser download); it has no GPU
here, so WebGL2 runs on SwiftShader (software). .ci/run installs chromium; where it is missing the
browser tests skip and say why.
"""

import base64
import io
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import smooth_photo, write_rgb
from ncaedit.errors import NcaError
from ncaedit.export import export_page
from ncaedit.rule import REGION_ROWS, Rule, RuleConfig
from ncaedit.nca_format import load_rule, save_rule

CHROMIUM = os.environ.get("NCAEDIT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
SOFTWARE_GL = ["--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist"]
# Where the tests leave a screenshot of the page (a test artifact; docs/export-page.png is a copy).
SCREENSHOT = Path(os.environ.get("NCAEDIT_ARTIFACTS", tempfile.gettempdir())) / "ncaedit-export-page.png"


def random_rule(path: Path, config: RuleConfig, seed: int = 0, default_steps: int = 6) -> Path:
    """A rule with random weights large enough that a few steps change the photo a lot."""
    torch.manual_seed(seed)
    rule = Rule(config)
    with torch.no_grad():
        rule.w1.weight.normal_(0, 0.3)
        rule.w1.bias.normal_(0, 0.1)
        rule.w2.weight.normal_(0, 0.1)
        rule.w2.weight[REGION_ROWS] = 0  # a rule never writes its regions (rule.without_region_rows)
    return save_rule(rule, path, {"mode": "style", "style_image": "<b>stars</b>.jpg", "default_steps": default_steps})


def embedded(page: Path) -> dict:
    text = page.read_text()
    start = text.index('<script id="nca-rule" type="application/json">')
    return json.loads(text[text.index(">", start) + 1 : text.index("</script>", start)])


# ---- the page file -------------------------------------------------------------------------------


def test_export_writes_one_self_contained_page(tmp_path, cli):
    rule_path = random_rule(tmp_path / "stars.nca", RuleConfig(hidden_channels=5, width=20))
    code, err = cli("export", rule_path)
    page = tmp_path / "stars.html"
    assert code == 0 and err == f"wrote {page}", err
    text = page.read_text()
    assert "default-src 'none'" in text  # the browser itself refuses any request the page would make
    assert "<b>" not in text  # metadata is data: no markup gets in
    data = embedded(page)
    rule = load_rule(rule_path).rule
    for key, tensor in (("w1", rule.w1.weight), ("b1", rule.w1.bias), ("w2", rule.w2.weight)):
        assert np.array_equal(np.frombuffer(base64.b64decode(data[key]), "<f4"), tensor.detach().numpy().ravel())
    assert data["metadata"]["style_image"] == "<b>stars</b>.jpg" and data["source"]["file"] == "stars.nca"

    with pytest.raises(NcaError, match="exists; choose another name or pass --overwrite"):
        export_page(rule_path)
    assert export_page(rule_path, overwrite=True) == page
    with pytest.raises(NcaError, match="unknown output format"):
        export_page(rule_path, tmp_path / "page.txt")


def test_a_file_that_is_not_a_rule_gets_the_errors_of_apply(tmp_path, cli):
    """export loads the rule as apply does (nca_format.load_rule): the same one-line errors, exit code 2."""
    bad = tmp_path / "bad.nca"
    bad.write_bytes(b"not a rule at all")
    assert cli("export", bad) == (2, f"error: {bad}: not an ncaedit rule file (bad or truncated header)")
    rule_path = random_rule(tmp_path / "rule.nca", RuleConfig(hidden_channels=1, width=4))
    for content in (b"", rule_path.read_bytes()[:-3], rule_path.read_bytes().replace(b"ncaedit-rule", b"ncaedit-rulx")):
        bad.write_bytes(content)
        with pytest.raises(NcaError) as by_apply:
            load_rule(bad)
        with pytest.raises(NcaError) as by_export:
            export_page(bad)
        assert str(by_export.value) == str(by_apply.value)
    assert not (tmp_path / "bad.html").exists()


# ---- the page in a browser -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM:
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run installs it), so the page cannot be tested in a browser")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=SOFTWARE_GL)
        yield b
        b.close()


def open_page(browser, html: Path, init_script: str | None = None):
    """The page at its file:// URL; every request it makes is recorded in page.requests."""
    page = browser.new_page(accept_downloads=True)
    page.requests, page.errors = [], []
    page.on("request", lambda req: page.requests.append(req.url))
    page.on("pageerror", lambda err: page.errors.append(str(err)))
    if init_script:
        page.add_init_script(init_script)
    page.goto(html.as_uri())
    wait_for(page, "document.body.dataset.state")
    return page


def wait_for(page, expression: str, timeout: float = 20.0):
    """Poll a JS expression until it is truthy (page.wait_for_function evaluates strings, which the
    page's Content Security Policy forbids)."""
    end = time.monotonic() + timeout
    while not (value := page.evaluate(expression)):
        if time.monotonic() > end:
            raise TimeoutError(f"{expression} stayed false; page errors: {page.errors}")
        time.sleep(0.02)
    return value


def load_photo(page, path: str) -> None:
    page.set_input_files("#file", path)
    wait_for(page, f"document.body.dataset.photo === {json.dumps(Path(path).name)}")


def canvas_rgb(page) -> np.ndarray:
    url = page.evaluate("document.getElementById('canvas').toDataURL('image/png')")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")).astype(int)


def set_value(page, selector: str, value, event: str = "input") -> None:
    page.evaluate("([s, v, e]) => { const el = document.querySelector(s); el.value = v; el.dispatchEvent(new Event(e)); }", [selector, str(value), event])


def download_rgb(page) -> np.ndarray:
    with page.expect_download() as info:
        page.click("#download")
    return np.asarray(Image.open(info.value.path()).convert("RGB")).astype(int)


def rgb_of(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB")).astype(int)


# Tolerance against `ncaedit apply`: at most 2/255 anywhere, and at most 1% of values off at all.
# The page computes the same float32 arithmetic in another order (GPU dot products on the filter
# features vs BLAS on the folded stencil weights, rule.py), so values differ by float32 rounding
# (~1e-7 relative); the 8-bit output flips only where a value sits at a rounding boundary. Measured
# here: no difference at all after 6 steps on these rules, and 1/255 on <0.01% of values after 48 steps.
@pytest.mark.parametrize(
    "config, seed",
    [
        (RuleConfig(), 3),  # the default layout: 18 channels in 4 textures, fire rate 0.5, the photo levelled
        (RuleConfig(hidden_channels=5, width=22, fire_rate=1.0, padding="reflect", photo_contrast=0.0), 0),  # the photo as it is
        (RuleConfig(hidden_channels=8, width=24, fire_rate=0.7, padding="zeros"), 12345678901),  # a seed past 2^32
        (RuleConfig(scales=3, padding="reflect"), 5),  # coarse perception: two smoothed copies of the state a step
        (RuleConfig(hidden_channels=2, width=8, scales=2, padding="zeros"), 6),
        (RuleConfig(regions=8, padding="reflect"), 9),  # random regions in the first two hidden channels, ~20 of them here
    ],
)
def test_page_matches_ncaedit_apply(browser, tmp_path, cli, config, seed):
    steps = 6
    rule_path = random_rule(tmp_path / "rule.nca", config, default_steps=steps)
    photo = write_rgb(tmp_path / "photo.png", smooth_photo(32, 40))  # not square: rows and columns can't be mixed up
    export_page(rule_path)
    code, err = cli("apply", rule_path, photo, "-o", tmp_path / "applied.png", "--steps", steps, "--seed", seed)
    assert code == 0, err
    want, source = rgb_of(tmp_path / "applied.png"), rgb_of(photo)

    page = open_page(browser, tmp_path / "rule.html")
    load_photo(page, photo)
    set_value(page, "#seed", seed, "change")
    set_value(page, "#compare", 0)  # all of the canvas shows the result
    for _ in range(steps):
        page.click("#step")
    assert page.inner_text("#steps") == str(steps)
    got = download_rgb(page)
    assert np.array_equal(canvas_rgb(page), got)  # what is shown is what is saved
    assert np.abs(want - source).mean() > 20  # the rule does change the photo: the comparison means something
    diff = np.abs(got - want)
    assert diff.max() <= 2 and (diff > 0).mean() <= 0.01, f"max {diff.max()}/255, {(diff > 0).mean():.2%} of values differ"
    assert all(url.startswith("file://") for url in page.requests), page.requests  # nothing fetched
    assert not page.errors
    page.close()


def test_controls(browser, tmp_path):
    rule_path = random_rule(tmp_path / "rule.nca", RuleConfig(hidden_channels=4, width=16, photo_contrast=0.0), default_steps=5)  # reads the photo unlevelled
    export_page(rule_path)
    photo = write_rgb(tmp_path / "photo.png", smooth_photo(24, 32))
    page = open_page(browser, tmp_path / "rule.html")
    assert page.inner_text("#photo").startswith("sample.jpg")  # starts from the bundled thumbnail
    assert "<b>stars</b>.jpg" in page.inner_text("#meta")  # metadata shown as text
    load_photo(page, photo)
    source = rgb_of(photo)
    set_value(page, "#compare", 0)
    assert np.array_equal(canvas_rgb(page), source)  # step 0 is the photo

    page.click("#play")  # plays until the rule's default steps, then pauses by itself
    wait_for(page, "document.getElementById('steps').textContent === '5' && document.getElementById('play').textContent === 'Play'")
    played = canvas_rgb(page)
    assert np.abs(played - source).mean() > 5
    page.click("#step")
    assert page.inner_text("#steps") == "6" and not np.array_equal(canvas_rgb(page), played)

    set_value(page, "#stopat", 0)
    page.click("#play")
    wait_for(page, "Number(document.getElementById('steps').textContent) > 8")
    page.click("#play")  # pause
    assert page.inner_text("#play") == "Play"
    paused = page.inner_text("#steps")
    time.sleep(0.3)
    assert page.inner_text("#steps") == paused  # paused means no more steps

    page.click("#reset")
    assert page.inner_text("#steps") == "0" and np.array_equal(canvas_rgb(page), source)
    for _ in range(5):
        page.click("#step")
    assert np.array_equal(canvas_rgb(page), played)  # same seed, same steps: the same picture

    set_value(page, "#strength", 0)
    assert np.array_equal(canvas_rgb(page), source)
    set_value(page, "#strength", 0.5)
    half = canvas_rgb(page)
    assert np.abs(half - (source + (played - source) * 0.5)).max() <= 1  # apply.blend
    assert np.array_equal(download_rgb(page), half)  # the download is the blended result, at full size
    set_value(page, "#strength", 1)

    set_value(page, "#compare", 0.5)  # before|after: the photo left of the line, the edit right of it
    split = canvas_rgb(page)
    assert np.array_equal(split[:, :15], source[:, :15]) and np.array_equal(split[:, 17:], played[:, 17:])
    assert np.array_equal(download_rgb(page), played)  # the download never has the split in it
    page.screenshot(path=str(SCREENSHOT))

    set_value(page, "#seed", 7, "change")  # another seed: back to step 0, and another rollout
    assert page.inner_text("#steps") == "0"
    for _ in range(5):
        page.click("#step")
    set_value(page, "#compare", 0)
    assert not np.array_equal(canvas_rgb(page), played)

    not_image = tmp_path / "notes.png"
    not_image.write_text("this is not a picture")
    page.set_input_files("#file", str(not_image))
    wait_for(page, "document.getElementById('message').textContent")
    assert "notes.png: not an image" in page.inner_text("#message") and "current photo is kept" in page.inner_text("#message")
    assert page.inner_text("#photo").startswith("photo.png") and page.inner_text("#steps") == "5"

    wide = write_rgb(tmp_path / "wide.png", np.full((12, 4200, 3), 0.5, np.float32))
    load_photo(page, wide)  # above the page's 4096-px limit: scaled down, and the page says so
    assert page.inner_text("#photo") == "wide.png, 4096×12" and "scaled down from 4200×12" in page.inner_text("#message")
    assert not page.errors
    page.close()


@pytest.mark.parametrize(
    "init_script, said",
    [
        ("HTMLCanvasElement.prototype.getContext = function () { return null; };", "needs WebGL2"),
        (
            "const get = WebGL2RenderingContext.prototype.getExtension;"
            "WebGL2RenderingContext.prototype.getExtension = function (n) { return n === 'EXT_color_buffer_float' ? null : get.call(this, n); };",
            "needs float render targets",
        ),
    ],
)
def test_page_says_what_the_browser_lacks(browser, tmp_path, init_script, said):
    export_page(random_rule(tmp_path / "rule.nca", RuleConfig(hidden_channels=1, width=4)))
    page = open_page(browser, tmp_path / "rule.html", init_script)
    assert page.evaluate("document.body.dataset.state") == "unsupported"
    assert said in page.inner_text("#message") and page.is_disabled("#play")
    page.close()


def test_browser_has_webgl2_with_float_targets(browser):
    """The software GL the browser tests run on has what the page needs (else they'd test nothing)."""
    page = browser.new_page()
    page.set_content("<canvas></canvas>")
    ok = page.evaluate("(() => { const gl = document.querySelector('canvas').getContext('webgl2'); return !!gl && !!gl.getExtension('EXT_color_buffer_float'); })()")
    assert ok
    page.close()


def test_page_template_ships_in_the_wheel():
    """Every file of ncaedit/web matches a package-data pattern of pyproject.toml (else pip installs lack it)."""
    import fnmatch
    import tomllib

    root = Path(__file__).parent.parent
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["ncaedit"]
    files = [p.relative_to(root / "ncaedit").as_posix() for p in (root / "ncaedit" / "web").iterdir()]
    assert files and all(any(fnmatch.fnmatch(f, pat) for pat in patterns) for f in files), (files, patterns)
