"""The gateway on the wire: MCP through the official SDK, plus go-micro-compatible REST.

MCP: the SDK's low-level `Server` serves both protocol eras (the initialize handshake of
2025-06-18/2025-11-25 and the stateless 2026-07-28), over stdio or Streamable HTTP at `/mcp`.
REST on the same HTTP server: `GET /mcp/tools`, `POST /mcp/call`, `GET /health`.
Every call, whatever the transport, goes through `Gateway.call`.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import anyio
import mcp_types as types
from mcp.server.lowlevel import NotificationOptions, Server
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import ToolsListChanged
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mcpgen.runtime import discovery
from mcpgen.runtime.arguments import InvalidArguments
from mcpgen.runtime.auth import CALLER_KEY, Authenticator, AuthGuard, OpenAccess
from mcpgen.runtime.breaker import CircuitOpen
from mcpgen.runtime.discovery import Discovery
from mcpgen.runtime.gateway import CallContext, Gateway, UnknownTool, result_text
from mcpgen.runtime.limits import DEFAULT_MAX_BODY, BodyLimit
from mcpgen.runtime.policy import Caller, Denied
from mcpgen.runtime.status import BackendError, http_status

LOOPBACK = ("127.0.0.1", "localhost", "::1")
#: SDK Tool objects kept between tools/list pages (a few pages' worth).
TOOL_OBJECTS = 1000
TRACE_RESPONSE_HEADER = "Mcp-Trace-Id"


@dataclass(slots=True)
class HttpOptions:
    host: str = "127.0.0.1"
    port: int = 3000
    stateless: bool = False
    json_response: bool = False
    allowed_origins: list[str] = field(default_factory=list)
    allowed_hosts: list[str] = field(default_factory=list)
    authenticator: Authenticator = field(default_factory=OpenAccess)
    max_body: int = DEFAULT_MAX_BODY  # bytes of a request body (BodyLimit)


class OriginGuard:
    """DNS-rebinding protection for the MCP and REST endpoints (ASGI middleware).

    A request that carries an `Origin` must come from an allowed origin (403 otherwise); on a
    loopback bind the `Host` must be a loopback name too (421 otherwise), so a web page whose
    domain resolves to 127.0.0.1 cannot reach the gateway. Patterns may end in `:*` (any port).
    `/health` stays open for probes.
    """

    GUARDED = ("/mcp",)

    def __init__(self, app: Any, options: HttpOptions) -> None:
        self.app = app
        self.origins = list(options.allowed_origins)
        self.hosts = list(options.allowed_hosts)
        if options.host in LOOPBACK:
            self.hosts += ["127.0.0.1:*", "localhost:*", "[::1]:*", "127.0.0.1", "localhost"]
            self.hosts += ["[::1]"]
            self.origins += ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]
            self.origins += ["http://127.0.0.1", "http://localhost", "http://[::1]"]

    @staticmethod
    def _allowed(value: str, patterns: list[str]) -> bool:
        for pattern in patterns:
            if value == pattern or pattern == "*":
                return True
            if pattern.endswith(":*") and value.startswith(pattern[:-1]):
                return value[len(pattern) - 1 :].isdigit()
        return False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith(self.GUARDED):
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            origin, host = headers.get("origin"), headers.get("host", "")
            refusal = None
            if self.hosts and not self._allowed(host, self.hosts):
                refusal = Response("Invalid Host header", status_code=421)
            elif origin is not None and not self._allowed(origin, self.origins):
                refusal = Response("Invalid Origin header", status_code=403)
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)


# ---- MCP -------------------------------------------------------------------------------------


class Cursors:
    """Opaque `tools/list` cursors over a stable order: an encoded offset."""

    PREFIX = "mcpgen:"

    @classmethod
    def encode(cls, offset: int) -> str:
        return base64.urlsafe_b64encode(f"{cls.PREFIX}{offset}".encode()).decode()

    @classmethod
    def decode(cls, cursor: str | None, total: int) -> int:
        if cursor is None:
            return 0
        try:
            text = base64.urlsafe_b64decode(cursor.encode()).decode()
            offset = int(text.removeprefix(cls.PREFIX)) if text.startswith(cls.PREFIX) else -1
        except (binascii.Error, UnicodeError, ValueError):
            offset = -1
        if not 0 <= offset < total:
            raise MCPError(types.INVALID_PARAMS, f"invalid cursor: {cursor!r}")
        return offset


class McpFrontend:
    """The MCP server of a gateway."""

    def __init__(
        self,
        gateway: Gateway,
        name: str,
        version: str,
        page_size: int = 100,
        discovery: bool = False,
        stateless: bool = False,
        identity: Any = None,
    ) -> None:
        """`identity` (runtime.cli.ServerIdentity) adds title, description and website to
        serverInfo."""
        self.gateway = gateway
        self.page_size = page_size
        #: `--discovery`: meta-tools instead of the catalog (`mcpgen.runtime.discovery`)
        self.discovery = Discovery(gateway.bundle) if discovery else None
        if self.discovery is not None:
            self.discovery.warm()
        self.stateless = stateless  # no session outlives a request: nothing to enable for
        #: 2026-07-28 clients hear of list changes on `subscriptions/listen` streams
        self.events = InMemorySubscriptionBus()
        self.server: Server[Any] = _Server(
            name,
            version=version,
            title=getattr(identity, "title", None),
            description=getattr(identity, "description", None),
            website_url=getattr(identity, "website_url", None),
            on_list_tools=self.list_tools,
            on_call_tool=self.call_tool,
            get_tool_input_schema=self._input_schema,
            on_subscriptions_listen=ListenHandler(self.events),
        )
        self.server.middleware = []  # no OpenTelemetry spans unless asked (issue: otel extra)
        # the list changes: enable_toolset changes a session's; a reload everyone's
        self.server.tools_changed = True
        self._tool_objects: OrderedDict[str, types.Tool] = OrderedDict()
        #: the latest request's session of each handshake-era connection, to tell of changes
        self._sessions: OrderedDict[str, Any] = OrderedDict()
        self.watcher: Any = None  # runtime.reload.BundleWatcher, set by runtime.cli

    def _seen(self, ctx: Any) -> None:
        """Remember a session that can be told its tool list changed (stateful ones only)."""
        key = self._session(ctx)
        session = getattr(ctx, "session", None)
        if key is not None and session is not None:
            self._sessions[key] = session
            self._sessions.move_to_end(key)
            while len(self._sessions) > discovery.SESSIONS:
                self._sessions.popitem(last=False)

    async def replace_bundle(self, bundle: Any) -> None:
        """Serve a reloaded bundle: calls from now on use it, and every client hears that the
        tool list changed."""
        self.gateway.use(bundle)
        self._tool_objects.clear()
        if self.discovery is not None:
            self.discovery = self.discovery.moved_to(bundle)
        await self.tools_changed()

    async def tools_changed(self) -> None:
        """`notifications/tools/list_changed` to each known session, and the event on the
        2026-07-28 listen streams; a session that is gone is forgotten."""
        await self.events.publish(ToolsListChanged())
        for key, session in list(self._sessions.items()):
            try:
                with anyio.fail_after(5):
                    await session.send_tool_list_changed()
            except Exception:  # closed, or never listening: nothing to tell
                self._sessions.pop(key, None)

    def _tool(self, tool: dict[str, Any]) -> types.Tool:
        """The SDK's Tool of a manifest entry, kept for the few most recently listed (a large
        bundle's tools do not all need to sit in memory as objects)."""
        found = self._tool_objects.get(tool["name"])
        if found is None:
            found = self._tool_objects[tool["name"]] = types.Tool.model_validate(tool)
            while len(self._tool_objects) > TOOL_OBJECTS:
                self._tool_objects.popitem(last=False)
        return found

    def _input_schema(self, name: str) -> dict[str, Any] | None:
        if self.discovery is not None and name in self.discovery.tools:
            return self.discovery.tools[name]["inputSchema"]
        tool = self.gateway.bundle.by_name.get(name)
        return tool["inputSchema"] if tool else None

    def _session(self, ctx: Any) -> str | None:
        """The session that outlives this request (enabled toolsets are kept per session):
        its `Mcp-Session-Id` over HTTP, the one connection of stdio; none for stateless HTTP
        and the sessionless 2026-07-28 era."""
        if self.stateless or getattr(ctx, "protocol_version", "") in MODERN_PROTOCOL_VERSIONS:
            return None
        request = getattr(ctx, "request", None)
        if isinstance(request, Request):
            return request.headers.get("mcp-session-id")
        return "stdio"

    async def list_tools(self, ctx: Any, params: types.PaginatedRequestParams | None) -> Any:
        """A page of the tools the caller may call: only that page's shards are read. With
        `--discovery`: the meta-tools, then the tools of the toolsets this session enabled."""
        self._seen(ctx)
        caller = _caller(getattr(ctx, "request", None))
        meta: list[dict[str, Any]] = []
        if self.discovery is None:
            names = self.gateway.visible_names(caller)
        else:
            meta = list(self.discovery.tools.values())
            allowed = self.gateway.policy.may_call
            names = [n for n in self.discovery.listed(self._session(ctx)) if allowed(n, caller)]
        total = len(meta) + len(names)
        start = Cursors.decode(params.cursor if params else None, max(total, 1))
        end = start + self.page_size
        page = meta[start:end] + self.gateway.bundle.tools_named(
            names[max(start - len(meta), 0) : max(end - len(meta), 0)]
        )
        return types.ListToolsResult(
            tools=[self._tool(t) for t in page],
            next_cursor=Cursors.encode(end) if end < total else None,
        )

    async def call_tool(self, ctx: Any, params: types.CallToolRequestParams) -> Any:
        self._seen(ctx)
        if self.discovery is not None and params.name in self.discovery.tools:
            return await self._meta_tool(ctx, params.name, params.arguments or {})
        return await self._call(ctx, params.name, params.arguments)

    async def _meta_tool(self, ctx: Any, name: str, arguments: dict[str, Any]) -> Any:
        """search_tools, describe_tool, call_tool, enable_toolset; scopes and the server's
        selection apply to what they find and call, as to the catalog."""
        assert self.discovery is not None
        caller = _caller(getattr(ctx, "request", None))
        allowed = partial(_allowed, self.gateway, caller)
        if name == discovery.SEARCH:
            query, limit = arguments.get("query"), arguments.get("limit", discovery.DEFAULT_LIMIT)
            if not isinstance(query, str) or not query.strip():
                return _error_result("search_tools: `query` must be a non-empty string")
            if isinstance(limit, bool) or not isinstance(limit, int):
                return _error_result("search_tools: `limit` must be an integer")
            limit = min(max(limit, 1), discovery.MAX_LIMIT)
            hits = self.discovery.index.search(query, limit, allowed)
            return _structured({"results": [hit.to_json() for hit in hits]})
        target = arguments.get("name")
        if not isinstance(target, str) or not target:
            return _error_result(f"{name}: `name` must be a non-empty string")
        if name == discovery.DESCRIBE:
            tool = self.gateway.bundle.tool(target) if allowed(target) else None
            if tool is None:
                return _error_result(f"Unknown tool: {target} (search_tools finds tools)")
            return _structured(tool)
        if name == discovery.CALL:
            inner = arguments.get("arguments", {})
            if not allowed(target):  # neither served nor permitted: as unknown as any name
                return _error_result(f"Unknown tool: {target} (search_tools finds tools)")
            return await self._call(ctx, target, inner)
        session = self._session(ctx)
        try:
            tools = self.discovery.enable(session, target, allowed)
        except KeyError:
            known = ", ".join(sorted(self.gateway.bundle.toolsets)[:20])
            return _error_result(f"Unknown toolset: {target} (toolsets: {known})")
        if session is not None:
            await ctx.session.send_tool_list_changed()
        return _structured({"toolset": target, "tools": tools, "listed": session is not None})

    async def _call(self, ctx: Any, name: str, arguments: dict[str, Any] | None) -> Any:
        request = getattr(ctx, "request", None)
        headers = dict(request.headers) if isinstance(request, Request) else {}

        async def on_message(index: int, message: dict[str, Any]) -> None:
            await ctx.session.report_progress(float(index), None, result_text(message))

        context = CallContext(
            transport="http" if isinstance(request, Request) else "stdio",
            headers=headers,
            on_message=on_message,
            caller=_caller(request),
        )
        try:
            result = await self.gateway.call(name, arguments, context)
        except UnknownTool:
            raise MCPError(types.INVALID_PARAMS, f"Unknown tool: {name}") from None
        except Denied as error:
            return _error_result(error.text())
        except InvalidArguments as error:
            return _error_result(error.text(name))
        except BackendError as error:
            return _error_result(error.text())
        return _structured(result)


class _Server(Server[Any]):
    """The SDK's low-level server, advertising `tools.listChanged` when the list can change
    (the SDK's HTTP transport asks for its initialization options without arguments)."""

    tools_changed = False

    def create_initialization_options(
        self, notification_options: NotificationOptions | None = None, *args: Any, **kwargs: Any
    ) -> Any:
        options = notification_options or NotificationOptions(tools_changed=self.tools_changed)
        return super().create_initialization_options(options, *args, **kwargs)


def _allowed(gateway: Gateway, caller: Caller, name: str) -> bool:
    """Whether a tool is served and `caller` may call it."""
    return name in gateway.bundle.shard_of and gateway.policy.may_call(name, caller)


def _structured(result: dict[str, Any]) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=result_text(result))],
        structured_content=result,
    )


def _caller(request: Any) -> Caller:
    """Who calls: over HTTP, whom the authentication middleware found (`AuthGuard`); on stdio,
    the local user."""
    if isinstance(request, Request):
        return request.scope.get(CALLER_KEY) or Caller.anonymous()
    return Caller.local()


def _error_result(text: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=True)


# ---- REST (go-micro's gateway API) -----------------------------------------------------------


class RestFrontend:
    """`GET /mcp/tools`, `POST /mcp/call`, `GET /health`, as go-micro's MCP gateway serves them."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def routes(self) -> list[Route]:
        routes = [
            Route("/mcp/tools", self.tools, methods=["GET"]),
            Route("/mcp/call", self.call, methods=["POST"]),
            Route("/health", self.health, methods=["GET"]),
        ]
        render = next((o.render for o in self.gateway.observers if hasattr(o, "render")), None)
        if render is not None:  # observe.Metrics: GET /metrics, open like /health

            async def metrics(request: Request) -> Response:
                body, content_type = render()
                return Response(body, headers={"Content-Type": content_type})

            routes.append(Route("/metrics", metrics, methods=["GET"]))
        return routes

    async def tools(self, request: Request) -> Response:
        return JSONResponse({"tools": self.gateway.visible_tools(_caller(request))})

    async def health(self, request: Request) -> Response:
        """Always 200 while the server serves: a backend that is down is each call's error,
        not a reason to take the gateway out of rotation. `backends` says how they fare."""
        gateway = self.gateway
        return JSONResponse(
            {"status": "ok", "tools": len(gateway.bundle.names), "backends": gateway.health()}
        )

    async def call(self, request: Request) -> Response:
        context = CallContext(
            transport="rest", headers=dict(request.headers), caller=_caller(request)
        )

        def error(
            status: int, text: str, code: str, retry_after: str | None = None, **extra: Any
        ) -> Response:
            body = {"error": text, "code": code, "trace_id": context.trace_id, **extra}
            headers = {TRACE_RESPONSE_HEADER: context.trace_id}
            if retry_after is not None:
                headers["Retry-After"] = retry_after
            return JSONResponse(body, status_code=status, headers=headers)

        try:
            body = json.loads(await request.body())
        except (ValueError, RecursionError) as exc:  # RecursionError: nested too deep to parse
            return error(400, f"request body is not JSON: {exc}", "BAD_REQUEST")
        if not isinstance(body, dict) or not isinstance(body.get("tool"), str):
            return error(400, 'expected {"tool": NAME, "input": {...}}', "BAD_REQUEST")
        name, arguments = body["tool"], body.get("input")
        name = self.gateway.bundle.resolve(name)  # go-micro's `users.Users.Get`
        try:
            result = await self.gateway.call(name, arguments, context)
        except UnknownTool:
            return error(404, f"unknown tool {name!r}", "UNKNOWN_TOOL")
        except Denied as exc:
            return error(exc.http_status, exc.text(), exc.code, exc.retry_after_header())
        except InvalidArguments as exc:
            return error(400, exc.text(name), "INVALID_ARGUMENTS", problems=exc.problems)
        except BackendError as exc:
            retry = None  # an open circuit says when it lets a probe through
            if isinstance(exc, CircuitOpen):
                retry = str(max(1, math.ceil(exc.retry_in)))
            status = http_status(exc.code)
            return error(status, exc.text(), exc.code.name, retry, details=exc.details)
        return JSONResponse(
            {"result": result, "trace_id": context.trace_id},
            headers={TRACE_RESPONSE_HEADER: context.trace_id},
        )


def http_app(frontend: McpFrontend, options: HttpOptions) -> Any:
    """One ASGI app: MCP Streamable HTTP at /mcp and the REST endpoints beside it, guarded."""
    app = frontend.server.streamable_http_app(
        streamable_http_path="/mcp",
        stateless_http=options.stateless,
        json_response=options.json_response,
        # Host/Origin are checked by OriginGuard for MCP and REST alike
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        host=options.host,
        custom_starlette_routes=RestFrontend(frontend.gateway).routes(),
        max_request_body_size=options.max_body,  # BodyLimit refuses larger bodies first
    )
    scopes = set().union(*frontend.gateway.policy.required.values())  # for the OAuth metadata
    guarded = AuthGuard(app, options.authenticator, scopes=scopes)
    return BodyLimit(OriginGuard(guarded, options), options.max_body)
