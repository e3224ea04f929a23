"""The gateway: one path for every tool call, whatever the transport.

MCP (stdio, Streamable HTTP) and the REST endpoints all call `Gateway.call`, which validates
the arguments, forwards to the backend and shapes the result; transports only translate the
outcome into their own wire form.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc
import orjson

from mcpgen.contract import BundleChanged, Route
from mcpgen.runtime.arguments import (
    InvalidArguments,
    build_request,
    strict_arguments,
    validate_arguments,
)
from mcpgen.runtime.backend import Backend, Call
from mcpgen.runtime.bundle import Bundle
from mcpgen.runtime.grpc_backend import GrpcBackends
from mcpgen.runtime.mucp_backend import MucpBackends
from mcpgen.runtime.policy import Caller, Denied, Policy, PolicyOptions
from mcpgen.runtime.status import BackendError

STREAM_KEY = "messages"
TRACE_HEADER = "mcp-trace-id"
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")

#: Called with each message of a server stream (its protojson) as it arrives.
OnMessage = Callable[[int, dict[str, Any]], Awaitable[None]]


@dataclass(slots=True)
class GatewayOptions:
    timeout: float = 30.0
    tool_timeouts: dict[str, float] = field(default_factory=dict)
    max_stream_messages: int = 1000
    forward_headers: tuple[str, ...] = ()  # lower-case HTTP header names sent as metadata
    max_argument_bytes: int = 1024 * 1024  # of a call's arguments as JSON
    max_depth: int = 64  # nesting of a call's arguments (protobuf's parser stops at 100)


@dataclass(slots=True)
class CallContext:
    """What a transport knows about one call."""

    transport: str  # "stdio", "http" or "rest"
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-case names (HTTP only)
    on_message: OnMessage | None = None
    trace_id: str = ""
    caller: Caller = field(default_factory=Caller.local)

    def __post_init__(self) -> None:
        if not self.trace_id:  # the caller's W3C trace id, else 16 random bytes as W3C has them
            traceparent = self.headers.get("traceparent")
            match = _TRACEPARENT.match(traceparent) if traceparent else None
            self.trace_id = match.group(1) if match else os.urandom(16).hex()


class UnknownTool(Exception):
    pass


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One call as audit lines and metrics see it (no arguments, no secrets)."""

    trace_id: str
    tool: str
    account: str
    scopes_required: list[str]
    allowed: bool
    denied_reason: str | None  # a `Denied.reason`, when the policy refused the call
    duration_ms: float
    status: str  # "OK", "DENIED", "INVALID_ARGUMENT", or the backend's gRPC code name
    transport: str
    backend: str = ""  # the route's kind: "grpc" or "go-micro"
    traceparent: str | None = None  # the caller's W3C trace context, to parent spans on


class Observer(Protocol):
    """Sees every call: audit logs, metrics, spans."""

    def started(self, tool: str) -> None: ...

    def finished(self, record: CallRecord) -> None: ...


def check_size(arguments: dict[str, Any], max_bytes: int, max_depth: int) -> None:
    """Refuse arguments larger or deeper than the limits, before any parsing work on them."""
    try:
        size: int | None = len(orjson.dumps(arguments))
    except orjson.JSONEncodeError:  # too deep for orjson, an integer beyond 64 bits, a lone
        size = None  # surrogate: measured below once the depth is known (json.dumps recurses)
    if size is not None:
        _check_bytes(size, max_bytes)
    stack: list[tuple[Any, int]] = [(arguments, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > max_depth:
            raise Denied("too_large", f"arguments nest deeper than {max_depth} levels", 413)
        children = value.values() if isinstance(value, dict) else value
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    if size is None:  # the schema and protobuf's parser then say what is wrong with the values
        text = json.dumps(arguments, ensure_ascii=False)
        _check_bytes(len(text.encode(errors="surrogatepass")), max_bytes)


def _check_bytes(size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise Denied(
            "too_large", f"arguments of {size:,} bytes exceed the limit of {max_bytes:,}", 413
        )


class Gateway:
    """Tool calls of one bundle, forwarded to the backends."""

    def __init__(
        self,
        bundle: Bundle,
        backends: GrpcBackends,
        options: GatewayOptions | None = None,
        micro: MucpBackends | None = None,
        policy: Policy | None = None,
        observers: Sequence[Observer] = (),
    ) -> None:
        self.bundle = bundle
        #: the `Backend` of each route kind: gRPC, and go-micro's mucp over HTTP
        self.backends: dict[str, Backend] = {
            "grpc": backends,
            "go-micro": micro or MucpBackends(backends.config, backends.breakers),
        }
        self.options = options or GatewayOptions()
        self.policy = policy or Policy(bundle.declared_scopes, PolicyOptions())
        self.observers = list(observers)
        #: reloads the bundle when it changed under the server (`runtime.reload`)
        self.reload: Callable[[], Awaitable[Any]] | None = None

    async def close(self) -> None:
        await self.policy.rates.close()
        for backend in self.backends.values():
            await backend.close()

    def health(self) -> dict[str, str]:
        """The circuit state of every backend target called so far."""
        return {t: s for backend in self.backends.values() for t, s in backend.health().items()}

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

    def visible_names(self, caller: Caller) -> list[str]:
        """The names of the tools `caller` may call, sorted: all a caller is ever shown."""
        return [name for name in self.bundle.names if self.policy.may_call(name, caller)]

    def visible_tools(self, caller: Caller) -> list[dict[str, Any]]:
        """The Tool objects of `visible_names` (reads every shard they are in)."""
        return self.bundle.tools_named(self.visible_names(caller))

    def use(self, bundle: Bundle) -> None:
        """Serve another bundle from the next call on (calls in flight keep theirs)."""
        self.policy.update(bundle.declared_scopes)
        self.bundle = bundle

    async def call(
        self, name: str, arguments: dict[str, Any] | None, context: CallContext
    ) -> dict[str, Any]:
        """The tool's structured result, after the policy admitted the call.

        Raises UnknownTool, Denied or InvalidArguments (nothing was sent), or BackendError.
        Every call but an unknown tool's leaves a `CallRecord` with the observers. The whole
        call runs on one bundle, even if a reload swaps in another meanwhile; a bundle replaced
        under the server (a file the call needs no longer matches the index the server read)
        is reloaded through `reload` first, and the call runs on the new one.
        """
        bundle = self.bundle
        try:
            route = bundle.prepare(name)
        except BundleChanged:
            if self.reload is None:
                raise
            await self.reload()
            bundle = self.bundle
            route = bundle.prepare(name)
        if route is None:
            raise UnknownTool(name)
        started = time.perf_counter()
        status, denied = "OK", None
        for observer in self.observers:
            observer.started(name)
        try:
            self.policy.authorize(name, context.caller)
            await self.policy.admit(name, context.caller)
            self.policy.enter()
            try:
                return await self._forward(bundle, name, route, arguments, context)
            finally:
                self.policy.leave()
        except Denied as error:
            status, denied = "DENIED", error.reason
            raise
        except InvalidArguments:
            status = "INVALID_ARGUMENT"
            raise
        except BackendError as error:
            status = error.code.name
            raise
        except BaseException:
            status = "INTERNAL"
            raise
        finally:
            if self.observers:
                self._record(name, route, context, started, status, denied)

    def _record(
        self,
        name: str,
        route: Route,
        context: CallContext,
        started: float,
        status: str,
        denied: str | None,
    ) -> None:
        """Hand the call's record to the observers (built only when someone observes)."""
        record = CallRecord(
            trace_id=context.trace_id,
            tool=name,
            account=context.caller.account,
            scopes_required=sorted(self.policy.required.get(name, ())),
            allowed=denied is None,
            denied_reason=denied,
            duration_ms=(time.perf_counter() - started) * 1000,
            status=status,
            transport=context.transport,
            backend=route.kind,
            traceparent=context.headers.get("traceparent"),
        )
        for observer in self.observers:
            observer.finished(record)

    async def _forward(
        self, bundle: Bundle, name: str, route: Route, arguments: Any, context: CallContext
    ) -> dict[str, Any]:
        if arguments is not None and not isinstance(arguments, dict):
            raise InvalidArguments([f"at /: expected an object, got {type(arguments).__name__}"])
        if arguments:
            check_size(arguments, self.options.max_argument_bytes, self.options.max_depth)
        if bundle.strict_inputs:
            arguments = strict_arguments(arguments or {}, bundle.strict_validator(name))
        method = bundle.method(name)
        validator = bundle.input_validator(name)
        request: Any
        if method.input_class is not None:  # checked and converted by the tool's type
            request = build_request(arguments, method.input_class, validator)
        else:  # a registry's (loose) schema is the only one; a strict bundle checked it already
            request = arguments or {}
            problems = [] if bundle.strict_inputs else validate_arguments(request, validator)
            if problems:
                raise InvalidArguments(problems)
        call = Call(
            tool=name,
            method=method,
            request=request,
            timeout=self.options.tool_timeouts.get(name, self.options.timeout),
            metadata=self.metadata(context),
        )
        backend = self.backends[route.kind]
        if method.streaming:
            return await self._collect(backend, call, context)
        return await backend.call(call)

    async def _collect(self, backend: Backend, call: Call, context: CallContext) -> dict[str, Any]:
        """A server stream gathered into `{"messages": [...], "truncated": bool}`.

        The gateway ends the call at `max_stream_messages` messages, or at the deadline once
        some messages arrived (watch-style streams never end by themselves); either way the
        result says `truncated: true`. A deadline before the first message is an error.
        """
        messages: list[dict[str, Any]] = []
        truncated = False
        limit = self.options.max_stream_messages
        stream = backend.stream(call)
        try:
            async for document in stream:
                messages.append(document)
                if context.on_message is not None:
                    await context.on_message(len(messages), document)
                if len(messages) >= limit:
                    truncated = True
                    break
        except BackendError as error:
            if error.code != grpc.StatusCode.DEADLINE_EXCEEDED or not messages:
                raise
            truncated = True
        finally:
            await stream.aclose()
        return {STREAM_KEY: messages, "truncated": truncated}


def result_text(result: dict[str, Any]) -> str:
    """The text content that mirrors structured content, for clients that ignore the latter."""
    return json.dumps(result, ensure_ascii=False, separators=(",", ":"))
