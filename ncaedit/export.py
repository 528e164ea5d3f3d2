"""A rule as one self-contained web page that runs it live on the GPU (WebGL2).

The page (web/page.html and web/page.js, filled in here) computes the same step as `ncaedit apply`:
the same filters, padding, network, fire mask and hidden noise hashed from (seed, pixel position),
in float32 textures, so its result matches `apply` within a few 1/255. Everything is inline: the
weights (base64 float32), the script, the styles and a thumbnail to start from; a Content Security
Policy in the page forbids any request, so a page can be mailed and opened anywhere offline.
"""

from __future__ import annotations

import base64
import html
import json
import re
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path

from ncaedit.errors import NcaError
from ncaedit.paths import check_output, write_atomic
from ncaedit.nca_format import RuleFile, load_rule

SUFFIXES = {".html", ".htm"}


def _floats(t) -> str:
    """A tensor as base64 of its little-endian float32 bytes, row-major."""
    return base64.b64encode(t.detach().cpu().numpy().astype("<f4").tobytes()).decode("ascii")


def _script_json(value) -> str:
    """JSON that is safe inside <script type="application/json">: no '<', so no '</script>'."""
    return json.dumps(value, sort_keys=True).replace("<", "\\u003c")


def page_html(rf: RuleFile, name: str, source: dict | None = None) -> str:
    """The page for rule `rf` titled `name`; `source` (file name, modified time) is shown with the metadata."""
    web = resources.files("ncaedit") / "web"
    rule = rf.rule
    data = {
        "name": name,
        "arch": rule.arch(),
        "w1": _floats(rule.w1.weight),  # (width, 4C): feature 4c+k is filter k of channel c (rule.PERCEPTION_FILTERS)
        "b1": _floats(rule.w1.bias),
        "w2": _floats(rule.w2.weight),  # (C-3, width)
        "metadata": rf.metadata,
        "source": source or {},
        "thumbnail": base64.b64encode((web / "thumbnail.jpg").read_bytes()).decode("ascii"),
    }
    page = (web / "page.html").read_text(encoding="utf-8")
    script = (web / "page.js").read_text(encoding="utf-8")
    values = {"TITLE": html.escape(name), "RULE_JSON": _script_json(data), "SCRIPT": script}
    return re.sub(r"\{\{([A-Z_]+)\}\}", lambda m: values[m[1]], page)  # one pass: values are never rescanned


def export_page(rule_path: Path, out: Path | None = None, overwrite: bool = False) -> Path:
    """Write the page of the rule file `rule_path` to `out` (default: RULE.html beside it)."""
    rf = load_rule(rule_path)  # the same one-line errors as apply for a file that is not a rule
    out = out or rule_path.with_suffix(".html")
    check_output(out, [rule_path], SUFFIXES)
    if out.exists() and not overwrite:
        raise NcaError(f"{out}: exists; choose another name or pass --overwrite")
    modified = datetime.fromtimestamp(rule_path.stat().st_mtime, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return write_atomic(out, page_html(rf, rule_path.stem, {"file": rule_path.name, "modified": modified}).encode("utf-8"))

