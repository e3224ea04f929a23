"""Calls/s and latency of one small tool call: gRPC alone, the smallest MCP forwarder, mcpgen.

One unary call, `acme.library.v1.Library/GetBook` on an existing book, made three ways:

- `grpc`: the baseline without MCP; a grpc.aio client in this process, dynamic message classes
  from the bundle's descriptors (build the request, call, decode the response; no JSON).
- `forwarder`: the smallest forwarder the same MCP SDK allows (`FORWARDER` below): a low-level
  `Server` with one tool, no argument validation, no OpenTelemetry middleware, no DNS-rebinding
  check, that forwards to the backend with grpc.aio and returns the protojson as
  structuredContent + text, the result shape of mcpgen's gateway. It lists the same tool
  definition as the bundle, so the client does the same work (it validates structuredContent
  against the outputSchema) for both MCP variants.
- `mcpgen`: the bundle's generated `server.py`, with its defaults.

The two MCP variants run as subprocesses over stdio (the SDK's `Client(StdioServerParameters)`)
and over Streamable HTTP (uvicorn, stateful sessions, SSE responses; `Client(url)`), both in the
legacy (initialize handshake) mode. The gRPC backend (`fixtures/library_backend.py`, a thread
pool server) runs in its own subprocess so that it does not compete with the client for the GIL.

Every round measures each (variant, transport) once, `--calls` sequential calls from one client
and then `--calls` calls from `--concurrency` tasks on that client, after a warm-up; the order
of the variants is reversed every other round so that load on a shared machine hits all of
them. Prints one JSON line per (variant, transport, concurrency) with medians over the rounds,
then the ratios mcpgen / forwarder (target >= 0.95) and mcpgen / grpc (the cost of MCP), each
the median of the per-round ratios of calls/s. Each MCP line also has the CPU time of the
server process per call (from /proc, so Linux; summed over the rounds), which the client and
the backend do not blur: mcpgen's minus the forwarder's is what mcpgen adds to a call.

    python benchmarks/gateway.py
    python benchmarks/gateway.py --calls 2000 --rounds 7 --concurrency 8 --transports stdio
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import grpc
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.message import Message
from mcp import Client, StdioServerParameters

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

SERVICE = "acme.library.v1.Library"
TOOL = "Library_GetBook"
BOOK = "shelves/1/books/1"
ARGUMENTS = {"name": BOOK}
TRANSPORTS = ("stdio", "http")
PROC = Path("/proc/self/stat").exists()  # server CPU times need Linux's /proc

#: Variant (b), written to a temporary file and run as `python forwarder.py BUNDLE TOOL TARGET
#: stdio|http PORT`. It reads only the tool definition, its route and the descriptors from the
#: bundle (through `mcpgen.contract`, the bundle's reader; not timed).
FORWARDER = '''\
"""The smallest MCP forwarder of one tool to gRPC (variant `forwarder` of the benchmark)."""

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import grpc
import mcp_types as types
from google.protobuf import descriptor_pool, json_format, message_factory
from mcp.server.lowlevel import Server

from mcpgen.contract import open_bundle

bundle, tool_name, target, transport = Path(sys.argv[1]), *sys.argv[2:5]
view = open_bundle(bundle)
definition, route = next((t, r) for t, r in view.tools() if t["name"] == tool_name)
tool = types.Tool.model_validate(definition)
pool = descriptor_pool.DescriptorPool()
for file in view.descriptor_files():
    pool.Add(file)
method = pool.FindMethodByName(f"{route.service}.{route.method}")
Request = message_factory.GetMessageClass(method.input_type)
Response = message_factory.GetMessageClass(method.output_type)
rpc: Any = None


async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
    return types.ListToolsResult(tools=[tool])


async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
    global rpc
    if rpc is None:  # a grpc.aio channel belongs to the running event loop
        rpc = grpc.aio.insecure_channel(target).unary_unary(
            route.path,
            request_serializer=Request.SerializeToString,
            response_deserializer=Response.FromString,
        )
    response = await rpc(json_format.ParseDict(params.arguments or {}, Request()), timeout=30)
    result = json_format.MessageToDict(response)
    text = json.dumps(result, ensure_ascii=False, separators=(",", ":"))
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=text)], structured_content=result
    )


server: Server[Any] = Server("forwarder", on_list_tools=list_tools, on_call_tool=call_tool)
server.middleware = []


async def serve_stdio() -> None:
    from mcp.server.stdio import stdio_server

    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


async def serve_http(port: int) -> None:
    import uvicorn
    from mcp.server.transport_security import TransportSecuritySettings

    app = server.streamable_http_app(
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False)
    )
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    await uvicorn.Server(config).serve()


asyncio.run(serve_stdio() if transport == "stdio" else serve_http(int(sys.argv[5])))
'''


# ---- the backend (its own process) -----------------------------------------------------------


def serve_backend(bundle: Path) -> None:
    """Run the Library backend with one book; print its port; stop when stdin closes."""
    from fixtures.library_backend import LibraryBackend

    class QuietBackend(LibraryBackend):
        def _recorded(self, name: str, behavior: Any) -> Any:
            return behavior  # no log of received calls: the benchmark makes many

    backend = QuietBackend(bundle).start()
    book = backend.Book(
        name=BOOK,
        title="Middlemarch",
        author="Eliot, George",
        isbn="9780141439549",
        page_count=880,
        tags=["classic", "novel"],
        genre=1,
        shelf_position=7,
    )
    book.create_time.seconds = 1_700_000_000
    backend.books[BOOK] = book
    print(backend.port, flush=True)
    sys.stdin.read()
    backend.stop()


class BackendProcess:
    """`serve_backend` in a subprocess of this script."""

    def __init__(self, bundle: Path) -> None:
        command = [sys.executable, __file__, "--serve-backend", str(bundle)]
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        port = self.process.stdout.readline().strip()
        if not port:
            raise SystemExit("the backend did not start")
        self.target = f"127.0.0.1:{port}"

    def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=15)


# ---- HTTP servers (subprocesses) ---------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class HttpServer:
    """A server subprocess listening on 127.0.0.1:PORT, which the command must bind. Its
    stderr goes to a file, not a pipe: a server that logs every failed call would otherwise
    block once the unread pipe is full."""

    def __init__(self, command: list[str], port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/mcp"
        self.log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (closed by stop)
        self.process = subprocess.Popen(command, stderr=self.log, text=True)
        deadline = time.monotonic() + 30
        while True:
            if self.process.poll() is not None:
                self.log.seek(0)
                raise SystemExit(f"server exited: {self.log.read()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise SystemExit(f"{' '.join(command[:2])} did not listen in 30 s") from None
                time.sleep(0.1)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate()
        self.log.close()


def child_pid(command: list[str]) -> int | None:
    """The pid of this process's child that runs `command` (the SDK spawns stdio servers)."""
    if not PROC:
        return None
    wanted = b"\0".join(arg.encode() for arg in command) + b"\0"
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if argv == wanted and int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid():
            return int(entry.name)
    raise SystemExit(f"no child process runs {' '.join(command)}")


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of a process (all its threads); 0 without one or without /proc."""
    if pid is None or not PROC:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---- the callers -------------------------------------------------------------------------------

Call = Callable[[], Awaitable[Any]]


class DirectGrpc:
    """Variant (a): GetBook with grpc.aio and dynamic message classes, no MCP."""

    def __init__(self, bundle: Path, target: str) -> None:
        from mcpgen.contract import open_bundle

        pool = descriptor_pool.DescriptorPool()
        for file in open_bundle(bundle).descriptor_files():
            pool.Add(file)
        method = pool.FindMethodByName(f"{SERVICE}.GetBook")
        self.request_class = message_factory.GetMessageClass(method.input_type)
        response_class = message_factory.GetMessageClass(method.output_type)
        self.channel = grpc.aio.insecure_channel(target)
        self.rpc = self.channel.unary_unary(
            f"/{SERVICE}/GetBook",
            request_serializer=self.request_class.SerializeToString,
            response_deserializer=response_class.FromString,
        )

    async def __call__(self) -> Message:
        response: Message = await self.rpc(self.request_class(name=BOOK), timeout=30)
        return response


def mcp_call(client: Client) -> Call:
    async def call() -> dict[str, Any]:
        result = await client.call_tool(TOOL, ARGUMENTS)
        if result.is_error or result.structured_content is None:
            raise SystemExit(f"{TOOL} failed: {result.content}")
        return result.structured_content

    return call


@dataclass
class Variant:
    variant: str  # "grpc", "forwarder" or "mcpgen"
    transport: str  # "grpc", "stdio" or "http"
    call: Call
    pid: int | None = None  # the server process, whose CPU time is measured

    @property
    def key(self) -> str:
        return f"{self.variant}/{self.transport}"


def server_command(variant: str, transport: str, bundle: Path, target: str, port: int) -> list[str]:
    """The command line of an MCP server: the forwarder script or the bundle's server.py."""
    if variant == "forwarder":
        script = bundle.parent / "forwarder.py"
        return [sys.executable, str(script), str(bundle), TOOL, target, transport, str(port)]
    command = [sys.executable, str(bundle / "server.py"), "--backend", target]
    return (
        command if transport == "stdio" else [*command, "--transport", "http", "--port", str(port)]
    )


async def open_variants(
    stack: AsyncExitStack, bundle: Path, target: str, transports: list[str]
) -> list[Variant]:
    """Start every server and connect a client to each (not timed)."""
    (bundle.parent / "forwarder.py").write_text(FORWARDER)
    direct = DirectGrpc(bundle, target)
    stack.push_async_callback(direct.channel.close)
    variants = [Variant("grpc", "grpc", direct)]
    for transport in transports:
        for name in ("forwarder", "mcpgen"):
            if transport == "stdio":
                command = server_command(name, transport, bundle, target, port=0)
                params = StdioServerParameters(command=command[0], args=command[1:])
                client = await stack.enter_async_context(Client(params, mode="legacy"))
                pid = child_pid(command)
            else:
                port = free_port()
                server = HttpServer(server_command(name, transport, bundle, target, port), port)
                stack.callback(server.stop)
                client = await stack.enter_async_context(Client(server.url, mode="legacy"))
                pid = server.process.pid
            variants.append(Variant(name, transport, mcp_call(client), pid))
    return variants


# ---- measuring ---------------------------------------------------------------------------------


@dataclass
class Sample:
    calls_per_s: float
    p50_ms: float
    p99_ms: float
    calls: int
    server_cpu_s: float  # CPU time of the server process (0 for direct gRPC)


@dataclass
class Series:
    samples: list[Sample] = field(default_factory=list)

    def median(self, attribute: str) -> float:
        return statistics.median(getattr(s, attribute) for s in self.samples)

    def server_cpu_us_per_call(self) -> float:
        """Over all rounds: the kernel counts CPU time in ticks (10 ms), too coarse for one."""
        calls = sum(s.calls for s in self.samples)
        return sum(s.server_cpu_s for s in self.samples) / calls * 1e6


def percentile(sorted_values: list[float], fraction: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


async def measure(variant: Variant, calls: int, concurrency: int) -> Sample:
    """`calls` calls from `concurrency` tasks: calls/s, latency percentiles, server CPU/call."""
    latencies: list[float] = []

    async def worker(count: int) -> None:
        for _ in range(count):
            started = time.perf_counter()
            await variant.call()
            latencies.append(time.perf_counter() - started)

    cpu = cpu_seconds(variant.pid)
    started = time.perf_counter()
    async with anyio.create_task_group() as group:
        for i in range(concurrency):
            group.start_soon(worker, calls // concurrency + (i < calls % concurrency))
    elapsed = time.perf_counter() - started
    cpu = cpu_seconds(variant.pid) - cpu
    latencies.sort()
    return Sample(
        calls_per_s=calls / elapsed,
        p50_ms=percentile(latencies, 0.50) * 1000,
        p99_ms=percentile(latencies, 0.99) * 1000,
        calls=calls,
        server_cpu_s=cpu,
    )


async def check_results(variants: list[Variant]) -> None:
    """Every MCP variant returns the same structured content (and the calls work at all)."""
    results = {v.key: await v.call() for v in variants if v.variant != "grpc"}
    if len({json.dumps(r, sort_keys=True) for r in results.values()}) != 1:
        raise SystemExit(f"the variants disagree: {results}")


async def run(args: argparse.Namespace) -> None:
    from mcpgen.build import build
    from mcpgen.config import Config

    levels = sorted({1, args.concurrency})
    series: dict[tuple[str, int], Series] = {}
    with tempfile.TemporaryDirectory(prefix="mcpgen-bench-gateway-") as tmp:
        bundle = Path(tmp) / "bundle"
        build(Config(sources=[str(ROOT / "fixtures" / "protos")], out=str(bundle)))
        backend = BackendProcess(bundle)
        try:
            async with AsyncExitStack() as stack:
                variants = await open_variants(stack, bundle, backend.target, args.transports)
                await check_results(variants)
                for variant in variants:  # first calls: channels, schemas, caches
                    await measure(variant, args.warmup, 1)
                for round_ in range(args.rounds):
                    order = variants if round_ % 2 == 0 else variants[::-1]
                    for variant in order:
                        await measure(variant, args.warmup // 5 or 1, 1)
                        for level in levels:
                            sample = await measure(variant, args.calls, level)
                            series.setdefault((variant.key, level), Series()).samples.append(sample)
                    print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr)
        finally:
            backend.stop()
    report(series, args, levels)


def report(
    series: dict[tuple[str, int], Series], args: argparse.Namespace, levels: list[int]
) -> None:
    for (key, level), found in series.items():
        variant, transport = key.split("/")
        row = {
            "variant": variant,
            "transport": transport,
            "concurrency": level,
            "calls": args.calls,
            "rounds": args.rounds,
            "calls_per_s": round(found.median("calls_per_s")),
            "p50_ms": round(found.median("p50_ms"), 3),
            "p99_ms": round(found.median("p99_ms"), 3),
            "server_cpu_us_per_call": round(found.server_cpu_us_per_call()),
        }
        print(json.dumps(row))

    def ratio(top: str, bottom: str, level: int) -> float:
        """Median of the per-round ratios of calls/s (paired rounds cancel machine noise)."""
        pairs = zip(series[(top, level)].samples, series[(bottom, level)].samples, strict=True)
        return statistics.median(t.calls_per_s / b.calls_per_s for t, b in pairs)

    print(
        f"\n{os.cpu_count()} cores; medians of {args.rounds} interleaved rounds of "
        f"{args.calls} calls; ratios of calls/s; server CPU per call"
    )
    for transport in args.transports:
        for level in levels:
            mcpgen, forwarder = f"mcpgen/{transport}", f"forwarder/{transport}"
            vs_forwarder = ratio(mcpgen, forwarder, level)
            verdict = "ok" if vs_forwarder >= 0.95 else "BELOW TARGET"
            vs_grpc = ratio(mcpgen, "grpc/grpc", level)
            ours, theirs = (
                series[(k, level)].server_cpu_us_per_call() for k in (mcpgen, forwarder)
            )
            print(
                f"{transport:5} x{level}: mcpgen/forwarder {vs_forwarder:.3f} "
                f"(target >= 0.95: {verdict}), mcpgen/grpc {vs_grpc:.3f}; "
                f"server CPU/call {ours:.0f} vs {theirs:.0f} us ({ours - theirs:+.0f})"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500, help="calls per measurement")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--concurrency", type=int, default=8, help="tasks for concurrent calls")
    parser.add_argument("--warmup", type=int, default=200, help="calls before measuring")
    parser.add_argument(
        "--transports",
        type=lambda text: [t for t in text.split(",") if t],
        default=list(TRANSPORTS),
        help="comma-separated: stdio,http",
    )
    parser.add_argument("--serve-backend", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_backend is not None:
        serve_backend(args.serve_backend)
        return
    if not set(args.transports) <= set(TRANSPORTS) or not args.transports:
        parser.error(f"--transports takes {', '.join(TRANSPORTS)}")
    anyio.run(run, args)


if __name__ == "__main__":
    main()
