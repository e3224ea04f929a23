"""The generated server against real third-party MCP clients: the MCP Inspector CLI (stdio and
Streamable HTTP) and the official conformance suite (@modelcontextprotocol/conformance).

Both are npm packages, installed on first use by tests/npm_tools.py (Node comes from PyPI).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import HttpGateway, read_tools, require_integration
from tests.npm_tools import NpmTools, NpmToolsError, install


@pytest.fixture(scope="session")
def npm_tools() -> NpmTools:
    """Installed on first use; offline, these tests skip, except under CI (they fail there)."""
    try:
        return install()
    except NpmToolsError as error:
        if require_integration():
            pytest.fail(f"MCPGEN_REQUIRE_INTEGRATION=1 and the npm tools are missing: {error}")
        pytest.skip(f"npm tools unavailable: {error}")


@pytest.fixture
def http_gateway(library_bundle, library_backend):
    gateway = HttpGateway(library_bundle, "--backend", library_backend.target)
    yield gateway
    gateway.stop()


def run_inspector(
    tools: NpmTools, scratch: Path, target: list[str], *options: str
) -> tuple[int, dict]:
    """Run the Inspector CLI once; return its exit code and its JSON result (stdout)."""
    done = subprocess.run(
        tools.inspector(*target, *options, "--format", "json"),
        capture_output=True,
        text=True,
        timeout=120,
        env=tools.env(scratch),
    )
    assert done.stdout.strip(), f"inspector printed nothing (exit {done.returncode}): {done.stderr}"
    return done.returncode, json.loads(done.stdout.strip().splitlines()[-1])


def stdio_target(bundle: Path, backend_target: str) -> list[str]:
    """Server command before `--`, Inspector options after it."""
    return [sys.executable, str(bundle / "server.py"), "--backend", backend_target, "--"]


def http_target(url: str) -> list[str]:
    return ["--transport", "http", "--server-url", url]


@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_inspector_lists_and_calls(transport, npm_tools, library_bundle, library_backend, tmp_path):
    gateway = None
    if transport == "stdio":
        target = stdio_target(library_bundle, library_backend.target)
    else:
        gateway = HttpGateway(library_bundle, "--backend", library_backend.target)
        target = http_target(gateway.url)
    try:
        code, listed = run_inspector(npm_tools, tmp_path, target, "--method", "tools/list")
        assert code == 0
        names = sorted(tool["name"] for tool in listed["result"]["tools"])
        assert names == sorted(tool["name"] for tool in read_tools(library_bundle)["tools"])
        for tool in listed["result"]["tools"]:
            assert tool["inputSchema"]["type"] == "object"
            assert tool["description"]

        arguments = {"parent": "shelves/7", "book": {"title": "Kindred", "pageCount": 264}}
        code, called = run_inspector(
            npm_tools, tmp_path, target, "--method", "tools/call",
            "--tool-name", "Library_CreateBook", "--tool-args-json", json.dumps(arguments),
        )  # fmt: skip
        assert code == 0
        result = called["result"]
        assert result["isError"] is False
        assert result["structuredContent"]["title"] == "Kindred"
        assert result["structuredContent"]["pageCount"] == 264
        assert json.loads(result["content"][0]["text"]) == result["structuredContent"]
        assert library_backend.calls("CreateBook")[-1].request.parent == "shelves/7"

        code, refused = run_inspector(
            npm_tools, tmp_path, target, "--method", "tools/call",
            "--tool-name", "Library_CreateBook", "--tool-args-json", '{"parent": 3}',
        )  # fmt: skip
        assert code == 5  # the Inspector's exit code for isError: true
        assert refused["result"]["isError"] is True
        assert "at /parent: expected a string" in refused["result"]["content"][0]["text"]
        assert len(library_backend.calls("CreateBook")) == 1  # the refusal never reached it
    finally:
        if gateway is not None:
            gateway.stop()


@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_inspector_sees_only_the_selection_and_discovers_the_rest(
    transport, npm_tools, library_bundle, library_backend, tmp_path
):
    """`--toolset NAME --read-only` and `--discovery`, as the Inspector CLI sees them."""

    def target_of(*flags: str) -> tuple[list[str], HttpGateway | None]:
        if transport == "stdio":
            command = [sys.executable, str(library_bundle / "server.py")]
            return [*command, "--backend", library_backend.target, *flags, "--"], None
        gateway = HttpGateway(library_bundle, "--backend", library_backend.target, *flags)
        return http_target(gateway.url), gateway

    target, gateway = target_of("--toolset", "acme.library.v1", "--read-only")
    try:
        code, listed = run_inspector(npm_tools, tmp_path, target, "--method", "tools/list")
        assert code == 0
        names = [tool["name"] for tool in listed["result"]["tools"]]
        assert names == ["Library_GetBook", "Library_ListBooks"]
        done = subprocess.run(
            npm_tools.inspector(*target, "--method", "tools/call", "--tool-name",
                                "Library_CreateBook", "--tool-args-json", "{}", "--format", "json"),
            capture_output=True, text=True, timeout=120, env=npm_tools.env(tmp_path),
        )  # fmt: skip
        assert done.returncode != 0  # not listed, so the Inspector does not find it
        assert "'Library_CreateBook' not found" in done.stderr
    finally:
        if gateway is not None:
            gateway.stop()

    target, gateway = target_of("--discovery")
    try:
        code, listed = run_inspector(npm_tools, tmp_path, target, "--method", "tools/list")
        names = [tool["name"] for tool in listed["result"]["tools"]]
        assert code == 0 and names == ["search_tools", "describe_tool", "call_tool",
                                       "enable_toolset"]  # fmt: skip
        code, found = run_inspector(
            npm_tools, tmp_path, target, "--method", "tools/call", "--tool-name",
            "search_tools", "--tool-args-json", json.dumps({"query": "create a book"}),
        )  # fmt: skip
        assert code == 0
        assert found["result"]["structuredContent"]["results"][0]["name"] == "Library_CreateBook"
        book = {"parent": "shelves/9", "book": {"title": "Beloved"}}
        arguments = {"name": "Library_CreateBook", "arguments": book}
        code, called = run_inspector(
            npm_tools, tmp_path, target, "--method", "tools/call", "--tool-name",
            "call_tool", "--tool-args-json", json.dumps(arguments),
        )  # fmt: skip
        assert code == 0 and called["result"]["structuredContent"]["title"] == "Beloved"
        assert library_backend.calls("CreateBook")[-1].request.parent == "shelves/9"
    finally:
        if gateway is not None:
            gateway.stop()


def test_inspector_sees_unknown_tool(npm_tools, library_bundle, library_backend, tmp_path):
    target = stdio_target(library_bundle, library_backend.target)
    done = subprocess.run(
        npm_tools.inspector(*target, "--method", "tools/call", "--tool-name", "Nope"),
        capture_output=True,
        text=True,
        timeout=120,
        env=npm_tools.env(tmp_path),
    )
    assert done.returncode != 0
    assert "Nope" in done.stderr


CONFORMANCE_SCENARIOS = [
    "server-initialize",
    "ping",
    "tools-list",
    "dns-rebinding-protection",
    "server-sse-multiple-streams",
]


@pytest.mark.parametrize("scenario", CONFORMANCE_SCENARIOS)
def test_conformance_scenario(scenario, npm_tools, http_gateway, tmp_path):
    # the suite wants a loopback *name* to probe DNS rebinding against
    url = http_gateway.url.replace("127.0.0.1", "localhost")
    out = tmp_path / "results"
    done = subprocess.run(
        npm_tools.conformance("server", "--url", url, "--scenario", scenario, "-o", str(out)),
        capture_output=True,
        text=True,
        timeout=180,
        env=npm_tools.env(tmp_path / "home"),
    )
    reports = list(out.glob("*/checks.json"))
    assert len(reports) == 1, f"no report (exit {done.returncode}): {done.stdout}{done.stderr}"
    checks = json.loads(reports[0].read_text())
    failures = [check for check in checks if check["status"] == "FAILURE"]
    assert not failures, json.dumps(failures, indent=2)
    assert any(check["status"] == "SUCCESS" for check in checks)
    assert done.returncode == 0, done.stdout
