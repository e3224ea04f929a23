"""`mcpgen build --profile P`: schemas each client accepts, and a server that takes exactly those.

Builds of the fixtures for every profile lint clean for it. For openai-strict, the server path
(`strict_arguments`, then the precise validation and `build_request`) is checked against the
portable path with random protobuf messages: the strict arguments (every absent optional
property sent as null) build the same request as the portable ones, and whatever the strict
schema refuses (per plain `jsonschema`) the server refuses too. Last, strict calls with nulls
go through the real gateway and the SDK client to a gRPC backend and to a go-micro node.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from mcp import Client

from mcpgen.build import build
from mcpgen.config import CLIENT_PROFILES, Config
from mcpgen.errors import UserError
from mcpgen.runtime.arguments import InvalidArguments, build_request, strict_arguments
from mcpgen.runtime.bundle import Bundle
from mcpgen.runtime.gateway import Gateway
from mcpgen.runtime.grpc_backend import BackendConfig, GrpcBackends
from mcpgen.runtime.server import McpFrontend
from mcpgen.runtime.validation import validator_for
from mcpgen.schema.profiles import for_profile
from tests.conftest import PROTOS, read_tools, run_cli
from tests.randomfill import RandomFiller

JSON = Any


@pytest.fixture(scope="module")
def strict_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("strict") / "mcp_bundle"
    build(Config(sources=[str(PROTOS)], out=str(out), profile="openai-strict"))
    return out


@pytest.fixture(scope="module")
def strict(strict_bundle: Path) -> Bundle:
    return Bundle(strict_bundle)


# ---- builds ----------------------------------------------------------------------------------


@pytest.mark.parametrize("profile", CLIENT_PROFILES)
def test_a_build_for_a_profile_lints_clean_for_it(profile, tmp_path, library_bundle):
    out = tmp_path / "mcp_bundle"
    built = run_cli("build", str(PROTOS), "-o", str(out), "--profile", profile, "-q", cwd=tmp_path)
    assert built.exit_code == 0, built.output
    linted = run_cli("lint", str(out))  # the profile it was built for
    assert linted.exit_code == 0, linted.output
    assert f"21 tools, {profile}: 0 error(s)" in linted.stderr
    index = json.loads((out / "manifest.json").read_text())
    default_index = json.loads((library_bundle / "manifest.json").read_text())
    assert index["profile"] == profile and "profile" not in default_index
    tools, default = read_tools(out)["tools"], read_tools(library_bundle)["tools"]
    if profile in ("claude", "openai", "cursor"):  # portable is what these accept
        assert tools == default
    else:
        assert tools != default


# ---- the transformations ---------------------------------------------------------------------

PORTABLE = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "genre": {"type": "string", "enum": ["A", "B"]},
        "site": {"type": "string", "format": "uri"},
        "when": {"type": "string", "format": "date-time"},
        "labels": {"type": "object", "additionalProperties": {"type": "integer"}},
        "anything": {"description": "any JSON value"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "child": {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]},
    },
    "required": ["name"],
}


def test_openai_strict_closes_objects_and_makes_optional_properties_nullable():
    schema = for_profile(PORTABLE, "openai-strict", "t")
    props = schema["properties"]
    assert schema["additionalProperties"] is False and schema["required"] == list(props)
    assert "labels" not in props
    assert "Cannot be sent with this client profile: `labels`." in schema["description"]
    assert props["name"] == {"type": "string", "description": "Constraints: minLength 1."}
    assert props["genre"] == {"type": ["string", "null"], "enum": ["A", "B", None]}
    assert props["site"] == {"type": ["string", "null"], "description": "Constraints: format uri."}
    assert props["when"] == {"type": ["string", "null"], "format": "date-time"}
    assert props["anything"]["type"] == ["string", "number", "boolean", "null"]
    assert props["tags"] == {"type": ["array", "null"], "items": {"type": "string"}}
    assert props["child"] == {
        "type": ["object", "null"], "properties": {"n": {"type": "integer"}},
        "additionalProperties": False, "required": ["n"],
    }  # fmt: skip


def test_openai_strict_cuts_objects_nested_deeper_than_openai_allows():
    schema: dict[str, Any] = {"type": "object", "properties": {"leaf": {"type": "string"}}}
    for level in range(6):
        schema = {"type": "object", "properties": {f"l{level}": schema}}
    strict = for_profile(schema, "openai-strict", "t")
    node = strict
    for level in (5, 4, 3, 2):
        node = node["properties"][f"l{level}"]
    assert node["properties"] == {}  # level 5: its child would be the 6th
    assert "Cannot be sent with this client profile: `l1`." in node["description"]


def test_openai_strict_refuses_a_required_field_it_cannot_express():
    portable = {**PORTABLE, "required": ["name", "labels"]}
    with pytest.raises(UserError) as error:
        for_profile(portable, "openai-strict", "Library_Tag")
    where = "tool Library_Tag: /inputSchema/properties/labels: the required field"
    assert where in str(error.value)


def test_gemini_drops_what_it_rejects_and_says_it_in_words():
    schema = {
        "type": "object",
        "properties": {
            "labels": {"type": "object", "additionalProperties": {"type": "integer"}},
            "kind": {"const": "book"},
            "count": {"type": ["integer", "string", "null"]},
            "xs": {"type": "array"},
        },
    }
    props = for_profile(schema, "gemini", "t")["properties"]
    assert props["labels"] == {
        "type": "object", "description": "An object of key-value pairs; every value is of type "
        "integer.",
    }  # fmt: skip
    assert props["kind"] == {"enum": ["book"]}
    assert props["count"] == {"type": "integer", "nullable": True, "description": "Also accepts: "
                              "string."}  # fmt: skip
    assert props["xs"]["items"] == {"description": "any JSON value"}


@pytest.mark.parametrize("profile", ["claude", "openai", "cursor"])
def test_portable_is_what_claude_openai_and_cursor_get(profile):
    assert for_profile(PORTABLE, profile, "t") is PORTABLE


# ---- the server: strict arguments ------------------------------------------------------------


def _described(value: JSON, schema: dict[str, Any]) -> JSON:
    """`value` with what the strict schema leaves out removed, and without nulls (which mean
    "not set" in a strict schema, but a null Value to protobuf)."""
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [_described(v, schema["items"]) for v in value]
    props = schema.get("properties")
    if not isinstance(value, dict) or not isinstance(props, dict):
        return value
    return {k: _described(v, props[k]) for k, v in value.items() if k in props and v is not None}


def _with_nulls(value: JSON, schema: dict[str, Any]) -> JSON:
    """Strict arguments: every absent property that the strict schema makes nullable, as null."""
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [_with_nulls(v, schema["items"]) for v in value]
    props = schema.get("properties")
    if not isinstance(value, dict) or not isinstance(props, dict):
        return value
    out = {k: _with_nulls(v, props[k]) for k, v in value.items()}
    for key, sub in props.items():
        if key not in out and isinstance(sub.get("type"), list) and "null" in sub["type"]:
            out[key] = None
    return out


def _server(bundle: Bundle, tool: str, arguments: JSON, strict_step: bool) -> bytes | str:
    """The gateway's request for `arguments` (serialized), or "refused"."""
    method = bundle.method(tool)
    try:
        if strict_step:
            arguments = strict_arguments(arguments, bundle.strict_validator(tool))
        request = build_request(arguments, method.input_class, bundle.input_validator(tool))
    except InvalidArguments as error:
        assert error.problems
        return "refused"
    return request.SerializeToString(deterministic=True)


TOOLS = [
    "Inventory_Lookup", "Inventory_Reserve", "Library_CreateBook", "Library_ListBooks",
    "Library_UpdateBook", "Types_EchoChoice", "Types_EchoContainers", "Types_EchoPair",
    "Types_EchoScalars", "Types_EchoStruct", "Types_EchoTree", "Types_EchoValidated",
    "Types_EchoValue", "Types_EchoWellKnown", "Types_Now", "v1_Users_GetUser", "v2_Users_GetUser",
]  # fmt: skip
_SETTINGS = settings(
    max_examples=40, deadline=None, derandomize=True, database=None,
    suppress_health_check=list(HealthCheck),
)  # fmt: skip


def _random_arguments(bundle: Bundle, tool: str, seed: int) -> JSON:
    method = bundle.method(tool)
    pool = method.input_descriptor.file.pool
    filler = RandomFiller(pool, random.Random(seed), any_types=["acme.types.v1.Scalars"])
    message = filler.message(method.input_descriptor.full_name)
    printed = json_format.MessageToDict(message, descriptor_pool=pool)
    if method.input_descriptor.full_name == "google.protobuf.Value":
        printed = {"value": printed}
    return _described(printed, bundle.by_name[tool]["inputSchema"])


@pytest.mark.parametrize("tool", TOOLS)
def test_strict_arguments_build_the_request_portable_ones_do(tool, strict):
    schema = strict.by_name[tool]["inputSchema"]
    oracle = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    outcomes = set()

    @_SETTINGS
    @given(st.integers(0, 2**32))
    def check(seed: int) -> None:
        portable = _random_arguments(strict, tool, seed)
        arguments = _with_nulls(portable, schema)
        through_strict = _server(strict, tool, arguments, strict_step=True)
        if oracle.is_valid(arguments):
            assert through_strict == _server(strict, tool, portable, strict_step=False)
        else:
            assert through_strict == "refused"
        outcomes.add(through_strict == "refused")

    check()
    if tool not in ("Types_EchoValidated", "Types_EchoValue"):  # random values break their rules
        assert False in outcomes  # some calls went through, so the comparison was made


def _mutations(arguments: JSON, schema: dict[str, Any]) -> list[JSON]:
    """Arguments a strict schema refuses: a property left out, an unknown one, a wrong type,
    an original proto name; at every object of `arguments`."""
    found: list[JSON] = []
    props = schema.get("properties")
    if not isinstance(arguments, dict) or not isinstance(props, dict):
        return found
    for key in arguments:
        found.append({k: v for k, v in arguments.items() if k != key})
        found.append({**arguments, key: {"unexpected": [1]}})
        snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in key)
        if snake != key:
            found.append({(snake if k == key else k): v for k, v in arguments.items()})
        found += [{**arguments, key: m} for m in _mutations(arguments[key], props[key])]
    found.append({**arguments, "unknownKey": 1})
    return found


@pytest.mark.parametrize("tool", TOOLS)
def test_what_the_strict_schema_refuses_the_server_refuses(tool, strict):
    schema = strict.by_name[tool]["inputSchema"]
    oracle = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)

    @_SETTINGS
    @given(st.integers(0, 2**32), st.randoms(use_true_random=False))
    def check(seed: int, rng: random.Random) -> None:
        arguments = _with_nulls(_random_arguments(strict, tool, seed), schema)
        mutated = rng.choice(_mutations(arguments, schema))
        if not oracle.is_valid(mutated):
            assert _server(strict, tool, mutated, strict_step=True) == "refused"

    check()


def test_strict_arguments_drop_only_the_nulls_that_mean_unset():
    schema = {
        "type": "object",
        "properties": {
            "a": {"type": ["string", "null"]},
            "b": {"type": "null"},
            "c": {"type": ["array", "null"], "items": {
                "type": "object", "properties": {"d": {"type": ["integer", "null"]}},
                "required": ["d"], "additionalProperties": False}},
        },
        "required": ["a", "b", "c"],
        "additionalProperties": False,
    }  # fmt: skip
    checked = validator_for(schema)
    assert strict_arguments({"a": None, "b": None, "c": [{"d": None}, {"d": 2}]}, checked) == {
        "b": None, "c": [{}, {"d": 2}],
    }  # fmt: skip
    with pytest.raises(InvalidArguments) as missing:
        strict_arguments({"a": "x", "c": None}, checked)
    assert missing.value.problems == ["at /: missing required property `b`"]


# ---- end to end ------------------------------------------------------------------------------


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_a_strict_call_with_nulls_reaches_the_backend(mode, strict_bundle, library_backend):
    bundle = Bundle(strict_bundle)
    gateway = Gateway(bundle, GrpcBackends(BackendConfig.parse([library_backend.target])))
    server = McpFrontend(gateway, "library", "1.0.0")
    schema = bundle.by_name["Library_CreateBook"]["inputSchema"]
    arguments = _with_nulls({"parent": "shelves/1", "book": {"title": "Dune", "pageCount": 412}},
                            schema)  # fmt: skip
    assert arguments["book"]["author"] is None and arguments["book"]["ebookUrl"] is None
    async with Client(server.server, mode=mode) as client:
        listed = await client.list_tools()
        created = await client.call_tool("Library_CreateBook", arguments)
        incomplete = await client.call_tool("Library_CreateBook", {"parent": "shelves/1", "book": {
            "title": "Dune", "pageCount": 412}})  # fmt: skip
    listed_schema = {t.name: t.input_schema for t in listed.tools}["Library_CreateBook"]
    assert listed_schema == schema
    assert not created.is_error, created.content
    assert created.structured_content["title"] == "Dune"
    (call,) = library_backend.calls("CreateBook")
    assert call.request.book.page_count == 412 and call.request.book.author == ""
    assert call.request.book.WhichOneof("location") is None
    assert incomplete.is_error
    assert "at /book: missing required property `name`" in incomplete.content[0].text


@pytest.mark.anyio
async def test_a_strict_go_micro_call_sends_no_nulls(tmp_path):
    """Registry-only endpoints: the strict schema is the only check, and nulls stay home."""
    from fixtures.mucp_node import MucpNode
    from mcpgen.runtime.mucp_backend import MucpBackends
    from tests.test_gomicro_serve import snapshot_with

    node = MucpNode("users").start()
    try:
        snapshot = snapshot_with(tmp_path, {"users": [node.address]})
        out = tmp_path / "bundle"
        build(Config(sources=[str(snapshot)], out=str(out), profile="openai-strict"))
        config = BackendConfig.parse([])
        gateway = Gateway(Bundle(out), GrpcBackends(config), micro=MucpBackends(config))
        server = McpFrontend(gateway, "micro", "1.0.0")
        async with Client(server.server, mode="legacy") as client:
            created = await client.call_tool(
                "Users_Create", {"name": "Alice", "email": None, "age": None, "tags": None}
            )
            partial = await client.call_tool("Users_Create", {"name": "Alice"})
        assert not created.is_error, created.content[0].text
        assert [r.body for r in node.received] == [{"name": "Alice"}]
        assert partial.is_error and "missing required property `email`" in partial.content[0].text
    finally:
        node.stop()
