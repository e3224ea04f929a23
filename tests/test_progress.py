"""Progress and summary: progress lines on a terminal only, one summary line per build, and
`--quiet` prints nothing but errors."""

from __future__ import annotations

import io
import os
import pty
import subprocess
import sys

from mcpgen.progress import Progress
from tests.conftest import PROTOS, run_mcpgen


def test_on_a_terminal_progress_is_shown_then_cleared(tmp_path):
    leader, follower = pty.openpty()
    done = subprocess.run(
        [sys.executable, "-m", "mcpgen", "build", str(PROTOS), "-o", str(tmp_path / "b")],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=follower, timeout=120,
    )  # fmt: skip
    os.close(follower)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed: everything was read
            break
        if not chunk:
            break
        seen += chunk
    os.close(leader)
    text = seen.decode()
    assert done.returncode == 0
    assert "\rmcpgen: reading 1 source(s)" in text
    assert "mcpgen: compiling 7 .proto file(s)" in text
    assert "mcpgen: tools rendered 21/21" in text
    assert "mcpgen: writing descriptors and the index" in text
    last = text.rstrip().splitlines()[-1].split("\r")[-1].strip()
    assert last.startswith("mcpgen: 21 tools from 5 services") and "(2 skipped," in last


def test_in_a_pipe_only_warnings_and_the_summary_line(tmp_path):
    done = run_mcpgen("build", str(PROTOS), "-o", str(tmp_path / "b"))
    assert done.returncode == 0
    assert "\r" not in done.stderr
    lines = done.stderr.splitlines()
    assert all(line.startswith("warning: ") for line in lines[:-1])
    assert lines[-1].startswith("mcpgen: 21 tools from 5 services")
    assert lines[-1].endswith(" s)")


def test_quiet_prints_nothing_but_errors(tmp_path):
    quiet = run_mcpgen("build", str(PROTOS), "-o", str(tmp_path / "b"), "--quiet")
    assert quiet.returncode == 0 and quiet.stderr == "" and quiet.stdout == ""
    failed = run_mcpgen("build", str(tmp_path / "missing.proto"), "--quiet")
    assert failed.returncode == 1 and failed.stderr.startswith("error: ")


def test_counts_are_throttled_but_the_last_is_always_drawn():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    progress = Progress(stream, interval=3600)
    for done in range(1, 101):
        progress.count("tools rendered", done, 100)
    progress.clear()
    drawn = [part for part in stream.getvalue().split("\r") if part.strip()]
    assert [part.strip() for part in drawn] == [
        "mcpgen: tools rendered 1/100", "mcpgen: tools rendered 100/100",
    ]  # fmt: skip
    assert stream.getvalue().endswith("\r")
    assert Progress(io.StringIO()).enabled is False  # not a terminal
