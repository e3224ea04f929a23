"""Live sources and `mcpgen build --watch`: rebuild the bundle whenever what it is built from
changes, so that a server with `--watch` serves new services without anyone restarting it.

A source may be a live system: `etcd://HOST:PORT[,HOST:PORT]` (a go-micro registry) or
`grpc://HOST:PORT` (server reflection). Before each build it is captured into a snapshot file
(`mcpgen snapshot`'s own code), and the build reads that, so every served tool is validated at
build time like any other. `--watch` then polls, every `interval` seconds: the files under each
source, import path and the config (path, size, mtime), and each live source captured again
(its snapshot's bytes). A change waits until nothing has moved for `debounce` seconds (bursts:
a `git checkout`, a deploy registering many nodes), then rebuilds. A failed build changes
nothing: the bundle on disk is the last good one, which a watching server keeps serving.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from mcpgen.config import Config
from mcpgen.errors import UserError, Warnings

LIVE = {"etcd": ".json", "grpc": ".binpb"}
INTERVAL, DEBOUNCE = 2.0, 0.5


def is_live(source: str) -> bool:
    scheme, sep, rest = source.partition("://")
    return bool(sep and rest) and scheme in LIVE


@dataclass
class LiveSources:
    """The live sources of a config, captured into `folder` on each `capture`."""

    config: Config
    folder: Path

    @property
    def sources(self) -> list[str]:
        return [s for s in self.config.sources if is_live(s)]

    def capture(self, warnings: Warnings) -> tuple[Config, str]:
        """The config with each live source replaced by a fresh snapshot of it, and a digest
        of what the snapshots hold."""
        from mcpgen.snapshot import SnapshotOptions, take

        sources: list[str] = []
        h = hashlib.sha256()
        for i, source in enumerate(self.config.sources):
            if not is_live(source):
                sources.append(source)
                continue
            scheme = source.partition("://")[0]
            out = self.folder / f"live-{i}{LIVE[scheme]}"
            take(source, SnapshotOptions(out=out), warnings)
            h.update(out.read_bytes())
            sources.append(str(out))
        return replace(self.config, sources=sources), h.hexdigest()


def files_stamp(config: Config) -> str:
    """A digest of the path, size and mtime of every file under the config's file sources,
    import paths and the config file: what `mcpgen build` could read from disk."""
    h = hashlib.sha256()
    roots = [s for s in config.sources if not is_live(s)] + list(config.import_paths)
    if config.file:
        roots.append(config.file)
    for root in roots:
        for path in _files(Path(root)):
            try:
                info = path.stat()
            except OSError:
                continue
            h.update(f"{path}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _files(root: Path) -> Iterator[Path]:
    if root.is_file():
        yield root
        return
    for where, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "node_modules")
        for name in sorted(names):
            yield Path(where) / name


@contextmanager
def live_config(config: Config, warnings: Warnings) -> Iterator[Config]:
    """The config to build, with live sources captured into a temporary folder meanwhile."""
    live = LiveSources(config, Path(tempfile.mkdtemp(prefix="mcpgen-live-")))
    try:
        yield live.capture(warnings)[0] if live.sources else config
    finally:
        shutil.rmtree(live.folder, ignore_errors=True)


def watch(
    config: Config,
    run: Callable[[Config, Warnings], None],
    report: Callable[[str], None],
    interval: float = INTERVAL,
    debounce: float = DEBOUNCE,
) -> None:
    """Build now, then again whenever the inputs change, until interrupted. `run` builds one
    config; its UserErrors are reported and the watch goes on."""
    live = LiveSources(config, Path(tempfile.mkdtemp(prefix="mcpgen-live-")))
    last: tuple[str, str] | None = None
    try:
        while True:
            try:
                state, built = _settled(config, live, debounce)
            except UserError as exc:  # a registry that does not answer: try again later
                report(f"watch: cannot read the sources (trying again):\n{exc.render()}")
                time.sleep(interval)
                continue
            if state != last:
                if last is not None:
                    report("watch: the sources changed; rebuilding")
                warnings = Warnings()
                try:
                    run(built, warnings)
                except UserError as exc:
                    report("watch: the build failed, the bundle is unchanged:")
                    report(exc.render())
                last = state
            time.sleep(interval)
    finally:
        shutil.rmtree(live.folder, ignore_errors=True)


def _settled(config: Config, live: LiveSources, debounce: float) -> tuple[tuple[str, str], Config]:
    """The inputs' state once it holds still for `debounce` seconds, and the config to build
    it (live sources captured)."""
    warnings = Warnings()
    state: tuple[str, str] | None = None
    while True:
        built, live_digest = live.capture(warnings) if live.sources else (config, "")
        now = (files_stamp(config), live_digest)
        if now == state:
            return now, built
        state = now
        time.sleep(debounce)
