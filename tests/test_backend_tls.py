"""TLS and mTLS to backends: a real gRPC server with certificates made for the test."""

from __future__ import annotations

from concurrent import futures
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from mcpgen.errors import UserError
from mcpgen.runtime.grpc_backend import BackendConfig, GrpcBackends
from tests.pki import make_pki

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, Path]:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _server(pki: dict[str, Path], require_client: bool) -> tuple[grpc.Server, int]:
    servicer = health.HealthServicer()
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    credentials = grpc.ssl_server_credentials(
        [(pki["server-key"].read_bytes(), pki["server"].read_bytes())],
        root_certificates=pki["ca"].read_bytes(),
        require_client_auth=require_client,
    )
    port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    return server, port


async def _check(backends: GrpcBackends) -> int:
    request = health_pb2.HealthCheckRequest()
    try:
        response = await backends.unary(
            "grpc.health.v1.Health", "/grpc.health.v1.Health/Check", request,
            health_pb2.HealthCheckResponse, 5, [],
        )  # fmt: skip
        return response.status
    finally:
        await backends.close()


async def test_tls_with_a_private_ca(pki):
    server, port = _server(pki, require_client=False)
    try:
        config = BackendConfig.parse([f"localhost:{port}"], ca=str(pki["ca"]))
        assert await _check(GrpcBackends(config)) == health_pb2.HealthCheckResponse.SERVING
        plain = BackendConfig.parse([f"localhost:{port}"])
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await _check(GrpcBackends(plain))
        assert error.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        server.stop(None)


async def test_mtls_needs_the_client_certificate(pki):
    server, port = _server(pki, require_client=True)
    try:
        mutual = BackendConfig.parse(
            [f"localhost:{port}"], ca=str(pki["ca"]), cert=str(pki["client"]),
            key=str(pki["client-key"]),
        )  # fmt: skip
        assert await _check(GrpcBackends(mutual)) == health_pb2.HealthCheckResponse.SERVING
        one_way = BackendConfig.parse([f"localhost:{port}"], ca=str(pki["ca"]))
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await _check(GrpcBackends(one_way))
        assert error.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        server.stop(None)


def test_backend_flags_are_checked():
    with pytest.raises(UserError, match="go together"):
        BackendConfig.parse(["localhost:1"], cert="c.pem")
    with pytest.raises(UserError, match="two default backends"):
        BackendConfig.parse(["a:1", "b:2"])
    with pytest.raises(UserError, match="cannot read"):
        BackendConfig.parse(["a:1"], ca="/nonexistent/ca.pem").credentials()


def test_most_specific_selector_wins():
    config = BackendConfig.parse(
        ["default:1", "acme=acme:1", "acme.library=lib:1", "acme.library.v1.Library=exact:1",
         "users=users:1"],
    )  # fmt: skip
    assert config.target_for("acme.library.v1.Library") == "exact:1"
    assert config.target_for("acme.library.v2.Library") == "lib:1"
    assert config.target_for("acme.orders.v1.Orders") == "acme:1"
    assert config.target_for("corp.users.v1.Users") == "users:1"
    assert config.target_for("other.Thing") == "default:1"
