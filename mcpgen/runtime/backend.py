"""The one interface the gateway forwards through, whatever speaks to the service.

`GrpcBackends` (gRPC over HTTP/2) and `MucpBackends` (go-micro's mucp over HTTP) both take a
`Call` — the tool's `Method` from the bundle, its request (a protobuf message when the bundle
has the tool's types, else the checked arguments as JSON), deadline and metadata — and answer
with the tool's result as JSON, or raise `BackendError`. Wire formats (binary protobuf,
protojson), connection handling and circuit breakers are theirs; the gateway sees none of it.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from google.protobuf.message import Message

    from mcpgen.runtime.bundle import Method


@dataclass(frozen=True, slots=True)
class Call:
    """One forwarded tool call."""

    tool: str
    method: Method
    request: Message | dict[str, Any]
    timeout: float  # seconds
    metadata: Sequence[tuple[str, str]]  # lower-case names: trace context, forwarded headers


class Backend(Protocol):
    async def call(self, call: Call) -> dict[str, Any]:
        """The answer as the tool's structured result. Raises BackendError."""
        ...

    def stream(self, call: Call) -> AsyncGenerator[dict[str, Any], None]:
        """The messages of a server stream as they arrive; closing it cancels the call.
        Raises BackendError (a deadline included)."""
        ...

    def health(self) -> dict[str, str]:
        """The circuit state of every target it has called: closed, open or half-open."""
        ...

    async def close(self) -> None: ...
