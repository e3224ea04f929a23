"""The fault matrix: every fault, against gRPC and mucp backends, over stdio and HTTP.

Each cell runs the generated server.py as a real process (stdio under the SDK client, or HTTP
with the SDK client over Streamable HTTP), with breakers on (`--breaker-cooldown 60`: longer
than any wait here, so a recovery cannot come from the cooldown running out), injects the
fault into real backends (`fixtures/library_backend.py`, `fixtures/mucp_node.py`, a real
redis-server), calls through it, ends it, and holds:

- every call ends, long before it would count as hung (`HANG`, five deadlines), with a result
  or a well-formed `isError` result whose text starts with a gRPC code the fault explains;
- calls succeed again once the fault is over, waited for as an event (no stopwatch: the
  figures belong to `benchmarks/recovery.py`);
- over HTTP, nothing leaks in the server: its open file descriptors and threads after a run of
  faults are what they were after the first.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from mcp import Client, StdioServerParameters

from fixtures.library_backend import LibraryBackend
from fixtures.mucp_node import MucpNode
from tests.conftest import HttpGateway, free_port
from tests.pki import make_pki
from tests.test_faults import micro_bundle

pytestmark = pytest.mark.anyio
TIMEOUT = 1.0  # the servers' --timeout
HANG = 5 * TIMEOUT
FAULTS = ["restart", "slow", "silent", "tls", "half-dead", "redis"]


@pytest.fixture
def anyio_backend():
    return "asyncio"


@dataclass(frozen=True, slots=True)
class Outcome:
    ok: bool
    text: str
    elapsed: float

    @property
    def code(self) -> str:
        return "OK" if self.ok else self.text.split(":", 1)[0]


Call = Callable[[str, dict[str, Any]], Awaitable[Outcome]]


@dataclass
class Backends:
    """The backends of one cell: their kind, the tools to call, how to break and mend them."""

    kind: str  # "grpc" or "mucp"
    bundle: Path
    args: list[str]  # server flags that point at the main node alone
    pair_args: list[str]  # and at the main node and a second one (the half-dead fault)
    ok: tuple[str, dict[str, Any]]
    slow: tuple[str, dict[str, Any]]
    stop: Callable[[], None]
    start: Callable[[], None]  # on the same port
    start_tls: Callable[[], None]  # a TLS-only server on the same port
    port: int
    second: Callable[[], None] | None = None  # kills the second node
    restart_second: Callable[[], None] | None = None
    second_calls: Callable[[], int] = lambda: 0
    cleanup: list[Callable[[], None]] = field(default_factory=list)


def grpc_backends(library_bundle: Path, pki: dict[str, Path]) -> Backends:
    port, other = free_port(), free_port()
    live = {"main": LibraryBackend(library_bundle).start(port)}
    spare = {"node": LibraryBackend(library_bundle).start(other)}
    credentials = grpc.ssl_server_credentials(
        [(pki["server-key"].read_bytes(), pki["server"].read_bytes())]
    )

    def start() -> None:
        live["main"] = LibraryBackend(library_bundle).start(port)

    def start_tls() -> None:
        live["main"] = LibraryBackend(library_bundle).start(port, credentials)

    def restart_second() -> None:
        spare["node"] = LibraryBackend(library_bundle).start(other)

    backends = Backends(
        kind="grpc",
        bundle=library_bundle,
        args=["--backend", f"127.0.0.1:{port}"],
        # gRPC balances round robin over both addresses of one target
        pair_args=["--backend", f"ipv4:127.0.0.1:{port},127.0.0.1:{other}"],
        ok=("Library_ListBooks", {"parent": "shelves/1"}),
        slow=("Library_GetBook", {"name": "shelves/1/books/slow"}),  # sleeps 5 s
        stop=lambda: live["main"].stop(),
        start=start,
        start_tls=start_tls,
        port=port,
        second=lambda: spare["node"].stop(),
        restart_second=restart_second,
        second_calls=lambda: len(spare["node"].calls("ListBooks")),
    )
    backends.cleanup += [lambda: live["main"].stop(), lambda: spare["node"].stop()]
    return backends


def mucp_backends(tmp_path: Path, pki: dict[str, Path]) -> Backends:
    import ssl

    port = free_port()
    live = {"main": MucpNode("main", port=port).start()}
    spare = {"node": MucpNode("spare").start()}
    other = spare["node"].port
    bundle = micro_bundle(
        tmp_path, {"orders": [live["main"].address, spare["node"].address],
                   "users": [live["main"].address]},
    )  # fmt: skip
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(pki["server"], pki["server-key"])

    def start() -> None:
        live["main"] = MucpNode("main", port=port).start()

    def start_tls() -> None:
        live["main"] = MucpNode("main", port=port, tls=tls).start()

    def restart_second() -> None:
        spare["node"] = MucpNode("spare", port=other).start()

    backends = Backends(
        kind="mucp",
        bundle=bundle,
        args=["--backend", f"orders=127.0.0.1:{port}"],  # in place of the snapshot's two nodes
        pair_args=[],
        ok=("Orders_Get", {"order_id": "o-1"}),
        slow=("Users_Get", {"id": "slow"}),  # sleeps past the Timeout header
        stop=lambda: live["main"].stop(),
        start=start,
        start_tls=start_tls,
        port=port,
        second=lambda: spare["node"].stop(),
        restart_second=restart_second,
        second_calls=lambda: len(spare["node"].received),
    )
    backends.cleanup += [lambda: live["main"].stop(), lambda: spare["node"].stop()]
    return backends


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(params=["grpc", "mucp"])
def backends(request, library_bundle, tmp_path, pki) -> Iterator[Backends]:
    made = (
        grpc_backends(library_bundle, pki)
        if request.param == "grpc"
        else mucp_backends(tmp_path, pki)
    )
    yield made
    for cleanup in made.cleanup:
        cleanup()


@contextlib.asynccontextmanager
async def serving(
    transport: str, backends: Backends, *flags: str, pair: bool = False
) -> AsyncIterator[tuple[Call, HttpGateway | None]]:
    """The bundle's server over `transport` (pointed at both nodes when `pair`), and a
    function that calls a tool through it."""
    args = [*(backends.pair_args if pair else backends.args), "--timeout", str(TIMEOUT),
            "--breaker-cooldown", "60", *flags]  # fmt: skip
    server = None
    if transport == "http":
        server = HttpGateway(backends.bundle, *args, "--keep-alive-timeout", "60")
        client = Client(server.url, mode="2026-07-28")
    else:
        params = StdioServerParameters(
            command=sys.executable, args=[str(backends.bundle / "server.py"), *args]
        )
        client = Client(params, mode="legacy")
    try:
        async with client:

            async def call(tool: str, arguments: dict[str, Any]) -> Outcome:
                started = time.monotonic()
                result = await client.call_tool(tool, arguments)
                elapsed = time.monotonic() - started
                return Outcome(not result.is_error, result.content[0].text, elapsed)

            yield call, server
    finally:
        if server is not None:
            log = server.stop()
            assert "Traceback" not in log, log


async def until_ok(call: Call, tool: tuple[str, dict[str, Any]]) -> list[Outcome]:
    """Calls until one succeeds (30 s at most: half the cooldown); all of them."""
    outcomes: list[Outcome] = []
    deadline = time.monotonic() + 30
    while not outcomes or not outcomes[-1].ok:
        assert time.monotonic() < deadline, f"no recovery: {outcomes[-3:]}"
        outcomes.append(await call(*tool))
    return outcomes


def well_formed(outcomes: list[Outcome], codes: set[str]) -> None:
    for outcome in outcomes:
        assert outcome.elapsed < HANG, outcome
        assert outcome.code in {"OK", *codes}, outcome


@contextlib.contextmanager
def silent_listener(port: int) -> Iterator[None]:
    """A process that accepts connections on `port` and never says a word (a hang)."""
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(64)
        yield


async def inject(fault: str, backends: Backends, call: Call, redis: Any) -> list[Outcome]:
    """One fault from start to end; every call made meanwhile and until calls succeed again."""
    ok, slow = backends.ok, backends.slow
    outcomes = await until_ok(call, ok)
    if fault == "restart":
        backends.stop()
        during = [await call(*ok) for _ in range(8)]
        backends.start()
        well_formed(during, {"UNAVAILABLE", "DEADLINE_EXCEEDED"})
        assert not any(o.ok for o in during)
    elif fault == "slow":
        during = [await call(*slow) for _ in range(7)]  # past the breaker's 5 failures
        well_formed(during, {"DEADLINE_EXCEEDED", "UNAVAILABLE"})
        assert [o.code for o in during[:5]] == ["DEADLINE_EXCEEDED"] * 5
    elif fault == "silent":
        backends.stop()
        with silent_listener(backends.port):
            during = [await call(*ok) for _ in range(7)]
        backends.start()
        well_formed(during, {"DEADLINE_EXCEEDED", "UNAVAILABLE"})
        assert not any(o.ok for o in during)
    elif fault == "tls":
        backends.stop()
        backends.start_tls()  # the gateway speaks plaintext: every handshake is refused
        during = [await call(*ok) for _ in range(7)]
        backends.stop()
        backends.start()
        well_formed(during, {"UNAVAILABLE", "DEADLINE_EXCEEDED"})
        assert not any(o.ok for o in during)
    elif fault == "half-dead":
        assert backends.second is not None and backends.restart_second is not None
        backends.second()
        during = [await call(*ok) for _ in range(20)]
        well_formed(during, {"UNAVAILABLE"})
        assert all(o.ok for o in during[-10:]), during  # the live node takes every call
        backends.restart_second()
        before = backends.second_calls()
        deadline = time.monotonic() + 30
        while backends.second_calls() == before:  # the returned node gets calls again
            assert time.monotonic() < deadline, "the restarted node got no calls"
            during.append(await call(*ok))
        well_formed(during, {"UNAVAILABLE"})
    else:  # redis: the shared limits' store dies and comes back
        redis.stop()
        during = [await call(*ok) for _ in range(5)]
        assert all(o.ok for o in during), during  # local limits meanwhile
        redis.start()
        deadline = time.monotonic() + 30
        while not redis.command("--scan", "--pattern", "mcpgen:*"):  # shared again
            assert time.monotonic() < deadline, "the store was not used again"
            during.append(await call(*ok))
    after = await until_ok(call, ok)
    well_formed(after, {"UNAVAILABLE", "DEADLINE_EXCEEDED"})
    assert all(o.ok for o in [await call(*ok) for _ in range(3)])
    return [*outcomes, *during, *after]


@pytest.mark.parametrize("transport", ["http", "stdio"])
@pytest.mark.parametrize("fault", FAULTS)
async def test_fault(fault, transport, backends, request):
    flags: list[str] = []
    redis = None
    if fault == "redis":
        redis = request.getfixturevalue("redis_server")
        # a burst of 1,000, refilled once in 100 s: its key lives 100 s, for the scan to see
        flags = ["--rate-limit", "0.01:1000", "--rate-limit-store", redis.url]
    async with serving(transport, backends, *flags, pair=fault == "half-dead") as (call, _):
        await inject(fault, backends, call, redis)


def _resources(pid: int) -> tuple[int, int]:
    """Open file descriptors and threads of a process."""
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    threads = len(os.listdir(f"/proc/{pid}/task"))
    return fds, threads


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc (Linux)")
async def test_nothing_leaks_over_a_long_run_of_faults(backends):
    """The faults of the one node, three rounds, one HTTP server: what it holds after the
    first round (channels, pools and threads made on first use) is what it holds after the
    last."""
    async with serving("http", backends) as (call, server):
        assert server is not None
        counts = []
        for _ in range(3):
            for fault in ("restart", "slow", "silent", "tls"):
                await inject(fault, backends, call, None)
            counts.append(_resources(server.process.pid))
    (fds, threads), *later = counts
    for later_fds, later_threads in later:
        assert later_fds <= fds + 2, counts  # +2: a connection being closed at that moment
        assert later_threads <= threads, counts
