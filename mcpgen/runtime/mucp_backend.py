"""Forwarding to go-micro services over mucp, as go-micro's HTTP transport speaks it.

A call is `POST /` to one node of the service with the `Micro-*` headers, a `Timeout` (the
remaining deadline in nanoseconds, which the service enforces on its side) and the call's
metadata as plain headers (`Mcp-Trace-Id`, `Mcp-Tool-Name`, `traceparent`, forwarded headers).
The answer is always HTTP 200: the JSON response as the body, or an empty body and a
`Micro-Error` header holding go-micro's error JSON (`{"id", "code", "detail", "status"}`) or
plain text.

Where a call goes: `--backend SERVICE=HOST:PORT` (the registry name, as for gRPC services)
replaces the snapshot's nodes; otherwise the nodes the snapshot lists, round robin; a service
the snapshot lists no nodes for takes the default `--backend HOST:PORT`. A node that refuses the
connection (nothing was sent), or whose circuit breaker is open, is skipped for the next one;
any other failure ends the call, since a request that reached a service may have had effects.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
import uuid
from collections.abc import AsyncGenerator, Sequence
from functools import partial
from typing import Any

import grpc
import httpx
from google.protobuf import json_format
from google.protobuf.message import Message

from mcpgen.contract import GoMicroRoute
from mcpgen.runtime.arguments import response_json
from mcpgen.runtime.backend import Call
from mcpgen.runtime.breaker import Breakers, CircuitOpen
from mcpgen.runtime.grpc_backend import BackendConfig, NoBackend
from mcpgen.runtime.status import BackendError

TOOL_HEADER = "mcp-tool-name"  # go-micro's gateway tells services which tool called them

#: go-micro error codes (HTTP statuses) → the gRPC codes the gateway reports failures in.
MICRO_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    405: grpc.StatusCode.UNIMPLEMENTED,
    408: grpc.StatusCode.DEADLINE_EXCEEDED,
    409: grpc.StatusCode.ALREADY_EXISTS,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    499: grpc.StatusCode.CANCELLED,
    500: grpc.StatusCode.INTERNAL,
    501: grpc.StatusCode.UNIMPLEMENTED,
    502: grpc.StatusCode.UNAVAILABLE,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}


def micro_error(where: str, header: str) -> BackendError:
    """A `Micro-Error` header as a BackendError whose text keeps go-micro's code and detail."""
    try:
        document = json.loads(header)
    except ValueError:
        document = None
    if not isinstance(document, dict):  # plain text, as errors.New in a handler gives
        return BackendError(grpc.StatusCode.UNKNOWN, header, [f"go-micro error from {where}"])
    raw_code = document.get("code")
    code = raw_code if isinstance(raw_code, int) and not isinstance(raw_code, bool) else 0
    detail = str(document.get("detail") or "")
    status = str(document.get("status") or "")
    origin = f" (id {document['id']})" if document.get("id") else ""
    line = " ".join(p for p in ("go-micro error", str(code) if code else "", status) if p)
    return BackendError(
        MICRO_CODES.get(code, grpc.StatusCode.UNKNOWN),
        detail or status or header,
        [f"{line} from {where}{origin}"],
        [{"@type": "go-micro/errors.Error", **document}],
    )


def _header_name(name: str) -> str:
    """`mcp-trace-id` → `Mcp-Trace-Id`: the canonical form Go gives header names anyway."""
    return "-".join(part[:1].upper() + part[1:] for part in name.split("-"))


class MucpBackends:
    """The `Backend` of go-micro routes: one pooled HTTP client for every go-micro service, a
    round-robin turn per service, and a circuit breaker per node (none unless `breakers` are
    given: the server's flags give them).

    With the service's protos, the request goes as protojson and the answer is read back
    through its type; from a registry alone, the (already checked) arguments go as they are
    and the answer comes back as the service wrote it."""

    def __init__(
        self, config: BackendConfig | None = None, breakers: Breakers | None = None
    ) -> None:
        self.config = config or BackendConfig()
        self.breakers = breakers or Breakers(failures=0)
        self._scheme = "https" if (self.config.tls or self.config.ca) else "http"
        self._client: httpx.AsyncClient | None = None
        self._turns: dict[str, int] = {}
        self._called: set[str] = set()  # node addresses, for `health`

    def _tls(self) -> ssl.SSLContext | bool:
        if self._scheme == "http":
            return False
        context = ssl.create_default_context(cafile=self.config.ca)
        if self.config.cert:
            context.load_cert_chain(self.config.cert, self.config.key)
        return context

    def client(self) -> httpx.AsyncClient:
        """Created on first use, inside the serving event loop."""
        if self._client is None:
            self._client = httpx.AsyncClient(
                verify=self._tls(),
                trust_env=False,  # service addresses are internal: no proxy from the environment
                limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
            )
        return self._client

    def nodes(self, service: str, registered: Sequence[str]) -> list[str]:
        """The addresses to try for one call, starting with this call's round-robin turn."""
        override = self.config.override_for(service)
        if override is not None:
            return [override]
        if not registered:
            if self.config.default is None:
                raise NoBackend(
                    f"the snapshot lists no nodes for the go-micro service {service}; start the "
                    f"server with --backend {service}=HOST:PORT"
                )
            return [self.config.default]
        turn = self._turns.get(service, 0)
        self._turns[service] = turn + 1
        start = turn % len(registered)
        return [*registered[start:], *registered[:start]]

    def _url(self, address: str) -> str:
        return address if "://" in address else f"{self._scheme}://{address}/"

    async def call(self, call: Call) -> dict[str, Any]:
        route, request = call.method.route, call.request
        assert isinstance(route, GoMicroRoute)
        body = (
            json_format.MessageToDict(request, descriptor_pool=request.DESCRIPTOR.file.pool)
            if isinstance(request, Message)
            else request
        )
        try:
            answer = await self.send(
                route.service, route.endpoint, route.nodes, body, call.timeout,
                [*call.metadata, (TOOL_HEADER, call.tool)],
            )  # fmt: skip
        except NoBackend as error:
            raise BackendError(grpc.StatusCode.UNAVAILABLE, str(error)) from None
        output_class = call.method.output_class
        if output_class is None:
            return answer if isinstance(answer, dict) else {"value": answer}
        message = output_class()
        try:
            json_format.ParseDict(
                answer, message, ignore_unknown_fields=True,
                descriptor_pool=message.DESCRIPTOR.file.pool,
            )  # fmt: skip
        except (json_format.ParseError, ValueError, TypeError) as exc:
            raise BackendError(
                grpc.StatusCode.INTERNAL,
                f"{route.service} {route.endpoint} answered with JSON that is not a "
                f"{output_class.DESCRIPTOR.full_name}: {exc}",
            ) from None
        return response_json(message)

    async def stream(self, call: Call) -> AsyncGenerator[dict[str, Any], None]:
        """A go-micro endpoint answers once: that answer is the stream's one message."""
        yield await self.call(call)

    def health(self) -> dict[str, str]:
        return self.breakers.states(sorted(self._called))

    async def send(
        self,
        service: str,
        endpoint: str,
        registered: Sequence[str],
        body: Any,
        timeout: float,
        metadata: Sequence[tuple[str, str]],
    ) -> Any:
        """The JSON a go-micro endpoint answers with. Raises BackendError or NoBackend."""
        where = f"{service} {endpoint}"
        headers = {_header_name(name): value for name, value in metadata}
        headers |= {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "Micro-Service": service,
            "Micro-Endpoint": endpoint,
            "Micro-Method": endpoint,
            "Micro-Id": str(uuid.uuid4()),
        }
        content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        deadline = time.monotonic() + timeout
        refused: list[str] = []
        opened: list[CircuitOpen] = []
        for address in self.nodes(service, registered):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            if address not in self._called:
                self._called.add(address)
                self.breakers.of(address).check = partial(self._answers, service, address)
            try:
                guard = self.breakers.guard(address)
            except CircuitOpen as exc:
                opened.append(exc)
                continue
            headers["Timeout"] = str(int(remaining * 1e9))
            with guard:
                try:
                    async with asyncio.timeout(remaining):  # httpx's timeouts are per phase
                        response = await self.client().post(
                            self._url(address), content=content, headers=headers, timeout=remaining
                        )
                except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                    guard.failed()
                    refused.append(f"{address}: {exc or type(exc).__name__}")
                    continue  # nothing reached the service: the next node may take it
                except (httpx.TimeoutException, TimeoutError):
                    raise BackendError(
                        grpc.StatusCode.DEADLINE_EXCEEDED,
                        f"{where} did not answer within {timeout:g} s (node {address})",
                    ) from None
                except httpx.HTTPError as exc:
                    raise BackendError(
                        grpc.StatusCode.UNAVAILABLE,
                        f"{where} failed at node {address}: {exc or type(exc).__name__}",
                    ) from None
                return _answer(where, address, response)
        if opened and not refused:  # every node's circuit is open: the soonest to retry speaks
            soonest = min(opened, key=lambda exc: exc.retry_in)
            others = [exc.message for exc in opened if exc is not soonest]
            raise CircuitOpen(soonest.message, soonest.retry_in, others)
        refused += [exc.message for exc in opened]
        if refused:
            raise BackendError(
                grpc.StatusCode.UNAVAILABLE,
                f"no node of {service} accepted the call: " + "; ".join(refused),
            )
        raise BackendError(
            grpc.StatusCode.DEADLINE_EXCEEDED, f"{where} did not answer within {timeout:g} s"
        )

    async def _answers(self, service: str, address: str) -> bool:
        """The liveness check of a node: go-micro's `Debug.Health` endpoint, which every
        go-micro server registers; any mucp answer within a second (an error too) counts."""
        headers = {"Micro-Service": service, "Micro-Endpoint": "Debug.Health",
                   "Micro-Method": "Debug.Health", "Content-Type": "application/json"}  # fmt: skip
        try:
            async with asyncio.timeout(1.0):
                await self.client().post(
                    self._url(address), content=b"{}", headers=headers, timeout=1.0
                )
        except (httpx.HTTPError, TimeoutError):
            return False
        return True

    async def close(self) -> None:
        self.breakers.close()
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def _answer(where: str, address: str, response: httpx.Response) -> Any:
    error = response.headers.get("micro-error")
    if error:
        raise micro_error(where, error)
    if response.status_code != 200:
        raise BackendError(
            grpc.StatusCode.UNAVAILABLE,
            f"node {address} of {where} answered HTTP {response.status_code}, not mucp: "
            f"{response.text[:200]}",
        )
    if not response.content.strip():
        return {}
    try:
        return response.json()
    except ValueError:
        raise BackendError(
            grpc.StatusCode.INTERNAL,
            f"{where} answered with a body that is not JSON: {response.text[:200]!r}",
        ) from None
