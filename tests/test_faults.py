"""Faults: backends down, slow, silent, or restarted in the middle of load, and the circuit
breakers that keep them from costing callers more than a quick error.

Real parts: the gRPC Library server (`fixtures/library_backend.py`) on a socket, go-micro nodes
(`fixtures/mucp_node.py`), generated server.py subprocesses over HTTP and stdio, and in-process
gateways whose breakers run on a clock the tests move by hand (no sleeps to wait out a
cooldown). Timing is only ever bounded generously: a call must end, not end on the dot.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from mcp import Client, StdioServerParameters

from fixtures.library_backend import LibraryBackend
from fixtures.mucp_node import MucpNode
from mcpgen.build import build
from mcpgen.config import Config
from mcpgen.errors import Warnings
from mcpgen.runtime import breaker as breaker_module
from mcpgen.runtime.breaker import Breakers, CircuitOpen
from mcpgen.runtime.bundle import Bundle
from mcpgen.runtime.gateway import CallContext, Gateway, GatewayOptions
from mcpgen.runtime.grpc_backend import BackendConfig, GrpcBackends
from mcpgen.runtime.mucp_backend import MucpBackends
from mcpgen.runtime.status import BackendError
from tests.conftest import FIXTURES, HttpGateway, free_port

pytestmark = pytest.mark.anyio
UNAVAILABLE, DEADLINE = grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED
LIST = ("Library_ListBooks", {"parent": "shelves/1"})
SLOW = ("Library_GetBook", {"name": "shelves/1/books/slow"})  # the fixture sleeps 5 s


@pytest.fixture
def anyio_backend():
    return "asyncio"


class Clock:
    """A monotonic clock that moves only when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 30) -> Any:
    """What `check` returns once it stops raising BackendError, retried for up to `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await check()
        except BackendError:
            if time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.1)


def grpc_gateway(bundle: Path, target: str, breakers: Breakers, **options: Any) -> Gateway:
    backends = GrpcBackends(BackendConfig.parse([target]), breakers)
    return Gateway(Bundle(bundle), backends, GatewayOptions(**options))


def call(gateway: Gateway, tool: tuple[str, dict[str, Any]]) -> Awaitable[dict[str, Any]]:
    return gateway.call(tool[0], tool[1], CallContext("stdio"))


# ---- the breaker itself ----------------------------------------------------------------------


def fail(breakers: Breakers, target: str, code: grpc.StatusCode = UNAVAILABLE) -> None:
    with contextlib.suppress(BackendError), breakers.guard(target):
        raise BackendError(code, "down")


def test_consecutive_failures_open_the_circuit_and_calls_fail_fast():
    clock = Clock()
    breakers = Breakers(failures=3, cooldown=10, clock=clock)
    for _ in range(2):
        fail(breakers, "users:50051")
    with breakers.guard("users:50051"):
        pass  # a success: the count starts over
    for _ in range(3):
        assert breakers.of("users:50051").state == "closed"
        fail(breakers, "users:50051", DEADLINE)
    assert breakers.of("users:50051").state == "open"
    clock.now += 2.5
    with pytest.raises(CircuitOpen) as refused:
        breakers.guard("users:50051")
    assert refused.value.code == UNAVAILABLE
    assert refused.value.message == (
        "circuit open for users:50051 after 3 consecutive failures; retrying in 7.5 s"
    )
    breakers.guard("orders:50051")  # every target has its own circuit


def test_half_open_lets_one_probe_through_at_a_time():
    clock = Clock()
    breakers = Breakers(failures=1, cooldown=5, clock=clock)
    fail(breakers, "t")
    clock.now += 5
    probe = breakers.guard("t")
    assert probe.probe and breakers.of("t").state == "half-open"
    with pytest.raises(CircuitOpen, match="a probe call is testing it now"):
        breakers.guard("t")
    with contextlib.suppress(BackendError), probe:
        raise BackendError(UNAVAILABLE, "still down")
    assert breakers.of("t").state == "open"  # for another cooldown
    with pytest.raises(CircuitOpen, match=r"after 2 consecutive failures; retrying in 5\.0 s"):
        breakers.guard("t")
    clock.now += 5
    with breakers.guard("t"):
        pass
    assert breakers.of("t").state == "closed"
    with breakers.guard("t"), breakers.guard("t"):
        pass  # closed: any number of calls


def test_answers_and_cancellations_are_no_failures():
    breakers = Breakers(failures=1, cooldown=5, clock=Clock())
    for code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
        fail(breakers, "t", code)  # the backend answered
    with contextlib.suppress(asyncio.CancelledError), breakers.guard("t"):
        raise asyncio.CancelledError
    assert breakers.of("t").state == "closed"


def test_a_cancelled_probe_lets_the_next_call_probe():
    clock = Clock()
    breakers = Breakers(failures=1, cooldown=5, clock=clock)
    fail(breakers, "t")
    clock.now += 5
    with contextlib.suppress(asyncio.CancelledError), breakers.guard("t"):
        raise asyncio.CancelledError
    assert breakers.guard("t").probe


def test_zero_failures_disables_the_breaker_and_credentials_stay_out_of_messages():
    off = Breakers(failures=0, clock=Clock())
    for _ in range(100):
        fail(off, "t")
    assert off.of("t").state == "closed"
    breakers = Breakers(failures=1, clock=Clock())
    fail(breakers, "https://svc:s3cret@users.internal:8443")
    with pytest.raises(CircuitOpen) as refused:
        breakers.guard("https://svc:s3cret@users.internal:8443")
    assert "s3cret" not in refused.value.message
    assert "https://users.internal:8443" in refused.value.message


# ---- gRPC: down, slow, silent ----------------------------------------------------------------


async def test_backend_down_opens_the_circuit_and_a_probe_closes_it_again(library_bundle):
    clock = Clock()
    port = free_port()
    target = f"127.0.0.1:{port}"
    breakers = Breakers(failures=3, cooldown=10, clock=clock)
    gateway = grpc_gateway(library_bundle, target, breakers, timeout=5)
    backend = LibraryBackend(library_bundle)
    try:
        for _ in range(3):  # nothing listens: gRPC's own quick UNAVAILABLE
            with pytest.raises(BackendError) as down:
                await call(gateway, LIST)
            assert down.value.code == UNAVAILABLE and "circuit" not in down.value.message
        backend.start(port)
        clock.now += 4
        with pytest.raises(CircuitOpen) as refused:
            await call(gateway, LIST)
        assert refused.value.message == (
            f"circuit open for {target} after 3 consecutive failures; retrying in 6.0 s"
        )
        assert backend.calls() == []  # failing fast sent nothing

        async def probe() -> dict[str, Any]:
            clock.now += 10  # past the cooldown: the next call is the probe
            return await call(gateway, LIST)

        assert await eventually(probe) == {}  # the channel reconnects with its own backoff
        assert breakers.of(target).state == "closed"
        assert await call(gateway, LIST) == {}
    finally:
        backend.stop()
        await gateway.close()


async def test_slow_calls_open_the_circuit_and_only_one_probe_runs(library_bundle, library_backend):
    clock = Clock()
    breakers = Breakers(failures=3, cooldown=10, clock=clock)
    gateway = grpc_gateway(
        library_bundle, library_backend.target, breakers, tool_timeouts={"Library_GetBook": 0.5}
    )
    breaker = breakers.of(library_backend.target)
    try:
        slow = await asyncio.gather(
            *(call(gateway, SLOW) for _ in range(3)), return_exceptions=True
        )
        # ended by the deadline: after its 5 s sleep, the backend would have answered the book
        assert [e.code for e in slow] == [DEADLINE] * 3  # type: ignore[union-attr]
        assert breaker.state == "open"
        with pytest.raises(CircuitOpen):
            await call(gateway, LIST)  # every tool of the target fails fast
        clock.now += 10
        probe = asyncio.create_task(call(gateway, SLOW))
        while breaker.state != "half-open":
            await asyncio.sleep(0.01)
        with pytest.raises(CircuitOpen, match="a probe call is testing it now"):
            await call(gateway, LIST)
        with pytest.raises(BackendError) as failed:
            await probe
        assert failed.value.code == DEADLINE and breaker.state == "open"
        clock.now += 10
        assert await call(gateway, LIST) == {}
        assert breaker.state == "closed"
    finally:
        await gateway.close()


async def test_restarts_leave_no_tasks_behind(library_bundle):
    """Each restart opens the circuit (a liveness watch task starts) and the return closes it
    (the watch ends): after three rounds the loop holds the tasks it held after the first, and
    after close none of the gateway's."""
    port = free_port()
    target = f"127.0.0.1:{port}"
    breakers = Breakers(failures=3, cooldown=60)  # the real clock: only the watch can reopen
    gateway = grpc_gateway(library_bundle, target, breakers, timeout=5)
    backend = LibraryBackend(library_bundle)
    backend.start(port)
    before = set(asyncio.all_tasks())
    counts = []
    try:
        for _ in range(3):
            assert await call(gateway, LIST) == {}
            backend.stop()
            while breakers.of(target).state != "open":
                with contextlib.suppress(BackendError):
                    await call(gateway, LIST)
            backend.start(port)
            assert await eventually(lambda: call(gateway, LIST)) == {}  # the watch saw it back
            assert breakers.of(target).state == "closed"
            counts.append(len(asyncio.all_tasks() - before))
        assert counts[1] <= counts[0] and counts[2] <= counts[0], counts
    finally:
        backend.stop()
        await gateway.close()
    await asyncio.sleep(0)  # let cancelled tasks finish
    assert {t for t in asyncio.all_tasks() - before if not t.done()} == set()


@pytest.fixture
def silent() -> Iterator[str]:
    """An address that accepts connections and never says a word (a hung process)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)  # the kernel completes the handshakes; nothing reads or writes
        yield f"127.0.0.1:{listener.getsockname()[1]}"


async def test_a_silent_backend_ends_at_the_deadline(library_bundle, silent):
    gateway = grpc_gateway(library_bundle, silent, Breakers(), timeout=0.5)
    try:
        for tool in (LIST, ("Library_WatchBooks", {"parent": "shelves/1"})):
            with pytest.raises(BackendError) as error:
                async with asyncio.timeout(30):  # a hang fails here, not by a stopwatch
                    await call(gateway, tool)
            assert error.value.code == DEADLINE, error.value
    finally:
        await gateway.close()


def test_slow_backend_over_http_ends_at_the_tool_deadline(library_bundle, library_backend):
    server = HttpGateway(
        library_bundle, "--backend", library_backend.target, "--tool-timeout",
        "Library_GetBook=0.5", "--breaker-failures", "0",
    )  # fmt: skip
    try:
        with httpx.Client(base_url=server.base, timeout=10) as http:
            slow = http.post("/mcp/call", json={"tool": SLOW[0], "input": SLOW[1]})
            after = http.post("/mcp/call", json={"tool": LIST[0], "input": LIST[1]})
    finally:
        server.stop()
    assert slow.status_code == 504 and slow.json()["code"] == "DEADLINE_EXCEEDED"  # not the book
    assert after.status_code == 200


async def test_stdio_server_fails_fast_once_the_breaker_opens(library_bundle, library_backend):
    params = StdioServerParameters(
        command=sys.executable,
        args=[str(library_bundle / "server.py"), "--backend", library_backend.target,
              "--tool-timeout", "Library_GetBook=0.5", "--breaker-failures", "2",
              "--breaker-cooldown", "600"],
    )  # fmt: skip
    async with Client(params, mode="legacy") as client:
        slow = [await client.call_tool(*SLOW) for _ in range(2)]
        refused = await client.call_tool(*LIST)
    assert all(r.is_error and r.content[0].text.startswith("DEADLINE_EXCEEDED") for r in slow)
    assert refused.is_error
    assert refused.content[0].text.startswith(
        f"UNAVAILABLE: circuit open for {library_backend.target} after 2 consecutive failures; "
        "retrying in "
    )
    assert len(library_backend.calls("ListBooks")) == 0  # refused without trying


def test_http_server_recovers_once_the_backend_is_back(library_bundle):
    port = free_port()
    target = f"127.0.0.1:{port}"
    server = HttpGateway(
        library_bundle, "--backend", target, "--breaker-failures", "2",
        "--breaker-cooldown", "0.2",
    )  # fmt: skip
    backend = LibraryBackend(library_bundle)
    body = {"tool": LIST[0], "input": LIST[1]}
    try:
        with httpx.Client(base_url=server.base, timeout=10) as http:
            down = [http.post("/mcp/call", json=body) for _ in range(3)]
            backend.start(port)
            deadline = time.monotonic() + 30
            while (up := http.post("/mcp/call", json=body)).status_code != 200:
                assert time.monotonic() < deadline, up.text
                time.sleep(0.1)
    finally:
        backend.stop()
        log = server.stop()
    assert [r.status_code for r in down] == [503] * 3
    assert all(r.json()["code"] == "UNAVAILABLE" for r in down)
    assert "circuit open for" not in down[0].json()["error"]
    assert (
        down[2]
        .json()["error"]
        .startswith(
            f"UNAVAILABLE: circuit open for {target} after 2 consecutive failures; retrying in"
        )
    )
    assert f"circuit of {target} open after 2 consecutive failures" in log
    assert f"circuit of {target} closed" in log


# ---- restarts in the middle of load ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    started: float
    elapsed: float
    status: int
    body: dict[str, Any]


async def restart_under_load(
    base: str, body: dict[str, Any], stop: Callable[[], None], start: Callable[[], None]
) -> tuple[list[Outcome], float]:
    """Waves of 200 concurrent REST calls while the backend stops and starts again; the
    outcomes, and when the backend was back. (Waves, not 200 clients in a loop: those would
    saturate this process, and a call's time would be the load generator's queue.)"""
    outcomes: list[Outcome] = []
    done = asyncio.Event()
    # the client drops idle connections long before the server's 60 s keep-alive would: no
    # request is ever written into a connection the server is closing (a reset, not an answer)
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200, keepalive_expiry=1.0)
    async with httpx.AsyncClient(base_url=base, timeout=HANG, limits=limits) as http:

        async def one() -> httpx.Response:
            started = time.monotonic()
            response = await http.post("/mcp/call", json=body)  # a hang raises ReadTimeout
            elapsed = time.monotonic() - started
            outcomes.append(Outcome(started, elapsed, response.status_code, response.json()))
            return response

        async def waves() -> None:
            while not done.is_set():
                await asyncio.gather(*(one() for _ in range(200)))

        async def until(condition: Callable[[], bool]) -> None:
            deadline = time.monotonic() + 30
            while not condition():
                assert time.monotonic() < deadline, "timed out"
                await asyncio.sleep(0.05)

        load = asyncio.create_task(waves())
        try:
            await until(lambda: sum(o.status == 200 for o in outcomes) >= 200)
            await asyncio.to_thread(stop)
            stopped = time.monotonic()
            await until(lambda: any(o.started > stopped and o.status != 200 for o in outcomes))
            await asyncio.to_thread(start)
            back = time.monotonic()
            await until(lambda: any(o.started > back and o.status == 200 for o in outcomes))
        finally:
            done.set()
            await load
        # then every call succeeds: a wave of 50 (the load's 200 at once can queue past a
        # deadline on a loaded 2-core machine, which is the load, not the recovery)
        after = await asyncio.gather(*(one() for _ in range(50)))
    assert [r.status_code for r in after] == [200] * 50, {r.text for r in after}
    return outcomes, back


TIMEOUT = "5"  # the servers' --timeout in these tests
HANG = 5 * float(TIMEOUT)  # five deadlines: a call that takes longer hangs


def check_outcomes(outcomes: list[Outcome], back: float) -> None:
    """Every call ended with a result or a well-formed error; some failed, some succeeded
    again after the restart."""
    codes = {o.body["code"] for o in outcomes if o.status != 200}
    assert codes and codes <= {"UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED"}, codes
    for outcome in outcomes:
        assert outcome.elapsed < HANG
        if outcome.status == 200:
            assert "result" in outcome.body
        else:
            assert outcome.status in (499, 503, 504), outcome
            assert isinstance(outcome.body["error"], str) and outcome.body["trace_id"]
    assert any(o.started > back and o.status == 200 for o in outcomes)


class Target:
    """A liveness check whose answers a test decides, counting how often it was asked."""

    def __init__(self, answers: bool) -> None:
        self.answers = answers
        self.asked = 0

    async def __call__(self) -> bool:
        self.asked += 1
        if self.answers is None:
            raise RuntimeError("channel closed")
        return self.answers

    async def asked_again(self, times: int = 3) -> None:
        """Until the check has been asked `times` more times (30 s at most)."""
        wanted = self.asked + times
        async with asyncio.timeout(30):
            while self.asked < wanted:
                await asyncio.sleep(0.01)


async def test_an_open_circuit_probes_once_its_target_answers(monkeypatch):
    monkeypatch.setattr(breaker_module, "CHECK_EVERY", 0.01)
    clock = Clock()
    breakers = Breakers(failures=1, cooldown=60, clock=clock)
    down = breakers.of("down").check = Target(False)
    fail(breakers, "down")  # refused
    await down.asked_again()
    with pytest.raises(CircuitOpen, match=r"retrying in 60\.0 s"):
        breakers.guard("down")  # still down: fail fast
    down.answers = True  # restarted, long before the cooldown ends
    await down.asked_again(1)
    probe = breakers.guard("down")  # at once
    assert probe.probe and breakers.of("down").state == "half-open"
    with probe:
        pass
    assert breakers.of("down").state == "closed"
    assert breakers.of("down")._watch is None  # a closed circuit checks nothing

    slow = breakers.of("slow").check = Target(True)  # answers checks, but calls time out
    fail(breakers, "slow", DEADLINE)
    await slow.asked_again()
    with pytest.raises(CircuitOpen):
        breakers.guard("slow")  # not at once: a probe costs its caller a deadline
    clock.now += breaker_module.PROBE_EVERY
    probe = breakers.guard("slow")
    assert probe.probe
    with contextlib.suppress(BackendError), probe:
        raise BackendError(DEADLINE, "still slow")
    with pytest.raises(CircuitOpen):
        breakers.guard("slow")  # open again, the next probe PROBE_EVERY later
    hung = breakers.of("hung").check = Target(False)  # answers nothing: left alone
    fail(breakers, "hung", DEADLINE)
    await hung.asked_again()
    clock.now += breaker_module.PROBE_EVERY
    with pytest.raises(CircuitOpen):
        breakers.guard("hung")
    hung.answers = True  # un-hung, or replaced
    await hung.asked_again(1)
    assert breakers.guard("hung").probe
    broken = breakers.of("broken").check = Target(None)  # the check itself fails: no news
    fail(breakers, "broken")
    await broken.asked_again()
    with pytest.raises(CircuitOpen):
        breakers.guard("broken")
    clock.now += 60
    assert breakers.guard("broken").probe  # the cooldown still ends
    breakers.close()
    assert all(b._watch is None for b in breakers._breakers.values())


def test_round_robin_passes_over_open_nodes_until_all_are():
    breakers = Breakers(failures=1, cooldown=60, clock=Clock())
    backends = GrpcBackends(BackendConfig(), breakers)
    nodes = ["a:1", "b:1", "c:1"]
    fail(breakers, "b:1")
    picked = [backends._target("s", nodes) for _ in range(4)]
    assert picked == ["a:1", "c:1", "a:1", "c:1"]
    fail(breakers, "a:1")
    fail(breakers, "c:1")
    assert {backends._target("s", nodes) for _ in range(3)} == set(nodes)  # all open: in turn


def test_an_open_circuit_says_when_to_retry_over_rest(library_bundle):
    server = HttpGateway(
        library_bundle, "--backend", f"127.0.0.1:{free_port()}",  # nobody listens
        "--breaker-failures", "1", "--breaker-cooldown", "30",
    )  # fmt: skip
    try:
        with httpx.Client(base_url=server.base, timeout=10) as http:
            body = {"tool": LIST[0], "input": LIST[1]}
            first = http.post("/mcp/call", json=body)
            refused = http.post("/mcp/call", json=body)
            health = http.get("/health")
    finally:
        server.stop()
    assert health.status_code == 200  # a dead backend fails calls, not the gateway's probes
    assert list(health.json()["backends"].values()) == ["open"]
    assert first.status_code == 503 and "Retry-After" not in first.headers
    assert refused.status_code == 503 and refused.json()["code"] == "UNAVAILABLE"
    assert 1 <= int(refused.headers["Retry-After"]) <= 30
    assert "circuit open" in refused.json()["error"]


@pytest.mark.parametrize("cooldown", ["0.2", "60"])
def test_grpc_backend_restarted_in_the_middle_of_load(library_bundle, cooldown):
    """With a 60 s cooldown too: calls succeed again once the channel has reconnected (the
    breaker probes then), well inside the 30 s that `restart_under_load` waits."""
    port = free_port()
    backend = LibraryBackend(library_bundle).start(port)
    server = HttpGateway(
        library_bundle, "--backend", backend.target, "--timeout", TIMEOUT,
        "--breaker-cooldown", cooldown, "--keep-alive-timeout", "60",
    )  # fmt: skip
    try:
        outcomes, back = asyncio.run(
            restart_under_load(
                server.base,
                {"tool": LIST[0], "input": LIST[1]},
                backend.stop,
                lambda: backend.start(port),
            )
        )
    finally:
        log = server.stop()
        backend.stop()
    check_outcomes(outcomes, back)
    assert "Traceback" not in log, log
    if cooldown == "60":
        assert "half-open (the target answers)" in log, log


class NodeProcess:
    """`fixtures/mucp_node.py` in a process of its own: under 200 concurrent calls, a node in
    the test's process would share its interpreter with the load generator."""

    def __init__(self, port: int) -> None:
        script = FIXTURES / "mucp_node.py"
        command = [sys.executable, str(script), "--port", str(port)]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        if not self.process.stdout.readline():  # printed once it listens
            raise RuntimeError("the mucp node did not start")

    def kill(self) -> None:
        """A crash: its connections close with it."""
        self.process.kill()
        self.process.wait(timeout=30)


@pytest.mark.parametrize("cooldown", ["0.2", "60"])
def test_mucp_node_restarted_in_the_middle_of_load(tmp_path, cooldown):
    """With a 60 s cooldown too: the node's liveness check finds it answering again."""
    port = free_port()
    nodes = [NodeProcess(port)]
    bundle = micro_bundle(tmp_path, {"orders": [f"127.0.0.1:{port}"]})
    server = HttpGateway(
        bundle, "--timeout", TIMEOUT, "--breaker-cooldown", cooldown, "--keep-alive-timeout", "60"
    )

    def restart() -> None:
        nodes.append(NodeProcess(port))

    try:
        outcomes, back = asyncio.run(
            restart_under_load(
                server.base,
                {"tool": "Orders_Get", "input": {"order_id": "o-1"}},
                nodes[0].kill,
                restart,
            )
        )
    finally:
        log = server.stop()
        nodes[-1].kill()
    check_outcomes(outcomes, back)
    assert "Traceback" not in log, log
    if cooldown == "60":
        assert "half-open (the target answers)" in log, log


# ---- go-micro nodes --------------------------------------------------------------------------


def micro_bundle(tmp_path: Path, addresses: dict[str, list[str]]) -> Path:
    """The example registry snapshot, its services' nodes at `addresses`, built."""
    services = json.loads((FIXTURES / "registry" / "gomicro-registry.json").read_text())
    for service in services:
        template = service["nodes"][0]
        service["nodes"] = [
            {**template, "id": f"{service['name']}-{i}", "address": address}
            for i, address in enumerate(addresses.get(service["name"], []))
        ]
    snapshot = tmp_path / "registry.json"
    snapshot.write_text(json.dumps(services))
    out = tmp_path / "bundle"
    build(Config(sources=[str(snapshot)], out=str(out)), Warnings())
    return out


def micro_gateway(bundle: Path, breakers: Breakers, *backends: str, **options: Any) -> Gateway:
    config = BackendConfig.parse(list(backends))
    micro = MucpBackends(config, breakers)
    return Gateway(Bundle(bundle), GrpcBackends(config), GatewayOptions(**options), micro=micro)


async def test_an_open_node_is_skipped_and_all_open_fail_fast(tmp_path):
    clock = Clock()
    alive = MucpNode("orders-a").start()
    dead = f"127.0.0.1:{free_port()}"
    bundle = micro_bundle(tmp_path, {"orders": [dead, alive.address]})
    breakers = Breakers(failures=2, cooldown=10, clock=clock)
    gateway = micro_gateway(bundle, breakers)
    order = ("Orders_Get", {"order_id": "o-1"})
    try:
        served = [(await call(gateway, order))["order"]["servedBy"] for _ in range(8)]
        assert served == ["orders-a"] * 8  # the dead node's turns went to the next node
        assert breakers.of(dead).state == "open"
        assert breakers.of(dead).failures == 2  # once open, it was not tried again
        clock.now += 1
        alive.stop()
        with pytest.raises(BackendError) as refused:
            await call(gateway, order)
        assert refused.value.message.startswith("no node of orders accepted the call")
        assert f"circuit open for {dead}" in refused.value.message
        with contextlib.suppress(BackendError):
            await call(gateway, order)
        clock.now += 1
        with pytest.raises(CircuitOpen) as fast:
            await call(gateway, order)
        assert fast.value.message == (
            f"circuit open for {dead} after 2 consecutive failures; retrying in 8.0 s"
        )
        assert fast.value.lines == [
            f"circuit open for {alive.address} after 2 consecutive failures; retrying in 9.0 s"
        ]
        again = MucpNode("orders-a", port=alive.port).start()
        clock.now += 10  # both cooldowns over: the dead node's probe fails, the live one's works
        try:
            assert (await call(gateway, order))["order"]["servedBy"] == "orders-a"
        finally:
            again.stop()
        assert breakers.of(alive.address).state == "closed"
        assert breakers.of(dead).state == "open"
    finally:
        await gateway.close()


class NotMucp(BaseHTTPRequestHandler):
    """What a proxy in front of a dead service answers: 502 and a page of HTML."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        page = b"<html><body>502 Bad Gateway</body></html>"
        self.send_response(502)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(page)))
        self.end_headers()
        self.wfile.write(page)

    def log_message(self, format: str, *args: Any) -> None:
        pass


async def test_non_mucp_answers_count_and_micro_errors_do_not(tmp_path):
    proxy = ThreadingHTTPServer(("127.0.0.1", 0), NotMucp)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    node = MucpNode("users").start()
    bundle = micro_bundle(tmp_path, {"users": [node.address]})
    breakers = Breakers(failures=2, cooldown=10, clock=Clock())
    proxied = micro_gateway(bundle, breakers, f"users=127.0.0.1:{proxy.server_port}")
    direct = micro_gateway(bundle, breakers)
    try:
        for _ in range(3):
            with pytest.raises(BackendError) as missing:
                await call(direct, ("Users_Get", {"id": "missing"}))
            assert missing.value.code == grpc.StatusCode.NOT_FOUND
        assert breakers.of(node.address).state == "closed"
        for _ in range(2):
            with pytest.raises(BackendError) as bad:
                await call(proxied, ("Users_Get", {"id": "u-1"}))
            assert bad.value.code == UNAVAILABLE and "not mucp" in bad.value.message
        with pytest.raises(CircuitOpen):
            await call(proxied, ("Users_Get", {"id": "u-1"}))
    finally:
        await proxied.close()
        await direct.close()
        proxy.shutdown()
        proxy.server_close()
        node.stop()


async def test_a_slow_or_silent_node_ends_at_the_deadline(tmp_path, silent):
    node = MucpNode("users").start()
    bundle = micro_bundle(tmp_path, {"users": [node.address], "orders": [silent]})
    gateway = micro_gateway(bundle, Breakers(), timeout=0.5)
    try:
        for tool in (("Users_Get", {"id": "slow"}), ("Orders_Get", {"order_id": "o-1"})):
            with pytest.raises(BackendError) as error:
                async with asyncio.timeout(30):  # a hang fails here, not by a stopwatch
                    await call(gateway, tool)
            assert error.value.code == DEADLINE, error.value
    finally:
        await gateway.close()
        node.stop()


class Trickle(BaseHTTPRequestHandler):
    """A node that answers one byte every 0.1 s: each read is quick, the whole never ends."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "200")
        self.end_headers()
        with contextlib.suppress(OSError):
            for _ in range(200):
                self.wfile.write(b" ")
                self.wfile.flush()
                time.sleep(0.1)

    def log_message(self, format: str, *args: Any) -> None:
        pass


async def test_a_trickling_node_ends_at_the_deadline(tmp_path):
    node = ThreadingHTTPServer(("127.0.0.1", 0), Trickle)
    node.daemon_threads = True
    threading.Thread(target=node.serve_forever, daemon=True).start()
    bundle = micro_bundle(tmp_path, {"users": [f"127.0.0.1:{node.server_port}"]})
    gateway = micro_gateway(bundle, Breakers(), timeout=0.5)
    try:
        with pytest.raises(BackendError) as error:
            await call(gateway, ("Users_Get", {"id": "u-1"}))
        # the call's deadline, not httpx's per-read timeouts: those would have waited out the
        # trickle's 20 s and then failed on 200 spaces that are not JSON (INTERNAL)
        assert error.value.code == DEADLINE, error.value
    finally:
        await gateway.close()
        node.shutdown()
        node.server_close()
