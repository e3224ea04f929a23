"""The policy pipeline: scopes, rate limits, the concurrency cap and argument limits, the same on
MCP (SDK client) and REST; denials reach no backend."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import httpx
import pytest
from mcp import Client

from mcpgen.errors import UserError
from mcpgen.runtime.auth import AuthError
from mcpgen.runtime.bundle import Bundle
from mcpgen.runtime.gateway import Gateway, GatewayOptions
from mcpgen.runtime.grpc_backend import BackendConfig, GrpcBackends
from mcpgen.runtime.policy import Caller, Policy, PolicyOptions, Rate, parse_scopes
from mcpgen.runtime.server import HttpOptions, McpFrontend, http_app

pytestmark = pytest.mark.anyio
GET = "Library_GetBook"
CREATE = "Library_CreateBook"


@pytest.fixture
def anyio_backend():
    return "asyncio"


class Tokens:
    """A test authenticator: a fixed table of bearer tokens."""

    callers: ClassVar[dict[str, Caller]] = {
        "reader": Caller("reader", frozenset({"books:read"})),
        "admin": Caller("admin", frozenset({"*"})),
        "nobody": Caller("nobody"),
    }

    async def authenticate(self, token, headers):
        if token is None:
            raise AuthError("a bearer token is required", "missing")
        if token not in self.callers:
            raise AuthError("unknown token")
        return self.callers[token]


def gateway(bundle: Path, target: str, **policy) -> Gateway:
    options = PolicyOptions(scopes=parse_scopes([f"{GET}=books:read", f"{CREATE}=books:write"]))
    for key, value in policy.items():
        setattr(options, key, value)
    loaded = Bundle(bundle)
    return Gateway(
        loaded,
        GrpcBackends(BackendConfig.parse([target])),
        GatewayOptions(max_argument_bytes=2000, max_depth=8),
        policy=Policy(loaded.declared_scopes, options),
    )


def rest_client(gw: Gateway) -> httpx.AsyncClient:
    frontend = McpFrontend(gw, "library", "1")
    app = http_app(frontend, HttpOptions(authenticator=Tokens()))
    transport = httpx.ASGITransport(app=app)
    return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1")


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def test_rest_lists_and_calls_only_what_the_scopes_grant(library_bundle, library_backend):
    gw = gateway(library_bundle, library_backend.target)
    async with rest_client(gw) as http:
        anonymous = await http.get("/mcp/tools")
        listed = (await http.get("/mcp/tools", headers=bearer("reader"))).json()["tools"]
        everything = (await http.get("/mcp/tools", headers=bearer("admin"))).json()["tools"]
        denied = await http.post(
            "/mcp/call", json={"tool": CREATE, "input": {"parent": "shelves/1", "book": {}}},
            headers=bearer("reader"),
        )  # fmt: skip
        allowed = await http.post(
            "/mcp/call", json={"tool": GET, "input": {"name": "shelves/1/books/1"}},
            headers=bearer("reader"),
        )  # fmt: skip
        health = await http.get("/health")
    assert anonymous.status_code == 401 and "Bearer" in anonymous.headers["www-authenticate"]
    names = {t["name"] for t in listed}
    assert GET in names and CREATE not in names
    # tools without a scope need only authentication
    assert names == {t["name"] for t in everything} - {CREATE}
    assert denied.status_code == 403 and denied.json()["code"] == "PERMISSION_DENIED"
    assert "`books:write`" in denied.json()["error"]
    assert allowed.status_code in (200, 404)  # reached the backend (which may not have it)
    assert health.status_code == 200
    assert library_backend.calls("CreateBook") == []


async def test_stdio_caller_is_trusted_with_every_tool(library_bundle, library_backend):
    gw = gateway(library_bundle, library_backend.target)
    async with Client(McpFrontend(gw, "library", "1").server, mode="legacy") as client:
        names = {t.name for t in (await client.list_tools()).tools}
        created = await client.call_tool(CREATE, {"parent": "shelves/1", "book": {"title": "A"}})
    assert {GET, CREATE} <= names
    assert not created.is_error


async def test_rate_limits_refuse_then_recover(library_bundle, library_backend):
    gw = gateway(library_bundle, library_backend.target, rate_limit=Rate(0.5, 2.0))
    now = [100.0]
    gw.policy.rates.clock = lambda: now[0]  # type: ignore[attr-defined]
    call = {"tool": CREATE, "input": {"parent": "shelves/1", "book": {"title": "B"}}}
    async with rest_client(gw) as http:
        answers = [await http.post("/mcp/call", json=call, headers=bearer("admin"))]
        answers.append(await http.post("/mcp/call", json=call, headers=bearer("admin")))
        answers.append(await http.post("/mcp/call", json=call, headers=bearer("admin")))
        now[0] += 2.0  # one token back at 0.5 a second
        later = await http.post("/mcp/call", json=call, headers=bearer("admin"))
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[2].headers["retry-after"] == "2"
    assert answers[2].json()["code"] == "RESOURCE_EXHAUSTED"
    assert "retry in 2.00 s" in answers[2].json()["error"]
    assert later.status_code == 200
    assert len(library_backend.calls("CreateBook")) == 3


async def test_per_caller_buckets_keep_callers_apart(library_bundle, library_backend):
    gw = gateway(library_bundle, library_backend.target, rate_limit_per_caller=Rate(0.001, 1.0))
    call = {"tool": "Library_ListBooks", "input": {"parent": "shelves/1"}}
    async with rest_client(gw) as http:
        first = await http.post("/mcp/call", json=call, headers=bearer("reader"))
        again = await http.post("/mcp/call", json=call, headers=bearer("reader"))
        other = await http.post("/mcp/call", json=call, headers=bearer("admin"))
    assert (first.status_code, again.status_code, other.status_code) == (200, 429, 200)
    assert "account reader" in again.json()["error"]
    assert int(again.headers["retry-after"]) > 900  # a token every 1,000 s


async def test_concurrency_cap_refuses_at_once(library_bundle, library_backend):
    gw = gateway(library_bundle, library_backend.target, max_concurrency=1)
    gw.policy.enter()  # one call already in flight
    async with Client(McpFrontend(gw, "library", "1").server, mode="legacy") as client:
        busy = await client.call_tool(GET, {"name": "shelves/1/books/1"})
        gw.policy.leave()
        free = await client.call_tool(CREATE, {"parent": "shelves/1", "book": {"title": "C"}})
    assert busy.is_error and busy.content[0].text.startswith("UNAVAILABLE: the gateway is at")
    assert not free.is_error
    assert gw.policy.in_flight == 0


async def test_huge_and_deep_arguments_are_refused_before_parsing(library_bundle, library_backend):
    gw = gateway(library_bundle, library_backend.target)
    deep: dict = {}
    node = deep
    for _ in range(20):
        node["book"] = {}
        node = node["book"]
    async with rest_client(gw) as http:
        huge = await http.post(
            "/mcp/call", json={"tool": CREATE, "input": {"parent": "x" * 5000}},
            headers=bearer("admin"),
        )  # fmt: skip
        nested = await http.post(
            "/mcp/call", json={"tool": CREATE, "input": deep}, headers=bearer("admin")
        )
    assert huge.status_code == 413 and "exceed the limit of 2,000" in huge.json()["error"]
    assert nested.status_code == 413 and "deeper than 8 levels" in nested.json()["error"]
    assert library_backend.calls("CreateBook") == []


def test_flag_parsing():
    assert Rate.parse("5", "--rate-limit") == Rate(5.0, 5.0)
    assert Rate.parse("0.5:3", "--rate-limit") == Rate(0.5, 3.0)
    for bad in ("fast", "0", "-1:2", "1:0.5", "inf"):
        with pytest.raises(UserError):
            Rate.parse(bad, "--rate-limit")
    assert parse_scopes(["T=b, a", "U="]) == {"T": ("a", "b"), "U": ()}
    with pytest.raises(UserError, match="unknown tools"):
        Policy({"A": ()}, PolicyOptions(scopes={"B": ("x",)}))
    policy = Policy({"A": ("x",), "B": ()}, PolicyOptions())
    assert policy.may_call("A", Caller("c", frozenset({"x", "y"})))
    assert not policy.may_call("A", Caller("c", frozenset({"y"})))
    assert policy.may_call("B", Caller("c"))
    assert not policy.may_call("B", Caller.anonymous())
