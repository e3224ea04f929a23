"""The policy every call passes, whatever the transport: who may see and call which tool, and
how often.

- **Callers**: `Caller` is who is calling — the account and scopes an authenticator found
  (HTTP), or the local user (stdio, trusted by default).
- **Scopes**: a tool's required scopes come from the bundle's route (registry metadata, or
  `[tool.mcpgen.scopes]` at build time), replaced by `--scope TOOL=a,b` at run time. Any one of
  them grants the tool (as go-micro's gateway has it); the scope `*` grants every tool; a tool
  with no scopes needs only an authenticated caller.
- **Rate limits**: token buckets per tool (`--rate-limit`) and per caller
  (`--rate-limit-per-caller`), in this process or shared in Redis (`runtime.ratelimit`); a
  refused call says when to retry.
- **Concurrency**: at most `--max-concurrency` calls in flight; more are refused at once, so a
  slow backend cannot pile up unbounded work.

A refusal is a `Denied`, which each transport words in its own way (MCP: an `isError` result;
REST: 403 / 429 / 503 with `Retry-After`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from mcpgen.errors import UserError
from mcpgen.runtime.ratelimit import Bucket, LocalRates, Rate, RateStore, StoreUnavailable

__all__ = ["ANY_SCOPE", "Caller", "Denied", "Policy", "PolicyOptions", "Rate", "parse_scopes"]

ANY_SCOPE = "*"


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling. `account` is what audit lines and metrics name; never a secret."""

    account: str
    scopes: frozenset[str] = frozenset()
    authenticated: bool = True

    @classmethod
    def local(cls) -> Caller:
        """The user at the other end of stdio: local, trusted with every tool."""
        return cls(account="local", scopes=frozenset({ANY_SCOPE}))

    @classmethod
    def anonymous(cls) -> Caller:
        return cls(account="anonymous", authenticated=False)


class Denied(Exception):
    """A call the policy refuses; nothing was sent to a backend."""

    #: reason → the gRPC-style code a REST error names it by
    CODES: ClassVar[dict[str, str]] = {
        "unauthenticated": "UNAUTHENTICATED",
        "scope": "PERMISSION_DENIED",
        "rate_limit": "RESOURCE_EXHAUSTED",
        "busy": "UNAVAILABLE",
        "rate_limit_store": "UNAVAILABLE",
        "too_large": "INVALID_ARGUMENT",
    }

    def __init__(
        self, reason: str, message: str, http_status: int, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.reason = reason  # one of CODES
        self.message = message
        self.http_status = http_status
        self.retry_after = retry_after

    @property
    def code(self) -> str:
        return self.CODES.get(self.reason, "DENIED")

    def text(self) -> str:
        return f"PERMISSION_DENIED: {self.message}" if self.reason == "scope" else self.message

    def retry_after_header(self) -> str | None:
        """Whole seconds, as `Retry-After` takes them (at least 1)."""
        return None if self.retry_after is None else str(max(1, math.ceil(self.retry_after)))


@dataclass(slots=True)
class PolicyOptions:
    scopes: dict[str, tuple[str, ...]] = field(default_factory=dict)  # --scope TOOL=a,b
    rate_limit: Rate | None = None  # per tool
    rate_limit_per_caller: Rate | None = None
    max_concurrency: int | None = None
    max_callers: int = 100_000  # per-caller buckets kept; the least recently used go first


class Policy:
    """Scopes, rate limits and the concurrency cap of one gateway."""

    def __init__(
        self,
        declared: Mapping[str, Sequence[str]],
        options: PolicyOptions,
        clock: Callable[[], float] = time.monotonic,
        known: Collection[str] | None = None,
        rates: RateStore | None = None,
    ) -> None:
        """`declared`: the scopes each served tool's route declares (`Bundle.declared_scopes`);
        `known`: every tool `--scope` may name (default: those served); `rates`: where the
        buckets live (default: in this process, on `clock`)."""
        unknown = sorted(set(options.scopes) - set(declared if known is None else known))
        if unknown:
            raise UserError(
                f"--scope names unknown tools: {', '.join(unknown)}",
                hint="use the tool names `mcpgen tools` lists",
            )
        self.options = options
        self.required: dict[str, frozenset[str]] = {}
        self.update(declared)
        self.rates = rates or LocalRates(clock, options.max_callers)
        self.in_flight = 0

    def update(self, declared: Mapping[str, Sequence[str]]) -> None:
        """The tools of a reloaded bundle: their scopes replace the old ones; rate buckets and
        the concurrency count carry on (a reload does not reset anyone's limits)."""
        options = self.options
        self.required = {
            tool: frozenset(options.scopes.get(tool, scopes)) for tool, scopes in declared.items()
        }

    # ---- who may call what --------------------------------------------------------------------

    def may_call(self, tool: str, caller: Caller) -> bool:
        if not caller.authenticated:
            return False
        required = self.required.get(tool, frozenset())
        return not required or ANY_SCOPE in caller.scopes or not required.isdisjoint(caller.scopes)

    def authorize(self, tool: str, caller: Caller) -> None:
        if not caller.authenticated:
            raise Denied("unauthenticated", "authentication required", 401)
        if not self.may_call(tool, caller):
            needed = " or ".join(f"`{s}`" for s in sorted(self.required[tool]))
            raise Denied(
                "scope",
                f"tool {tool} needs the scope {needed}; account {caller.account} does not have it",
                403,
            )

    # ---- how often ----------------------------------------------------------------------------

    async def admit(self, tool: str, caller: Caller) -> None:
        """Take a token of the tool's and the caller's buckets (of both or neither), or refuse
        with when to retry."""
        buckets, names = [], []
        if self.options.rate_limit is not None:
            buckets.append(Bucket("tool:" + tool, self.options.rate_limit))
            names.append("tool " + tool)
        if self.options.rate_limit_per_caller is not None:
            buckets.append(Bucket("caller:" + caller.account, self.options.rate_limit_per_caller))
            names.append(f"account {caller.account}")
        if not buckets:
            return
        try:
            waits = await self.rates.take(buckets)
        except StoreUnavailable as exc:
            raise Denied("rate_limit_store", str(exc), 503, retry_after=1.0) from None
        if any(waits):
            wait, who = max(zip(waits, names, strict=True))
            raise Denied(
                "rate_limit",
                f"RESOURCE_EXHAUSTED: rate limit of {who} reached; retry in {wait:.2f} s",
                429,
                retry_after=wait,
            )

    def enter(self) -> None:
        """Count a call in; refuse it when `max_concurrency` calls are already in flight."""
        limit = self.options.max_concurrency
        if limit is not None and self.in_flight >= limit:
            raise Denied(
                "busy",
                f"UNAVAILABLE: the gateway is at its limit of {limit} calls in flight; retry soon",
                503,
                retry_after=1.0,
            )
        self.in_flight += 1

    def leave(self) -> None:
        self.in_flight -= 1


def parse_scopes(entries: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """`--scope TOOL=a,b` entries; `TOOL=` (nothing after =) makes a tool need no scope."""
    scopes: dict[str, tuple[str, ...]] = {}
    for entry in entries:
        tool, sep, raw = entry.partition("=")
        if not sep or not tool.strip():
            raise UserError(f"--scope {entry!r} is not TOOL=SCOPE[,SCOPE]")
        scopes[tool.strip()] = tuple(sorted({s.strip() for s in raw.split(",") if s.strip()}))
    return scopes
