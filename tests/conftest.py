"""Shared test helpers: paths, a CLI runner, and a protoc wrapper to make descriptor sets."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from mcpgen.cli import main
from mcpgen.sources.protofiles import builtin_import_paths

# Builds in tests use a cache of their own, never the user's (and exercise it all along).
os.environ.setdefault("MCPGEN_CACHE_DIR", tempfile.mkdtemp(prefix="mcpgen-test-cache-"))

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
PROTOS = FIXTURES / "protos"


def run_cli(*args: str, cwd: Path | None = None) -> Result:
    """Run `mcpgen ARGS` in-process, from `cwd` when given."""
    runner = CliRunner()
    if cwd is None:
        return runner.invoke(main, list(args), catch_exceptions=False)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(cwd)
        return runner.invoke(main, list(args), catch_exceptions=False)


def run_mcpgen(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run `mcpgen ARGS` as a real process (to see exit codes and stderr as a user does)."""
    return subprocess.run(
        [sys.executable, "-m", "mcpgen", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
    )


def protoc_descriptor_set(out: Path, files: list[str], roots: list[Path]) -> Path:
    """Write a FileDescriptorSet with imports, as `protoc --include_imports` does."""
    args = [sys.executable, "-m", "grpc_tools.protoc", "--include_imports"]
    args += [f"--descriptor_set_out={out}"]
    args += [f"--proto_path={r}" for r in roots]
    args += [f"--proto_path={p}" for p in builtin_import_paths()]
    subprocess.run([*args, *files], check=True, capture_output=True)
    return out


def read_tools(bundle: Path) -> dict[str, Any]:
    """`{"tools": [...], "routes": {...}}` of a bundle, tools sorted by name: what
    `mcpgen tools BUNDLE --json` prints, whatever the layout (tests read bundles this way)."""
    from mcpgen.contract import open_bundle
    from mcpgen.diff import manifest_of

    document = manifest_of(open_bundle(bundle))
    document["tools"].sort(key=lambda t: t["name"])
    return document


# ---- gateways and backends -------------------------------------------------------------------


@pytest.fixture(scope="session")
def library_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixtures built into a bundle once per test session (read-only for tests)."""
    from mcpgen.build import build
    from mcpgen.config import Config

    out = tmp_path_factory.mktemp("bundle") / "mcp_bundle"
    build(Config(sources=[str(PROTOS)], out=str(out)))
    return out


@pytest.fixture
def library_backend(library_bundle: Path):
    """A fresh, running gRPC Library server."""
    from fixtures.library_backend import LibraryBackend

    backend = LibraryBackend(library_bundle).start()
    yield backend
    backend.stop()


@pytest.fixture
def redis_server(tmp_path_factory: pytest.TempPathFactory):
    """A running redis-server on a unix socket, killed at the end."""
    from fixtures.redis_server import RedisServer

    try:
        server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    except FileNotFoundError as exc:
        if require_integration():
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    yield server
    server.stop()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class HttpGateway:
    """A generated server.py running over HTTP in a subprocess. It binds port 0 and says on
    stderr which port it got (no port to steal between choosing and binding); with
    `--workers`, whose parent cannot say, a port chosen beforehand."""

    def __init__(
        self, bundle: Path, *args: str, stdout: Any = None, stderr: Any = subprocess.PIPE
    ) -> None:
        import re
        import threading
        import time

        announced = "--workers" not in args and stderr is subprocess.PIPE
        self.port = 0 if announced else free_port()
        command = [sys.executable, str(bundle / "server.py"), "--transport", "http"]
        command += ["--port", str(self.port), *args]
        self.process = subprocess.Popen(command, stdout=stdout, stderr=stderr, text=True)
        self.lines: list[str] = []
        listening = threading.Event()
        self._reader = None
        if self.process.stderr is not None:

            def read() -> None:
                for line in self.process.stderr:
                    self.lines.append(line)
                    found = re.match(r"mcpgen: serving \d+ tools on http://[^:]+:(\d+)/mcp", line)
                    if found and announced and not listening.is_set():
                        self.port = int(found.group(1))
                        listening.set()

            self._reader = threading.Thread(target=read, daemon=True)
            self._reader.start()
        deadline = time.monotonic() + 30
        while announced and not listening.wait(0.1):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"server did not start: {''.join(self.lines)}")
        self.base = f"http://127.0.0.1:{self.port}"
        self.url = f"{self.base}/mcp"
        self._wait_healthy(deadline)

    def _wait_healthy(self, deadline: float) -> None:
        import time
        import urllib.request

        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.stop()}")
            try:
                with urllib.request.urlopen(f"{self.base}/health", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("server did not become healthy in 30 s")
            time.sleep(0.1)

    def stop(self) -> str:
        """Stop the server (SIGTERM, then SIGKILL after 15 s); everything it wrote on stderr."""
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self._reader is not None:
            self._reader.join(timeout=15)
        return "".join(self.lines)


def require_integration() -> bool:
    """True when tests that need external tools must fail rather than skip (CI sets it)."""
    import os

    return os.environ.get("MCPGEN_REQUIRE_INTEGRATION") == "1"
