"""Rate-limit stores: token buckets in the process, and shared in a real redis-server.

Redis runs on a unix socket (`fixtures/redis_server.py`); the gateways are real server.py
processes over HTTP (`--workers`) or in-process stores standing in for replicas. Redis decides
on its own clock, so the tests choose rates whose outcome does not depend on timing: tokens
that come back once in 1,000 s, and bursts counted exactly.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from mcpgen.errors import UserError
from mcpgen.runtime import ratelimit
from mcpgen.runtime.ratelimit import (
    Bucket,
    LocalRates,
    Rate,
    RedisRates,
    StoreUnavailable,
    check_store_url,
)
from tests.conftest import HttpGateway

pytestmark = pytest.mark.anyio
SLOWLY = Rate(0.001, 3.0)  # a burst of 3, then one token every 1,000 s
LIST = {"tool": "Library_ListBooks", "input": {"parent": "shelves/1"}}


@pytest.fixture
def anyio_backend():
    return "asyncio"


class Events:
    """A StoreObserver that remembers what it saw."""

    def __init__(self) -> None:
        self.states: list[bool] = []
        self.fallbacks: list[str] = []

    def store_state(self, store: str, up: bool) -> None:
        self.states.append(up)

    def store_fallback(self, policy: str) -> None:
        self.fallbacks.append(policy)


def test_local_buckets_refill_and_take_from_all_or_none():
    now = [10.0]
    rates = LocalRates(lambda: now[0])
    tool = Bucket("tool:T", Rate(2.0, 2.0))
    assert rates.take_now([tool]) == [0.0]
    assert rates.take_now([tool]) == [0.0]
    assert rates.take_now([tool]) == [pytest.approx(0.5)]
    now[0] += 0.5
    assert rates.take_now([tool]) == [0.0]
    # a caller out of tokens: the tool's bucket keeps its token for someone else
    caller, other = Bucket("caller:a", Rate(0.001, 1.0)), Bucket("tool:U", Rate(1.0, 1.0))
    assert rates.take_now([other, caller]) == [0.0, 0.0]
    now[0] += 1.0
    waits = rates.take_now([other, caller])
    assert waits[0] == 0.0 and waits[1] > 900
    assert rates.take_now([other]) == [0.0]  # still there: nothing was taken above


def test_local_caller_buckets_forget_the_least_recently_seen():
    rates = LocalRates(lambda: 0.0, max_callers=2)
    for account in ("a", "b", "a", "c"):  # c evicts b, the least recently seen
        rates.take_now([Bucket(f"caller:{account}", Rate(0.001, 1.0))])
    assert rates.take_now([Bucket("caller:a", Rate(0.001, 1.0))])[0] > 0
    assert rates.take_now([Bucket("caller:b", Rate(0.001, 1.0))]) == [0.0]  # starts full


def test_store_urls_are_checked():
    assert check_store_url("redis://redis:6379/0") == "redis://redis:6379/0"
    assert check_store_url("unix:///run/redis.sock?db=1")
    for bad in ("redis:6379", "http://redis:6379", "redis://", "local"):
        with pytest.raises(UserError, match="is not a Redis URL"):
            check_store_url(bad)
    with pytest.raises(UserError) as error:
        check_store_url("http://user:secret@redis:6379")
    assert "secret" not in str(error.value)


async def test_redis_buckets_are_shared_by_every_store_that_names_them(redis_server):
    replicas = [RedisRates(redis_server.url, "library") for _ in range(3)]
    other_server = RedisRates(redis_server.url, "billing")
    tool = Bucket("tool:Library_ListBooks", SLOWLY)
    try:
        waits = [await replicas[i % 3].take([tool]) for i in range(5)]
        assert waits[:3] == [[0.0]] * 3  # the burst, taken across three replicas
        assert all(900 < w[0] <= 1000 for w in waits[3:])  # then a token every 1,000 s
        assert await other_server.take([tool]) == [0.0]  # another server's buckets are apart
        # all or none: an exhausted caller leaves the tool's token in place
        fresh, caller = Bucket("tool:Library_GetBook", SLOWLY), Bucket("caller:a", SLOWLY)
        for _ in range(3):
            assert await replicas[0].take([caller]) == [0.0]
        refused = await replicas[1].take([fresh, caller])
        assert refused[0] == 0.0 and refused[1] > 900
        assert [await replicas[2].take([fresh]) for _ in range(3)] == [[0.0]] * 3
        keys = redis_server.command("--scan", "--pattern", "mcpgen:library:rate:*").split()
        assert sorted(keys) == [
            "mcpgen:library:rate:caller:a",
            "mcpgen:library:rate:tool:Library_GetBook",
            "mcpgen:library:rate:tool:Library_ListBooks",
        ]
        ttl = int(redis_server.command("PTTL", "mcpgen:library:rate:caller:a"))
        assert 0 < ttl <= 3_000_001  # a bucket expires once it would be full again
    finally:
        for store in [*replicas, other_server]:
            await store.close()


async def test_redis_down_falls_back_or_refuses_and_comes_back(redis_server, monkeypatch):
    now = [0.0]
    events = Events()
    local = RedisRates(redis_server.url, "library", observer=events, clock=lambda: now[0])
    strict = RedisRates(redis_server.url, "library", fallback="refuse", clock=lambda: now[0])
    tool = Bucket("tool:T", Rate(0.001, 1.0))
    try:
        assert await local.take([tool]) == [0.0]
        redis_server.stop()
        assert await local.take([tool]) == [0.0]  # the local bucket is full: allowed
        assert (await local.take([tool]))[0] > 900  # and enforces the rate on its own
        assert not local.up and events.states == [True, False]
        with pytest.raises(StoreUnavailable, match="unreachable; retry soon"):
            await strict.take([tool])
        redis_server.start()  # empty again: Redis kept nothing on disk
        with pytest.raises(StoreUnavailable):
            await strict.take([tool])  # not tried again before RETRY_AFTER
        now[0] += ratelimit.RETRY_AFTER
        assert await strict.take([tool]) == [0.0]
        assert (await local.take([tool]))[0] > 900  # shared again: strict took the token
        assert local.up and events.states == [True, False, True]
        assert events.fallbacks == ["local", "local"]
    finally:
        await local.close()
        await strict.close()


async def test_a_redis_that_never_answers_costs_a_call_at_most_the_store_timeout(redis_server):
    store = RedisRates(redis_server.url, "library")
    tool = Bucket("tool:T", Rate(100.0, 100.0))
    try:
        assert await store.take([tool]) == [0.0]  # connected
        redis_server.pause()
        started = time.monotonic()
        async with asyncio.timeout(30):  # a hang fails here, not by a stopwatch
            assert await store.take([tool]) == [0.0]  # local fallback, after the timeout
        assert not store.up
        assert time.monotonic() - started >= ratelimit.STORE_TIMEOUT * 0.9  # it did wait on Redis
        assert await store.take([tool]) == [0.0]  # then decides locally without waiting
    finally:
        redis_server.resume()
        await store.close()


def test_workers_share_one_limit_through_redis(library_bundle, library_backend, redis_server):
    server = HttpGateway(
        library_bundle, "--backend", library_backend.target, "--workers", "3",
        "--rate-limit", "0.001:10", "--rate-limit-store", redis_server.url,
    )  # fmt: skip
    try:
        with httpx.Client(base_url=server.base, timeout=30) as http:
            # new connections each time: uvicorn hands them to whichever worker accepts first
            codes = [
                http.post("/mcp/call", json=LIST, headers={"connection": "close"}).status_code
                for _ in range(30)
            ]
            metrics = http.get("/metrics").text
    finally:
        log = server.stop()
    assert codes == [200] * 10 + [429] * 20, codes  # 10 in all, not 10 per worker
    assert 'mcpgen_rate_limit_store_up{store="unix://' in metrics
    assert "Traceback" not in log, log


def test_redis_unreachable_over_http_refuses_with_retry_after(
    library_bundle, library_backend, tmp_path
):
    server = HttpGateway(
        library_bundle, "--backend", library_backend.target, "--rate-limit", "100",
        "--rate-limit-store", f"unix://{tmp_path}/nobody.sock",
        "--rate-limit-store-fallback", "refuse",
    )  # fmt: skip
    try:
        with httpx.Client(base_url=server.base, timeout=30) as http:
            refused = http.post("/mcp/call", json=LIST)
            metrics = http.get("/metrics").text
    finally:
        log = server.stop()
    assert refused.status_code == 503 and refused.json()["code"] == "UNAVAILABLE"
    assert refused.headers["retry-after"] == "1"
    assert "rate-limit store" in refused.json()["error"]
    assert 'mcpgen_rate_limit_store_fallbacks_total{policy="refuse"} 1.0' in metrics
    assert "nobody.sock unreachable" in log and "calls are refused" in log
    assert library_backend.calls("ListBooks") == []


def test_a_bad_store_url_is_a_clear_error(library_bundle):
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, str(library_bundle / "server.py"), "--rate-limit-store", "redis:6379"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode != 0
    assert "is not a Redis URL" in done.stderr and "Traceback" not in done.stderr
