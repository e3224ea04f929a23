"""Serving an organisation's bundle: start time, memory, and search (issue 12's targets).

Builds (or takes, with `--bundle`) the googleapis bundle, then measures, side by side in one
run:

  start      `python OUT/server.py` over stdio driven by the MCP SDK client: seconds from spawn
             to the `initialize` answer, to the first `tools/list` page, and the server's RSS
             (VmRSS after the first page, VmHWM = its peak), served whole and with one toolset
  search     recall@5 of the intended tool on queries made from 500 sampled tools (their
             title's words and their service's name), and the latency of `search_tools` in the
             server process (p50, p99) at the bundle's size; then 100 of them end to end
             through `--discovery` over stdio: search, describe the intended tool, and call it
             (its required arguments filled in) against a gRPC server answering every method

    python benchmarks/serve.py --googleapis /work/corpus/package
    python benchmarks/serve.py --bundle /tmp/ga --toolset google.cloud.aiplatform.v1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import grpc  # noqa: E402
from mcp import Client, StdioServerParameters  # noqa: E402

MB = 1024 * 1024
MARKER = "MCPGEN_BENCH_SERVER"
SAMPLE = 500
TARGETS = {  # issue 12
    "whole: initialize (s)": 3.0,
    "whole: RSS (MB)": 1024,
    "toolset: initialize (s)": 1.0,
    "toolset: RSS (MB)": 250,
    "search recall@5": 0.95,
    "search p99 (ms)": 20.0,
}


def build(googleapis: Path, out: Path) -> None:
    folders = [str(p) for p in sorted((googleapis / "google").iterdir())
               if p.is_dir() and p.name != "protobuf"]  # fmt: skip
    command = [sys.executable, "-m", "mcpgen", "build", "-I", str(googleapis), *folders]
    subprocess.run([*command, "-o", str(out), "--no-models"], check=True)


def rss_of(pid: int) -> tuple[float, float]:
    """VmRSS and VmHWM of a process, in MB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


def server_pid(marker: str) -> int:
    """The pid of the server process whose environment holds `marker` (the SDK spawns it)."""
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                environ = (proc / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if f"{MARKER}={marker}".encode() in environ:
                return int(proc.name)
    raise RuntimeError("server process not found")


async def start(bundle: Path | None, *flags: str) -> dict[str, Any]:
    """Start a bundle's server (None: the minimal SDK server) and time its answers."""
    marker = f"{time.time_ns()}"  # tells this run's server apart
    script = HERE / "minimal_server.py" if bundle is None else bundle / "server.py"
    params = StdioServerParameters(
        command=sys.executable,
        args=[str(script), *flags],
        env={**os.environ, MARKER: marker},
    )
    began = time.perf_counter()
    async with Client(params, mode="legacy") as client:
        initialized = time.perf_counter() - began
        pid = server_pid(marker)
        after_init = rss_of(pid)[0]
        page = await client.list_tools()
        listed = time.perf_counter() - began
        rss, hwm = rss_of(pid)
    return {"initialize_s": round(initialized, 2), "first_page_s": round(listed, 2),
            "tools_on_page": len(page.tools), "rss_after_initialize_mb": round(after_init),
            "rss_mb": round(rss), "peak_rss_mb": round(hwm)}  # fmt: skip


def queries(bundle_folder: Path) -> list[tuple[str, str]]:
    """(query, intended tool) for SAMPLE tools: the title's words and the service's name."""
    from mcpgen.contract import open_bundle

    view = open_bundle(bundle_folder)
    tools: list[tuple[str, str]] = []
    for shard in sorted(view.index.shards):
        entry = view.entry(shard)
        search = view.index.shards[shard].files.search
        titles = {t["name"]: t["title"] for t in json.loads(view.storage.read(search))["tools"]}
        for name in entry.tools:
            service = entry.methods[name].rsplit(".", 1)[0]
            tools.append((f"{titles[name]} {service}", name))
    return random.Random(0).sample(tools, min(SAMPLE, len(tools)))


def search_quality(bundle_folder: Path, sample: list[tuple[str, str]]) -> dict[str, Any]:
    """recall@5 and latency of the server's own search over the whole bundle."""
    from mcpgen.runtime.bundle import Bundle
    from mcpgen.runtime.discovery import index_of

    began = time.perf_counter()
    index = index_of(Bundle(bundle_folder))
    built = time.perf_counter() - began
    found, times = 0, []
    for query, wanted in sample:
        t = time.perf_counter()
        hits = index.search(query, 5)
        times.append((time.perf_counter() - t) * 1000)
        found += any(h.entry.name == wanted for h in hits)
    times.sort()
    recall = round(found / len(sample), 3)
    return {"tools": len(index), "queries": len(sample), "recall_at_5": recall,
            "p50_ms": round(statistics.median(times), 2),
            "p99_ms": round(times[int(len(times) * 0.99) - 1], 2),
            "index_build_s": round(built, 2)}  # fmt: skip


def filled(schema: dict[str, Any], depth: int = 0) -> Any:
    """The least a model would send: every required property, with a plain value of its type
    (what an LLM does with a schema; here only to reach the backend)."""
    kinds = schema.get("type")
    kind = kinds[0] if isinstance(kinds, list) else kinds
    if "enum" in schema:
        return schema["enum"][0]
    if kind == "object" or "properties" in schema:
        properties = schema.get("properties", {})
        return {name: filled(properties.get(name, {}), depth + 1)
                for name in schema.get("required", []) if depth < 8}  # fmt: skip
    if kind == "array":
        return []
    if kind in ("integer", "number"):
        return 0
    if kind == "boolean":
        return False
    for options in (schema.get("anyOf"), schema.get("oneOf")):
        if options:
            return filled(options[0], depth + 1)
    return "x"


class AnyMethod(grpc.GenericRpcHandler):
    """A real gRPC server that answers every method of every service with an empty message
    (valid for any message type): the backend for calls through `--discovery`."""

    def __init__(self) -> None:
        self.calls = 0

    def service(self, details: Any) -> Any:
        def answer(request: bytes, context: Any) -> bytes:
            self.calls += 1
            return b""

        return grpc.unary_unary_rpc_method_handler(answer)


async def end_to_end(bundle: Path, sample: list[tuple[str, str]]) -> dict[str, Any]:
    """Through `--discovery` over stdio, as a 40-tool client would: search with each query,
    describe the hit, and call it with its required arguments filled in (`filled`) against a
    backend that answers anything."""
    from concurrent import futures

    backend = AnyMethod()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers([backend])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    params = StdioServerParameters(
        command=sys.executable,
        args=[str(bundle / "server.py"), "--discovery", "--backend", f"127.0.0.1:{port}"],
    )
    outcomes = {"answered": 0, "refused_arguments": 0, "other": 0, "not_found": 0}
    try:
        async with Client(params, mode="legacy") as client:
            t = time.perf_counter()
            await client.call_tool("search_tools", {"query": sample[0][0], "limit": 5})
            first = time.perf_counter() - t
            times = []
            for query, wanted in sample[1:101]:
                t = time.perf_counter()
                found = await client.call_tool("search_tools", {"query": query, "limit": 5})
                times.append((time.perf_counter() - t) * 1000)
                names = [r["name"] for r in found.structured_content["results"]]
                if wanted not in names:
                    outcomes["not_found"] += 1
                    continue
                described = await client.call_tool("describe_tool", {"name": wanted})
                arguments = filled(described.structured_content["inputSchema"])
                called = await client.call_tool(
                    "call_tool", {"name": wanted, "arguments": arguments}
                )
                text = called.content[0].text if called.content else ""
                if not called.is_error:
                    outcomes["answered"] += 1
                elif text.startswith("Invalid arguments"):
                    outcomes["refused_arguments"] += 1  # a value `filled` got wrong
                else:
                    outcomes["other"] += 1
    finally:
        server.stop(None)
    return {"first_search_s": round(first, 2),
            "round_trip_p50_ms": round(statistics.median(times), 2),
            "calls_through_discovery": outcomes, "backend_calls": backend.calls}  # fmt: skip


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--googleapis", type=Path, help="unpacked google-proto-files (package/)")
    parser.add_argument("--bundle", type=Path, help="a built bundle (instead of --googleapis)")
    parser.add_argument("--toolset", default="google.cloud.aiplatform.v1",
                        help="the one toolset served (default: %(default)s)")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=3,
                        help="start-time rounds; medians reported (%(default)s)")  # fmt: skip
    args = parser.parse_args()
    if args.bundle is None:
        if args.googleapis is None:
            parser.error("give --bundle or --googleapis")
        args.bundle = Path(tempfile.mkdtemp(prefix="mcpgen-serve-")) / "bundle"
        build(args.googleapis, args.bundle)
    scenarios = {
        "minimal-sdk-server": (None,),
        "whole": (args.bundle,),
        "toolset": (args.bundle, "--toolset", args.toolset),
        "discovery": (args.bundle, "--discovery"),
    }
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in scenarios}
    for _ in range(args.rounds):  # interleaved: load on the machine hits every scenario
        for name, spec in scenarios.items():
            runs[name].append(await start(*spec))
    rows: dict[str, dict[str, Any]] = {
        name: {key: statistics.median(r[key] for r in found) for key in found[0]}
        for name, found in runs.items()
    }
    sample = queries(args.bundle)
    rows["search"] = search_quality(args.bundle, sample)
    rows["search_over_stdio"] = await end_to_end(args.bundle, sample)
    for name, row in rows.items():
        print(json.dumps({"scenario": name, **row}))
    measured = {
        "whole: initialize (s)": rows["whole"]["initialize_s"],
        "whole: RSS (MB)": rows["whole"]["peak_rss_mb"],
        "toolset: initialize (s)": rows["toolset"]["initialize_s"],
        "toolset: RSS (MB)": rows["toolset"]["peak_rss_mb"],
        "search recall@5": rows["search"]["recall_at_5"],
        "search p99 (ms)": rows["search"]["p99_ms"],
    }
    print(f"\n{'target':<26}{'measured':>10}{'limit':>8}")
    missed = False
    for key, limit in TARGETS.items():
        value = measured[key]
        ok = value >= limit if key == "search recall@5" else value <= limit
        missed |= not ok
        print(f"{key:<26}{value:>10}{limit:>8}  {'ok' if ok else 'MISSED'}")
    floor = rows["minimal-sdk-server"]["initialize_s"]
    print(f"\n{rows['search']['tools']} tools; RSS = the server's peak (VmHWM) after its first "
          f"tools/list page; one toolset = {args.toolset}; the smallest server on the same SDK "
          f"answers initialize after {floor} s (the floor of any start time here)")  # fmt: skip
    sys.exit(1 if missed else 0)


if __name__ == "__main__":
    asyncio.run(main())
