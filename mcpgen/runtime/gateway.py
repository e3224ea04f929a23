"""The gateway: one path for every tool call, whatever the transport.

MCP (stdio, Streamable HTTP) and the REST endpoints all call `Gateway.call`, which validates
the arguments, forwards to the backend and shapes the result; transports only translate the
outcome into their own wire form.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf import json_format

from mcpgen.runtime.arguments import (
    InvalidArguments,
    build_request,
    response_json,
    strict_arguments,
    validate_arguments,
)
from mcpgen.runtime.bundle import Bundle
from mcpgen.runtime.grpc_backend import GrpcBackends, NoBackend
from mcpgen.runtime.status import BackendError

if TYPE_CHECKING:
    from mcpgen.runtime.mucp_backend import MucpBackends

STREAM_KEY = "messages"
TRACE_HEADER = "mcp-trace-id"
TOOL_HEADER = "mcp-tool-name"  # go-micro's gateway tells services which tool called them
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")

#: Called with each message of a server stream (its protojson) as it arrives.
OnMessage = Callable[[int, dict[str, Any]], Awaitable[None]]


@dataclass(slots=True)
class GatewayOptions:
    timeout: float = 30.0
    tool_timeouts: dict[str, float] = field(default_factory=dict)
    max_stream_messages: int = 1000
    forward_headers: tuple[str, ...] = ()  # lower-case HTTP header names sent as metadata


@dataclass(slots=True)
class CallContext:
    """What a transport knows about one call."""

    transport: str  # "stdio", "http" or "rest"
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-case names (HTTP only)
    on_message: OnMessage | None = None
    trace_id: str = ""

    def __post_init__(self) -> None:
        if not self.trace_id:  # the caller's W3C trace id, else 16 random bytes as W3C has them
            traceparent = self.headers.get("traceparent")
            match = _TRACEPARENT.match(traceparent) if traceparent else None
            self.trace_id = match.group(1) if match else os.urandom(16).hex()


class UnknownTool(Exception):
    pass


class Gateway:
    """Tool calls of one bundle, forwarded to the backends."""

    def __init__(
        self,
        bundle: Bundle,
        backends: GrpcBackends,
        options: GatewayOptions | None = None,
        micro: MucpBackends | None = None,
    ) -> None:
        self.bundle = bundle
        self.backends = backends
        self.options = options or GatewayOptions()
        self.micro = micro  # go-micro services (mucp over HTTP), when the bundle has any

    async def close(self) -> None:
        await self.backends.close()
        if self.micro is not None:
            await self.micro.close()

    @property
    def tools(self) -> list[dict[str, Any]]:
        return self.bundle.tools

    def metadata(self, context: CallContext) -> list[tuple[str, str]]:
        """gRPC metadata of a call: its trace id, W3C trace context, and forwarded headers."""
        metadata = [(TRACE_HEADER, context.trace_id)]
        for name in ("traceparent", "tracestate"):
            if name in context.headers:
                metadata.append((name, context.headers[name]))
        for name in self.options.forward_headers:
            value = context.headers.get(name)
            if value is not None and name not in ("traceparent", "tracestate"):
                metadata.append((name, value))
        return metadata

    async def call(
        self, name: str, arguments: dict[str, Any] | None, context: CallContext
    ) -> dict[str, Any]:
        """The tool's structured result.

        Raises UnknownTool, InvalidArguments (nothing was sent), or BackendError.
        """
        route = self.bundle.routes.get(name)
        if route is None:
            raise UnknownTool(name)
        if arguments is not None and not isinstance(arguments, dict):
            raise InvalidArguments([f"at /: expected an object, got {type(arguments).__name__}"])
        if self.bundle.strict_inputs:
            arguments = strict_arguments(arguments or {}, self.bundle.strict_validator(name))
        if route["kind"] == "go-micro":
            return await self._call_micro(name, route, arguments or {}, context)
        if route["kind"] != "grpc":
            raise BackendError(
                grpc.StatusCode.UNIMPLEMENTED, f"routes of kind {route['kind']} are not served"
            )
        method = self.bundle.grpc_method(name)
        request = build_request(arguments, method.input_class, self.bundle.input_validator(name))
        timeout = self.options.tool_timeouts.get(name, self.options.timeout)
        metadata = self.metadata(context)
        try:
            if method.streaming == "server":
                return await self._collect(method, request, timeout, metadata, context)
            response = await self.backends.unary(
                method.service, method.path, request, method.output_class, timeout, metadata,
                method.nodes,
            )  # fmt: skip
        except grpc.aio.AioRpcError as error:
            raise BackendError.from_rpc_error(error) from None
        except NoBackend as error:
            raise BackendError(grpc.StatusCode.UNAVAILABLE, str(error)) from None
        return response_json(response)

    async def _call_micro(
        self, name: str, route: dict[str, Any], arguments: dict[str, Any], context: CallContext
    ) -> dict[str, Any]:
        """A go-micro endpoint over mucp. With the protos, the request is checked and written
        as protojson and the answer read back through its type; from a registry alone, the
        arguments are checked against the registry's (loose) schema and sent as they are."""
        if self.micro is None:
            raise BackendError(grpc.StatusCode.UNIMPLEMENTED, "go-micro forwarding is off")
        validator = self.bundle.input_validator(name)
        output_class = None
        if "request" in route:
            request = build_request(
                arguments, self.bundle.message_class(route["request"]), validator
            )
            body: dict[str, Any] = json_format.MessageToDict(
                request, descriptor_pool=request.DESCRIPTOR.file.pool
            )
            output_class = self.bundle.message_class(route["response"])
        else:  # the manifest's schema is the only one; a strict bundle checked it already
            strict = self.bundle.strict_inputs
            problems = [] if strict else validate_arguments(arguments, validator)
            if problems:
                raise InvalidArguments(problems)
            body = arguments
        try:
            answer = await self.micro.call(
                route["service"],
                route["endpoint"],
                route.get("nodes", []),
                body,
                self.options.tool_timeouts.get(name, self.options.timeout),
                [*self.metadata(context), (TOOL_HEADER, name)],
            )
        except NoBackend as error:
            raise BackendError(grpc.StatusCode.UNAVAILABLE, str(error)) from None
        if output_class is not None:
            message = output_class()
            try:
                json_format.ParseDict(
                    answer, message, ignore_unknown_fields=True,
                    descriptor_pool=message.DESCRIPTOR.file.pool,
                )  # fmt: skip
            except (json_format.ParseError, ValueError, TypeError) as exc:
                raise BackendError(
                    grpc.StatusCode.INTERNAL,
                    f"{route['service']} {route['endpoint']} answered with JSON that is not a "
                    f"{output_class.DESCRIPTOR.full_name}: {exc}",
                ) from None
            return response_json(message)
        return answer if isinstance(answer, dict) else {"value": answer}

    async def _collect(self, method, request, timeout, metadata, context) -> dict[str, Any]:  # type: ignore[no-untyped-def]
        """A server stream gathered into `{"messages": [...], "truncated": bool}`.

        The gateway ends the call at `max_stream_messages` messages, or at the deadline once
        some messages arrived (watch-style streams never end by themselves); either way the
        result says `truncated: true`. A deadline before the first message is an error.
        """
        messages: list[dict[str, Any]] = []
        truncated = False
        limit = self.options.max_stream_messages
        stream = self.backends.server_stream(
            method.service, method.path, request, method.output_class, timeout, metadata,
            method.nodes,
        )  # fmt: skip
        try:
            async for message in stream:
                document = response_json(message)
                messages.append(document)
                if context.on_message is not None:
                    await context.on_message(len(messages), document)
                if len(messages) >= limit:
                    truncated = True
                    break
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.DEADLINE_EXCEEDED or not messages:
                raise
            truncated = True
        finally:
            await stream.aclose()
        return {STREAM_KEY: messages, "truncated": truncated}


def result_text(result: dict[str, Any]) -> str:
    """The text content that mirrors structured content, for clients that ignore the latter."""
    return json.dumps(result, ensure_ascii=False, separators=(",", ":"))
