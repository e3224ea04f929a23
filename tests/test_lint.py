"""`mcpgen lint`: each client rule on a crafted tool, tool counts, the fixture bundle, exits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mcpgen.build import build
from mcpgen.config import CLIENT_PROFILES, Config
from mcpgen.contract import (
    GrpcRoute,
    Index,
    ShardEntry,
    ShardFiles,
    shard_json,
    to_json,
    write_file,
)
from mcpgen.errors import UserError
from mcpgen.lint import RULES, WARNING, lint_tools
from tests.conftest import PROTOS, run_cli, run_mcpgen

OBJECT: dict[str, Any] = {"type": "object", "properties": {}}
CLOSED: dict[str, Any] = {**OBJECT, "additionalProperties": False, "required": []}


def tool(name: str = "get", input_schema: dict[str, Any] | None = None, **more: Any) -> dict:
    schema = CLOSED if input_schema is None else input_schema
    return {"name": name, "inputSchema": schema, "outputSchema": {"type": "object"}, **more}


def strict(properties: dict[str, Any]) -> dict[str, Any]:
    """A strict-clean object holding `properties` (all required)."""
    return {**CLOSED, "properties": properties, "required": list(properties)}


def found(profile: str, tools: list[dict], server: str = "mcpgen") -> list[tuple[str, str]]:
    return [(v.path, v.message) for v in lint_tools(tools, profile, server)]


def test_rules_cover_every_client_profile():
    assert set(RULES) == set(CLIENT_PROFILES)


@pytest.mark.parametrize("profile", CLIENT_PROFILES)
def test_a_plain_tool_passes_every_profile(profile):
    """Open objects for all but OpenAI strict mode, which needs them closed (Gemini refuses)."""
    assert found(profile, [tool(input_schema=OBJECT)]) == ([
        ("/tools/0/inputSchema", "OpenAI strict mode needs `additionalProperties: false` on "
         "every object")] if profile == "openai-strict" else [])  # fmt: skip
    assert (found(profile, [tool(input_schema=CLOSED)]) == []) is (profile != "gemini")


# profile, tool, JSON path of the violation, words of its message
CASES = [
    ("claude", tool("x" * 52), "/tools/0/name", "`mcp__mcpgen__xxx"),
    ("claude", tool("get.book"), "/tools/0/name", "names matching"),
    ("claude", tool(input_schema={**OBJECT, "anyOf": [OBJECT]}), "/tools/0/inputSchema/anyOf",
     "rejects `anyOf` at the root"),
    ("openai", tool("get.book"), "/tools/0/name", "names matching"),
    ("openai", tool("x" * 65), "/tools/0/name", "allows 64 characters"),
    ("openai", tool(input_schema={**OBJECT, "properties": {"xs": {"type": "array"}}}),
     "/tools/0/inputSchema/properties/xs", "arrays without `items`"),
    ("openai-strict", tool(input_schema=OBJECT), "/tools/0/inputSchema",
     "`additionalProperties: false`"),
    ("openai-strict", tool(input_schema={**CLOSED, "properties": {"a": {"type": "string"}}}),
     "/tools/0/inputSchema/required", "missing `a`"),
    ("openai-strict", tool(input_schema=strict({"a": {"type": "string", "minLength": 1}})),
     "/tools/0/inputSchema/properties/a/minLength", "does not support `minLength`"),
    ("openai-strict", tool(input_schema=strict({"a": {"type": "string", "format": "uri"}})),
     "/tools/0/inputSchema/properties/a/format", "format 'uri'"),
    ("openai-strict", tool(input_schema=strict({"a": {"description": "anything"}})),
     "/tools/0/inputSchema/properties/a", "needs a `type`"),
    ("openai-strict", tool(input_schema=strict({"m": {"type": "object"}})),
     "/tools/0/inputSchema/properties/m", "needs `properties`"),
    ("openai-strict", tool(input_schema=strict({"a": strict({"b": strict({"c": strict({"d": strict(
        {"e": strict({})})})})})})), "/tools/0/inputSchema/properties/a/properties/b/properties/c"
     "/properties/d/properties/e", "5 levels of nested objects; this is 6"),
    ("openai-strict", tool(input_schema=strict({f"p{i}": {"type": "string"} for i in range(5001)})),
     "/tools/0/inputSchema", "5000 properties; this has 5001"),
    ("gemini", tool("1st"), "/tools/0/name", "names matching"),
    ("gemini", tool(input_schema={**OBJECT, "$defs": {"A": OBJECT}}), "/tools/0/inputSchema/$defs",
     "rejects `$defs`"),
    ("gemini", tool(input_schema={**OBJECT, "properties": {"a": {"$ref": "#/$defs/A"}},
                                  "$defs": {"A": OBJECT}}),
     "/tools/0/inputSchema/properties/a/$ref", "rejects `$ref`"),
    ("gemini", tool(input_schema={**OBJECT, "properties": {"a": {"const": 1}}}),
     "/tools/0/inputSchema/properties/a/const", "rejects `const`"),
    ("gemini", tool(input_schema={**OBJECT, "properties": {"m": {
        "type": "object", "additionalProperties": {"type": "string"}}}}),
     "/tools/0/inputSchema/properties/m/additionalProperties", "rejects `additionalProperties`"),
    ("gemini", tool(input_schema={**OBJECT, "properties": {"a": {"type": ["string", "null"]}}}),
     "/tools/0/inputSchema/properties/a/type", "type arrays"),
    ("gemini", tool(input_schema={**OBJECT, "properties": {"xs": {"type": "array"}}}),
     "/tools/0/inputSchema/properties/xs", "arrays without `items`"),
    ("cursor", tool("x" * 55), "/tools/0/name", "allows 60 characters; `mcpgenxxx"),
    ("cursor", tool(input_schema={**OBJECT, "properties": {"a": {"oneOf": [{"type": "string"}]}}}),
     "/tools/0/inputSchema/properties/a/oneOf", "rejects `oneOf`"),
    ("cursor", tool(input_schema={**OBJECT, "required": None}), "/tools/0/inputSchema/required",
     "drops the whole tool list"),
    ("cursor", tool(input_schema={"type": "string"}), "/tools/0/inputSchema",
     "root of an inputSchema"),
    ("claude", tool(outputSchema={"type": "array"}), "/tools/0/outputSchema",
     "root of an outputSchema"),
    ("claude", tool(input_schema={**OBJECT, "properties": {"t": {"$ref": "#/$defs/T"}}, "$defs": {
        "T": {**OBJECT, "properties": {"kids": {"type": "array", "items": {"$ref": "#/$defs/T"}}}}
    }}),
     "/tools/0/inputSchema/properties/t/properties/kids/items", "recursive schema (T"),
]  # fmt: skip


@pytest.mark.parametrize(("profile", "crafted", "path", "words"), CASES)
def test_each_rule_names_the_tool_and_the_path(profile, crafted, path, words):
    violations = lint_tools([crafted], profile, "mcpgen")
    assert [v.tool for v in violations] == [crafted["name"]] * len(violations)
    assert any(v.path == path and words in v.message for v in violations), violations


def test_the_server_name_counts_in_prefixed_names():
    name = "x" * 40
    assert found("claude", [tool(name)], server="library") == []
    ((path, message),) = found("claude", [tool(name)], server="a long server name")
    assert path == "/tools/0/name" and "`mcp__a_long_server_name__xxx" in message


@pytest.mark.parametrize(("profile", "limit"), [("openai", 128), ("openai-strict", 128)])
def test_tool_count_limits(profile, limit):
    many = [tool(f"t{i}") for i in range(limit + 1)]
    assert found(profile, many[:limit]) == []
    ((path, message),) = found(profile, many)
    assert path == "/tools" and f"at most {limit} tools; this has {limit + 1}" in message


def test_cursor_only_warns_above_80_tools():
    (violation,) = lint_tools([tool(f"t{i}") for i in range(81)], "cursor", "mcpgen")
    assert violation.severity == WARNING and violation.tool is None
    assert lint_tools([tool(f"t{i}") for i in range(80)], "cursor", "mcpgen") == []


# ---- the fixture bundle and the command -----------------------------------------------------


def test_default_bundle_passes_claude(library_bundle):
    result = run_cli("lint", str(library_bundle), "--profile", "claude")
    assert result.exit_code == 0, result.output
    assert "0 error(s)" in result.stderr


def test_default_bundle_fails_openai_strict_naming_tools_and_paths(library_bundle):
    result = run_cli("lint", str(library_bundle), "--profile", "openai-strict", "--format", "json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    shard = json.loads((library_bundle / "tools" / "acme.library.v1.json").read_text())
    index = [t["name"] for t in shard["tools"]].index("Library_CreateBook")
    mine = {v["path"]: v for v in report["violations"] if v["tool"] == "Library_CreateBook"}
    book = f"tools/acme.library.v1.json#/tools/{index}/inputSchema/properties/book"
    assert "`additionalProperties: false`" in mine[book]["message"]
    assert "missing `name`" in mine[f"{book}/required"]["message"]
    assert "format 'uri'" in mine[f"{book}/properties/ebookUrl/format"]["message"]
    assert "`properties`" in mine[f"{book}/properties/labels"]["message"]
    assert {v["profile"] for v in report["violations"]} == {"openai-strict"}
    assert report["errors"] == len(report["violations"]) > 20


def test_text_report_and_exit_codes_as_a_user_sees_them(library_bundle, tmp_path):
    failing = run_mcpgen("lint", str(library_bundle / "manifest.json"), "--profile", "gemini")
    assert failing.returncode == 1
    assert "error [gemini] tool Library_CreateBook: tools/acme.library.v1.json#/tools/" in (
        failing.stdout
    )
    assert "rejects `additionalProperties`" in failing.stdout
    assert "gemini: " in failing.stderr and "Traceback" not in failing.stderr
    passing = run_mcpgen("lint", str(library_bundle), "--profile", "claude", "--profile", "cursor")
    assert passing.returncode == 0 and passing.stdout == ""
    assert "claude, cursor: 0 error(s)" in passing.stderr
    missing = run_mcpgen("lint", str(tmp_path / "nowhere"))
    assert missing.returncode == 1 and "no bundle at" in missing.stderr
    old = tmp_path / "old"
    old.mkdir()
    (old / "manifest.json").write_text('{"manifestVersion": 1, "tools": [], "routes": {}}')
    refused = run_mcpgen("lint", str(old))
    assert refused.returncode == 1 and "is a version-1 bundle" in refused.stderr


def _bundle(
    folder: Path, tools: list[dict], server_name: str = "mcpgen", profile: str | None = None
) -> Path:
    """A one-shard bundle holding `tools` (written through the bundle contract)."""
    folder.mkdir()
    files = ShardFiles.of("t", None)
    tools = sorted(tools, key=lambda t: t["name"])
    names = [t["name"] for t in tools]
    routes = {n: GrpcRoute("t.S", n, f"/t.S/{n}", "unary").to_json() for n in names}
    chunks = shard_json("t", (to_json(t, newline=False) for t in tools), routes)
    write_file(folder, files.tools, chunks)
    index = Index("mcpgen test", {"t": ShardEntry(names, files)}, profile=profile)
    (folder / "manifest.json").write_bytes(index.to_json())
    (folder / "server.py").write_text(f"SERVER_NAME = {server_name!r}\n")
    return folder


def test_warnings_alone_exit_zero(tmp_path):
    bundle = _bundle(tmp_path / "b", [tool(f"t{i}") for i in range(81)])
    result = run_cli("lint", str(bundle), "--profile", "cursor")
    assert result.exit_code == 0
    assert result.stdout.startswith("warning [cursor] /: Cursor warns above 80 tools")


def test_server_name_comes_from_server_py_unless_given(tmp_path):
    bundle = _bundle(tmp_path / "b", [tool("x" * 40)], server_name="a-much-longer-server-name")
    assert run_cli("lint", str(bundle), "--profile", "claude").exit_code == 1
    shorter = run_cli("lint", str(bundle), "--profile", "claude", "--server-name", "lib")
    assert shorter.exit_code == 0


def test_default_profile_is_the_one_the_bundle_was_built_for(tmp_path):
    open_object = tool(input_schema=OBJECT)  # fine for gemini, not for openai-strict
    built = _bundle(tmp_path / "gemini", [open_object], profile="gemini")
    assert run_cli("lint", str(built)).exit_code == 0
    unbuilt = _bundle(tmp_path / "plain", [open_object])
    result = run_cli("lint", str(unbuilt), "--format", "json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["profiles"] == list(CLIENT_PROFILES)


def test_a_build_for_a_profile_refuses_what_that_client_rejects(tmp_path):
    long_name = "get_the_book_by_its_resource_name_from_the_library_now"  # 54 characters
    config = Config(
        sources=[str(PROTOS)],
        include=["acme.library.*"],
        rename={"acme.library.v1.Library.GetBook": long_name},
        out=str(tmp_path / "bundle"),
    )
    build(config)  # fine without a profile: 64 characters is the portable limit
    config.profile = "claude"
    with pytest.raises(UserError) as error:
        build(config)
    assert "break the rules of the claude profile" in error.value.message
    assert any(f"tool {long_name}: /name: Claude Code allows 64" in str(p)
               for p in error.value.problems)  # fmt: skip
