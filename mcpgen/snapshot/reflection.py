"""`grpc://HOST:PORT` → FileDescriptorSet, through gRPC server reflection.

One bidirectional reflection stream asks for the service list, then for the file of each
service and, file by file, for any import the server did not send along. The files are written
dependencies first with ties broken by name, so the same server gives byte-identical output
whatever order it answers in.
"""

from __future__ import annotations

import heapq
import queue
import re
import time
from collections.abc import Iterator

import grpc
from google.protobuf import descriptor_pb2
from google.protobuf.message import DecodeError

# Only v1alpha messages ship with grpcio-reflection; v1 is wire-identical (same fields and
# numbers, only the proto package differs), so these classes also speak v1 on the v1 path.
from grpc_reflection.v1alpha import reflection_pb2

from mcpgen.errors import UserError, Warnings
from mcpgen.snapshot import SnapshotOptions, SnapshotResult, counted, write_atomic

REFLECTION_SERVICES = (
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
)
_METHODS = tuple(f"/{service}/ServerReflectionInfo" for service in REFLECTION_SERVICES)
_METADATA_NAME = re.compile(r"[0-9a-z_.\-]+")
_ENABLE_HINT = (
    "enable reflection on the server: in Python "
    "`grpc_reflection.v1alpha.reflection.enable_server_reflection(names, server)`, in Go "
    "`reflection.Register(s)` (google.golang.org/grpc/reflection); or build from .proto files "
    "or a descriptor set instead"
)
_AUTH_HINT = "send credentials with the call, e.g. --header 'authorization: Bearer TOKEN'"
# a file comes with all its imports in one message; big schemas pass gRPC's 4 MiB default
_CHANNEL_OPTIONS = [("grpc.max_receive_message_length", -1)]


def snapshot_reflection(
    address: str, options: SnapshotOptions, warnings: Warnings
) -> SnapshotResult:
    """Capture the services `address` reflects into `options.out`.

    `options.timeout` is the deadline of the whole capture (every reflection call together).
    """
    target = _target(address)
    metadata = _metadata(options.headers)
    deadline = time.monotonic() + options.timeout
    with _channel(target, options) as channel:
        stream, listing = _open(channel, target, metadata, deadline)
        try:
            services = _services(listing, target, options.services)
            files = _files(stream, target, services)
        finally:
            stream.close()
    ordered = _dependencies_first(files, target)
    if not any(f.HasField("source_code_info") for f in ordered):
        warnings.add(
            f"{target} sent descriptors without comments (servers usually strip them): "
            "tools will have no descriptions from comments; build from the .proto files for those"
        )
    data = descriptor_pb2.FileDescriptorSet(file=ordered).SerializeToString(deterministic=True)
    write_atomic(options.out, data)
    return SnapshotResult(
        out=options.out,
        summary=f"{counted(len(services), 'service')}, {counted(len(ordered), 'file')}",
    )


def _target(address: str) -> str:
    """HOST:PORT checked, so a typo fails here rather than as an unreachable server."""
    address = address.rstrip("/")
    host, sep, port = address.rpartition(":")
    hint = "write grpc://HOST:PORT, e.g. grpc://localhost:50051 or grpc://[::1]:50051"
    if not address:
        raise UserError("grpc:// needs a server address", hint=hint)
    if not sep or not host or not port:
        raise UserError(f"{address!r} has no port", hint=hint)
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError(f"{address!r} has no valid port ({port!r})", hint=hint)
    if ":" in host and not (host.startswith("[") and host.endswith("]")):
        raise UserError(
            f"{address!r} is ambiguous", hint="write IPv6 addresses in brackets: " + hint
        )
    return address


def _metadata(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Headers as gRPC metadata; gRPC itself rejects bad names with an unhelpful error."""
    for name, _ in headers:
        if not _METADATA_NAME.fullmatch(name) or name.endswith("-bin"):
            raise UserError(
                f"--header name {name!r} is not valid gRPC metadata",
                hint="use letters, digits, '-', '_' and '.' (binary '-bin' headers are "
                "not supported)",
            )
    return list(headers)


def _channel(target: str, options: SnapshotOptions) -> grpc.Channel:
    if not options.tls:
        return grpc.insecure_channel(target, options=_CHANNEL_OPTIONS)
    roots = None
    if options.ca is not None:
        try:
            roots = options.ca.read_bytes()
        except OSError as exc:
            raise UserError(f"cannot read --ca {options.ca}: {exc.strerror}") from exc
    credentials = grpc.ssl_channel_credentials(root_certificates=roots)
    return grpc.secure_channel(target, credentials, options=_CHANNEL_OPTIONS)


class _Stream:
    """One ServerReflectionInfo call, used as request → response."""

    def __init__(
        self,
        channel: grpc.Channel,
        target: str,
        method: str,
        metadata: list[tuple[str, str]],
        deadline: float,
    ) -> None:
        self.target = target
        call = channel.stream_stream(
            method,
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )
        self._requests: queue.Queue[reflection_pb2.ServerReflectionRequest | None] = queue.Queue()
        self._responses: Iterator[reflection_pb2.ServerReflectionResponse] = call(
            iter(self._requests.get, None),
            timeout=max(deadline - time.monotonic(), 0.0),
            metadata=metadata,
        )

    def ask(
        self, request: reflection_pb2.ServerReflectionRequest
    ) -> reflection_pb2.ServerReflectionResponse:
        self._requests.put(request)
        try:
            return next(self._responses)
        except StopIteration:
            raise UserError(f"{self.target} ended the reflection stream early") from None

    def close(self) -> None:
        self._requests.put(None)
        self._responses.cancel()  # type: ignore[attr-defined]


def _open(
    channel: grpc.Channel, target: str, metadata: list[tuple[str, str]], deadline: float
) -> tuple[_Stream, reflection_pb2.ServerReflectionResponse]:
    """A stream and its answer to the service list: v1 if the server has it, else v1alpha."""
    for method in _METHODS:
        stream = _Stream(channel, target, method, metadata, deadline)
        try:
            return stream, stream.ask(reflection_pb2.ServerReflectionRequest(list_services="*"))
        except grpc.RpcError as exc:
            stream.close()
            if exc.code() != grpc.StatusCode.UNIMPLEMENTED:
                raise _call_error(exc, target) from None
    raise UserError(f"{target} does not offer gRPC server reflection", hint=_ENABLE_HINT)


def _call_error(exc: grpc.RpcError, target: str) -> UserError:
    code, details = exc.code(), exc.details() or ""
    if code == grpc.StatusCode.UNAVAILABLE:
        return UserError(
            f"cannot reach {target}: {details}",
            hint="check the address and that the server runs; add --tls (and --ca) if it "
            "serves TLS, drop them if it does not",
        )
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return UserError(
            f"cannot reach {target}: no complete answer in time",
            hint="check the address, or give a slow server more time with --timeout SECONDS",
        )
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        return UserError(f"{target} refused reflection: {code.name}: {details}", hint=_AUTH_HINT)
    return UserError(f"reflection on {target} failed: {code.name}: {details}")


def _services(
    response: reflection_pb2.ServerReflectionResponse, target: str, wanted: list[str]
) -> list[str]:
    """The services to capture, sorted: all but reflection, or `wanted` if given."""
    _check_answer(response, "list_services_response", target, "listing services")
    offered = sorted(
        {s.name for s in response.list_services_response.service} - set(REFLECTION_SERVICES)
    )
    if not offered:
        raise UserError(
            f"{target} offers no services besides reflection",
            hint="register the services with reflection, e.g. pass their names to "
            "enable_server_reflection",
        )
    if not wanted:
        return offered
    unknown = sorted(set(wanted) - set(offered))
    if unknown:
        raise UserError(
            f"{target} has no service {', '.join(unknown)}",
            hint=f"it has: {', '.join(offered)} (use full names with --service)",
        )
    return sorted(set(wanted))


def _files(
    stream: _Stream, target: str, services: list[str]
) -> dict[str, descriptor_pb2.FileDescriptorProto]:
    """The files defining `services`, with their imports, transitively."""
    received: dict[str, descriptor_pb2.FileDescriptorProto] = {}
    needed: list[tuple[str, str | None]] = []  # (file, the file that imports it)
    for service in services:
        request = reflection_pb2.ServerReflectionRequest(file_containing_symbol=service)
        answer = _file_answer(stream, request, target, f"describing service {service}")
        needed.append((_defining(service, _receive(answer, received, target), target), None))
    closure: dict[str, descriptor_pb2.FileDescriptorProto] = {}
    while needed:
        name, importer = needed.pop()
        if name in closure:
            continue
        if name not in received:
            request = reflection_pb2.ServerReflectionRequest(file_by_filename=name)
            answer = _file_answer(stream, request, target, f"sending {name}", importer)
            if name not in {f.name for f in _receive(answer, received, target)}:
                raise UserError(f"{target} answered a request for {name} with other files")
        closure[name] = received[name]
        needed += [(d, name) for d in received[name].dependency if d not in closure]
    return closure


def _defining(service: str, files: list[descriptor_pb2.FileDescriptorProto], target: str) -> str:
    """The name of the file among `files` that declares `service`."""
    for file in files:
        prefix = f"{file.package}." if file.package else ""
        if any(prefix + s.name == service for s in file.service):
            return file.name
    raise UserError(f"{target} lists {service} but sent no file that declares it")


def _file_answer(
    stream: _Stream,
    request: reflection_pb2.ServerReflectionRequest,
    target: str,
    doing: str,
    importer: str | None = None,
) -> reflection_pb2.FileDescriptorResponse:
    try:
        response = stream.ask(request)
    except grpc.RpcError as exc:
        raise _call_error(exc, target) from None
    if response.HasField("error_response") and importer is not None:
        error = response.error_response
        raise UserError(
            f"{target} cannot provide {request.file_by_filename}, which {importer} imports: "
            f"{_code_name(error.error_code)}: {error.error_message}",
            hint="the server's reflection knows only the files compiled into it; "
            "build from the .proto files or a descriptor set instead",
        )
    _check_answer(response, "file_descriptor_response", target, doing)
    return response.file_descriptor_response


def _receive(
    answer: reflection_pb2.FileDescriptorResponse,
    received: dict[str, descriptor_pb2.FileDescriptorProto],
    target: str,
) -> list[descriptor_pb2.FileDescriptorProto]:
    """Parse the files of an answer into `received` (first copy wins); return them."""
    files = []
    for data in answer.file_descriptor_proto:
        try:
            file = descriptor_pb2.FileDescriptorProto.FromString(data)
        except DecodeError as exc:
            raise UserError(f"{target} sent a corrupt file descriptor: {exc}") from None
        received.setdefault(file.name, file)
        files.append(file)
    if not files:
        raise UserError(f"{target} answered with no file descriptors")
    return files


def _check_answer(
    response: reflection_pb2.ServerReflectionResponse, expected: str, target: str, doing: str
) -> None:
    kind = response.WhichOneof("message_response")
    if kind == "error_response":
        error = response.error_response
        raise UserError(
            f"{target} failed {doing}: {_code_name(error.error_code)}: {error.error_message}"
        )
    if kind != expected:
        raise UserError(f"{target} answered {doing} with {kind or 'nothing'}, not {expected}")


def _code_name(number: int) -> str:
    return next((c.name for c in grpc.StatusCode if c.value[0] == number), str(number))


def _dependencies_first(
    files: dict[str, descriptor_pb2.FileDescriptorProto], target: str
) -> list[descriptor_pb2.FileDescriptorProto]:
    """Every file after its imports; among files ready at the same time, by name."""
    waiting = {name: set(f.dependency) for name, f in files.items()}
    importers: dict[str, list[str]] = {}
    for name, imports in waiting.items():
        for imported in imports:
            importers.setdefault(imported, []).append(name)
    ready = [name for name, imports in waiting.items() if not imports]
    heapq.heapify(ready)
    ordered = []
    while ready:
        name = heapq.heappop(ready)
        ordered.append(files[name])
        for importer in importers.get(name, ()):
            waiting[importer].discard(name)
            if not waiting[importer]:
                heapq.heappush(ready, importer)
    if len(ordered) < len(files):
        cycle = sorted(name for name, imports in waiting.items() if imports)
        raise UserError(f"{target} sent files that import each other: {', '.join(cycle)}")
    return ordered
