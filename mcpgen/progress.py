"""Build progress on stderr for someone watching a terminal: one line, rewritten in place.

Silent when stderr is not a terminal (CI logs stay clean) and with `--quiet`; the summary line
that ends every build is the CLI's and is printed either way.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Stages and counts of one build; `Progress.silent()` for callers that want none."""

    def __init__(
        self, stream: TextIO | None = None, enabled: bool | None = None, interval: float = 0.1
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.interval = interval  # seconds between redraws of a count
        self._shown_at: float | None = None  # when a count was last drawn
        self._width = 0

    @classmethod
    def silent(cls) -> Progress:
        return cls(enabled=False)

    def stage(self, text: str) -> None:
        """A step begins, e.g. `compiling 12 .proto files`."""
        if self.enabled:
            self._show(text)

    def count(self, what: str, done: int, total: int) -> None:
        """`done` of `total` things; redrawn at most every `interval`, and at the end."""
        if not self.enabled:
            return
        now = time.monotonic()
        last = self._shown_at
        if done == total or last is None or now - last >= self.interval:
            self._shown_at = now
            self._show(f"{what} {done:,}/{total:,}")

    def clear(self) -> None:
        """Erase the line, so what is printed next starts clean."""
        if self.enabled and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0

    def _show(self, text: str) -> None:
        line = f"mcpgen: {text}"
        self.stream.write("\r" + line.ljust(self._width))
        self.stream.flush()
        self._width = len(line)
