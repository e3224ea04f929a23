"""`mcpgen check`: is the bundle on disk exactly what `mcpgen build` would write?

The build runs in memory and its files are compared byte for byte with the folder. A stale
bundle is described the way a reviewer thinks of it first — tools added, removed and changed,
by name — then by file, then as the start of a raw diff.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcpgen.build import BuildResult
from mcpgen.emit import MANIFEST, Chunks

RAW_DIFF_LINES = 40  # of each text file: enough to see the kind of change, not a wall of text
TEXT_SUFFIXES = (".json", ".py", ".md")


@dataclass(slots=True)
class Staleness:
    """How a bundle folder differs from a fresh build (all empty: up to date)."""

    missing: list[str] = field(default_factory=list)  # build writes them; the folder lacks them
    extra: list[str] = field(default_factory=list)  # in the folder; build does not write them
    changed: list[str] = field(default_factory=list)
    tools_added: list[str] = field(default_factory=list)
    tools_removed: list[str] = field(default_factory=list)
    tools_changed: list[str] = field(default_factory=list)
    raw: list[str] = field(default_factory=list)  # lines of a unified diff, trimmed

    @property
    def stale(self) -> bool:
        return bool(self.missing or self.extra or self.changed)


def _same(path: Path, chunks: Chunks) -> bool:
    """Whether the file holds exactly these chunks, read piece by piece (manifests get big)."""
    try:
        if path.stat().st_size != sum(len(c) for c in chunks):
            return False
        with path.open("rb") as file:
            return all(file.read(len(chunk)) == chunk for chunk in chunks)
    except OSError:
        return False


def _on_disk(out: Path) -> set[str]:
    return {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}


def compare(result: BuildResult) -> Staleness:
    """The differences between `result.out` on disk and the files of `result`."""
    out = result.out
    staleness = Staleness()
    present = _on_disk(out) if out.is_dir() else set()
    for name in sorted(result.files):
        if name not in present:
            staleness.missing.append(name)
        elif not _same(out / name, result.files[name]):
            staleness.changed.append(name)
    staleness.extra = sorted(present - set(result.files))
    if MANIFEST in staleness.changed:
        old = _manifest(out / MANIFEST)
        new = json.loads(result.content(MANIFEST))
        if old is not None:
            from mcpgen.diff import changed_tools

            added, removed, changed = changed_tools(old, new)
            staleness.tools_added, staleness.tools_removed = added, removed
            staleness.tools_changed = changed
        else:
            staleness.tools_added = [t["name"] for t in new["tools"]]
    elif MANIFEST in staleness.missing:
        staleness.tools_added = [t.name for t in result.tools]
    for name in staleness.changed:
        if name.endswith(TEXT_SUFFIXES):
            staleness.raw += _raw_diff(out / name, result.content(name), name)
    return staleness


def _manifest(path: Path) -> dict[str, Any] | None:
    try:
        document = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) and "tools" in document else None


def _raw_diff(path: Path, fresh: bytes, name: str) -> list[str]:
    old = path.read_bytes().decode("utf-8", errors="replace").splitlines()
    new = fresh.decode("utf-8", errors="replace").splitlines()
    lines = list(
        difflib.unified_diff(old, new, f"{name} (on disk)", f"{name} (build)", n=2, lineterm="")
    )
    if len(lines) > RAW_DIFF_LINES:
        rest = len(lines) - RAW_DIFF_LINES
        lines = [*lines[:RAW_DIFF_LINES], f"... {rest} more diff lines in {name}"]
    return lines


def report(staleness: Staleness, shown_out: str) -> str:
    """The readable account of a stale bundle: tools first, then files, then the raw diff."""
    lines = [f"{shown_out}/ is stale: `mcpgen build` would write something else"]
    sections = [  # (label, names, counted): tools by name first, then files
        ("tools added", staleness.tools_added, True),
        ("tools removed", staleness.tools_removed, True),
        ("tools changed", staleness.tools_changed, True),
        ("files missing", staleness.missing, False),
        ("files changed", staleness.changed, False),
        ("files build would not write", staleness.extra, False),
    ]
    for label, names, counted in sections:
        if names:
            lines.append(f"  {label}{f' ({len(names)})' if counted else ''}: {_names(names)}")
    if staleness.raw:
        lines += ["", *staleness.raw]
    return "\n".join(lines)


def _names(names: list[str], limit: int = 20) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", and {len(names) - limit} more" if len(names) > limit else "")
