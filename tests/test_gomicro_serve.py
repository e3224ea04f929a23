"""go-micro bundles served for real: the generated gateway forwards over mucp (HTTP) to in-repo
go-micro nodes (`fixtures/mucp_node.py`), and over gRPC to a go-micro gRPC server.

Driven with the official MCP SDK client (which also checks every `structuredContent` against the
tool's `outputSchema`) and over REST as go-micro's own gateway clients call it.
"""

from __future__ import annotations

import itertools
import json
import re
import ssl
import sys
import uuid
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from mcp import Client, StdioServerParameters

from fixtures.mucp_node import MucpNode
from mcpgen.build import build
from mcpgen.config import Config
from mcpgen.errors import Warnings
from mcpgen.runtime.bundle import Bundle
from mcpgen.runtime.gateway import Gateway, GatewayOptions
from mcpgen.runtime.grpc_backend import BackendConfig, GrpcBackends
from mcpgen.runtime.mucp_backend import MucpBackends, micro_error
from mcpgen.runtime.server import McpFrontend
from tests.conftest import FIXTURES, HttpGateway, free_port
from tests.pki import make_pki

pytestmark = pytest.mark.anyio
REGISTRY = FIXTURES / "registry"
EXAMPLE = REGISTRY / "gomicro-registry.json"
ERAS = ["legacy", "2026-07-28"]


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def nodes() -> Iterator[dict[str, MucpNode]]:
    """A users node and two orders nodes, on real sockets."""
    started = {name: MucpNode(name).start() for name in ("users", "orders-a", "orders-b")}
    yield started
    for node in started.values():
        node.stop()


def snapshot_with(tmp_path: Path, addresses: dict[str, list[str]], server: str = "mucp") -> Path:
    """The example snapshot, its nodes moved to `addresses` (service name → host:port)."""
    services = json.loads(EXAMPLE.read_text())
    for service in services:
        template = service["nodes"][0]
        service["nodes"] = [
            {**template, "id": f"{service['name']}-{i}", "address": address,
             "metadata": {**template["metadata"], "server": server}}
            for i, address in enumerate(addresses.get(service["name"], []))
        ]  # fmt: skip
    path = tmp_path / "registry.json"
    path.write_text(json.dumps(services))
    return path


def bundle_of(tmp_path: Path, *sources: Path) -> Path:
    out = tmp_path / "bundle"
    build(Config(sources=[str(s) for s in sources], out=str(out)), Warnings())
    return out


@pytest.fixture
def live_bundle(tmp_path, nodes) -> Path:
    addresses = {
        "users": [nodes["users"].address],
        "orders": [nodes["orders-a"].address, nodes["orders-b"].address],
    }
    return bundle_of(tmp_path, snapshot_with(tmp_path, addresses))


def frontend(bundle: Path, *backends: str, **options: Any) -> McpFrontend:
    config = BackendConfig.parse(list(backends))
    gateway = Gateway(
        Bundle(bundle), GrpcBackends(config), GatewayOptions(**options), micro=MucpBackends(config)
    )
    return McpFrontend(gateway, "micro", "1.0.0")


# ---- mucp ------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ERAS)
async def test_calls_reach_the_node_with_the_mucp_headers(mode, live_bundle, nodes):
    server = frontend(live_bundle, timeout=7.5)
    async with Client(server.server, mode=mode) as client:
        listed = [t.name for t in (await client.list_tools()).tools]
        created = await client.call_tool(
            "Users_Create", {"name": "Alice", "email": "a@example.com", "tags": ["x"]}
        )
        user_id = created.structured_content["user"]["id"]
        fetched = await client.call_tool("Users_Get", {"id": user_id})
    assert listed == ["Orders_Get", "Orders_List", "Users_Create", "Users_Delete", "Users_Get"]
    assert not created.is_error, created.content[0].text
    assert fetched.structured_content["user"]["spentCents"] == "9007199254740993"
    first = nodes["users"].received[0]
    assert first.body == {"name": "Alice", "email": "a@example.com", "tags": ["x"]}
    headers = first.headers
    assert headers["content-type"] == headers["accept"] == "application/json"
    assert headers["micro-service"] == "users"
    assert headers["micro-endpoint"] == headers["micro-method"] == "Users.Create"
    uuid.UUID(headers["micro-id"])
    assert 0 < int(headers["timeout"]) <= 7_500_000_000
    assert int(headers["timeout"]) > 7_000_000_000  # the remaining deadline, in nanoseconds
    assert re.fullmatch(r"[0-9a-f]{32}", headers["mcp-trace-id"])
    assert headers["mcp-tool-name"] == "Users_Create"
    assert nodes["users"].received[1].headers["micro-id"] != headers["micro-id"]


async def test_micro_errors_are_readable_tool_errors(live_bundle, nodes):
    server = frontend(live_bundle)
    async with Client(server.server, mode="legacy") as client:
        missing = await client.call_tool("Users_Get", {"id": "missing"})
        plain = await client.call_tool("Users_Get", {"id": "plain"})
        after = await client.call_tool("Users_Delete", {"id": "u-1"})
    assert missing.is_error
    text = missing.content[0].text
    assert text.startswith("NOT_FOUND: user missing not found")
    assert "go-micro error 404 Not Found from users Users.Get (id users)" in text
    assert plain.is_error and plain.content[0].text.startswith("UNKNOWN: database connection lost")
    assert not after.is_error and after.structured_content == {}  # a bad call disturbs nothing


def test_micro_error_forms():
    error = micro_error("s E", '{"id":"x","code":409,"detail":"taken","status":"Conflict"}')
    assert error.code == grpc.StatusCode.ALREADY_EXISTS and error.message == "taken"
    assert error.details == [
        {"@type": "go-micro/errors.Error", "id": "x", "code": 409, "detail": "taken",
         "status": "Conflict"}
    ]  # fmt: skip
    assert micro_error("s E", '{"code": 999}').code == grpc.StatusCode.UNKNOWN
    assert micro_error("s E", '"just a string"').message == '"just a string"'
    assert micro_error("s E", "{broken").message == "{broken"


async def test_round_robin_over_the_snapshot_nodes(live_bundle, nodes):
    server = frontend(live_bundle)
    async with Client(server.server, mode="legacy") as client:
        served = [
            (await client.call_tool("Orders_Get", {"order_id": f"o-{i}"})).structured_content[
                "order"
            ]["servedBy"]
            for i in range(6)
        ]
    assert sorted(served) == ["orders-a"] * 3 + ["orders-b"] * 3
    assert all(a != b for a, b in itertools.pairwise(served))  # they alternate
    assert len(nodes["orders-a"].received) == len(nodes["orders-b"].received) == 3


async def test_a_dead_node_is_skipped_and_all_dead_is_unavailable(tmp_path, nodes):
    dead = f"127.0.0.1:{free_port()}"
    bundle = bundle_of(
        tmp_path, snapshot_with(tmp_path, {"orders": [dead, nodes["orders-a"].address]})
    )
    server = frontend(bundle)
    async with Client(server.server, mode="legacy") as client:
        results = [await client.call_tool("Orders_List", {"customer_id": "c"}) for _ in range(4)]
        nodes["orders-a"].stop()
        down = await client.call_tool("Orders_List", {"customer_id": "c"})
        no_nodes = await client.call_tool("Users_Get", {"id": "u-1"})
    assert not any(r.is_error for r in results)
    assert len(nodes["orders-a"].received) == 4
    assert down.is_error and down.content[0].text.startswith(
        "UNAVAILABLE: no node of orders accepted the call"
    )
    assert dead in down.content[0].text
    assert no_nodes.is_error and "--backend users=HOST:PORT" in no_nodes.content[0].text


async def test_deadline_reaches_the_service_and_ends_the_call(live_bundle, nodes):
    server = frontend(live_bundle, tool_timeouts={"Users_Get": 0.5})
    async with Client(server.server, mode="legacy") as client:
        slow = await client.call_tool("Users_Get", {"id": "slow"})
        after = await client.call_tool("Users_Delete", {"id": "u-9"})
    assert slow.is_error and slow.content[0].text.startswith("DEADLINE_EXCEEDED")
    assert int(nodes["users"].received[0].headers["timeout"]) <= 500_000_000
    assert not after.is_error


async def test_backend_flag_replaces_the_snapshot_nodes(tmp_path, nodes):
    bundle = bundle_of(tmp_path, EXAMPLE)  # nodes at ports nothing listens on
    server = frontend(bundle, f"users={nodes['users'].address}")
    async with Client(server.server, mode="legacy") as client:
        created = await client.call_tool("Users_Create", {"name": "B", "email": "b@x"})
    assert not created.is_error, created.content[0].text
    assert nodes["users"].received[0].headers["micro-endpoint"] == "Users.Create"


async def test_with_protos_requests_are_checked_and_answers_typed(tmp_path, nodes):
    snapshot = snapshot_with(tmp_path, {"users": [nodes["users"].address]})
    bundle = bundle_of(tmp_path, snapshot, REGISTRY / "protos")
    server = frontend(bundle)
    async with Client(server.server, mode="legacy") as client:
        await client.list_tools()
        refused = await client.call_tool("Users_Create", {"email": "c@x", "age": "old"})
        created = await client.call_tool(
            "Users_Create", {"name": "C", "email": "c@x", "labels": {"k": "v"}}
        )
    assert refused.is_error and "name" in refused.content[0].text
    assert not created.is_error, created.content[0].text
    # written as protojson from the proto type; read back through the User type
    assert nodes["users"].received[-1].body == {"name": "C", "email": "c@x", "labels": {"k": "v"}}
    assert len(nodes["users"].received) == 1  # the refused call never left the gateway
    user = created.structured_content["user"]
    assert user["spentCents"] == "9007199254740993" and user["createdAt"] == "2026-12-01T10:00:00Z"


# ---- REST, as go-micro's gateway clients call it --------------------------------------------


def test_rest_takes_go_micro_tool_names(live_bundle, nodes):
    gateway = HttpGateway(live_bundle)
    try:
        with httpx.Client(base_url=gateway.base, timeout=10) as http:
            tools = http.get("/mcp/tools").json()["tools"]
            created = http.post(
                "/mcp/call",
                json={"tool": "users.Users.Create", "input": {"name": "D", "email": "d@x"}},
            )
            user_id = created.json()["result"]["user"]["id"]
            fetched = http.post(
                "/mcp/call", json={"tool": "users_Users_Get", "input": {"id": user_id}}
            )
            missing = http.post("/mcp/call", json={"tool": "Users_Get", "input": {"id": "missing"}})
    finally:
        gateway.stop()
    assert len(tools) == 5
    assert created.status_code == 200, created.text
    assert created.headers["mcp-trace-id"] == created.json()["trace_id"]
    assert nodes["users"].received[0].headers["mcp-trace-id"] == created.json()["trace_id"]
    assert fetched.json()["result"]["user"]["name"] == "D"
    assert missing.status_code == 404
    body = missing.json()
    assert body["code"] == "NOT_FOUND" and "user missing not found" in body["error"]
    assert body["details"][0]["code"] == 404 and body["details"][0]["status"] == "Not Found"


# ---- a go-micro gRPC server (`server: grpc`), with the protos ---------------------------------


@pytest.fixture
def micro_grpc_server(tmp_path) -> Iterator[tuple[str, list[str]]]:
    """A gRPC server as go-micro's gRPC server names it: `/users.Users/<Method>`."""
    from tests.conftest import protoc_descriptor_set

    fds = descriptor_pb2.FileDescriptorSet.FromString(
        protoc_descriptor_set(tmp_path / "users.binpb", ["users.proto"], [REGISTRY / "protos"])
        .read_bytes()
    )  # fmt: skip
    pool = descriptor_pool.DescriptorPool()
    for f in fds.file:
        pool.Add(f)
    service = pool.FindServiceByName("example.users.v1.Users")
    seen: list[str] = []

    def handler(method: Any) -> grpc.RpcMethodHandler:
        request_class = message_factory.GetMessageClass(method.input_type)
        response_class = message_factory.GetMessageClass(method.output_type)

        def call(request: Any, context: grpc.ServicerContext) -> Any:
            seen.append(f"{method.name} {dict(context.invocation_metadata())['mcp-trace-id']}")
            answer = {"user": {"id": request.id or "u-1", "name": "G", "spentCents": "5"}}
            return json_format.ParseDict(answer if method.name != "Delete" else {},
                                         response_class())  # fmt: skip

        return grpc.unary_unary_rpc_method_handler(
            call,
            request_deserializer=request_class.FromString,
            response_serializer=response_class.SerializeToString,
        )

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler(
            "users.Users", {m.name: handler(m) for m in service.methods}
        )]
    )  # fmt: skip
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}", seen
    server.stop(None)


async def test_go_micro_grpc_server_is_reached_at_its_registered_nodes(tmp_path, micro_grpc_server):
    address, seen = micro_grpc_server
    snapshot = snapshot_with(tmp_path, {"users": [address]}, server="grpc")
    bundle = bundle_of(tmp_path, snapshot, REGISTRY / "protos")
    route = Bundle(bundle).routes["Users_Get"]
    assert route.kind == "grpc" and route.path == "/users.Users/Get"
    assert route.nodes == (address,)
    server = frontend(bundle)  # no --backend: the registry's node is the target
    async with Client(server.server, mode="legacy") as client:
        await client.list_tools()
        fetched = await client.call_tool("Users_Get", {"id": "u-7"})
    assert not fetched.is_error, fetched.content[0].text
    assert fetched.structured_content["user"] == {"id": "u-7", "name": "G", "spentCents": "5"}
    assert seen and seen[0].startswith("Get ")


# ---- hostile text reaches clients verbatim and runs nothing -----------------------------------

HOSTILE = "\"'\n{{ 7*7 }} {% import os %} __import__('os').system('touch PWNED') \\ \u2028 ü"


async def test_hostile_registry_text_reaches_clients_verbatim(tmp_path, nodes):
    services = json.loads(snapshot_with(tmp_path, {"users": [nodes["users"].address]}).read_text())
    create = next(e for e in services[0]["endpoints"] if e["name"] == "Users.Create")
    create["metadata"]["description"] = HOSTILE
    create["request"]["values"].append({"name": HOSTILE, "type": "string", "values": None})
    snapshot = tmp_path / "hostile.json"
    snapshot.write_text(json.dumps(services))
    bundle = bundle_of(tmp_path, snapshot)
    params = StdioServerParameters(
        command=sys.executable, args=[str(bundle / "server.py")], cwd=str(tmp_path)
    )
    async with Client(params, mode="legacy") as client:
        listed = {t.name: t for t in (await client.list_tools()).tools}
        result = await client.call_tool("Users_Create", {"name": "E", HOSTILE: HOSTILE})
    assert listed["Users_Create"].description == HOSTILE
    assert HOSTILE in listed["Users_Create"].input_schema["properties"]
    assert not result.is_error, result.content[0].text
    assert nodes["users"].received[-1].body == {"name": "E", HOSTILE: HOSTILE}
    assert not (tmp_path / "PWNED").exists()


async def test_mucp_over_tls_with_a_private_ca(tmp_path):
    pki = make_pki(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki["server"], pki["server-key"])
    node = MucpNode("secure", tls=context).start()
    try:
        bundle = bundle_of(tmp_path, snapshot_with(tmp_path, {"users": [node.address]}))
        config = BackendConfig.parse([], tls=True, ca=str(pki["ca"]))
        plain = frontend(bundle)
        secure = Gateway(Bundle(bundle), GrpcBackends(config), micro=MucpBackends(config))
        async with Client(plain.server, mode="legacy") as client:
            refused = await client.call_tool("Users_Delete", {"id": "u-1"})
        async with Client(McpFrontend(secure, "m", "1").server, mode="legacy") as client:
            deleted = await client.call_tool("Users_Delete", {"id": "u-1"})
    finally:
        node.stop()
    assert refused.is_error  # plain HTTP to an HTTPS node
    assert not deleted.is_error, deleted.content[0].text
    assert [r.headers["micro-endpoint"] for r in node.received] == ["Users.Delete"]
