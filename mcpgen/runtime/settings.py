"""The server's settings: one typed object, built from the flags (or their MCPGEN_* variables)
and checked once, before anything starts.

`ServerSettings.from_flags` turns what click parsed into typed values (tool timeouts as a
mapping, rates as `Rate`, scopes as tuples, the backends as a `BackendConfig`, the selection
as a `Selection`), so that the rest of the runtime never looks a flag up by its name. The
defaults are the flags' defaults (`tests/test_cli.py` holds them equal).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mcpgen.errors import UserError
from mcpgen.runtime.grpc_backend import BackendConfig
from mcpgen.runtime.limits import DEFAULT_MAX_BODY
from mcpgen.runtime.policy import Rate, parse_scopes
from mcpgen.runtime.ratelimit import Fallback, check_store_url
from mcpgen.toolsets import Selection


def _pairs(option: str, values: tuple[str, ...], convert: Callable[[str], Any]) -> dict[str, Any]:
    out = {}
    for value in values:
        key, sep, raw = value.partition("=")
        if not sep or not key:
            raise UserError(f"{option} {value!r} is not NAME=VALUE")
        try:
            out[key] = convert(raw)
        except ValueError:
            raise UserError(f"{option} {value!r}: {raw!r} is not a valid value") from None
    return out


@dataclass(frozen=True, slots=True)
class ServerSettings:
    # ---- transport
    transport: str = "stdio"  # "stdio" or "http"
    host: str = "127.0.0.1"
    port: int = 3000
    stateless: bool = False
    json_response: bool = False
    allowed_origins: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    max_body: int = DEFAULT_MAX_BODY
    shutdown_grace: float = 30.0
    keep_alive_timeout: float = 5.0  # uvicorn's default
    workers: int = 1
    page_size: int = 100
    log_level: str = "warning"
    # ---- backends
    backend: BackendConfig = field(default_factory=BackendConfig)
    timeout: float = 30.0
    tool_timeouts: Mapping[str, float] = field(default_factory=dict)
    max_stream_messages: int = 1000
    forward_headers: tuple[str, ...] = ()  # lower-case
    breaker_failures: int = 5
    breaker_cooldown: float = 10.0
    # ---- which tools, and how they are offered
    selection: Selection = field(default_factory=Selection)
    watch: bool = False
    discovery: bool = False
    # ---- policy
    scopes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    rate_limit: Rate | None = None
    rate_limit_per_caller: Rate | None = None
    rate_limit_store: str = "local"  # or a Redis URL (`runtime.ratelimit.RedisRates`)
    rate_limit_store_fallback: Fallback = "local"
    max_concurrency: int | None = None
    max_argument_bytes: int = 1024 * 1024
    max_argument_depth: int = 64
    # ---- authentication (HTTP)
    tokens: str | None = None
    jwt_jwks: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    auth_hook: str | None = None
    resource_url: str | None = None
    authorization_servers: tuple[str, ...] = ()
    # ---- usage tracking
    audit_log: str | None = None
    metrics: bool = True
    otel: bool = False

    @classmethod
    def from_flags(cls, flags: Mapping[str, Any]) -> ServerSettings:
        """The settings of click's parsed flags (`runtime.cli.server_options`)."""
        raw = dict(flags)
        backend = BackendConfig.parse(
            tuple(raw.pop("backends")),
            tls=raw.pop("backend_tls"),
            ca=raw.pop("backend_ca"),
            cert=raw.pop("backend_cert"),
            key=raw.pop("backend_key"),
        )
        selection = Selection(
            toolsets=tuple(raw.pop("toolsets")),
            tools=tuple(raw.pop("tool_globs")),
            read_only=raw.pop("read_only"),
        )
        rate, per_caller = raw.pop("rate_limit"), raw.pop("rate_limit_per_caller")
        if raw.get("rate_limit_store", "local") != "local":
            check_store_url(raw["rate_limit_store"])
        values: dict[str, Any] = {
            "backend": backend,
            "selection": selection,
            "tool_timeouts": _pairs("--tool-timeout", tuple(raw.pop("tool_timeouts")), float),
            "scopes": parse_scopes(raw.pop("scopes")),
            "rate_limit": Rate.parse(rate, "--rate-limit") if rate else None,
            "rate_limit_per_caller": (
                Rate.parse(per_caller, "--rate-limit-per-caller") if per_caller else None
            ),
            "forward_headers": tuple(h.lower() for h in raw.pop("forward_headers")),
        }
        for name, value in raw.items():
            values[name] = tuple(value) if isinstance(value, list | tuple) else value
        settings = cls(**values)
        if settings.workers > 1 and settings.transport != "http":
            raise UserError("--workers serves HTTP; use it with --transport http")
        return settings

    def replace(self, **changes: Any) -> ServerSettings:
        return dataclasses.replace(self, **changes)
