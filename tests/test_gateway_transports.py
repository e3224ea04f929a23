"""The generated server.py as users run it: a subprocess over stdio and over Streamable HTTP.

Also the go-micro-compatible REST endpoints, DNS-rebinding protection, trace ids and header
forwarding, and `mcpgen serve`.
"""

from __future__ import annotations

import sys

import httpx
import pytest
from mcp import Client, StdioServerParameters

from tests.conftest import HttpGateway, free_port, read_tools

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def http_gateway(library_bundle, library_backend):
    gateway = HttpGateway(
        library_bundle, "--backend", library_backend.target, "--forward-header", "authorization"
    )
    yield gateway
    gateway.stop()


async def test_stdio_subprocess_lists_and_calls(library_bundle, library_backend):
    params = StdioServerParameters(
        command=sys.executable,
        args=[str(library_bundle / "server.py"), "--backend", library_backend.target],
    )
    async with Client(params, mode="legacy") as client:
        tools = (await client.list_tools()).tools
        created = await client.call_tool(
            "Library_CreateBook", {"parent": "shelves/2", "book": {"title": "Emma"}}
        )
        bad = await client.call_tool("Library_CreateBook", {"parent": 3})
    assert "Library_CreateBook" in [t.name for t in tools]
    assert created.structured_content["name"] == "shelves/2/books/1"
    assert bad.is_error and "at /parent: expected a string" in bad.content[0].text
    metadata = library_backend.calls("CreateBook")[0].metadata
    assert len(metadata["mcp-trace-id"]) == 32


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_streamable_http_lists_and_calls(mode, http_gateway, library_backend):
    async with Client(http_gateway.url, mode=mode) as client:
        await client.list_tools()
        result = await client.call_tool(
            "Library_CreateBook", {"parent": "shelves/3", "book": {"title": "Ulysses"}}
        )
    assert not result.is_error
    assert result.structured_content["title"] == "Ulysses"


async def test_stateless_http(library_bundle, library_backend):
    gateway = HttpGateway(library_bundle, "--backend", library_backend.target, "--stateless")
    try:
        async with Client(gateway.url, mode="legacy") as client:
            result = await client.call_tool("Library_ListBooks", {"parent": "shelves/1"})
        assert not result.is_error
    finally:
        gateway.stop()


def test_rest_endpoints_speak_go_micro(http_gateway, library_backend):
    base = http_gateway.base
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with httpx.Client(timeout=10) as http:
        health = http.get(f"{base}/health").json()
        tools = http.get(f"{base}/mcp/tools").json()["tools"]
        call = http.post(
            f"{base}/mcp/call",
            json={"tool": "Library_CreateBook",
                  "input": {"parent": "shelves/4", "book": {"title": "Middlemarch"}}},
            headers={"traceparent": traceparent, "authorization": "Bearer t0ken",
                     "x-other": "not forwarded"},
        )  # fmt: skip
        bad = http.post(f"{base}/mcp/call", json={"tool": "Library_GetBook", "input": {}})
        unknown = http.post(f"{base}/mcp/call", json={"tool": "Nope", "input": {}})
        missing = http.post(
            f"{base}/mcp/call", json={"tool": "Library_GetBook", "input": {"name": "x/404"}}
        )
        garbage = http.post(
            f"{base}/mcp/call", content=b"{not json", headers={"content-type": "application/json"}
        )
    assert health == {"status": "ok", "tools": len(tools), "backends": {}}  # none called yet
    assert call.status_code == 200
    body = call.json()
    assert body["result"]["title"] == "Middlemarch"
    assert body["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert call.headers["Mcp-Trace-Id"] == body["trace_id"]
    metadata = library_backend.calls("CreateBook")[0].metadata
    assert metadata["mcp-trace-id"] == body["trace_id"]
    assert metadata["traceparent"] == traceparent
    assert metadata["authorization"] == "Bearer t0ken"
    assert "x-other" not in metadata
    assert bad.status_code == 400 and "missing required property `name`" in bad.json()["error"]
    assert unknown.status_code == 404 and unknown.json()["code"] == "UNKNOWN_TOOL"
    assert missing.status_code == 404 and missing.json()["code"] == "NOT_FOUND"
    assert missing.json()["details"][0]["resourceName"] == "x/404"
    assert garbage.status_code == 400


def test_rest_backend_down_is_503(library_bundle):
    gateway = HttpGateway(library_bundle, "--backend", f"127.0.0.1:{free_port()}")
    try:
        response = httpx.post(
            f"{gateway.base}/mcp/call",
            json={"tool": "Library_ListBooks", "input": {"parent": "shelves/1"}},
            timeout=30,
        )
    finally:
        gateway.stop()
    assert response.status_code == 503
    assert response.json()["code"] == "UNAVAILABLE"


def test_dns_rebinding_is_refused(http_gateway):
    body = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    headers = {"accept": "application/json, text/event-stream"}
    with httpx.Client(timeout=10) as http:
        evil_origin = http.post(
            http_gateway.url, json=body, headers={**headers, "origin": "http://evil.example"}
        )
        evil_host = http.post(
            http_gateway.url, json=body, headers={**headers, "host": "evil.example"}
        )
        rest = http.get(f"{http_gateway.base}/mcp/tools", headers={"origin": "http://evil.example"})
        local = http.get(
            f"{http_gateway.base}/mcp/tools", headers={"origin": f"http://localhost:{free_port()}"}
        )
    assert evil_origin.status_code == 403
    assert evil_host.status_code == 421
    assert rest.status_code == 403
    assert local.status_code == 200


def test_mcpgen_serve_runs_a_bundle(library_bundle, library_backend):
    port = free_port()
    command = [sys.executable, "-m", "mcpgen", "serve", str(library_bundle), "--transport",
               "http", "--port", str(port), "--backend", library_backend.target]  # fmt: skip
    import subprocess
    import time

    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(150):
            try:
                tools = httpx.get(f"http://127.0.0.1:{port}/mcp/tools", timeout=1).json()["tools"]
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise AssertionError("mcpgen serve did not start")
    finally:
        process.terminate()
        process.wait(timeout=15)
    assert [t["name"] for t in tools] == [t["name"] for t in read_tools(library_bundle)["tools"]]


def test_bad_flags_and_missing_bundle_exit_cleanly(tmp_path, library_bundle):
    import subprocess

    missing = subprocess.run(
        [sys.executable, "-m", "mcpgen", "serve", str(tmp_path / "nothing")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    bad_timeout = subprocess.run(
        [sys.executable, str(library_bundle / "server.py"), "--tool-timeout", "Nope=1"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert missing.returncode == 1 and "manifest.json does not exist" in missing.stderr
    assert "Traceback" not in missing.stderr
    assert bad_timeout.returncode == 1 and "unknown tools: Nope" in bad_timeout.stderr


def test_raw_json_rpc_in_the_2025_06_18_era(library_bundle, library_backend):
    """What an older client sends, byte for byte: initialize at 2025-06-18, then tools."""
    gateway = HttpGateway(library_bundle, "--backend", library_backend.target, "--json-response")
    headers = {"accept": "application/json, text/event-stream"}

    def rpc(method: str, params: dict | None = None, id: int | None = None) -> dict:
        message: dict = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        if id is not None:
            message["id"] = id
        return message

    try:
        with httpx.Client(timeout=10, headers=headers) as http:
            hello = {"protocolVersion": "2025-06-18", "capabilities": {},
                     "clientInfo": {"name": "raw", "version": "0"}}  # fmt: skip
            init = http.post(gateway.url, json=rpc("initialize", hello, 1))
            session = {"mcp-session-id": init.headers["mcp-session-id"],
                       "mcp-protocol-version": "2025-06-18"}  # fmt: skip
            http.post(gateway.url, headers=session, json=rpc("notifications/initialized"))
            listed = http.post(gateway.url, headers=session, json=rpc("tools/list", None, 2))
            call = {"name": "Library_ListBooks", "arguments": {"parent": "shelves/1"}}
            called = http.post(gateway.url, headers=session, json=rpc("tools/call", call, 3))
    finally:
        gateway.stop()
    result = init.json()["result"]
    assert result["protocolVersion"] == "2025-06-18"
    assert result["serverInfo"]["name"] == "mcpgen"
    tools = listed.json()["result"]["tools"]
    assert all(t["outputSchema"]["type"] == "object" for t in tools)
    assert called.json()["result"]["structuredContent"] == {}
    assert called.json()["result"]["isError"] is False
