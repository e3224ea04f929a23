"""`mcpgen snapshot grpc://…` against real in-process gRPC servers with reflection."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection, reflection_pb2

from mcpgen.errors import UserError, Warnings
from mcpgen.snapshot import SnapshotOptions, take
from tests.conftest import (
    PROTOS,
    free_port,
    protoc_descriptor_set,
    read_tools,
    run_cli,
    run_mcpgen,
)
from tests.pki import make_pki

FIXTURE_FILES = [
    "acme/legacy/v1/legacy.proto",
    "acme/library/v1/library.proto",
    "acme/types/v1/types.proto",
    "acme/users/v1/users.proto",
    "acme/users/v2/users.proto",
]
FIXTURE_SERVICES = [
    "acme.legacy.v1.Inventory",
    "acme.library.v1.Library",
    "acme.types.v1.Types",
    "acme.users.v1.Users",
    "acme.users.v2.Users",
]
V1 = "grpc.reflection.v1.ServerReflection"
V1ALPHA = "grpc.reflection.v1alpha.ServerReflection"
TOKEN = "Bearer s3cret"


@pytest.fixture(scope="module")
def fixture_set(tmp_path_factory: pytest.TempPathFactory) -> descriptor_pb2.FileDescriptorSet:
    out = tmp_path_factory.mktemp("fds") / "fixtures.binpb"
    protoc_descriptor_set(out, FIXTURE_FILES, [PROTOS])
    return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


def _pool(fds: descriptor_pb2.FileDescriptorSet) -> descriptor_pool.DescriptorPool:
    pool = descriptor_pool.DescriptorPool()
    for f in fds.file:
        pool.Add(f)
    return pool


class SingleFileReflection(reflection.ReflectionServicer):
    """Answers with the requested file only, services in reverse: clients must fetch imports."""

    def __init__(self, names: list[str], pool: Any, refused: frozenset[str] = frozenset()):
        super().__init__(names, pool=pool)
        self.refused = refused
        self.asked_files: list[str] = []

    def _list_services(self, request: Any) -> Any:
        response = super()._list_services(request)
        response.list_services_response.service.reverse()
        return response

    def _file_by_filename(self, request: Any, filename: str) -> Any:
        self.asked_files.append(filename)
        if filename in self.refused:
            return reflection_pb2.ServerReflectionResponse(
                error_response=reflection_pb2.ErrorResponse(
                    error_code=grpc.StatusCode.NOT_FOUND.value[0], error_message="not here"
                ),
                original_request=request,
            )
        return self._only_first(super()._file_by_filename(request, filename))

    def _file_containing_symbol(self, request: Any, name: str) -> Any:
        return self._only_first(super()._file_containing_symbol(request, name))

    @staticmethod
    def _only_first(response: Any) -> Any:
        if response.HasField("file_descriptor_response"):
            del response.file_descriptor_response.file_descriptor_proto[1:]
        return response


class RequireToken(grpc.ServerInterceptor):
    def intercept_service(self, continuation: Any, details: Any) -> Any:
        if ("authorization", TOKEN) in details.invocation_metadata:
            return continuation(details)

        def refuse(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "a token is required")

        return grpc.stream_stream_rpc_method_handler(refuse)


@dataclass
class ReflectionServer:
    """A gRPC server whose reflection answers from `servicer`, under the given versions."""

    servicer: reflection.ReflectionServicer | None
    versions: tuple[str, ...] = (V1ALPHA,)
    interceptors: tuple[grpc.ServerInterceptor, ...] = ()
    credentials: grpc.ServerCredentials | None = None
    block: threading.Event | None = None  # when set up, reflection waits for it
    calls: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=4), interceptors=self.interceptors
        )
        handlers = [grpc.method_handlers_generic_handler("acme.users.v1.Users", {})]
        for version in self.versions if self.servicer else ():
            handler = grpc.stream_stream_rpc_method_handler(
                self._counted(version),
                request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
                response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
            )
            handlers.append(
                grpc.method_handlers_generic_handler(version, {"ServerReflectionInfo": handler})
            )
        self.server.add_generic_rpc_handlers(handlers)
        if self.credentials is None:
            self.port = self.server.add_insecure_port("127.0.0.1:0")
        else:
            self.port = self.server.add_secure_port("127.0.0.1:0", self.credentials)
        self.server.start()

    def _counted(self, version: str) -> Any:
        def info(requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
            self.calls[version] += 1
            if self.block is not None:
                self.block.wait()
            assert self.servicer is not None
            yield from self.servicer.ServerReflectionInfo(requests, context)

        return info

    @property
    def source(self) -> str:
        return f"grpc://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.block is not None:
            self.block.set()
        self.server.stop(None).wait()


@pytest.fixture
def serve(fixture_set):
    """Start reflection servers over the fixture descriptors; stop them after the test."""
    started: list[ReflectionServer] = []

    def start(
        names: list[str] | None = None,
        servicer: Any = "default",
        **kwargs: Any,
    ) -> ReflectionServer:
        if servicer == "default":
            listed = [*(FIXTURE_SERVICES if names is None else names), V1ALPHA, V1]
            servicer = reflection.ReflectionServicer(listed, pool=_pool(fixture_set))
        server = ReflectionServer(servicer, **kwargs)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def snapshot(source: str, out: Path, *args: str) -> Any:
    return run_cli("snapshot", source, "-o", str(out), *args)


def written(out: Path) -> descriptor_pb2.FileDescriptorSet:
    return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


def services_in(fds: descriptor_pb2.FileDescriptorSet) -> list[str]:
    return sorted(f"{f.package}.{s.name}" for f in fds.file for s in f.service)


def assert_dependencies_first(fds: descriptor_pb2.FileDescriptorSet) -> None:
    seen: set[str] = set()
    for f in fds.file:
        assert set(f.dependency) <= seen, f"{f.name} comes before its imports"
        seen.add(f.name)


def capture(source: str, out: Path, **options: Any) -> str:
    """`take` directly, to see the UserError itself; returns the summary."""
    return take(source, SnapshotOptions(out=out, **options), Warnings()).summary


# ---- the capture -----------------------------------------------------------------------------


def test_captures_every_service_but_reflection_with_their_imports(serve, tmp_path):
    server = serve()
    out = tmp_path / "snap.binpb"
    result = snapshot(server.source, out)
    assert result.exit_code == 0, result.output
    assert "5 services, " in result.stderr
    assert "without comments" in result.stderr
    fds = written(out)
    assert services_in(fds) == FIXTURE_SERVICES
    names = {f.name for f in fds.file}
    # direct imports, imports of imports (annotations → http), and well-known types
    assert {"buf/validate/validate.proto", "google/api/annotations.proto"} <= names
    assert {"google/api/http.proto", "google/protobuf/descriptor.proto"} <= names
    assert {"google/protobuf/timestamp.proto", "google/protobuf/struct.proto"} <= names
    assert not any("reflection" in name for name in names)
    assert f"{len(names)} files" in result.stderr
    assert_dependencies_first(fds)


def test_service_filter_keeps_only_those_services_and_their_imports(serve, tmp_path):
    server = serve()
    out = tmp_path / "users.binpb"
    result = snapshot(server.source, out, "--service", "acme.users.v2.Users")
    assert result.exit_code == 0, result.output
    assert services_in(written(out)) == ["acme.users.v2.Users"]
    assert "1 service, 3 files" in result.stderr
    both = ["--service", "acme.users.v2.Users", "--service", "acme.users.v1.Users"]
    assert snapshot(server.source, out, *both).exit_code == 0
    # imports first; among files whose imports are all written, the first by name
    assert [f.name for f in written(out).file] == [
        "acme/users/v1/users.proto",
        "google/protobuf/descriptor.proto",
        "google/api/field_behavior.proto",
        "acme/users/v2/users.proto",
    ]


def test_unknown_service_is_a_clear_error_listing_what_the_server_has(serve, tmp_path):
    server = serve()
    out = tmp_path / "snap.binpb"
    result = run_mcpgen(
        "snapshot", server.source, "-o", str(out),
        "--service", "acme.library.v1.Library", "--service", "acme.nope.v1.Nope",
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "has no service acme.nope.v1.Nope" in result.stderr
    assert "hint: it has: " + ", ".join(FIXTURE_SERVICES) in result.stderr
    assert not out.exists()


def test_imports_the_server_did_not_send_along_are_fetched(serve, fixture_set, tmp_path):
    servicer = SingleFileReflection([*FIXTURE_SERVICES, V1ALPHA], _pool(fixture_set))
    server = serve(servicer=servicer)
    out = tmp_path / "snap.binpb"
    assert capture(server.source, out).startswith("5 services, ")
    fds = written(out)
    assert services_in(fds) == FIXTURE_SERVICES
    assert "google/api/http.proto" in servicer.asked_files
    assert sorted(servicer.asked_files) == sorted(set(servicer.asked_files)), "asked twice"
    assert {f.name for f in fds.file} == {f.name for f in fixture_set.file}
    assert_dependencies_first(fds)


def test_output_is_byte_identical_across_runs_and_answer_orders(serve, fixture_set, tmp_path):
    everything = serve()
    reordered = serve(
        servicer=SingleFileReflection([V1, *reversed(FIXTURE_SERVICES)], _pool(fixture_set))
    )
    first, second, third = (tmp_path / f"{n}.binpb" for n in ("first", "second", "third"))
    capture(everything.source, first)
    capture(everything.source, second)
    capture(reordered.source, third)
    assert first.read_bytes() == second.read_bytes() == third.read_bytes()


# ---- protocol versions -----------------------------------------------------------------------


def test_v1_is_tried_first(serve, tmp_path):
    server = serve(versions=(V1, V1ALPHA))
    capture(server.source, tmp_path / "snap.binpb")
    assert server.calls == {V1: 1}


def test_a_v1_only_server_works(serve, tmp_path):
    server = serve(versions=(V1,))
    capture(server.source, tmp_path / "snap.binpb", services=["acme.users.v1.Users"])
    assert services_in(written(tmp_path / "snap.binpb")) == ["acme.users.v1.Users"]


def test_falls_back_to_v1alpha_when_v1_is_unimplemented(serve, tmp_path):
    server = serve(versions=(V1ALPHA,))
    capture(server.source, tmp_path / "snap.binpb", services=["acme.users.v1.Users"])
    assert server.calls == {V1ALPHA: 1}
    assert services_in(written(tmp_path / "snap.binpb")) == ["acme.users.v1.Users"]


# ---- connections -----------------------------------------------------------------------------


def test_headers_reach_a_server_that_requires_a_token(serve, tmp_path):
    server = serve(interceptors=(RequireToken(),))
    out = tmp_path / "snap.binpb"
    refused = snapshot(server.source, out)
    assert refused.exit_code == 1
    assert "refused reflection: UNAUTHENTICATED: a token is required" in refused.stderr
    assert "--header 'authorization: Bearer" in refused.stderr
    assert not out.exists()
    accepted = snapshot(server.source, out, "--header", f"Authorization: {TOKEN}")
    assert accepted.exit_code == 0, accepted.output
    assert services_in(written(out)) == FIXTURE_SERVICES


def test_tls_with_a_private_ca(serve, tmp_path):
    pki = make_pki(tmp_path)
    ca = pki["ca"]
    key_pem, chain = pki["server-key"].read_bytes(), pki["server"].read_bytes()
    server = serve(credentials=grpc.ssl_server_credentials([(key_pem, chain)]))
    out = tmp_path / "snap.binpb"
    plain = snapshot(server.source, out)
    assert plain.exit_code == 1
    assert f"cannot reach 127.0.0.1:{server.port}" in plain.stderr
    assert "--tls" in plain.stderr
    secure = snapshot(server.source, out, "--tls", "--ca", str(ca))
    assert secure.exit_code == 0, secure.output
    assert services_in(written(out)) == FIXTURE_SERVICES


def test_unreachable_server_is_a_clear_error_and_keeps_the_old_file(tmp_path):
    out = tmp_path / "snap.binpb"
    out.write_bytes(b"the previous snapshot")
    port = free_port()
    result = run_mcpgen("snapshot", f"grpc://127.0.0.1:{port}", "-o", str(out))
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(f"error: cannot reach 127.0.0.1:{port}: ")
    assert "hint: check the address" in result.stderr
    assert out.read_bytes() == b"the previous snapshot"
    assert [p.name for p in tmp_path.iterdir()] == ["snap.binpb"]


def test_a_server_that_does_not_answer_in_time(serve, tmp_path):
    server = serve(block=threading.Event())
    with pytest.raises(UserError) as error:
        capture(server.source, tmp_path / "snap.binpb", timeout=0.5)
    assert (
        error.value.message == f"cannot reach 127.0.0.1:{server.port}: no complete answer in time"
    )
    assert "--timeout" in (error.value.hint or "")


# ---- what the server lacks -------------------------------------------------------------------


def test_server_without_reflection_says_how_to_enable_it(serve, tmp_path):
    server = serve(servicer=None)
    result = snapshot(server.source, tmp_path / "snap.binpb")
    assert result.exit_code == 1
    assert f"127.0.0.1:{server.port} does not offer gRPC server reflection" in result.stderr
    assert "enable_server_reflection" in result.stderr
    assert "reflection.Register(s)" in result.stderr


def test_a_server_with_only_reflection_is_an_error(serve, fixture_set, tmp_path):
    server = serve(servicer=reflection.ReflectionServicer([V1ALPHA], pool=_pool(fixture_set)))
    with pytest.raises(UserError, match="offers no services besides reflection"):
        capture(server.source, tmp_path / "snap.binpb")


def test_an_import_the_server_cannot_provide(serve, fixture_set, tmp_path):
    servicer = SingleFileReflection(
        FIXTURE_SERVICES, _pool(fixture_set), refused=frozenset({"google/api/http.proto"})
    )
    server = serve(servicer=servicer)
    with pytest.raises(UserError) as error:
        capture(server.source, tmp_path / "snap.binpb")
    assert error.value.message == (
        f"127.0.0.1:{server.port} cannot provide google/api/http.proto, which "
        "google/api/annotations.proto imports: NOT_FOUND: not here"
    )
    # without the library the rest is complete
    out = tmp_path / "users.binpb"
    capture(server.source, out, services=["acme.users.v2.Users"])
    assert services_in(written(out)) == ["acme.users.v2.Users"]


def test_an_error_response_from_the_server(serve, fixture_set, tmp_path):
    listed = ["acme.ghost.v1.Ghost", "acme.users.v1.Users"]
    server = serve(servicer=reflection.ReflectionServicer(listed, pool=_pool(fixture_set)))
    with pytest.raises(UserError) as error:
        capture(server.source, tmp_path / "snap.binpb")
    assert error.value.message == (
        f"127.0.0.1:{server.port} failed describing service acme.ghost.v1.Ghost: "
        "NOT_FOUND: not found"
    )


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("grpc:///", "grpc:// needs a server address"),
        ("grpc://127.0.0.1", "'127.0.0.1' has no port"),
        ("grpc://127.0.0.1:", "'127.0.0.1:' has no port"),
        ("grpc://localhost:http", "'localhost:http' has no valid port ('http')"),
        ("grpc://localhost:70000", "'localhost:70000' has no valid port ('70000')"),
        ("grpc://::1:50051", "'::1:50051' is ambiguous"),
    ],
)
def test_bad_addresses(address, expected, tmp_path):
    with pytest.raises(UserError) as error:
        capture(address, tmp_path / "snap.binpb")
    assert error.value.message == expected
    assert "grpc://HOST:PORT" in (error.value.hint or "")


# ---- the snapshot as a build source ----------------------------------------------------------


def _without_descriptions(value: Any) -> Any:
    """A schema without comment text: servers strip comments, so only these may differ."""
    if isinstance(value, dict):
        return {
            k: _without_descriptions(v)
            for k, v in value.items()
            if not (k == "description" and isinstance(v, str))
        }
    if isinstance(value, list):
        return [_without_descriptions(v) for v in value]
    return value


def test_building_the_snapshot_gives_the_tools_of_the_protos(serve, library_bundle, tmp_path):
    server = serve()
    snap = tmp_path / "snap.binpb"
    assert snapshot(server.source, snap).exit_code == 0
    built = run_cli("build", str(snap), "-o", str(tmp_path / "out"))
    assert built.exit_code == 0, built.output
    from_snapshot = read_tools(tmp_path / "out")
    from_protos = read_tools(library_bundle)
    assert [t["name"] for t in from_snapshot["tools"]] == [t["name"] for t in from_protos["tools"]]
    assert len(from_snapshot["tools"]) > 10
    for mine, theirs in zip(from_snapshot["tools"], from_protos["tools"], strict=True):
        assert _without_descriptions(mine["inputSchema"]) == _without_descriptions(
            theirs["inputSchema"]
        ), mine["name"]
    assert from_snapshot["routes"] == from_protos["routes"]


@pytest.mark.parametrize("header", ["x token: a", "x-token-bin: a"])
def test_bad_header_names(header, tmp_path):
    result = snapshot("grpc://127.0.0.1:1", tmp_path / "snap.binpb", "--header", header)
    assert result.exit_code == 1
    assert "is not valid gRPC metadata" in result.stderr
