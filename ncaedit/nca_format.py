"""Rule files (.nca): the rule's tensors in safetensors format, plus JSON metadata in its header.

safetensors is a plain header + raw little-endian arrays, so loading a rule never runs code (no
pickle anywhere). The metadata says how to rebuild the rule (architecture), how it was made
(mode, recipe, loss network, style image hash, final losses) and a checksum of the tensors, so a
file whose tensors were swapped or edited is refused.

A rule file is untrusted input, all of it. Every metadata field the program acts on (the
architecture and `default_steps`) is checked for type, range and finiteness when the file is read
(`_check_metadata`; the bounds are limits.BOUNDS), so a shared file cannot make a command crash or
run forever. These fields change what the rule does without changing a tensor, so a second checksum
covers them (`settings_sha256`): a file whose behaviour was edited is refused like one whose weights
were. Files written before that checksum existed (ncaedit 0.1) have none and are still read; their
fields are still checked. The other fields (recipe, losses, names) are a record, never acted on.
A checksum is not a signature: it catches damage and careless edits, not a forger, which is why the
checks above hold whatever the checksums say.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch

from ncaedit.config import VERSION
from ncaedit.errors import NcaError
from ncaedit.limits import check_number
from ncaedit.paths import free_name, read_limited, write_atomic
from ncaedit.rule import PADDINGS, REGION_ROWS, Rule, RuleConfig

FORMAT = "ncaedit-rule"
FORMAT_VERSION = 1
_TENSORS = ("w1.weight", "w1.bias", "w2.weight")
SETTINGS = ("arch", "default_steps")  # metadata that changes what the rule does: covered by settings_sha256
DEFAULT_STEPS = 32  # for files that do not say
ADDED_ARCH = {"photo_contrast": 0.0, "scales": 1, "regions": 0}  # arch keys newer than some files, with the value that reads those files as written
_MAX_HEADER = 1 << 20
_MAX_FILE = 64 << 20  # rules are kilobytes; anything this large is not one
_BAD_JSON = (ValueError, KeyError, TypeError, IndexError, AttributeError, OverflowError, RecursionError)


@dataclass
class RuleFile:
    rule: Rule
    metadata: dict = field(default_factory=dict)


def _checksum(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in _TENSORS:
        h.update(name.encode())
        h.update(tensors[name].detach().to(torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def _settings_checksum(meta: dict) -> str:
    settings = {k: meta[k] for k in SETTINGS if k in meta}
    return hashlib.sha256(json.dumps(settings, sort_keys=True, allow_nan=False).encode()).hexdigest()


def save_rule(rule: Rule, path: str | Path, metadata: dict | None = None) -> Path:
    """Write `rule` atomically; `metadata` (JSON-serialisable) is stored beside the architecture."""
    from safetensors.torch import save

    path = Path(path)
    tensors = {k: v.detach().to(torch.float32).contiguous().cpu() for k, v in rule.state_dict().items()}
    meta = {k: v for k, v in (metadata or {}).items() if k != "settings_sha256"}
    meta.update(format=FORMAT, format_version=FORMAT_VERSION, ncaedit_version=VERSION, arch=rule.arch(), tensor_sha256=_checksum(tensors))
    _check_metadata(meta, path)  # never write a file that would be refused on reading
    meta["settings_sha256"] = _settings_checksum(meta)
    return write_atomic(path, save(tensors, metadata={"ncaedit": json.dumps(meta, sort_keys=True)}))


def save_rule_or_rescue(rule: Rule, path: str | Path, metadata: dict | None = None) -> Path:
    """save_rule; when `path` cannot be written (a full disk, a folder gone read-only), the rule goes
    to the temporary folder instead and the NcaError says where: a trained rule is never lost to a
    failed write."""
    import tempfile

    try:
        return save_rule(rule, path, metadata)
    except NcaError as exc:
        rescue = free_name(Path(tempfile.gettempdir()) / f"ncaedit-rescued-{Path(path).name}")
        try:
            save_rule(rule, rescue, metadata)
        except NcaError as again:
            raise NcaError(f"{exc}; the rule could not be written to {rescue} either") from again
        raise NcaError(f"{exc}; the trained rule was saved to {rescue} instead") from exc


def read_metadata(path: str | Path) -> dict:
    """The metadata of a rule file, checked for format and version, without building the rule."""
    return _parse(Path(path))[1]


def load_rule(path: str | Path) -> RuleFile:
    path = Path(path)
    data, meta = _parse(path)
    from safetensors.torch import load

    try:
        tensors = load(data)
    except Exception as exc:
        raise NcaError(f"{path}: corrupt rule file ({type(exc).__name__})") from exc
    altered = f"{path}: rule file does not match its own architecture; it was altered or damaged"
    arch = meta.get("arch")
    stored = sum(t.numel() for t in tensors.values())
    # No size in the architecture can exceed the number of stored weights; checking that first keeps
    # a tampered header from making us allocate a huge network.
    if not isinstance(arch, dict) or any(isinstance(v, int) and abs(v) > stored for v in arch.values()):
        raise NcaError(altered)
    try:
        config = RuleConfig(**arch)
        with torch.device("meta"):  # shapes only, no memory
            shapes = {k: v.shape for k, v in Rule(config).state_dict().items()}
        if any(k not in tensors or tensors[k].shape != shape for k, shape in shapes.items()):
            raise NcaError(altered)
        rule = Rule(config)
        rule.load_state_dict({k: tensors[k] for k in shapes})
        if config.regions and rule.w2.weight[REGION_ROWS].any():  # a rule that writes its regions was not trained as one
            raise NcaError(altered)
    except (KeyError, TypeError, ValueError, RuntimeError, OverflowError, NcaError) as exc:
        raise NcaError(altered) from exc
    if _checksum(tensors) != meta.get("tensor_sha256"):
        raise NcaError(f"{path}: rule tensors do not match the checksum in the metadata; the file was altered or damaged")
    if not all(torch.isfinite(p).all() for p in rule.parameters()):
        raise NcaError(f"{path}: rule weights are not finite numbers; the rule is broken, train it again")
    rule.eval()
    return RuleFile(rule, meta)


def _check_metadata(meta: dict, path: Path) -> None:
    """Refuse metadata whose acted-on fields have the wrong type, range or shape (see the module's doc)."""
    arch = meta.get("arch")
    names = [f.name for f in fields(RuleConfig)]
    if not isinstance(arch, dict) or not set(names) - set(ADDED_ARCH) <= set(arch) <= set(names):
        required = [n for n in names if n not in ADDED_ARCH]
        raise NcaError(f"{path}: rule metadata 'arch' must hold {', '.join(required)}, and may hold {', '.join(ADDED_ARCH)}; the file was altered or damaged")
    for name in arch:
        if name == "padding":
            if arch[name] not in PADDINGS:
                raise NcaError(f"{path}: rule metadata arch.padding must be one of {', '.join(PADDINGS)}, got {arch[name]!r}")
        else:
            check_number(name, arch[name], f"{path}: rule metadata arch.{name}", optional=False)
    if "default_steps" in meta:
        check_number("steps", meta["default_steps"], f"{path}: rule metadata default_steps", optional=False)
    for key in ("tensor_sha256", "settings_sha256"):
        value = meta.get(key)
        if (value is not None or key == "tensor_sha256") and not (isinstance(value, str) and len(value) == 64):
            raise NcaError(f"{path}: rule metadata {key} is not a SHA-256 checksum; the file was altered or damaged")
    if "settings_sha256" in meta and meta["settings_sha256"] != _settings_checksum(meta):
        raise NcaError(f"{path}: rule settings ({', '.join(SETTINGS)}) do not match their checksum; the file was altered or damaged")


def _parse(path: Path) -> tuple[bytes, dict]:
    data = read_limited(path, _MAX_FILE, "a .nca rule file", "no such rule file")
    not_rule = f"{path}: not an ncaedit rule file"
    if len(data) < 8:
        raise NcaError(f"{not_rule} (too short)")
    (n,) = struct.unpack("<Q", data[:8])
    if n > _MAX_HEADER or 8 + n > len(data):
        raise NcaError(f"{not_rule} (bad or truncated header)")
    try:
        header = json.loads(data[8 : 8 + n])
        meta = json.loads(header["__metadata__"]["ncaedit"])
    except _BAD_JSON as exc:
        raise NcaError(f"{not_rule} (no ncaedit metadata)") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise NcaError(not_rule)
    version = meta.get("format_version")
    if not isinstance(version, int):
        raise NcaError(f"{not_rule} (no format version)")
    if version > FORMAT_VERSION:
        raise NcaError(f"{path}: rule format {version} is newer than this ncaedit understands ({FORMAT_VERSION}); upgrade ncaedit")
    # Every tensor's byte range must lie inside the file: catches truncation before safetensors does.
    try:
        end = max(int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__")
    except _BAD_JSON as exc:
        raise NcaError(f"{not_rule} (bad tensor table)") from exc
    if 8 + n + end != len(data):
        raise NcaError(f"{path}: rule file is truncated or has trailing data")
    _check_metadata(meta, path)
    meta["arch"] = ADDED_ARCH | meta["arch"]  # after the checksum check: it covers the arch as stored
    return data, meta
