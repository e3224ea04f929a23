"""Live reload: a server with `--watch` (or told by SIGHUP) serves the bundle `mcpgen build`
swaps in, under concurrent calls, tells its clients, and refuses a broken bundle.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from pathlib import Path

import anyio
import mcp_types as types
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.shared.exceptions import MCPError

from tests.conftest import PROTOS, HttpGateway, run_mcpgen

pytestmark = pytest.mark.anyio
MARKER = "MCPGEN_TEST_SERVER"


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    shutil.copytree(PROTOS, tmp_path / "protos")
    assert build(tmp_path).returncode == 0
    return tmp_path


def build(root: Path, exclude: str = "") -> object:
    (root / "mcpgen.toml").write_text(f"exclude = [{exclude!r}]\n" if exclude else "")
    done = run_mcpgen("build", "protos", "-o", "bundle", "--no-models", cwd=root)
    assert done.returncode == 0, done.stderr
    return done


def server_pid(marker: str) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit():
                try:
                    environ = (proc / "environ").read_bytes().split(b"\0")
                except OSError:
                    continue
                if f"{MARKER}={marker}".encode() in environ:
                    return int(proc.name)
        time.sleep(0.1)
    raise AssertionError("the server process was not found")


class Changes:
    """Counts `notifications/tools/list_changed` and lets a test wait for the next one."""

    def __init__(self) -> None:
        self.count = 0
        self.event = anyio.Event()

    async def __call__(self, message: object) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            self.count += 1
            self.event.set()

    async def next(self, timeout: float = 30) -> None:
        with anyio.fail_after(timeout):
            await self.event.wait()
        self.event = anyio.Event()


async def keep_calling(client: Client, stop: anyio.Event, outcomes: list[bool]) -> None:
    while not stop.is_set():
        result = await client.call_tool("Library_ListBooks", {"parent": "shelves/1"})
        outcomes.append(not result.is_error)


async def rebuild_under_calls(
    client: Client, changes: Changes, project: Path, exclude: str
) -> tuple[set[str], set[str], list[bool]]:
    """Rebuild the bundle without the tools `exclude` matches while four callers keep calling,
    until the server says its list changed and a little after; the tool names before and
    after, and whether each call succeeded."""
    before = {t.name for t in (await client.list_tools()).tools}
    stop, outcomes = anyio.Event(), []
    async with anyio.create_task_group() as calls:
        for _ in range(4):
            calls.start_soon(keep_calling, client, stop, outcomes)
        await anyio.sleep(0.3)
        await anyio.to_thread.run_sync(build, project, exclude)
        await changes.next()
        await anyio.sleep(0.3)  # calls go on against the new bundle
        stop.set()
    after = {t.name for t in (await client.list_tools()).tools}
    return before, after, outcomes


def stdio(project: Path, backend, marker: str, *flags: str) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable,
        args=[str(project / "bundle" / "server.py"), "--backend", backend.target, *flags],
        env={**os.environ, MARKER: marker},
    )


async def test_a_rebuild_under_concurrent_calls_is_served_and_announced(project, library_backend):
    changes = Changes()
    params = stdio(project, library_backend, "watch", "--watch")
    async with Client(params, mode="legacy", message_handler=changes) as client:
        before, after, outcomes = await rebuild_under_calls(
            client, changes, project, "*.Inventory.Reserve"
        )
        with pytest.raises(MCPError, match="Unknown tool: Inventory_Reserve"):
            await client.call_tool("Inventory_Reserve", {"sku": "x"})
    assert before - after == {"Inventory_Reserve"} and after < before
    assert len(outcomes) > 10 and all(outcomes), f"{outcomes.count(False)} calls failed"


async def test_sighup_reloads_without_watch(project, library_backend):
    changes = Changes()
    params = stdio(project, library_backend, "sighup")
    async with Client(params, mode="legacy", message_handler=changes) as client:
        await client.list_tools()
        build(project, "acme.legacy.v1.*")
        os.kill(server_pid("sighup"), signal.SIGHUP)
        await changes.next()
        names = {t.name for t in (await client.list_tools()).tools}
    assert "Inventory_Lookup" not in names and "Library_ListBooks" in names


async def test_a_broken_bundle_is_refused_and_the_old_one_keeps_serving(
    project, library_backend, tmp_path
):
    log = tmp_path / "server.log"
    with log.open("w") as errlog:
        params = stdio(project, library_backend, "broken", "--watch")
        async with Client(stdio_client(params, errlog=errlog), mode="legacy") as client:
            first = await client.call_tool("Library_ListBooks", {"parent": "shelves/1"})
            index = project / "bundle" / "manifest.json"
            index.write_bytes(index.read_bytes()[:100])  # a half-written index
            deadline = time.monotonic() + 30
            while "refused the new bundle" not in log.read_text():
                assert time.monotonic() < deadline, log.read_text()
                await anyio.sleep(0.1)
            again = await client.call_tool("Library_ListBooks", {"parent": "shelves/1"})
            names = {t.name for t in (await client.list_tools()).tools}
    assert not first.is_error and not again.is_error
    assert "Library_ListBooks" in names and len(names) == 21
    assert "still serving the one loaded before" in log.read_text()


async def test_http_sessions_hear_of_a_reload(project, library_backend):
    gateway = HttpGateway(project / "bundle", "--backend", library_backend.target, "--watch")
    changes = Changes()
    try:
        async with Client(gateway.url, mode="legacy", message_handler=changes) as client:
            before, after, outcomes = await rebuild_under_calls(
                client, changes, project, "acme.types.v1.*"
            )
    finally:
        gateway.stop()
    assert {n for n in before - after} == {n for n in before if n.startswith("Types_")}
    assert len(outcomes) > 10 and all(outcomes)


async def test_a_2026_client_hears_of_a_reload_on_its_listen_stream(project, library_backend):
    gateway = HttpGateway(project / "bundle", "--backend", library_backend.target, "--watch")
    try:
        async with Client(gateway.url, mode="2026-07-28") as client:
            before = {t.name for t in (await client.list_tools()).tools}
            async with client.listen(tools_list_changed=True) as subscription:
                await anyio.to_thread.run_sync(build, project, "*.Inventory.Reserve")
                with anyio.fail_after(30):
                    event = await subscription.__aiter__().__anext__()
            after = {t.name for t in (await client.list_tools(cache_mode="bypass")).tools}
    finally:
        gateway.stop()
    assert type(event).__name__ == "ToolsListChanged"
    assert before - after == {"Inventory_Reserve"}
