"""Toolsets and selection: `[tool.mcpgen.toolsets]`, `mcpgen tools --toolsets`, and a server
told `--toolset`, `--tools`, `--read-only`, over stdio, Streamable HTTP and REST.

Also what a selection promises beyond the list: unselected tools are not callable, the shards
and descriptors of unselected packages are never read, and the runtime imports nothing of the
build-only stages.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from mcp import Client, StdioServerParameters
from mcp.shared.exceptions import MCPError

from mcpgen.errors import UserError
from mcpgen.runtime.bundle import Bundle
from mcpgen.runtime.gateway import CallContext, Gateway, UnknownTool
from mcpgen.runtime.grpc_backend import BackendConfig, GrpcBackends
from mcpgen.toolsets import Selection
from tests.conftest import PROTOS, ROOT, HttpGateway, run_cli, run_mcpgen

pytestmark = pytest.mark.anyio

LIBRARY = ["Library_CreateBook", "Library_DeleteBook", "Library_GetBook", "Library_LegacySearch",
           "Library_ListBooks", "Library_UpdateBook", "Library_WatchBooks"]  # fmt: skip
LIBRARY_READ_ONLY = ["Library_GetBook", "Library_ListBooks"]


@pytest.fixture
def anyio_backend():
    return "asyncio"


def build_with(tmp_path: Path, config: str) -> tuple[Path, subprocess.CompletedProcess[str]]:
    (tmp_path / "mcpgen.toml").write_text(config)
    out = tmp_path / "bundle"
    done = run_mcpgen("build", str(PROTOS), "-o", str(out), "--no-models", cwd=tmp_path)
    return out, done


def test_config_toolsets_are_recorded_and_listed(tmp_path):
    out, done = build_with(
        tmp_path,
        '[toolsets]\nbooks = ["acme.library.v1.Library.*Book*"]\n'
        'lookups = ["*_GetUser", "Inventory_Lookup"]\n',
    )
    assert done.returncode == 0, done.stderr
    index = json.loads((out / "manifest.json").read_text())
    assert index["toolsets"]["books"] == {
        "patterns": ["acme.library.v1.Library.*Book*"],
        "tools": ["Library_CreateBook", "Library_DeleteBook", "Library_GetBook",
                  "Library_ListBooks", "Library_UpdateBook", "Library_WatchBooks"],
    }  # fmt: skip
    assert index["toolsets"]["lookups"]["tools"] == [
        "Inventory_Lookup", "v1_Users_GetUser", "v2_Users_GetUser"
    ]  # fmt: skip
    library = index["shards"]["acme.library.v1"]
    assert library["methods"]["Library_GetBook"] == "acme.library.v1.Library.GetBook"
    assert library["readOnly"] == LIBRARY_READ_ONLY

    listed = run_cli("tools", str(out), "--toolsets", "--json")
    rows = {r["name"]: r for r in json.loads(listed.output)["toolsets"]}
    assert rows["books"] == {"name": "books", "kind": "config", "tools": 6, "readOnly": 2}
    assert rows["acme.library.v1"] == {
        "name": "acme.library.v1", "kind": "package", "tools": 7, "readOnly": 2
    }  # fmt: skip
    assert rows["acme.types.v1"]["readOnly"] == 0
    assert sorted(rows) == sorted([*index["shards"], "books", "lookups"])
    text = run_cli("tools", str(out), "--toolsets").output
    assert "7 toolset(s)" in text
    assert "books" in text and "6 tool(s), 2 read-only" in text


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ('[toolsets]\ntypo = ["acme.nothing.*"]\n', "toolset 'typo' chooses no tool"),
        ('[toolsets]\n"acme.users.v1" = ["*"]\n', "has the name of a package"),
        ('[toolsets]\nbad = "Library_*"\n', "must be a table of toolset name"),
        ('[toolsets]\n"no spaces" = ["*"]\n', "must be letters, digits"),
    ],
)
def test_bad_toolsets_fail_the_build_and_say_where(tmp_path, config, message):
    out, done = build_with(tmp_path, config)
    assert done.returncode != 0
    assert message in done.stderr and "mcpgen.toml" in done.stderr
    assert "Traceback" not in done.stderr
    assert not out.exists()


def test_selection_from_the_index(library_bundle):
    def chosen(**kwargs):
        return Bundle(library_bundle, Selection(**kwargs)).names

    everything = Bundle(library_bundle).names
    assert len(everything) == 21 and everything == sorted(everything)
    assert chosen(toolsets=("acme.library.v1",)) == LIBRARY
    assert chosen(toolsets=("acme.library.v1",), read_only=True) == LIBRARY_READ_ONLY
    assert chosen(tools=("acme.users.*",)) == ["v1_Users_GetUser", "v2_Users_GetUser"]
    assert chosen(tools=("Inventory_*",), toolsets=("acme.users.v2",)) == [
        "Inventory_Lookup", "Inventory_Reserve", "v2_Users_GetUser"
    ]  # fmt: skip
    read_only = chosen(read_only=True)
    assert set(LIBRARY_READ_ONLY) <= set(read_only) and "Library_CreateBook" not in read_only
    with pytest.raises(UserError, match=r"no toolset is named 'acme\.library\.v2'") as error:
        chosen(toolsets=("acme.library.v2",))
    assert "acme.library.v1" in (error.value.hint or "")
    with pytest.raises(UserError, match="matches no tool"):
        chosen(tools=("Nope_*",))
    with pytest.raises(UserError, match="--read-only leaves no tool"):
        chosen(toolsets=("acme.types.v1",), read_only=True)


async def test_a_read_only_toolset_over_stdio(library_bundle, library_backend):
    params = StdioServerParameters(
        command=sys.executable,
        args=[
            *(str(library_bundle / "server.py"), "--backend", library_backend.target),
            *("--toolset", "acme.library.v1", "--read-only"),
        ],
    )
    async with Client(params, mode="legacy") as client:
        tools = (await client.list_tools()).tools
        listed = await client.call_tool("Library_ListBooks", {"parent": "shelves/1"})
        with pytest.raises(MCPError, match="Unknown tool: Library_CreateBook"):
            await client.call_tool("Library_CreateBook", {"parent": "shelves/1", "book": {}})
        with pytest.raises(MCPError, match="Unknown tool: v1_Users_GetUser"):
            await client.call_tool("v1_Users_GetUser", {"name": "users/1"})
    assert [t.name for t in tools] == LIBRARY_READ_ONLY
    assert not listed.is_error
    assert library_backend.calls("CreateBook") == []


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_selection_from_the_environment_over_http_and_rest(
    mode, library_bundle, library_backend, monkeypatch
):
    monkeypatch.setenv("MCPGEN_TOOLS", "acme.library.v1.Library.GetBook Library_List*")
    gateway = HttpGateway(library_bundle, "--backend", library_backend.target)
    try:
        async with Client(gateway.url, mode=mode) as client:
            tools = (await client.list_tools()).tools
            got = await client.call_tool("Library_ListBooks", {"parent": "shelves/1"})
        with httpx.Client(base_url=gateway.base, timeout=10) as http:
            rest_tools = http.get("/mcp/tools").json()["tools"]
            refused = http.post("/mcp/call", json={"tool": "Library_CreateBook", "input": {}})
            health = http.get("/health").json()
    finally:
        gateway.stop()
    assert [t.name for t in tools] == LIBRARY_READ_ONLY
    assert not got.is_error
    assert [t["name"] for t in rest_tools] == LIBRARY_READ_ONLY
    assert refused.status_code == 404 and refused.json()["code"] == "UNKNOWN_TOOL"
    assert health["tools"] == 2


def test_an_unknown_toolset_stops_the_server_with_a_hint(library_bundle):
    done = subprocess.run(
        [sys.executable, str(library_bundle / "server.py"), "--toolset", "acme.libary.v1"],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode != 0
    assert "no toolset is named 'acme.libary.v1'" in done.stderr
    assert "did you mean acme.library.v1" in done.stderr
    assert "Traceback" not in done.stderr


async def test_unselected_shards_and_descriptors_are_never_read(
    tmp_path, library_bundle, library_backend
):
    copy = tmp_path / "bundle"
    shutil.copytree(library_bundle, copy)
    for name in ("tools/acme.types.v1.json", "tools/acme.legacy.v1.json",
                 "descriptors/acme.types.v1.binpb", "descriptors/validate.binpb"):  # fmt: skip
        (copy / name).write_bytes(b"\x00 not what the index promised")
    bundle = Bundle(copy, Selection(toolsets=("acme.library.v1",)))
    gateway = Gateway(bundle, GrpcBackends(BackendConfig.parse([library_backend.target])))
    try:
        listed = gateway.visible_tools(CallContext("stdio").caller)
        result = await gateway.call(
            "Library_CreateBook", {"parent": "shelves/1", "book": {"title": "Emma"}},
            CallContext("stdio"),
        )  # fmt: skip
        with pytest.raises(UnknownTool):
            await gateway.call("Types_Now", {}, CallContext("stdio"))
    finally:
        await gateway.close()
    assert [t["name"] for t in listed] == LIBRARY
    assert result["title"] == "Emma"
    with pytest.raises(UserError, match="is not the file its index lists"):  # real damage
        _ = Bundle(copy, Selection(toolsets=("acme.types.v1",))).tools


def test_the_runtime_imports_no_build_stage(library_bundle):
    """What serving loads: the bundle, the SDK, grpc; never protoc, templates, the models
    generator or the build's own stages (a server container need not install them)."""
    build_only = [
        "mcpgen.build", "mcpgen.emit", "mcpgen.pymodels", "mcpgen.templating", "mcpgen.tools",
        "mcpgen.validate", "mcpgen.catalog_md", "mcpgen.cache", "mcpgen.config",
        "mcpgen.sources.inputs", "mcpgen.sources.protofiles", "mcpgen.check", "mcpgen.diff",
        "mcpgen.lint", "jinja2", "datamodel_code_generator", "grpc_tools.protoc", "ruff",
    ]  # fmt: skip
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from mcpgen.runtime.cli import ServerIdentity, make_frontend, server_options\n"
        "from mcpgen.runtime.settings import ServerSettings\n"
        "import click\n"
        "@click.command()\n"
        "@server_options\n"
        "def flags(**kw):\n"
        "    folder = Path(sys.argv[1])\n"
        "    settings = ServerSettings.from_flags(kw)\n"
        "    identity = ServerIdentity.of_bundle(folder)\n"
        "    make_frontend(folder, identity, settings).gateway.bundle.tools\n"
        "flags(['--toolset', 'acme.library.v1'], standalone_mode=False)\n"
        f"print([m for m in {build_only!r} if m in sys.modules])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(library_bundle)],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ}, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_a_bundle_of_mcpgen_0_2_is_still_served(tmp_path, library_bundle):
    """An index without the tools' facts and shards without search files (mcpgen 0.2.0):
    selection reads the facts from the shards, search the tools."""
    from mcpgen.runtime.discovery import index_of

    old = tmp_path / "bundle"
    shutil.copytree(library_bundle, old)
    index = json.loads((old / "manifest.json").read_text())
    for entry in index["shards"].values():
        for key in ("methods", "readOnly", "scopes"):
            entry.pop(key, None)
        search = entry["files"].pop("search")
        index["digests"].pop(search)
        (old / search).unlink()
    index.pop("toolsets")
    (old / "manifest.json").write_text(json.dumps(index))
    bundle = Bundle(old, Selection(toolsets=("acme.library.v1",), read_only=True))
    assert bundle.names == LIBRARY_READ_ONLY
    assert index_of(bundle).search("get book")[0].entry.name == "Library_GetBook"
    assert Bundle(old, Selection(tools=("acme.users.*",))).names == [
        "v1_Users_GetUser", "v2_Users_GetUser"
    ]  # fmt: skip
