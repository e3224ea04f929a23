"""Load test of the gateway over HTTP: errors, latency and memory growth under sustained calls.

The fixture gRPC backend and the bundle's `server.py` (`--transport http`) run as subprocesses;
`--concurrency` clients in this process, each on its own connection, make `--calls` calls in
all of `Library_GetBook` on an existing book, after `--warmup` calls that fill the caches:

- `mcp`: the MCP SDK's `Client` over Streamable HTTP (`--mcp-mode`: legacy sessions or the
  stateless 2026-07-28 era); an `isError` result or an exception is an error.
- `rest`: `POST /mcp/call` with httpx; anything but a 200 with the book is an error.

Each mode gets a fresh server. Memory is the server's resident set (VmRSS from /proc) after the
warm-up and at the end; its growth over the run is what a leak would show. Prints one JSON line
per mode, then a verdict against the targets of issue 6: 0 errors, memory growth < 10%.

    python benchmarks/load.py                                   # both modes, 5,000 calls x 32
    python benchmarks/load.py --mode rest --calls 20000 --concurrency 64
    python benchmarks/load.py --mode mcp --mcp-mode 2026-07-28 --server-args=--stateless
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
from gateway import BOOK, TOOL, BackendProcess, HttpServer, free_port, percentile
from mcp import Client

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

MODES = ("mcp", "rest")
MAX_GROWTH = 0.10  # of the server's RSS from the end of the warm-up to the end of the run

REST_BODY = {"tool": TOOL, "input": {"name": BOOK}}
Call = Callable[[], Awaitable[bool]]  # True when the call returned the book


def rss_bytes(pid: int) -> int:
    """The resident set of a process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise SystemExit(f"no VmRSS for process {pid}")


async def open_callers(
    stack: AsyncExitStack, mode: str, server: HttpServer, args: Any
) -> list[Call]:
    """One caller per concurrent client, each with its own connection (not timed)."""
    callers: list[Call] = []
    for _ in range(args.concurrency):
        if mode == "mcp":
            client = await stack.enter_async_context(Client(server.url, mode=args.mcp_mode))

            async def call(client: Client = client) -> bool:
                result = await client.call_tool(TOOL, {"name": BOOK})
                content = result.structured_content
                return not result.is_error and content is not None and content["name"] == BOOK

        else:
            http = await stack.enter_async_context(httpx.AsyncClient(timeout=30))

            async def call(http: httpx.AsyncClient = http) -> bool:
                response = await http.post(server.url + "/call", json=REST_BODY)  # /mcp/call
                return response.status_code == 200 and response.json()["result"]["name"] == BOOK

        callers.append(call)
    return callers


async def drive(callers: list[Call], calls: int) -> tuple[list[float], int, float]:
    """`calls` calls shared by the callers: latencies (s), errors, elapsed seconds."""
    latencies: list[float] = []
    errors = 0
    remaining = calls

    async def worker(call: Call) -> None:
        nonlocal errors, remaining
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            try:
                ok = await call()
            except Exception as exc:  # every failure is counted, none stops the run
                ok = False
                if errors < 3:
                    print(f"call failed: {exc!r}", file=sys.stderr)
            latencies.append(time.perf_counter() - started)
            errors += not ok

    started = time.perf_counter()
    await asyncio.gather(*(worker(call) for call in callers))
    return latencies, errors, time.perf_counter() - started


async def run_mode(mode: str, bundle: Path, target: str, args: Any) -> dict[str, Any]:
    port = free_port()
    command = [sys.executable, str(bundle / "server.py"), "--backend", target]
    command += ["--transport", "http", "--port", str(port), *shlex.split(args.server_args)]
    server = HttpServer(command, port)
    try:
        async with AsyncExitStack() as stack:
            callers = await open_callers(stack, mode, server, args)
            _, warm_errors, _ = await drive(callers, args.warmup)
            rss_warm = rss_bytes(server.process.pid)
            latencies, errors, elapsed = await drive(callers, args.calls)
            rss_end = rss_bytes(server.process.pid)
    finally:
        server.stop()
    latencies.sort()
    return {
        "mode": mode if mode == "rest" else f"mcp/{args.mcp_mode}",
        "calls": args.calls,
        "concurrency": args.concurrency,
        "errors": errors,
        "warmup_errors": warm_errors,
        "calls_per_s": round(args.calls / elapsed),
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 2),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
        "max_ms": round(latencies[-1] * 1000, 2),
        "rss_warm_mib": round(rss_warm / 2**20, 1),
        "rss_end_mib": round(rss_end / 2**20, 1),
        "rss_growth_pct": round((rss_end - rss_warm) / rss_warm * 100, 2),
    }


async def run(args: argparse.Namespace) -> int:
    from mcpgen.build import build
    from mcpgen.config import Config

    rows = []
    with tempfile.TemporaryDirectory(prefix="mcpgen-bench-load-") as tmp:
        bundle = Path(tmp) / "bundle"
        build(Config(sources=[str(ROOT / "fixtures" / "protos")], out=str(bundle)))
        backend = BackendProcess(bundle)
        try:
            for mode in args.modes:
                rows.append(await run_mode(mode, bundle, backend.target, args))
                print(json.dumps(rows[-1]), flush=True)
        finally:
            backend.stop()
    failed = False
    print(f"\n{os.cpu_count()} cores; targets: 0 errors, memory growth < {MAX_GROWTH:.0%}")
    for row in rows:
        ok = row["errors"] == 0 and row["rss_growth_pct"] < MAX_GROWTH * 100
        failed |= not ok
        print(
            f"{row['mode']:15} {row['errors']} errors, p50 {row['p50_ms']} ms, "
            f"p99 {row['p99_ms']} ms, {row['calls_per_s']} calls/s, "
            f"RSS {row['rss_warm_mib']} -> {row['rss_end_mib']} MiB "
            f"({row['rss_growth_pct']:+.2f}%): {'ok' if ok else 'BELOW TARGET'}"
        )
    return 1 if failed else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000, help="measured calls per mode")
    parser.add_argument("--concurrency", type=int, default=32, help="concurrent clients")
    parser.add_argument("--warmup", type=int, default=1000, help="calls before measuring")
    parser.add_argument("--mode", choices=[*MODES, "both"], default="both")
    parser.add_argument(
        "--mcp-mode", choices=["legacy", "2026-07-28"], default="legacy", help="MCP client era"
    )
    parser.add_argument("--server-args", default="", help="more server flags, e.g. --stateless")
    args = parser.parse_args()
    if not Path("/proc/self/status").exists():
        parser.error("the server's memory is read from /proc (Linux)")
    args.modes = list(MODES) if args.mode == "both" else [args.mode]
    sys.exit(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
