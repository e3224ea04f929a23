"""Forwarding to gRPC backends: one `grpc.aio` channel per target, reused by every call.

Targets are whatever gRPC accepts (`host:port`, `dns:///name:port`, `unix:///path`); every
channel balances round robin over the addresses its target resolves to. `--backend TARGET`
serves every service; `--backend SERVICE=TARGET` one service, named by its full name
(`acme.library.v1.Library`), its package or a package prefix (`acme.library`), or its simple
name in any case (`library`). The most specific match wins.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.message import Message

from mcpgen.contract import GrpcRoute
from mcpgen.errors import UserError
from mcpgen.runtime.arguments import response_json
from mcpgen.runtime.backend import Call
from mcpgen.runtime.breaker import FAILURES, Breakers
from mcpgen.runtime.status import BackendError

_SERVICE_CONFIG = json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})
_CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.service_config", _SERVICE_CONFIG),
    ("grpc.enable_retries", 0),  # the gateway does not replay calls that may have side effects
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    # reconnect within a second of a backend's return (gRPC's default backoff grows to 120 s);
    # the connect timeout stays gRPC's (20 s: a server that accepts and never speaks HTTP/2 is
    # a deadline, not an UNAVAILABLE)
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


_HEALTH_CHECK = "/grpc.health.v1.Health/Check"
_NOT_SERVING = b"\x08\x02"


@dataclass(slots=True)
class BackendConfig:
    """Where each service lives and how to reach it."""

    default: str | None = None
    services: dict[str, str] = field(default_factory=dict)  # selector -> target
    tls: bool = False
    ca: str | None = None
    cert: str | None = None
    key: str | None = None

    @classmethod
    def parse(cls, entries: Sequence[str], **tls: Any) -> BackendConfig:
        """`TARGET` or `SERVICE=TARGET` entries, as given to `--backend`."""
        config = cls(**tls)
        for entry in entries:
            selector, sep, target = entry.partition("=")
            if not sep:
                if config.default is not None and config.default != entry:
                    raise UserError(
                        f"two default backends given: {config.default} and {entry}",
                        hint="give one --backend TARGET, and SERVICE=TARGET for the others",
                    )
                config.default = entry.strip()
                continue
            if not selector.strip() or not target.strip():
                raise UserError(
                    f"--backend {entry!r} is not TARGET or SERVICE=TARGET",
                    hint="e.g. --backend localhost:50051 or --backend acme.users.v1=users:50051",
                )
            config.services[selector.strip()] = target.strip()
        if (config.cert is None) != (config.key is None):
            raise UserError(
                "--backend-cert and --backend-key go together", hint="give both for mTLS"
            )
        return config

    def target_for(self, service: str) -> str | None:
        """The target of a service (full name): its most specific selector, else the default."""
        override = self.override_for(service)
        return self.default if override is None else override

    def override_for(self, service: str) -> str | None:
        """The target the most specific `SERVICE=TARGET` selector gives a service, if any."""
        best: tuple[int, str] | None = None
        simple = service.rsplit(".", 1)[-1].lower()
        for selector, target in self.services.items():
            if selector == service:
                rank = 3
            elif service.startswith(selector + "."):
                rank = 2
            elif selector.lower() == simple:
                rank = 1
            else:
                continue
            key = (rank * 1000 + len(selector), target)
            if best is None or key[0] > best[0]:
                best = key
        return best[1] if best else None

    def credentials(self) -> grpc.ChannelCredentials | None:
        if not (self.tls or self.ca or self.cert):
            return None

        def read(path: str | None) -> bytes | None:
            if path is None:
                return None
            try:
                return Path(path).read_bytes()
            except OSError as exc:
                raise UserError(f"cannot read {path}: {exc.strerror}") from None

        return grpc.ssl_channel_credentials(
            root_certificates=read(self.ca),
            private_key=read(self.key),
            certificate_chain=read(self.cert),
        )


class NoBackend(Exception):
    """No --backend covers a service."""


class GrpcBackends:
    """The `Backend` of gRPC routes: channels by target, created on first use and closed
    together; a circuit breaker per target (none unless `breakers` are given: the server's
    flags give them)."""

    def __init__(self, config: BackendConfig, breakers: Breakers | None = None) -> None:
        self.config = config
        self.breakers = breakers or Breakers(failures=0)
        self._credentials = config.credentials()
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._unary: dict[tuple[str, str], Any] = {}
        self._stream: dict[tuple[str, str], Any] = {}
        self._turns: dict[str, int] = {}  # round robin over a route's nodes

    def _target(self, service: str, nodes: Sequence[str]) -> str | None:
        """A selector's target, else the route's own nodes in turn (go-micro gRPC servers
        from a registry snapshot), passing over those whose circuit is open; when every one
        is open, the next in turn all the same (its breaker decides: a reconnected node is
        probed), else the default."""
        override = self.config.override_for(service)
        if override is not None or not nodes:
            return override if override is not None else self.config.default
        turn = self._turns.get(service, 0)
        for step in range(len(nodes)):
            node = nodes[(turn + step) % len(nodes)]
            if self.breakers.of(node).state == "closed":
                self._turns[service] = turn + step + 1
                return node
        self._turns[service] = turn + 1
        return nodes[turn % len(nodes)]

    def channel(self, service: str, nodes: Sequence[str] = ()) -> tuple[str, grpc.aio.Channel]:
        target = self._target(service, nodes)
        if target is None:
            raise NoBackend(
                f"no backend is configured for {service}; start the server with "
                f"--backend TARGET or --backend {service}=TARGET"
            )
        channel = self._channels.get(target)
        if channel is None:
            if self._credentials is not None:
                channel = grpc.aio.secure_channel(target, self._credentials, _CHANNEL_OPTIONS)
            else:
                channel = grpc.aio.insecure_channel(target, _CHANNEL_OPTIONS)
            self._channels[target] = channel
            self.breakers.of(target).check = partial(_answers, channel)
        return target, channel

    async def call(self, call: Call) -> dict[str, Any]:
        route, request, output = _route(call)
        with _as_backend_errors():
            response = await self.unary(
                route.service, route.path, request, output, call.timeout, call.metadata,
                route.nodes or (),
            )  # fmt: skip
        return response_json(response)

    async def stream(self, call: Call) -> AsyncGenerator[dict[str, Any], None]:
        route, request, output = _route(call)
        messages = self.server_stream(
            route.service, route.path, request, output, call.timeout, call.metadata,
            route.nodes or (),
        )  # fmt: skip
        try:
            with _as_backend_errors():
                async for message in messages:
                    yield response_json(message)
        finally:
            await messages.aclose()

    def health(self) -> dict[str, str]:
        return self.breakers.states(self._channels)

    async def unary(
        self,
        service: str,
        path: str,
        request: Message,
        output: type[Message],
        timeout: float,
        metadata: Sequence[tuple[str, str]],
        nodes: Sequence[str] = (),
    ) -> Message:
        target, channel = self.channel(service, nodes)
        call = self._unary.get((target, path))
        if call is None:
            call = channel.unary_unary(
                path,
                request_serializer=_serialize,
                response_deserializer=output.FromString,
            )
            self._unary[(target, path)] = call
        with self.breakers.guard(target):
            return await call(request, timeout=timeout, metadata=tuple(metadata))

    async def server_stream(
        self,
        service: str,
        path: str,
        request: Message,
        output: type[Message],
        timeout: float,
        metadata: Sequence[tuple[str, str]],
        nodes: Sequence[str] = (),
    ) -> AsyncIterator[Message]:
        """The messages of a server-streaming call; closing the iterator cancels the call.
        Its first message proves the backend alive, whatever ends the stream later."""
        target, channel = self.channel(service, nodes)
        guard = self.breakers.guard(target)
        method = self._stream.get((target, path))
        if method is None:
            method = channel.unary_stream(
                path,
                request_serializer=_serialize,
                response_deserializer=output.FromString,
            )
            self._stream[(target, path)] = method
        call = method(request, timeout=timeout, metadata=tuple(metadata))
        try:
            with guard:
                async for message in call:
                    guard.succeeded()
                    yield message
        finally:
            call.cancel()

    async def close(self) -> None:
        self.breakers.close()
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
        self._unary.clear()
        self._stream.clear()


@contextlib.contextmanager
def _as_backend_errors() -> Iterator[None]:
    """gRPC's errors, and a service with no backend, as the `BackendError` of `Backend`."""
    try:
        yield
    except grpc.aio.AioRpcError as error:
        raise BackendError.from_rpc_error(error) from None
    except NoBackend as error:
        raise BackendError(grpc.StatusCode.UNAVAILABLE, str(error)) from None


def _route(call: Call) -> tuple[GrpcRoute, Message, type[Message]]:
    """A call's gRPC route, request message and response class (the bundle has all three)."""
    route, request, output = call.method.route, call.request, call.method.output_class
    assert isinstance(route, GrpcRoute) and isinstance(request, Message) and output is not None
    return route, request, output


async def _answers(channel: grpc.aio.Channel) -> bool:
    """The liveness check of a target: `grpc.health.v1.Health/Check` within a second. Any
    answer counts but NOT_SERVING: UNIMPLEMENTED, from a server without the health service,
    is an answer too. (The messages are read by hand, to need no health-checking package for
    one enum: the empty request is no bytes, NOT_SERVING is field 1 = 2.)"""
    check = channel.unary_unary(
        _HEALTH_CHECK, request_serializer=bytes, response_deserializer=bytes
    )
    try:
        answer = await check(b"", timeout=1.0)
    except grpc.aio.AioRpcError as error:
        return error.code() not in FAILURES
    return answer != _NOT_SERVING


def _serialize(message: Message) -> bytes:
    return message.SerializeToString()
