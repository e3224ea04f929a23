"""Fuzzing the gateway with hypothesis: whatever a client sends, the server stays up and answers
with a well-formed error.

Real parts: one generated server.py over HTTP per module (a subprocess, reused by every
example) in front of a real gRPC Library server, and an in-process `Gateway` for the deepest
invariant (`Gateway.call` raises nothing but the errors every transport knows how to word).
Bodies are garbage bytes, JSON that is not a JSON-RPC object, requests with wrong versions, ids,
methods and params, tool calls with wrong types, lone surrogates, integers beyond 64 bits,
huge strings, arguments nested past `--max-argument-depth`, and bodies past the body limit.

After every example the process is alive, `/health` answers, and a valid call still works.
`MCPGEN_FUZZ_EXAMPLES` sets the examples per test (default 60).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from mcpgen.runtime.arguments import InvalidArguments
from mcpgen.runtime.bundle import Bundle
from mcpgen.runtime.gateway import CallContext, Gateway, GatewayOptions, UnknownTool
from mcpgen.runtime.grpc_backend import BackendConfig, GrpcBackends
from mcpgen.runtime.policy import Denied
from mcpgen.runtime.status import BackendError
from tests.conftest import HttpGateway

EXAMPLES = int(os.environ.get("MCPGEN_FUZZ_EXAMPLES", "60"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
MAX_DEPTH = 16
MAX_ARGUMENT_BYTES = 64 * 1024
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
PROTOCOL = "2025-06-18"
#: What a JSON-RPC error of a tool call may say: never 0 or -32603 (an exception escaped).
CALL_ERRORS = {-32700, -32600, -32601, -32602}
SSE_LINES = re.compile(r"\r\n|\r|\n")
VALID_CALL = {"name": "Library_ListBooks", "arguments": {"parent": "shelves/1"}}

#: Arguments nested past what the JSON parser takes (hypothesis cannot print them as objects).
DEEP_CALL = (
    b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "Library_GetBook", '
    b'"arguments": {"book": ' + b"[" * 500 + b"]" * 500 + b"}}}"
)

# ---- strategies ------------------------------------------------------------------------------

SURROGATES = st.sampled_from(["\ud800", "\udfff", "a\ud83d", "\udc00z"])
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**80), max_value=2**80)  # beyond int64 and uint64
    | st.floats()  # NaN and infinities too: Python's json writes them, parsers may take them
    | st.text(max_size=20)
    | SURROGATES
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


def nested(depth: int, leaf: Any = 1) -> Any:
    """`depth` levels of alternating objects and arrays."""
    value = leaf
    for level in range(depth):
        value = {"a": value} if level % 2 else [value]
    return value


def arguments_for(names: list[str], properties: dict[str, list[str]]) -> st.SearchStrategy[Any]:
    """Arguments of a tool call: the tool's own property names with values of any type, junk
    keys, huge strings, deep nesting, or no object at all."""

    def of(name: str) -> st.SearchStrategy[Any]:
        keys = st.sampled_from(properties[name] or ["x"]) | st.text(max_size=6)
        return st.dictionaries(keys, json_values, max_size=5)

    huge = st.integers(MAX_ARGUMENT_BYTES, 4 * MAX_ARGUMENT_BYTES).map(lambda n: {"name": "x" * n})
    deep = st.integers(MAX_DEPTH, 300).map(lambda d: {"book": nested(d)})
    return st.sampled_from(names).flatmap(
        lambda name: st.tuples(st.just(name), of(name) | huge | deep | json_values)
    )


def envelopes() -> st.SearchStrategy[Any]:
    """JSON-RPC messages with any member wrong, missing or of the wrong type."""
    methods = [
        "tools/call",
        "tools/list",
        "ping",
        "initialize",
        "resources/list",
        "notifications/cancelled",
        "notifications/initialized",
        "completion/complete",
    ]
    params = st.sampled_from(["name", "arguments", "cursor", "_meta"]) | st.text(max_size=6)
    version = st.just("2.0") | st.just("2.0") | st.sampled_from(["1.0", "2", ""]) | json_values
    method = st.sampled_from(methods) | st.sampled_from(methods) | st.text(max_size=12)
    optional = {
        "id": st.integers() | st.text(max_size=8) | st.floats() | json_values,
        "params": st.dictionaries(params, json_values, max_size=4) | json_values,
    }
    return st.fixed_dictionaries(
        {"jsonrpc": version, "method": method}, optional=optional
    ) | st.fixed_dictionaries({}, optional={"jsonrpc": version, "method": method, **optional})


raw_bodies = (
    st.binary(max_size=200)
    | json_values.map(lambda v: json.dumps(v).encode())
    | envelopes().map(lambda v: json.dumps(v).encode())
    | st.integers(1024 * 1024 + 1, 3 * 1024 * 1024).map(lambda n: b'{"x":"' + b"x" * n + b'"}')
)


# ---- the server ------------------------------------------------------------------------------


class Session:
    """An initialized MCP session over HTTP with the server subprocess."""

    def __init__(self, server: HttpGateway) -> None:
        self.server = server
        self.http = httpx.Client(base_url=server.base, timeout=30)
        init = self.http.post(
            "/mcp",
            headers=MCP_HEADERS,
            json={"jsonrpc": "2.0", "id": 0, "method": "initialize",
                  "params": {"protocolVersion": PROTOCOL, "capabilities": {},
                             "clientInfo": {"name": "fuzz", "version": "1"}}},
        )  # fmt: skip
        assert init.status_code == 200, init.text
        self.headers = {
            **MCP_HEADERS,
            "Mcp-Session-Id": init.headers["mcp-session-id"],
            "Mcp-Protocol-Version": PROTOCOL,
        }
        self.post({"jsonrpc": "2.0", "method": "notifications/initialized"})
        self.ids = 0

    def post(self, body: Any) -> httpx.Response:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return self.http.post("/mcp", headers=self.headers, content=content)

    def call(self, name: Any, arguments: Any) -> httpx.Response:
        self.ids += 1
        params = {"name": name, "arguments": arguments}
        return self.post(
            {"jsonrpc": "2.0", "id": self.ids, "method": "tools/call", "params": params}
        )

    def still_serves(self) -> None:
        """The invariants that hold after any example."""
        assert self.server.process.poll() is None, "the server exited"
        health = self.http.get("/health")
        assert health.status_code == 200 and health.json()["status"] == "ok"
        (answer,) = messages(self.call(VALID_CALL["name"], VALID_CALL["arguments"]))
        assert answer["result"].get("isError") is not True, answer


@pytest.fixture(scope="module")
def backend(library_bundle: Path) -> Iterator[Any]:
    from fixtures.library_backend import LibraryBackend

    running = LibraryBackend(library_bundle).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def session(library_bundle: Path, backend: Any) -> Iterator[Session]:
    server = HttpGateway(
        library_bundle, "--backend", backend.target, "--timeout", "2",
        "--max-argument-depth", str(MAX_DEPTH), "--max-argument-bytes", str(MAX_ARGUMENT_BYTES),
    )  # fmt: skip
    session = Session(server)
    yield session
    session.http.close()
    err = server.stop()
    assert "Traceback" not in err, err


@pytest.fixture(scope="module")
def tools(library_bundle: Path) -> tuple[list[str], dict[str, list[str]]]:
    bundle = Bundle(library_bundle)
    properties = {t["name"]: sorted(t["inputSchema"].get("properties", {})) for t in bundle.tools}
    return sorted(properties), properties


# ---- checking answers ------------------------------------------------------------------------


def messages(response: httpx.Response) -> list[dict[str, Any]]:
    """The JSON-RPC messages of a well-formed /mcp answer (JSON or an SSE stream)."""
    assert response.status_code < 500, (response.status_code, response.text[:500])
    if response.status_code == 202 or not response.content:
        return []
    kind = response.headers.get("content-type", "")
    if kind.startswith("text/event-stream"):
        documents = [
            json.loads(line[5:])
            for line in SSE_LINES.split(response.text)  # not str.splitlines: U+0085, U+2028
            if line.startswith("data:")
        ]
    else:
        assert kind.startswith("application/json"), (kind, response.text[:500])
        documents = [response.json()]
    for document in documents:
        assert isinstance(document, dict) and document.get("jsonrpc") == "2.0", document
        assert ("result" in document) != ("error" in document), document
        if "error" in document:
            error = document["error"]
            assert isinstance(error["code"], int) and isinstance(error["message"], str), error
            assert "Traceback" not in error["message"]
    return documents


def check_tool_answer(response: httpx.Response) -> None:
    """A tool call ends in a result (`isError` for a refusal) or a protocol error, never in an
    exception that escaped the gateway."""
    for document in messages(response):
        if "error" in document:
            assert document["error"]["code"] in CALL_ERRORS, document
        else:
            result = document["result"]
            assert isinstance(result["content"], list), result
            assert "Traceback" not in json.dumps(result)


# ---- MCP over HTTP ---------------------------------------------------------------------------


@FUZZ
@given(body=raw_bodies)
@example(body=b"\xff\xfe garbage")
@example(body=b"[]")
@example(body=b'{"jsonrpc": "1.0", "id": 1, "method": "tools/list"}')
@example(body=b'{"jsonrpc": "2.0", "id": {"a": 1}, "method": "tools/list"}')
@example(body=b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": [1]}')
@example(body=DEEP_CALL)
def test_any_body_on_mcp_gets_a_well_formed_answer(session: Session, body: bytes) -> None:
    response = session.post(body)
    event(f"HTTP {response.status_code}")
    for document in messages(response):
        event(f"error {document['error']['code']}" if "error" in document else "result")
    session.still_serves()


@FUZZ
@given(data=st.data())
def test_tool_calls_with_hostile_arguments_are_refused_in_words(
    session: Session, tools: tuple[list[str], dict[str, list[str]]], data: st.DataObject
) -> None:
    name, arguments = data.draw(arguments_for(*tools))
    response = session.call(name, arguments)
    event(f"HTTP {response.status_code}")
    check_tool_answer(response)
    session.still_serves()


@FUZZ
@given(
    name=st.sampled_from(["Library_GetBook", "Library_CreateBook", "Library_WatchBooks"]),
    arguments=json_values,
)
@example(name="Library_GetBook", arguments={"name": "\ud800"})  # orjson refused it: code 0
@example(name="Library_CreateBook", arguments={"parent": "s", "book": {"pageCount": 10**30}})
@example(name="Library_GetBook", arguments={"book": nested(MAX_DEPTH + 1)})
@example(name="Library_GetBook", arguments={"name": "x" * (2 * MAX_ARGUMENT_BYTES)})
@example(name="Library_GetBook", arguments=[1])
def test_library_calls_with_any_arguments(session: Session, name: str, arguments: Any) -> None:
    check_tool_answer(session.call(name, arguments))
    session.still_serves()


# ---- REST ------------------------------------------------------------------------------------


def rest_bodies(names: list[str], properties: dict[str, list[str]]) -> st.SearchStrategy[bytes]:
    calls = arguments_for(names, properties).map(
        lambda pair: json.dumps({"tool": pair[0], "input": pair[1]}).encode()
    )
    wrong = st.fixed_dictionaries(
        {}, optional={"tool": json_values | st.sampled_from(names), "input": json_values}
    ).map(lambda d: json.dumps(d).encode())
    return calls | wrong


def check_rest(response: httpx.Response) -> None:
    assert response.status_code != 500, response.text[:500]
    body = response.json()  # always JSON
    if response.status_code == 200:
        assert set(body) == {"result", "trace_id"}, body
    else:
        assert isinstance(body["error"], str) and isinstance(body["code"], str), body
        assert "Traceback" not in body["error"]


@FUZZ
@given(body=raw_bodies)
@example(body=b'{"tool": "Library_GetBook", "input": {"name": "\\ud800"}}')  # was a 500: orjson
@example(
    body=b'{"tool": "Library_CreateBook", "input": {"book": {"pageCount": 1' + b"0" * 40 + b"}}}"
)
@example(body=b'{"tool": "Library_GetBook", "input": {"name": ' + b"[" * 5000 + b"]" * 5000 + b"}}")
def test_any_body_on_rest_gets_json(session: Session, body: bytes) -> None:
    response = session.http.post("/mcp/call", content=body)
    event(f"HTTP {response.status_code}")
    check_rest(response)
    session.still_serves()


@FUZZ
@given(data=st.data())
def test_rest_tool_calls_with_hostile_input_get_json(
    session: Session, tools: tuple[list[str], dict[str, list[str]]], data: st.DataObject
) -> None:
    response = session.http.post("/mcp/call", content=data.draw(rest_bodies(*tools)))
    event(f"HTTP {response.status_code}")
    check_rest(response)
    session.still_serves()


# ---- in process ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def in_process(library_bundle: Path, backend: Any) -> Iterator[tuple[Gateway, Any]]:
    loop = asyncio.new_event_loop()
    gateway = Gateway(
        Bundle(library_bundle),
        GrpcBackends(BackendConfig.parse([backend.target])),
        GatewayOptions(timeout=2, max_depth=MAX_DEPTH, max_argument_bytes=MAX_ARGUMENT_BYTES),
    )
    yield gateway, loop
    loop.run_until_complete(gateway.close())
    loop.close()


def call_in_process(in_process: tuple[Gateway, Any], name: str, arguments: Any) -> None:
    """One call with any arguments, then a valid one: only the errors transports word."""
    gateway, loop = in_process
    with contextlib.suppress(UnknownTool, Denied, InvalidArguments, BackendError):
        loop.run_until_complete(gateway.call(name, arguments, CallContext("stdio")))
    result = loop.run_until_complete(gateway.call(**VALID_CALL, context=CallContext("stdio")))
    assert "books" in result or result == {}


@FUZZ
@given(data=st.data())
def test_gateway_call_raises_only_errors_transports_word(
    in_process: tuple[Gateway, Any],
    tools: tuple[list[str], dict[str, list[str]]],
    data: st.DataObject,
) -> None:
    call_in_process(in_process, *data.draw(arguments_for(*tools)))


@pytest.mark.parametrize(
    ("name", "arguments", "problem"),
    [
        ("Library_GetBook", {"name": "\ud800"}, "Unpaired surrogate"),
        ("Library_CreateBook", {"parent": "s", "book": {"title": "t", "pageCount": 2**70}},
         "expected a 32-bit integer"),
        ("Library_GetBook", {"name": nested(200)}, f"nest deeper than {MAX_DEPTH} levels"),
        ("Library_GetBook", [1], "expected an object"),
    ],
)  # fmt: skip
def test_regressions_in_process(in_process, name, arguments, problem) -> None:
    gateway, loop = in_process
    with pytest.raises((InvalidArguments, Denied), match=problem):
        loop.run_until_complete(gateway.call(name, arguments, CallContext("stdio")))
    call_in_process(in_process, name, arguments)
