"""`mcpgen build --watch` with a watching server: services registered in a real etcd appear as
validated tools and the ones that leave disappear, with nobody restarting anything; edited
.proto files rebuild, and a broken edit leaves the last good bundle in place.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import mcp_types as types
import pytest
from grpc_reflection.v1alpha import reflection, reflection_pb2
from mcp import Client, StdioServerParameters

from tests.conftest import PROTOS, ROOT, run_mcpgen
from tests.test_snapshot_etcd import DEFAULT_PREFIX, Etcd, _b64, endpoint, etcd, node
from tests.test_snapshot_reflection import V1, V1ALPHA, _pool, fixture_set, serve

pytestmark = pytest.mark.anyio
__all__ = ["etcd", "fixture_set", "serve"]  # the fixtures, used below


@pytest.fixture
def anyio_backend():
    return "asyncio"


def watcher(*args: str, cwd: Path, log: Path | None = None) -> subprocess.Popen[str]:
    """`mcpgen build --watch`; its stderr in `log` (readable while it runs) when given."""
    command = [sys.executable, "-m", "mcpgen", "build", *args, "--watch", "--interval", "0.3"]
    stderr = subprocess.PIPE if log is None else log.open("w")
    return subprocess.Popen(command, cwd=cwd, stderr=stderr, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip


@pytest.fixture
def stop_all() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        process.terminate()
        try:
            process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


def wait_for(check, what: str, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def tool_names(bundle: Path) -> set[str]:
    try:
        index = json.loads((bundle / "manifest.json").read_text())
    except (OSError, ValueError):
        return set()
    return {t for shard in index["shards"].values() for t in shard["tools"]}


def service(name: str, *endpoints: str, port: int = 9) -> dict:
    return {
        "name": name,
        "version": "latest",
        "metadata": None,
        "endpoints": [endpoint(e, f"{e} of {name}") for e in endpoints],
        "nodes": [node(f"{name}-1", port)],
    }


def deregister(etcd: Etcd, name: str) -> None:
    prefix = f"{DEFAULT_PREFIX}{name}/"
    end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    etcd.call("/v3/kv/deleterange", {"key": _b64(prefix), "range_end": _b64(end)})


def named(names: set[str], word: str) -> bool:
    return any(word in n for n in names)


async def test_registered_services_come_and_go_without_restarts(etcd, tmp_path, stop_all):
    etcd.register(DEFAULT_PREFIX, service("greeter", "Greeter.Hello"))
    bundle = tmp_path / "bundle"
    stop_all.append(watcher(f"etcd://{etcd.address}", "-o", str(bundle), cwd=tmp_path))
    wait_for(lambda: named(tool_names(bundle), "Hello"), "the first build")
    changes = anyio.Event()

    async def on_message(message: object) -> None:
        nonlocal changes
        if isinstance(message, types.ToolListChangedNotification):
            changes.set()

    async def listed_once(condition) -> set[str]:  # type: ignore[no-untyped-def]
        """The tool list once it meets `condition`, waiting for change notifications."""
        nonlocal changes
        with anyio.fail_after(60):
            while True:
                names = {t.name for t in (await client.list_tools()).tools}
                if condition(names):
                    return names
                await changes.wait()
                changes = anyio.Event()

    params = StdioServerParameters(
        command=sys.executable, args=[str(bundle / "server.py"), "--watch"]
    )
    async with Client(params, mode="legacy", message_handler=on_message) as client:
        first = {t.name for t in (await client.list_tools()).tools}
        etcd.register(DEFAULT_PREFIX, service("farewell", "Farewell.Bye"))
        joined = await listed_once(lambda names: named(names, "Bye"))
        deregister(etcd, "greeter")
        left = await listed_once(lambda names: not named(names, "Hello"))
    deregister(etcd, "farewell")
    assert named(first, "Hello") and not named(first, "Bye")
    assert named(joined, "Hello") and named(joined, "Bye")
    assert named(left, "Bye") and not named(left, "Hello")


def test_file_edits_rebuild_and_a_broken_edit_keeps_the_bundle(tmp_path, stop_all):
    protos = tmp_path / "protos"
    shutil.copytree(PROTOS, protos)
    bundle = tmp_path / "bundle"
    log = tmp_path / "watch.log"
    process = watcher(str(protos), "-o", str(bundle), "--no-models", cwd=tmp_path, log=log)
    stop_all.append(process)
    wait_for(lambda: "Library_GetBook" in tool_names(bundle), "the first build")
    library = protos / "acme" / "library" / "v1" / "library.proto"
    text = library.read_text()
    ping = "service Library {\n  rpc Ping(GetBookRequest) returns (Book);"
    library.write_text(text.replace("service Library {", ping, 1))
    wait_for(lambda: "Library_Ping" in tool_names(bundle), "the rebuild")
    good = (bundle / "manifest.json").read_bytes()
    library.write_text(text.replace("service Library {", "service Library {\n  rpc Broken(", 1))
    failed = "the build failed, the bundle is unchanged"
    wait_for(lambda: failed in log.read_text(), "the broken build to be refused")
    assert (bundle / "manifest.json").read_bytes() == good
    library.write_text(text)
    wait_for(lambda: "Library_Ping" not in tool_names(bundle), "the repaired rebuild")
    process.terminate()
    process.wait(timeout=15)
    stop_all.remove(process)
    err = log.read_text()
    assert "the build failed, the bundle is unchanged" in err
    assert "library.proto" in err
    assert "Traceback" not in err


class Deploying(reflection.ReflectionServicer):
    """Server reflection whose services change, as a server's do from one deploy to the next."""

    def __init__(self, names: list[str], pool: object) -> None:
        super().__init__(names, pool=pool)
        self.names = list(names)

    def _list_services(self, request: object) -> object:
        return reflection_pb2.ServerReflectionResponse(
            list_services_response=reflection_pb2.ListServiceResponse(
                service=[reflection_pb2.ServiceResponse(name=n) for n in sorted(self.names)]
            ),
            original_request=request,
        )


def test_a_reflection_source_is_read_again_and_rebuilt(fixture_set, serve, tmp_path, stop_all):
    servicer = Deploying(["acme.users.v1.Users", V1ALPHA, V1], _pool(fixture_set))
    server = serve(servicer=servicer)
    bundle = tmp_path / "bundle"
    once = run_mcpgen("build", server.source, "-o", str(bundle), "--no-models", cwd=tmp_path)
    assert once.returncode == 0, once.stderr  # a live source without --watch: built once
    assert tool_names(bundle) == {"Users_GetUser"}
    stop_all.append(watcher(server.source, "-o", str(bundle), "--no-models", cwd=tmp_path))
    servicer.names.append("acme.legacy.v1.Inventory")  # the next deploy serves one more
    wait_for(lambda: "Inventory_Lookup" in tool_names(bundle), "the rebuild")
    assert "Users_GetUser" in tool_names(bundle)
