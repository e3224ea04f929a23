"""Request hygiene of the HTTP server: a bound on request bodies, and the gateway's lifecycle.

`BodyLimit` answers 413 before the app reads a body larger than `--max-body`: at once when
`Content-Length` says so, and after at most the limit when a chunked body runs past it, so no
request makes the server hold more than the limit. `Lifecycle` closes the gateway's backend
channels at the ASGI lifespan shutdown, which uvicorn sends only once in-flight requests have
finished (or the grace period ran out): the same path for one process and for each worker.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson

DEFAULT_MAX_BODY = 1024 * 1024
MCP_PATH = "/mcp"
INVALID_REQUEST = -32600  # JSON-RPC's code for a request the server will not take

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


class BodyLimit:
    """ASGI middleware: request bodies of at most `max_body` bytes; 413 for larger ones.

    MCP clients get a JSON-RPC error without an id (the request was never parsed, as the SDK
    answers what it cannot read); REST clients get `{"error", "code": "PAYLOAD_TOO_LARGE"}`.
    A body declared by `Content-Length` passes through untouched (the HTTP parser stops it at
    the declared length); a chunked one is read up to the limit first, then replayed.
    """

    def __init__(self, app: App, max_body: int = DEFAULT_MAX_BODY) -> None:
        if max_body < 1:
            raise ValueError("max_body must be a positive number of bytes")
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length, chunked = None, False
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = value
            elif name == b"transfer-encoding":
                chunked = True
        if length is not None:
            if not length.isdigit() or int(length) > self.max_body:
                await self._refuse(scope, send)
                return
        elif chunked:
            replay = await self._read_within_limit(receive)
            if replay is None:
                await self._refuse(scope, send)
                return
            receive = replay
        await self.app(scope, receive, send)

    async def _read_within_limit(self, receive: Receive) -> Receive | None:
        """The body's messages read ahead (None once they exceed the limit), then `receive`."""
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break  # a disconnect: the app sees it where it would have
            size += len(message.get("body", b""))
            if size > self.max_body:
                return None
            if not message.get("more_body", False):
                break
        messages.reverse()

        async def replay() -> Message:
            return messages.pop() if messages else await receive()

        return replay

    async def _refuse(self, scope: Scope, send: Send) -> None:
        text = f"the request body exceeds the limit of {self.max_body:,} bytes"
        path = scope["path"]
        if path == MCP_PATH or path == MCP_PATH + "/":
            body = {
                "jsonrpc": "2.0",
                "id": None,
                "error": {"code": INVALID_REQUEST, "message": text},
            }
        else:
            body = {"error": text, "code": "PAYLOAD_TOO_LARGE"}
        content = orjson.dumps(body)
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(content)).encode()),
            (b"connection", b"close"),  # the unread rest of the body ends with the connection
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": content})


class Lifecycle:
    """ASGI middleware: closes the gateway after the app's own lifespan shutdown (the MCP SDK's
    session manager), so backend channels outlive every call that uses them."""

    def __init__(
        self,
        app: App,
        close: Callable[[], Awaitable[None]],
        start: Callable[[], None] | None = None,
    ) -> None:
        self.app = app
        self.close = close
        self.start = start  # called in the serving loop once the app has started

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def on_send(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete" and self.start is not None:
                self.start()
            if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                await self.close()
            await send(message)

        await self.app(scope, receive, on_send)
