"""End to end with a service nobody here wrote: gRPC's own health service (grpcio-health-checking).

Its descriptors come from the installed package (a FileDescriptorSet, as `buf build` or
reflection would give), its implementation is the package's `HealthServicer`, and the clients
are the MCP SDK's, over stdio and Streamable HTTP.
"""

from __future__ import annotations

import sys
from concurrent import futures

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from mcp import Client, StdioServerParameters

from tests.conftest import HttpGateway, free_port, run_cli

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(scope="module")
def health_bundle(tmp_path_factory):
    folder = tmp_path_factory.mktemp("health")
    fds = descriptor_pb2.FileDescriptorSet()
    health_pb2.DESCRIPTOR.CopyToProto(fds.file.add())
    (folder / "health.binpb").write_bytes(fds.SerializeToString())
    result = run_cli("build", str(folder / "health.binpb"), "-o", str(folder / "bundle"), "-q")
    assert result.exit_code == 0, result.output
    return folder / "bundle"


@pytest.fixture
def health_server():
    servicer = health.HealthServicer()
    servicer.set("acme.Books", health_pb2.HealthCheckResponse.SERVING)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}", servicer
    server.stop(grace=None)


async def test_health_over_stdio(health_bundle, health_server):
    target, _ = health_server
    params = StdioServerParameters(
        command=sys.executable,
        args=[str(health_bundle / "server.py"), "--backend", f"grpc.health.v1.Health={target}"],
    )
    async with Client(params, mode="legacy") as client:
        names = [t.name for t in (await client.list_tools()).tools]
        ok = await client.call_tool("Health_Check", {"service": "acme.Books"})
        unknown = await client.call_tool("Health_Check", {"service": "nope"})
        bad = await client.call_tool("Health_Check", {"service": ["not", "a", "string"]})
    assert names == ["Health_Check", "Health_List", "Health_Watch"] or "Health_Check" in names
    assert ok.structured_content == {"status": "SERVING"}
    assert unknown.is_error and unknown.content[0].text.startswith("NOT_FOUND")
    assert bad.is_error and "at /service: expected a string, got an array" in bad.content[0].text


async def test_health_over_http_with_a_stream_and_a_dead_backend(health_bundle, health_server):
    target, _ = health_server
    gateway = HttpGateway(
        health_bundle, "--backend", target, "--max-stream-messages", "1", "--timeout", "5"
    )
    dead = HttpGateway(health_bundle, "--backend", f"127.0.0.1:{free_port()}", "--timeout", "5")
    try:
        async with Client(gateway.url, mode="2026-07-28") as client:
            await client.list_tools()
            watched = await client.call_tool("Health_Watch", {"service": "acme.Books"})
        async with Client(dead.url, mode="legacy") as client:
            down = await client.call_tool("Health_Check", {"service": ""})
    finally:
        gateway.stop()
        dead.stop()
    assert watched.structured_content == {"messages": [{"status": "SERVING"}], "truncated": True}
    assert down.is_error and down.content[0].text.startswith("UNAVAILABLE")
