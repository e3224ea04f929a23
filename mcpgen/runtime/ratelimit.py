"""Where the token buckets of `--rate-limit` and `--rate-limit-per-caller` live.

`LocalRates` (the default) keeps them in the process: each worker and each replica counts on
its own. `RedisRates` (`--rate-limit-store redis://HOST:PORT/DB`) keeps them in Redis, so N
workers or replicas together allow exactly the configured rate: one Lua script per call reads
and updates every bucket the call takes from, atomically, on Redis's clock (no skew between
replicas). A bucket is stored as GCRA's "theoretical arrival time", which is the same limit as
a token bucket of `burst` tokens refilled at `rate` per second, in one number per key.

Redis unreachable (refused, down, too slow to answer within `STORE_TIMEOUT`): the store says
so once in the log and in `mcpgen_rate_limit_store_up`, then, by `--rate-limit-store-fallback`,
either decides with local buckets (`local`, the default: each process enforces the full rate
on its own, so N processes allow up to N times it) or refuses calls with UNAVAILABLE
(`refuse`). It tries Redis again `RETRY_AFTER` seconds later, so the shared limits are back
within that of Redis's return. No call ever waits on Redis longer than `STORE_TIMEOUT`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from mcpgen.errors import UserError, without_credentials

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger(__name__)

STORE_TIMEOUT = 0.5  # seconds a call may wait on Redis: connecting, or one script's answer
RETRY_AFTER = 1.0  # seconds between tries of an unreachable store
Fallback = Literal["local", "refuse"]


@dataclass(frozen=True, slots=True)
class Rate:
    """`RPS[:BURST]`: tokens per second and bucket size (default: one second's worth)."""

    per_second: float
    burst: float

    @classmethod
    def parse(cls, text: str, option: str) -> Rate:
        rate, _, burst = text.partition(":")
        try:
            per_second = float(rate)
            size = float(burst) if burst else max(1.0, per_second)
        except ValueError:
            raise UserError(
                f"{option} {text!r} is not RPS[:BURST]", hint=f"e.g. {option} 10:20"
            ) from None
        if not (per_second > 0 and size >= 1 and math.isfinite(per_second + size)):
            raise UserError(f"{option} {text!r}: the rate must be > 0 and the burst at least 1")
        return cls(per_second, size)


@dataclass(frozen=True, slots=True)
class Bucket:
    """One bucket a call takes a token from: `tool:NAME` or `caller:ACCOUNT`, and its rate."""

    key: str
    rate: Rate


class StoreUnavailable(Exception):
    """The shared store cannot decide, and the fallback policy is to refuse."""


class RateStore(Protocol):
    async def take(self, buckets: Sequence[Bucket]) -> list[float]:
        """A token from every bucket, or from none: the seconds each bucket makes the call
        wait (all 0 when the tokens were taken). Raises StoreUnavailable."""
        ...

    async def close(self) -> None: ...


@dataclass(slots=True)
class TokenBucket:
    rate: Rate
    tokens: float = -1.0
    updated: float = 0.0

    def wait(self, now: float) -> float:
        """Refill to `now`; 0 when a token is there to take, else the seconds until one is."""
        if self.tokens < 0:
            self.tokens, self.updated = self.rate.burst, now
        self.tokens = min(
            self.rate.burst, self.tokens + (now - self.updated) * self.rate.per_second
        )
        self.updated = now
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate.per_second


class LocalRates:
    """Token buckets in this process. Caller buckets are kept for the `max_callers` most
    recently seen accounts (a forgotten one starts full again); tool buckets for every tool."""

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, max_callers: int = 100_000
    ) -> None:
        self.clock = clock  # seconds; tests move it by hand
        self.max_callers = max_callers
        self._tools: dict[str, TokenBucket] = {}
        self._callers: dict[str, TokenBucket] = {}

    async def take(self, buckets: Sequence[Bucket]) -> list[float]:
        return self.take_now(buckets)

    def take_now(self, buckets: Sequence[Bucket]) -> list[float]:
        now = self.clock()
        found = [self._bucket(b) for b in buckets]
        waits = [bucket.wait(now) for bucket in found]
        if not any(waits):
            for bucket in found:
                bucket.tokens -= 1
        return waits

    def _bucket(self, wanted: Bucket) -> TokenBucket:
        if wanted.key.startswith("tool:"):
            bucket = self._tools.get(wanted.key)
            if bucket is None:
                bucket = self._tools[wanted.key] = TokenBucket(wanted.rate)
            return bucket
        callers = self._callers
        bucket = callers.pop(wanted.key, None)  # re-inserted last: least recently used first
        if bucket is None:
            bucket = TokenBucket(wanted.rate)
            if len(callers) >= self.max_callers:
                del callers[next(iter(callers))]
        callers[wanted.key] = bucket
        return bucket

    async def close(self) -> None:
        pass


class StoreObserver(Protocol):
    """Sees the shared store come and go (metrics)."""

    def store_state(self, store: str, up: bool) -> None: ...

    def store_fallback(self, policy: str) -> None: ...


#: KEYS: the buckets' keys; ARGV: each bucket's emission interval (ms per token) and burst.
#: Returns each bucket's wait in ms as a string (Redis would truncate Lua numbers to integers).
_GCRA = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + tonumber(clock[2]) / 1000
local arrivals, waits, limited = {}, {}, false
for i, key in ipairs(KEYS) do
  local emission = tonumber(ARGV[2 * i - 1])
  local burst = tonumber(ARGV[2 * i])
  local arrival = tonumber(redis.call('GET', key) or now)
  if arrival < now then arrival = now end
  arrivals[i] = arrival + emission
  local wait = arrivals[i] - burst * emission - now
  if wait > 0 then limited = true else wait = 0 end
  waits[i] = string.format('%.3f', wait)
end
if not limited then
  for i, key in ipairs(KEYS) do
    redis.call('SET', key, string.format('%.3f', arrivals[i]),
               'PX', math.ceil(arrivals[i] - now) + 1)
  end
end
return waits
"""


class RedisRates:
    """Token buckets in Redis, shared by every process that names the same store and server."""

    def __init__(
        self,
        url: str,
        namespace: str,
        fallback: Fallback = "local",
        local: LocalRates | None = None,
        observer: StoreObserver | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = check_store_url(url)
        self.where = without_credentials(url)  # no password in logs or errors
        self.prefix = f"mcpgen:{namespace}:rate:"
        self.fallback = fallback
        self.local = local or LocalRates(clock)
        self.observer = observer
        self.clock = clock
        self._client: Redis | None = None
        self._script: Any = None
        self._retry_at: float | None = None  # while unreachable: when to try again
        if observer is not None:
            observer.store_state(self.where, True)  # until a call finds otherwise

    @property
    def up(self) -> bool:
        return self._retry_at is None

    def _redis(self) -> Any:
        """The client and its script, made on first use inside the serving loop."""
        if self._script is None:
            from redis.asyncio import Redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry

            self._client = Redis.from_url(
                self.url,
                socket_timeout=STORE_TIMEOUT,
                socket_connect_timeout=STORE_TIMEOUT,
                retry=Retry(NoBackoff(), 0),  # a failure falls back now, not after retries
                decode_responses=True,
            )
            self._script = self._client.register_script(_GCRA)
        return self._script

    async def take(self, buckets: Sequence[Bucket]) -> list[float]:
        if not buckets:
            return []
        if self._retry_at is not None and self.clock() < self._retry_at:
            return self._without_store(buckets)
        from redis.exceptions import RedisError

        keys = [self.prefix + b.key for b in buckets]
        args: list[str] = []
        for bucket in buckets:
            args += [repr(1000 / bucket.rate.per_second), repr(bucket.rate.burst)]
        try:
            waits = await self._redis()(keys=keys, args=args)
        except (RedisError, OSError, TimeoutError) as exc:
            self._went_down(exc)
            return self._without_store(buckets)
        if self._retry_at is not None:
            self._retry_at = None
            log.warning("rate-limit store %s reachable again: limits are shared", self.where)
            if self.observer is not None:
                self.observer.store_state(self.where, True)
        return [float(w) / 1000 for w in waits]

    def _went_down(self, exc: BaseException) -> None:
        first = self._retry_at is None
        self._retry_at = self.clock() + RETRY_AFTER
        if first:
            then = (
                "limits are local to each process until it is back"
                if self.fallback == "local"
                else "calls are refused until it is back"
            )
            log.warning(
                "rate-limit store %s unreachable (%s): %s",
                self.where, str(exc) or type(exc).__name__, then,
            )  # fmt: skip
            if self.observer is not None:
                self.observer.store_state(self.where, False)

    def _without_store(self, buckets: Sequence[Bucket]) -> list[float]:
        if self.observer is not None:
            self.observer.store_fallback(self.fallback)
        if self.fallback == "refuse":
            raise StoreUnavailable(
                f"UNAVAILABLE: the rate-limit store {self.where} is unreachable; retry soon"
            )
        return self.local.take_now(buckets)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client, self._script = None, None


def check_store_url(url: str) -> str:
    """A `--rate-limit-store` URL redis-py can connect to, or a UserError saying what is."""
    scheme = url.partition("://")[0]
    if scheme not in ("redis", "rediss", "unix") or not url.partition("://")[2]:
        raise UserError(
            f"--rate-limit-store {without_credentials(url)!r} is not a Redis URL",
            hint="e.g. redis://redis:6379/0, rediss://HOST:PORT/DB or unix:///run/redis.sock",
        )
    return url
