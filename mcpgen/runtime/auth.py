"""Who is calling over HTTP: bearer tokens checked before any MCP or REST request is served.

`AuthGuard` (ASGI middleware) asks the configured `Authenticator` about the request's bearer
token and puts the `Caller` it found into the request's scope under `CALLER_KEY`, where the
MCP and REST frontends read it; the policy (`policy.py`) then decides what that caller may see
and call. Without a token, or with a bad one, the request ends in `401` with a
`WWW-Authenticate` header. With no authenticator configured, HTTP is open (`OpenAccess`), as it
is bound to loopback by default. `/health` stays open for probes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from starlette.responses import JSONResponse

from mcpgen.runtime.policy import ANY_SCOPE, Caller

CALLER_KEY = "mcpgen.caller"  # the ASGI scope entry holding the request's Caller
GUARDED = ("/mcp",)  # MCP at /mcp, REST at /mcp/tools and /mcp/call


class AuthError(Exception):
    """A token that is missing, malformed, unknown, expired or not for this server."""

    def __init__(self, message: str, error: str = "invalid_token") -> None:
        super().__init__(message)
        self.message = message
        self.error = error  # RFC 6750 error code for WWW-Authenticate


class Authenticator(Protocol):
    """Turns a request's credentials into a Caller, or raises AuthError."""

    async def authenticate(self, token: str | None, headers: Mapping[str, str]) -> Caller: ...


class OpenAccess:
    """No authentication configured: every HTTP caller may call every tool."""

    CALLER = Caller(account="anonymous", scopes=frozenset({ANY_SCOPE}))

    async def authenticate(self, token: str | None, headers: Mapping[str, str]) -> Caller:
        return self.CALLER


def bearer_token(headers: Mapping[str, str]) -> str | None:
    value = headers.get("authorization")
    if value is None:
        return None
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("the Authorization header is not `Bearer <token>`", "invalid_request")
    return token.strip()


class AuthGuard:
    """ASGI middleware: authenticate every request to the guarded paths."""

    def __init__(self, app: Any, authenticator: Authenticator, realm: str = "mcpgen") -> None:
        self.app = app
        self.authenticator = authenticator
        self.realm = realm

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(GUARDED):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            caller = await self.authenticator.authenticate(bearer_token(headers), headers)
        except AuthError as exc:
            await self.refuse(exc, scope, receive, send)
            return
        scope[CALLER_KEY] = caller
        await self.app(scope, receive, send)

    def challenge(self, exc: AuthError | None) -> str:
        """The `WWW-Authenticate` value of a 401 (RFC 6750)."""
        parts = [f'Bearer realm="{self.realm}"']
        if exc is not None and exc.error != "missing":
            parts.append(f'error="{exc.error}"')
            parts.append('error_description="' + exc.message.replace('"', "'") + '"')
        return ", ".join(parts)

    async def refuse(self, exc: AuthError, scope: Any, receive: Any, send: Any) -> None:
        response = JSONResponse(
            {"error": exc.message, "code": "UNAUTHENTICATED"},
            status_code=401,
            headers={"WWW-Authenticate": self.challenge(exc)},
        )
        await response(scope, receive, send)


#: The server flags of authentication (click options), added to `runtime.cli.server_options`.
OPTIONS: list[Callable[..., Any]] = []


def from_flags(flags: Mapping[str, Any]) -> Authenticator:
    """The authenticator the server flags ask for; open access when they ask for none."""
    return OpenAccess()
