"""Circuit breakers, one per backend target (a gRPC target, or a go-micro node's address).

A dead or hanging backend should cost its callers nothing but a quick error: after
`--breaker-failures` consecutive failures the circuit opens and calls to that target fail at
once with UNAVAILABLE, without waiting for a connection or a deadline. After
`--breaker-cooldown` seconds, or sooner when the target answers its liveness check, it is
half-open: one probe call goes through (the others still fail fast); its success closes the
circuit, its failure opens it again.

The liveness check is the backend's (`check`: gRPC's `grpc.health.v1` Check, a mucp request;
any answer within a second counts). While a circuit is open it runs in the background every
`CHECK_EVERY` seconds; while the target answers, a probe goes through as soon as the circuit
opened on a refused or unreachable target, and at most every `PROBE_EVERY` seconds when it
opened on deadlines (a slow backend: one caller in that time pays a deadline, the others fail
fast). A restarted, rescheduled or un-hung backend is therefore back within a check of its
return, a backend that stops being slow within a probe, and neither waits out the cooldown;
a target that answers nothing is left alone until it does, or until the cooldown ends.

Only failures of the backend itself count (UNAVAILABLE, DEADLINE_EXCEEDED, refused
connections, answers that are not mucp). An application error such as NOT_FOUND is an answer,
so it counts as a success.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType

import grpc

from mcpgen.errors import without_credentials
from mcpgen.runtime.status import BackendError

log = logging.getLogger(__name__)

#: The codes that say the backend, not the request, failed.
FAILURES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
CHECK_EVERY = 0.2  # seconds between liveness checks of an open circuit's target
PROBE_EVERY = 0.5  # seconds between probes of a target that answers checks but timed out


class CircuitOpen(BackendError):
    """A call refused without trying, because its target's circuit is open."""

    def __init__(self, message: str, retry_in: float, lines: list[str] | None = None) -> None:
        super().__init__(grpc.StatusCode.UNAVAILABLE, message, lines)
        self.retry_in = retry_in


class Breaker:
    """The circuit of one target: closed, open (until `reopens`), or half-open with a probe."""

    __slots__ = ("_watch", "answering", "check", "clock", "cooldown", "failures", "name",
                 "next_probe", "probing", "reopens", "threshold")  # fmt: skip

    def __init__(
        self, target: str, threshold: int, cooldown: float, clock: Callable[[], float]
    ) -> None:
        self.name = without_credentials(target)  # no credentials in messages or logs
        self.threshold = threshold  # 0: never opens
        self.cooldown = cooldown
        self.clock = clock
        self.failures = 0  # consecutive
        self.reopens: float | None = None  # when an open circuit lets a probe through
        self.probing = False
        #: the backend's liveness check of this target (True: it answered), set by the backend
        self.check: Callable[[], Awaitable[bool]] | None = None
        self.answering = False  # the last check of an open circuit's target answered
        self.next_probe = 0.0  # while answering: no probe before this (clock seconds)
        self._watch: asyncio.Task[None] | None = None

    @property
    def state(self) -> str:
        if self.reopens is None:
            return "closed"
        return "half-open" if self.probing else "open"

    def admit(self) -> bool:
        """Let a call through, or raise CircuitOpen. True when the call is the probe."""
        if self.reopens is None:
            return False
        wait = self.reopens - self.clock()
        head = f"circuit open for {self.name} after {self.failures} consecutive failures"
        if self.probing:
            raise CircuitOpen(f"{head}; a probe call is testing it now", max(wait, 0.0))
        if wait > 0 and not (self.answering and self.clock() >= self.next_probe):
            raise CircuitOpen(f"{head}; retrying in {wait:.1f} s", wait)
        self.probing = True
        why = "the cooldown is over" if wait <= 0 else "the target answers"
        log.warning("circuit of %s half-open (%s): one probe call goes through", self.name, why)
        return True

    def _start_watching(self) -> None:
        self.stop_watching()
        if self.check is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no serving loop (a test's clock): no background checks
            return
        self._watch = loop.create_task(self._watching(self.check))

    async def _watching(self, check: Callable[[], Awaitable[bool]]) -> None:
        """Check the target while the circuit is open."""
        while self.reopens is not None:
            try:
                self.answering = await check()
            except Exception:  # a closed channel, say: no news of the target
                self.answering = False
            await asyncio.sleep(CHECK_EVERY)

    def stop_watching(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None

    def settle(self, failed: bool | None, probe: bool, code: str = "") -> None:
        """The verdict of an admitted call; None when it ended without one (cancelled)."""
        if failed is None:
            if probe:
                self.probing = False  # the next call probes
            return
        if not failed:
            self.failures = 0
            if self.reopens is not None:
                self.reopens, self.probing = None, False
                self.stop_watching()
                log.warning("circuit of %s closed: the backend answers again", self.name)
            return
        self.failures += 1
        if (probe and self.probing) or (
            self.reopens is None and self.threshold and self.failures >= self.threshold
        ):
            self.reopens, self.probing = self.clock() + self.cooldown, False
            # refused or unreachable: probe once it answers; timed out (slow?): not at once
            slow = code == grpc.StatusCode.DEADLINE_EXCEEDED.name
            self.next_probe = self.clock() + (PROBE_EVERY if slow else 0.0)
            self.answering = False
            self._start_watching()
            log.warning(
                "circuit of %s open after %d consecutive failures (last %s); calls fail fast "
                "for %g s",
                self.name, self.failures, code or "a refused connection", self.cooldown,
            )  # fmt: skip


class Guard:
    """One admitted call (a context manager): its outcome becomes the breaker's verdict."""

    __slots__ = ("breaker", "probe", "settled")

    def __init__(self, breaker: Breaker) -> None:
        self.breaker = breaker
        self.probe = breaker.admit()
        self.settled = False

    def __enter__(self) -> Guard:
        return self

    def succeeded(self) -> None:
        """The backend answered (a stream's first message), whatever happens next."""
        if not self.settled:
            self.settled = True
            self.breaker.settle(False, self.probe)

    def failed(self, code: str = "") -> None:
        if not self.settled:
            self.settled = True
            self.breaker.settle(True, self.probe, code)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self.settled:
            return
        if error is None:
            self.succeeded()
            return
        if isinstance(error, BackendError):
            code = error.code
        elif isinstance(error, grpc.aio.AioRpcError):
            code = error.code()
        else:  # cancelled, or a failure of the gateway itself: no verdict on the backend
            self.settled = True
            self.breaker.settle(None, self.probe)
            return
        if code in FAILURES:
            self.failed(code.name)
        else:
            self.succeeded()


class Breakers:
    """The breakers of one gateway, by target, made on first use."""

    def __init__(
        self, failures: int = 5, cooldown: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.failures = failures  # 0 disables them
        self.cooldown = cooldown
        self.clock = clock  # seconds; tests move it by hand
        self._breakers: dict[str, Breaker] = {}

    def of(self, target: str) -> Breaker:
        breaker = self._breakers.get(target)
        if breaker is None:
            breaker = Breaker(target, self.failures, self.cooldown, self.clock)
            self._breakers[target] = breaker
        return breaker

    def guard(self, target: str) -> Guard:
        """Admit one call to `target` (raises CircuitOpen when its circuit is open)."""
        return Guard(self.of(target))

    def states(self, targets: Iterable[str]) -> dict[str, str]:
        return {target: self.of(target).state for target in targets}

    def close(self) -> None:
        """Stop every background check (the gateway is closing)."""
        for breaker in self._breakers.values():
            breaker.stop_watching()
