"""`mcpgen check`: is the bundle on disk exactly what `mcpgen build` would write?

First from digests, without rendering anything: the bundle's index records the digest of every
input (each .proto file read, each snapshot, the settings, mcpgen's version) and of every file
of its own. When the sources still hash to what the index recorded and every bundle file still
hashes to its recorded digest, the bundle is what a build would write. Anything else — or an
index that cannot tell — falls back to a full build into a temporary folder (through the build
cache, so only what changed is rendered), compared file by file. A stale bundle is described
the way a reviewer thinks of it first — tools added, removed and changed, by name — then by
file, then as the start of a raw diff.
"""

from __future__ import annotations

import difflib
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

from mcpgen.build import build, config_digest, sources_digest
from mcpgen.cache import Cache
from mcpgen.config import Config
from mcpgen.contract import (
    DOCS_DIR,
    INDEX,
    MANIFEST_VERSION,
    MODELS_DIR,
    TOOLS_DIR,
    BundleView,
    bundle_files,
    digest,
    file_digest,
    open_bundle,
)
from mcpgen.errors import UserError, Warnings
from mcpgen.progress import Progress
from mcpgen.sources.descriptors import read_descriptor_set
from mcpgen.sources.inputs import classify_sources, registry_digest, registry_services
from mcpgen.sources.protofiles import _import_roots, resolve

RAW_DIFF_LINES = 40  # of each text file: enough to see the kind of change, not a wall of text
TEXT_SUFFIXES = (".json", ".py", ".md")


@dataclass(slots=True)
class Verdict:
    """How a bundle folder differs from a fresh build (all empty: up to date)."""

    out: Path
    tools: int = 0
    by_digest: bool = False  # decided from the recorded digests, nothing rendered
    missing: list[str] = field(default_factory=list)  # build writes them; the folder lacks them
    extra: list[str] = field(default_factory=list)  # in the folder; build does not write them
    changed: list[str] = field(default_factory=list)
    tools_added: list[str] = field(default_factory=list)
    tools_removed: list[str] = field(default_factory=list)
    tools_changed: list[str] = field(default_factory=list)
    raw: list[str] = field(default_factory=list)  # lines of a unified diff, trimmed
    note: str = ""  # why the bundle cannot be compared (an old version)

    @property
    def stale(self) -> bool:
        return bool(self.missing or self.extra or self.changed or self.note)

    def report(self, shown_out: str) -> str:
        """The readable account of a stale bundle: tools first, then files, then the diff."""
        lines = [f"{shown_out}/ is stale: `mcpgen build` would write something else"]
        if self.note:
            lines.append(f"  {self.note}")
        sections = [  # (label, names, counted): tools by name first, then files
            ("tools added", self.tools_added, True),
            ("tools removed", self.tools_removed, True),
            ("tools changed", self.tools_changed, True),
            ("files missing", self.missing, False),
            ("files changed", self.changed, False),
            ("files build would not write", self.extra, False),
        ]
        for label, names, counted in sections:
            if names:
                lines.append(f"  {label}{f' ({len(names)})' if counted else ''}: {_names(names)}")
        if self.raw:
            lines += ["", *self.raw]
        return "\n".join(lines)


def check(
    config: Config,
    warnings: Warnings | None = None,
    progress: Progress | None = None,
    cache: Cache | None = None,
) -> Verdict:
    out = Path(config.out)
    warnings = warnings if warnings is not None else Warnings()
    view = _current_view(out)
    if view is not None and up_to_date_by_digest(view, config):
        return Verdict(out, tools=view.index.tool_count, by_digest=True)
    with tempfile.TemporaryDirectory(prefix=".mcpgen-check-", dir=_scratch(out)) as tmp:
        fresh = Path(tmp) / "bundle"
        result = build(replace(config, out=str(fresh)), warnings, progress, cache)
        verdict = compare(out, fresh)
        verdict.tools = len(result.tools)
        if view is not None and view.version != MANIFEST_VERSION:
            verdict.note = (
                f"{out} is a version-{view.version} bundle; this mcpgen writes version "
                f"{MANIFEST_VERSION} (an index plus shards per package): rebuild it and "
                "commit the new layout (see docs/bundle.md)"
            )
        shutil.rmtree(fresh, ignore_errors=True)
    return verdict


def _scratch(out: Path) -> Path:
    """A folder for the comparison build: beside the bundle when possible (same disk)."""
    parent = out.resolve().parent
    return parent if parent.is_dir() else Path(tempfile.gettempdir())


def _current_view(out: Path) -> BundleView | None:
    if not (out / INDEX).is_file():
        return None
    try:
        return open_bundle(out)
    except UserError:
        return None  # unreadable: the full comparison says what differs


def up_to_date_by_digest(view: BundleView, config: Config) -> bool:
    """Whether the recorded digests prove the bundle current: same settings and mcpgen,
    same source files, every input file and every bundle file unchanged, nothing extra."""
    index = view.index
    if view.version != MANIFEST_VERSION or not index.inputs.config:
        return False
    if index.inputs.config != config_digest(config):
        return False
    try:
        found = classify_sources(config.sources, config.import_paths)
    except UserError:
        return False
    exposed = set(found.protos.names)
    for path in found.descriptor_sets:
        fds, imports = read_descriptor_set(path)
        exposed |= {f.name for f in fds.file if f.name not in imports}
    if sources_digest(exposed) != index.inputs.sources:
        return False
    snapshots = [digest(p.read_bytes()) for p in found.descriptor_sets]
    if found.registries:
        snapshots.append(registry_digest(registry_services(found)))
    snapshots.sort()
    if snapshots != index.inputs.snapshots:
        return False
    if not set(found.protos.names) <= index.inputs.protos.keys():
        return False
    roots = _import_roots(found.protos)
    for name, recorded in index.inputs.protos.items():
        path = found.protos.names.get(name) or resolve(name, roots)
        if path is None or file_digest(path) != recorded:
            return False
    folder = view.storage.path("")
    if folder is None:
        return False
    present = bundle_files(folder) - {INDEX}
    if present != set(index.digests):
        return False
    return all(file_digest(folder / name) == recorded for name, recorded in index.digests.items())


def compare(out: Path, fresh: Path) -> Verdict:
    """The differences between the bundle folder `out` and a fresh build in `fresh`."""
    verdict = Verdict(out)
    present = bundle_files(out) if out.is_dir() else set()
    wanted = bundle_files(fresh)
    for name in sorted(wanted):
        if name not in present:
            verdict.missing.append(name)
        elif not _same(out / name, fresh / name):
            verdict.changed.append(name)
    verdict.extra = sorted(present - wanted)
    if verdict.missing or verdict.changed or verdict.extra:
        _tool_changes(verdict, out, fresh)
    for name in sorted(verdict.changed, key=_diff_order):
        if name.endswith(TEXT_SUFFIXES) and len(verdict.raw) < RAW_DIFF_LINES * 3:
            verdict.raw += _raw_diff(out / name, fresh / name, name)
    return verdict


def _tool_changes(verdict: Verdict, out: Path, fresh: Path) -> None:
    """Tools added, removed and changed, from the tools shards that differ only."""
    from mcpgen.diff import changed_tools, manifest_of

    differing = [*verdict.missing, *verdict.changed, *verdict.extra]
    touched = {n for n in differing if n.startswith(TOOLS_DIR + "/")}
    new = open_bundle(fresh)
    try:
        old = open_bundle(out)
    except UserError:
        verdict.tools_added = sorted(t["name"] for t, _ in new.tools())
        return
    if old.version != MANIFEST_VERSION:
        added, removed, changed = changed_tools(manifest_of(old), manifest_of(new))
    else:

        def shards(view: BundleView) -> set[str]:
            return {n for n, e in view.index.shards.items() if e.files.tools in touched}

        names = shards(old) | shards(new)
        added, removed, changed = changed_tools(
            manifest_of(old, names & old.index.shards.keys()),
            manifest_of(new, names & new.index.shards.keys()),
        )
    verdict.tools_added, verdict.tools_removed, verdict.tools_changed = added, removed, changed


def _same(a: Path, b: Path) -> bool:
    """Whether two files hold the same bytes, read in blocks (shards get big)."""
    try:
        if a.stat().st_size != b.stat().st_size:
            return False
        with a.open("rb") as one, b.open("rb") as other:
            while True:
                block = one.read(1 << 20)
                if block != other.read(1 << 20):
                    return False
                if not block:
                    return True
    except OSError:
        return False


def _diff_order(name: str) -> tuple[int, str]:
    """Raw diffs of the tools first (what a reviewer wants), the index and catalog last."""
    rank = {TOOLS_DIR: 0, DOCS_DIR: 1, MODELS_DIR: 2}.get(name.partition("/")[0], 3)
    return rank, name


def _raw_diff(old_path: Path, new_path: Path, name: str) -> list[str]:
    old = old_path.read_bytes().decode("utf-8", errors="replace").splitlines()
    new = new_path.read_bytes().decode("utf-8", errors="replace").splitlines()
    lines = list(
        difflib.unified_diff(old, new, f"{name} (on disk)", f"{name} (build)", n=2, lineterm="")
    )
    if len(lines) > RAW_DIFF_LINES:
        rest = len(lines) - RAW_DIFF_LINES
        lines = [*lines[:RAW_DIFF_LINES], f"... {rest} more diff lines in {name}"]
    return lines


def _names(names: list[str], limit: int = 20) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", and {len(names) - limit} more" if len(names) > limit else "")
