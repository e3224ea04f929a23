"""server.json: the bundle describes its server in the MCP Registry's format, `mcpgen lint`
checks it, and the server says the same of itself in both protocol eras."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx
import pytest
from mcp import Client, StdioServerParameters

from tests.conftest import PROTOS, HttpGateway, run_cli, run_mcpgen

pytestmark = pytest.mark.anyio

CONFIG = """
server_name = "io.github.acme/library"
server_version = "1.4.0"
server_title = "ACME Library"
server_description = "Books and shelves of the ACME library."
website_url = "https://acme.example/library"
remote_url = "https://mcp.acme.example/mcp"
package = { registry = "pypi", identifier = "acme-library-mcp", version = "1.4.0" }
"""


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(scope="module")
def described(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("described")
    (root / "mcpgen.toml").write_text(CONFIG)
    done = run_mcpgen("build", str(PROTOS), "-o", "bundle", "--no-models", cwd=root)
    assert done.returncode == 0, done.stderr
    return root / "bundle"


def test_server_json_follows_the_registry_format(described):
    document = json.loads((described / "server.json").read_text())
    assert document["$schema"].endswith("/server.schema.json")
    assert {k: document[k] for k in ("name", "title", "description", "version", "websiteUrl")} == {
        "name": "io.github.acme/library", "title": "ACME Library",
        "description": "Books and shelves of the ACME library.", "version": "1.4.0",
        "websiteUrl": "https://acme.example/library",
    }  # fmt: skip
    package = document["packages"][0]
    assert package["registryType"] == "pypi" and package["identifier"] == "acme-library-mcp"
    assert package["version"] == "1.4.0" and package["transport"] == {"type": "stdio"}
    variables = {v["name"] for v in package["environmentVariables"]}
    assert {"MCPGEN_BACKEND", "MCPGEN_TOOLSET", "MCPGEN_READ_ONLY"} <= variables
    assert document["remotes"] == [
        {"type": "streamable-http", "url": "https://mcp.acme.example/mcp"}
    ]
    index = json.loads((described / "manifest.json").read_text())
    assert "server.json" in index["digests"]  # checked by `mcpgen check` like any file


def test_lint_checks_server_json(described, tmp_path):
    clean = run_cli("lint", str(described), "--profile", "claude", "--format", "json")
    registry = [v for v in json.loads(clean.output)["violations"] if v["profile"] == "mcp-registry"]
    assert registry == []
    broken = tmp_path / "bundle"
    import shutil

    shutil.copytree(described, broken)
    document = json.loads((broken / "server.json").read_text())
    document |= {"name": "library", "version": "^1.4", "description": "x" * 101}
    document["remotes"] = [{"type": "websocket", "url": "ftp://x"}]
    (broken / "server.json").write_text(json.dumps(document))
    done = run_cli("lint", str(broken), "--profile", "claude", "--format", "json")
    found = {(v["path"], v["severity"]) for v in json.loads(done.output)["violations"]
             if v["profile"] == "mcp-registry"}  # fmt: skip
    assert ("server.json#/name", "warning") in found  # not reverse-DNS
    assert ("server.json#/name", "error") in found  # not server.py's name
    assert {("server.json#/version", "error"), ("server.json#/description", "error"),
            ("server.json#/remotes/0/type", "error"),
            ("server.json#/remotes/0/url", "error")} <= found  # fmt: skip
    assert done.exit_code == 1


async def test_the_server_says_the_same_in_both_eras(described, library_backend):
    params = StdioServerParameters(
        command=sys.executable,
        args=[str(described / "server.py"), "--backend", library_backend.target],
    )
    async with Client(params, mode="legacy") as client:
        legacy = client.server_info
    gateway = HttpGateway(described, "--backend", library_backend.target)
    meta = {
        "io.modelcontextprotocol/clientInfo": {"name": "test", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    }
    headers = {"accept": "application/json, text/event-stream",
               "mcp-protocol-version": "2026-07-28", "mcp-method": "server/discover"}  # fmt: skip
    request = {"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": meta}}
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            answer = (await http.post(gateway.url, json=request, headers=headers)).json()
    finally:
        gateway.stop()
    assert legacy is not None
    assert (legacy.name, legacy.version, legacy.title) == (
        "io.github.acme/library", "1.4.0", "ACME Library"
    )  # fmt: skip
    assert legacy.description == "Books and shelves of the ACME library."
    assert legacy.website_url == "https://acme.example/library"
    modern = answer["result"]["_meta"]["io.modelcontextprotocol/serverInfo"]
    assert modern == {
        "name": "io.github.acme/library", "title": "ACME Library", "version": "1.4.0",
        "description": "Books and shelves of the ACME library.",
        "websiteUrl": "https://acme.example/library",
    }  # fmt: skip
