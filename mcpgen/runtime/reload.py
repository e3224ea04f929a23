"""Live reload (`--watch`, SIGHUP): serve the bundle `mcpgen build` swaps in, without a restart.

`mcpgen build` replaces a bundle folder whole (a temporary folder renamed into place), so the
watcher polls one cheap stamp, the index's inode, size and mtime, and when it moves, waits for
it to settle, loads the new bundle in a thread and checks every file against the digests its
index records. Only a bundle that passes replaces the one being served; a broken or
half-written one is refused with a log line, and the old one keeps serving. Calls in flight
finish on the bundle they started on (`Gateway.call` holds it); clients are told the tool list
changed (`notifications/tools/list_changed` to handshake-era sessions, a `subscriptions/listen`
event at 2026-07-28).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from mcpgen.contract import INDEX, digest
from mcpgen.errors import UserError

log = logging.getLogger("mcpgen.reload")

#: Seconds between looks at the index, and how long its stamp must hold still before loading.
INTERVAL, SETTLE = 1.0, 0.2


def stamp_of(folder: Path) -> tuple[int, int, int] | None:
    """What changes when a new index is swapped in: its inode, size and mtime."""
    try:
        info = os.stat(folder / INDEX)
    except OSError:
        return None  # between the two renames of a swap, or gone
    return info.st_ino, info.st_size, info.st_mtime_ns


def verify(bundle: Any) -> None:
    """Every file the index lists holds the bytes it recorded (a half-written bundle fails)."""
    view = bundle.view
    for name, wanted in sorted(view.index.digests.items()):
        if digest(view.storage.read(name)) != wanted:
            raise UserError(f"{view.label}/{name} does not match the digest its index records")


class BundleWatcher:
    """Reloads the served bundle when its folder's index changes, or when asked (SIGHUP)."""

    def __init__(
        self,
        folder: Path,
        load: Callable[[], Any],
        swap: Callable[[Any], Awaitable[None]],
        poll: bool = True,
        interval: float = INTERVAL,
    ) -> None:
        self.folder = folder
        self.load = load  # a new Bundle of the folder, with the server's selection
        self.swap = swap  # serve it from now on
        self.poll = poll  # --watch; without it only SIGHUP (or `kick`) reloads
        self.interval = interval
        self.stamp = stamp_of(folder)
        self.refused: tuple[int, int, int] | None = None  # a stamp that failed: not retried
        self.reloads = 0
        self._kicked = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    def start(self) -> None:
        """Run in the serving loop; SIGHUP asks for a reload."""
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGHUP, self.kick)
        self._task = loop.create_task(self._run(), name="mcpgen-bundle-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def kick(self) -> None:
        """Reload now (SIGHUP, or a shard that no longer matches the index)."""
        self._kicked.set()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kicked.wait(), self.interval if self.poll else None)
            forced = self._kicked.is_set()
            self._kicked.clear()
            try:
                await self.check(forced)
            except asyncio.CancelledError:
                raise
            except Exception:  # never let the watcher die: the old bundle keeps serving
                log.exception("reloading %s failed", self.folder)

    async def check(self, forced: bool = False) -> bool:
        """Reload if the index moved (or when `forced`); whether a new bundle is served."""
        async with self._lock:
            current = stamp_of(self.folder)
            if not forced and (current == self.stamp or current == self.refused):
                return False
            await asyncio.sleep(SETTLE)  # a swap is two renames: let it finish
            settled = stamp_of(self.folder)
            if settled != current or settled is None:
                if settled is None:
                    log.warning("%s has no %s: still serving the bundle loaded before",
                                self.folder, INDEX)  # fmt: skip
                return False  # moving still: the next look decides
            try:
                bundle = await asyncio.to_thread(self._load_checked)
            except UserError as exc:
                self.refused = settled
                log.error("refused the new bundle in %s: %s; still serving the one loaded "
                          "before", self.folder, exc)  # fmt: skip
                return False
            if stamp_of(self.folder) != settled:  # replaced again while loading
                self.kick()
                return False
            await self.swap(bundle)
            self.stamp, self.refused = settled, None
            self.reloads += 1
            log.warning("reloaded %s: %d tools served", self.folder, len(bundle.names))
            return True

    def _load_checked(self) -> Any:
        bundle = self.load()
        verify(bundle)
        return bundle
