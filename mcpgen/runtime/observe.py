"""What every call leaves behind: audit lines, Prometheus metrics, OpenTelemetry spans.

Each is an `Observer` of the gateway (`gateway.Observer`): told when a call starts and given
its `CallRecord` when it ends, whatever the transport and whatever the outcome.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from mcpgen.runtime.gateway import Observer

#: The server flags of usage tracking (click options), added to `runtime.cli.server_options`.
OPTIONS: list[Callable[..., Any]] = []


def from_flags(flags: Mapping[str, Any]) -> list[Observer]:
    """The observers the server flags ask for."""
    return []
