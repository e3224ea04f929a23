"""Usage tracking: every call leaves one audit line and its metrics, on every transport, and no
secret reaches a log; OpenTelemetry spans in-process and exported over OTLP/HTTP."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import httpx
import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client.parser import text_string_to_metric_families

from mcpgen.errors import UserError
from mcpgen.runtime import observe
from mcpgen.runtime.bundle import Bundle
from mcpgen.runtime.gateway import Gateway
from mcpgen.runtime.grpc_backend import BackendConfig, GrpcBackends
from mcpgen.runtime.observe import AuditLog, Spans, rfc3339
from mcpgen.runtime.policy import Policy, PolicyOptions, Rate
from mcpgen.runtime.server import HttpOptions, McpFrontend, http_app
from mcpgen.runtime.settings import ServerSettings
from tests.conftest import HttpGateway
from tests.test_policy import bearer

pytestmark = pytest.mark.anyio
GET = "Library_GetBook"
CREATE = "Library_CreateBook"
BOOK = {"parent": "shelves/1", "book": {"title": "A"}}
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
FIELDS = {
    "trace_id", "timestamp", "tool", "account", "scopes_required", "allowed", "denied_reason",
    "duration_ms", "status", "transport",
}  # fmt: skip
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture
def anyio_backend():
    return "asyncio"


def audit_lines(path: Path) -> list[dict]:
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    for line in lines:
        assert set(line) == FIELDS
        assert TIMESTAMP.match(line["timestamp"]), line["timestamp"]
        assert re.fullmatch(r"[0-9a-f]{32}", line["trace_id"])
        assert line["duration_ms"] >= 0 and round(line["duration_ms"], 3) == line["duration_ms"]
    return lines


def outcome(line: dict) -> tuple:
    return (line["tool"], line["transport"], line["status"], line["allowed"], line["denied_reason"])


def samples(text: str) -> dict[tuple, float]:
    """`(name, label, value, ...)` → value of every sample of a Prometheus exposition."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, *sorted(sample.labels.items()))] = sample.value
    return out


def metric(scraped: dict[tuple, float], name: str, **labels: str) -> float:
    return scraped.get((name, *sorted(labels.items())), 0.0)


# ---- a real server over HTTP: REST and MCP ---------------------------------------------------


async def test_every_http_call_leaves_one_audit_line_and_its_metrics(
    tmp_path, library_bundle, library_backend
):
    log = tmp_path / "audit.jsonl"
    gateway = HttpGateway(
        library_bundle, "--backend", library_backend.target, "--audit-log", str(log),
        "--rate-limit", "0.001:2",  # two calls per tool, then a token every 1,000 s
    )  # fmt: skip
    try:
        with httpx.Client(base_url=gateway.base, timeout=10) as http:
            before = samples(http.get("/metrics").text)
            created = http.post(
                "/mcp/call",
                json={"tool": CREATE, "input": BOOK},
                headers={"traceparent": TRACEPARENT},
            )
            missing = http.post(
                "/mcp/call", json={"tool": GET, "input": {"name": "shelves/1/books/404"}}
            )
        async with Client(gateway.url, mode="legacy") as client:
            again = await client.call_tool(CREATE, BOOK)
            limited = await client.call_tool(CREATE, BOOK)
            invalid = await client.call_tool(GET, {"name": 3})
        with httpx.Client(base_url=gateway.base, timeout=10) as http:
            limited_rest = http.post(
                "/mcp/call", json={"tool": GET, "input": {"name": "shelves/1/books/1"}}
            )
            unknown = http.post("/mcp/call", json={"tool": "Nope", "input": {}})
            scrape = http.get("/metrics")
    finally:
        gateway.stop()

    assert (created.status_code, missing.status_code, limited_rest.status_code) == (200, 404, 429)
    assert not again.is_error and limited.is_error and invalid.is_error
    assert unknown.status_code == 404  # not a tool: no call, no line
    lines = audit_lines(log)
    assert [outcome(line) for line in lines] == [
        (CREATE, "rest", "OK", True, None),
        (GET, "rest", "NOT_FOUND", True, None),
        (CREATE, "http", "OK", True, None),
        (CREATE, "http", "DENIED", False, "rate_limit"),
        (GET, "http", "INVALID_ARGUMENT", True, None),
        (GET, "rest", "DENIED", False, "rate_limit"),
    ]
    assert lines[0]["trace_id"] == TRACEPARENT.split("-")[1] == created.json()["trace_id"]
    assert lines[1]["trace_id"] == missing.json()["trace_id"]
    assert {line["account"] for line in lines} == {"anonymous"}
    assert {line["scopes_required"] == [] for line in lines} == {True}

    assert scrape.headers["content-type"].startswith("text/plain; version=")
    after = samples(scrape.text)
    assert not [key for key in before if key[0].startswith("mcpgen_") and before[key]]
    calls = "mcpgen_tool_calls_total"
    assert metric(after, calls, tool=CREATE, status="OK") == 2
    assert metric(after, calls, tool=CREATE, status="DENIED") == 1
    assert metric(after, calls, tool=GET, status="NOT_FOUND") == 1
    assert metric(after, calls, tool=GET, status="INVALID_ARGUMENT") == 1
    assert metric(after, calls, tool=GET, status="DENIED") == 1
    assert sum(v for k, v in after.items() if k[0] == calls) == 6
    # latency of the admitted calls only
    assert metric(after, "mcpgen_tool_call_duration_seconds_count", tool=CREATE) == 2
    assert metric(after, "mcpgen_tool_call_duration_seconds_count", tool=GET) == 2
    assert metric(after, "mcpgen_tool_call_duration_seconds_bucket", tool=GET, le="30.0") == 2
    assert metric(after, "mcpgen_tool_calls_in_flight") == 0
    for tool in (CREATE, GET):
        assert metric(after, "mcpgen_denials_total", tool=tool, reason="rate_limit") == 1
        assert metric(after, "mcpgen_rate_limited_total", tool=tool) == 1


def token_file(folder: Path) -> Path:
    path = folder / "tokens.json"
    path.write_text(json.dumps({
        "SECRET-XYZ-reader": {"account": "reader", "scopes": ["books:read"]},
        "SECRET-XYZ-admin": {"account": "admin", "scopes": ["*"]},
    }))  # fmt: skip
    return path


def test_scope_denials_are_audited_and_counted(tmp_path, library_bundle, library_backend):
    log = tmp_path / "audit.jsonl"
    gateway = HttpGateway(
        library_bundle, "--backend", library_backend.target, "--audit-log", str(log),
        "--tokens", str(token_file(tmp_path)), "--scope", f"{CREATE}=books:write",
    )  # fmt: skip
    try:
        with httpx.Client(base_url=gateway.base, timeout=10) as http:
            call = {"tool": CREATE, "input": BOOK}
            denied = http.post("/mcp/call", json=call, headers=bearer("SECRET-XYZ-reader"))
            allowed = http.post("/mcp/call", json=call, headers=bearer("SECRET-XYZ-admin"))
            unauthenticated = http.post("/mcp/call", json=call, headers=bearer("wrong"))
            scrape = http.get("/metrics")  # open, like /health: no token
    finally:
        gateway.stop()
    assert (denied.status_code, allowed.status_code) == (403, 200)
    assert (unauthenticated.status_code, scrape.status_code) == (401, 200)
    lines = audit_lines(log)  # the 401 never reached a tool: no line
    assert [(line["account"], line["status"], line["denied_reason"]) for line in lines] == [
        ("reader", "DENIED", "scope"),
        ("admin", "OK", None),
    ]
    assert lines[0]["scopes_required"] == ["books:write"] and not lines[0]["allowed"]
    assert lines[0]["trace_id"] == denied.json()["trace_id"]
    after = samples(scrape.text)
    assert metric(after, "mcpgen_denials_total", tool=CREATE, reason="scope") == 1
    assert metric(after, "mcpgen_rate_limited_total", tool=CREATE) == 0
    assert metric(after, "mcpgen_tool_calls_total", tool=CREATE, status="DENIED") == 1
    assert metric(after, "mcpgen_tool_calls_total", tool=CREATE, status="OK") == 1
    assert len(library_backend.calls("CreateBook")) == 1


async def test_stdio_calls_are_audited(tmp_path, library_bundle, library_backend):
    log = tmp_path / "audit.jsonl"
    params = StdioServerParameters(
        command=sys.executable,
        args=[str(library_bundle / "server.py"), "--backend", library_backend.target,
              "--audit-log", str(log)],
    )  # fmt: skip
    async with Client(params, mode="legacy") as client:
        ok = await client.call_tool(CREATE, {"parent": "shelves/2", "book": {"title": "Emma"}})
        bad = await client.call_tool(CREATE, {"parent": 3})
    assert not ok.is_error and bad.is_error
    lines = audit_lines(log)
    assert [outcome(line) for line in lines] == [
        (CREATE, "stdio", "OK", True, None),
        (CREATE, "stdio", "INVALID_ARGUMENT", True, None),
    ]
    assert {line["account"] for line in lines} == {"local"}
    assert lines[0]["trace_id"] == library_backend.calls("CreateBook")[0].metadata["mcp-trace-id"]


@pytest.mark.parametrize("target", ["-", "/dev/stdout"])
def test_stdout_audit_log_is_refused_on_stdio(target, library_bundle):
    run = subprocess.run(
        [sys.executable, str(library_bundle / "server.py"), "--audit-log", target],
        capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60,
    )  # fmt: skip
    assert run.returncode != 0 and run.stdout == ""
    assert "carries MCP over --transport stdio" in run.stderr and "Traceback" not in run.stderr


def test_an_audit_log_that_cannot_be_opened_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match=r"--audit-log .*missing/audit\.jsonl: No such file"):
        AuditLog.open(str(tmp_path / "missing" / "audit.jsonl"), "http")


async def test_a_failing_audit_log_never_fails_calls(caplog, library_bundle, library_backend):
    loaded = Bundle(library_bundle)
    gateway = Gateway(
        loaded,
        GrpcBackends(BackendConfig.parse([library_backend.target])),
        observers=[AuditLog.open("/dev/full", "http")],  # every write: ENOSPC
    )
    app = http_app(McpFrontend(gateway, "library", "1"), HttpOptions())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        call = {"tool": CREATE, "input": BOOK}
        answers = [await http.post("/mcp/call", json=call) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    errors = [r for r in caplog.records if "cannot write the audit log" in r.getMessage()]
    assert len(errors) == 1 and "/dev/full" in errors[0].getMessage()


def test_timestamps_are_rfc3339_utc_with_milliseconds():
    assert rfc3339(0.5) == "1970-01-01T00:00:00.500Z"
    assert rfc3339(1_700_000_000.0429) == "2023-11-14T22:13:20.042Z"


# ---- no secret ever logged -------------------------------------------------------------------


async def test_no_secret_reaches_logs_or_audit_lines(tmp_path, library_bundle, library_backend):
    stdout, stderr = tmp_path / "stdout", tmp_path / "stderr"
    secret_headers = {"authorization": "Bearer SECRET-XYZ-admin", "x-api-key": "SECRET-XYZ"}
    book = {"title": "SECRET-ARG", "author": "SECRET-ARG"}
    with stdout.open("w") as out, stderr.open("w") as err:
        gateway = HttpGateway(
            library_bundle, "--backend", library_backend.target, "--log-level", "debug",
            "--audit-log", "-", "--forward-header", "authorization",
            "--tokens", str(token_file(tmp_path)), stdout=out, stderr=err,
        )  # fmt: skip
        try:
            with httpx.Client(base_url=gateway.base, headers=secret_headers, timeout=10) as http:
                ok = http.post(
                    "/mcp/call", json={"tool": CREATE, "input": {"parent": "p", "book": book}}
                )
                http.post("/mcp/call", json={"tool": GET, "input": {"name": "SECRET-ARG/x"}})
                http.post("/mcp/call", json={"tool": GET, "input": {"name": ["SECRET-ARG"]}})
                refused = http.post(
                    "/mcp/call", json={"tool": GET, "input": {"name": "SECRET-ARG"}},
                    headers=bearer("SECRET-XYZ-unknown"),
                )  # fmt: skip
            async with (
                httpx2.AsyncClient(headers=secret_headers, timeout=30) as http2,
                Client(streamable_http_client(gateway.url, http_client=http2), mode="legacy") as c,
            ):
                mcp_ok = await c.call_tool(CREATE, {"parent": "SECRET-ARG", "book": book})
                await c.call_tool(GET, {"name": {"SECRET-ARG": 1}})
        finally:
            gateway.stop()
    assert ok.status_code == 200 and not mcp_ok.is_error and refused.status_code == 401
    assert mcp_ok.structured_content["title"] == "SECRET-ARG"  # the secret was in the results
    assert (
        library_backend.calls("CreateBook")[0].metadata["authorization"]
        == bearer("SECRET-XYZ-admin")["authorization"]
    )
    assert " DEBUG " in stderr.read_text()  # debug logging was on
    lines = audit_lines(stdout)  # `--audit-log -` over HTTP: stdout
    assert [line["status"] for line in lines] == [
        "OK", "NOT_FOUND", "INVALID_ARGUMENT", "OK", "INVALID_ARGUMENT",
    ]  # fmt: skip
    for text in (stderr.read_text(), stdout.read_text()):
        assert "SECRET-XYZ" not in text and "SECRET-ARG" not in text


# ---- OpenTelemetry ---------------------------------------------------------------------------


def traced_gateway(bundle: Path, target: str) -> tuple[Gateway, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    loaded = Bundle(bundle)
    gateway = Gateway(
        loaded,
        GrpcBackends(BackendConfig.parse([target])),
        policy=Policy(loaded.declared_scopes, PolicyOptions(rate_limit=Rate(0.001, 1.0))),
        observers=[Spans(provider)],
    )
    return gateway, exporter


async def test_a_span_per_call_joins_the_callers_trace(library_bundle, library_backend):
    gateway, exporter = traced_gateway(library_bundle, library_backend.target)
    app = http_app(McpFrontend(gateway, "library", "1"), HttpOptions())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        call = {"tool": CREATE, "input": BOOK}
        joined = await http.post("/mcp/call", json=call, headers={"traceparent": TRACEPARENT})
        limited = await http.post("/mcp/call", json=call)
        missing = await http.post(
            "/mcp/call", json={"tool": GET, "input": {"name": "shelves/9/books/9"}}
        )
    assert (joined.status_code, limited.status_code, missing.status_code) == (200, 429, 404)
    spans = exporter.get_finished_spans()
    assert [s.name for s in spans] == [f"tools/call {CREATE}"] * 2 + [f"tools/call {GET}"]
    first, second, third = spans
    assert first.kind == SpanKind.SERVER
    assert format(first.context.trace_id, "032x") == TRACEPARENT.split("-")[1]
    assert first.parent is not None and first.parent.is_remote
    assert format(first.parent.span_id, "016x") == TRACEPARENT.split("-")[2]
    assert dict(first.attributes) == {
        "mcp.method.name": "tools/call",
        "mcp.tool.name": CREATE,
        "rpc.system": "grpc",
        "mcpgen.account": "anonymous",
        "mcpgen.status": "OK",
        "mcpgen.transport": "rest",
        "mcpgen.trace_id": joined.json()["trace_id"],
    }
    assert first.status.status_code == StatusCode.UNSET
    assert first.start_time < first.end_time
    # without a traceparent: a trace of its own, named by the call's trace id
    assert second.parent is None
    assert second.attributes["mcpgen.trace_id"] == limited.json()["trace_id"]
    assert second.attributes["mcpgen.denied_reason"] == "rate_limit"
    assert second.status.status_code == StatusCode.ERROR
    assert second.status.description == "DENIED"
    assert third.attributes["mcpgen.status"] == "NOT_FOUND"
    assert third.status.status_code == StatusCode.ERROR


class Collector(BaseHTTPRequestHandler):
    """An OTLP/HTTP trace receiver: keeps the spans of every export request."""

    spans: ClassVar[list] = []  # (resource attributes, span), shared by the handler instances

    def do_POST(self) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
            ExportTraceServiceResponse,
        )

        body = self.rfile.read(int(self.headers["content-length"]))
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                self.spans.extend((resource, span) for span in scope_spans.spans)
        answer = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: object) -> None:
        pass


async def test_otel_exports_spans_over_otlp_http(monkeypatch, library_bundle, library_backend):
    collector = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    Collector.spans = []
    threading.Thread(target=collector.serve_forever, daemon=True).start()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{collector.server_port}")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")  # ms between batches
    gateway = HttpGateway(library_bundle, "--backend", library_backend.target, "--otel")
    try:
        call = {"tool": CREATE, "input": BOOK}
        headers = {"traceparent": TRACEPARENT}
        answer = httpx.post(f"{gateway.base}/mcp/call", json=call, headers=headers, timeout=10)
        deadline = time.monotonic() + 30  # waits for the batch; asserts nothing about time
        while not Collector.spans and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        gateway.stop()
        collector.shutdown()
    assert answer.status_code == 200
    [(resource, span)] = Collector.spans
    assert resource["service.name"] == "mcpgen"
    assert span.name == f"tools/call {CREATE}"
    assert span.trace_id.hex() == TRACEPARENT.split("-")[1]
    assert span.parent_span_id.hex() == TRACEPARENT.split("-")[2]
    attributes = {a.key: a.value.string_value for a in span.attributes}
    assert attributes["mcp.tool.name"] == CREATE and attributes["mcpgen.status"] == "OK"


def test_otel_without_the_extra_is_a_user_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)  # as if not installed
    with pytest.raises(UserError) as error:
        observe.from_flags(ServerSettings(transport="stdio", otel=True))
    assert error.value.hint == "pip install 'mcpgen[otel]'"


def test_observers_the_flags_ask_for(tmp_path, monkeypatch):
    def kinds(**flags):
        settings = ServerSettings(transport="http").replace(**flags)
        return [type(o).__name__ for o in observe.from_flags(settings)]

    assert kinds() == ["Metrics"]
    assert kinds(metrics=False) == []
    assert kinds(transport="stdio") == []  # nothing would serve /metrics
    assert kinds(audit_log=str(tmp_path / "a.jsonl")) == ["AuditLog", "Metrics"]
    # a tracer provider set up before the server (opentelemetry-instrument): spans without --otel
    monkeypatch.setattr(observe.trace, "get_tracer_provider", TracerProvider)
    assert kinds(transport="stdio") == ["Spans"]


# ---- several processes -----------------------------------------------------------------------


def test_workers_share_their_counts_through_a_multiprocess_dir(
    tmp_path, monkeypatch, library_bundle, library_backend
):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    gateway = HttpGateway(library_bundle, "--backend", library_backend.target, "--workers", "2")
    try:
        with httpx.Client(base_url=gateway.base, timeout=10) as http:
            for _ in range(6):  # spread over the workers by the kernel
                call = {"tool": "Library_ListBooks", "input": {"parent": "shelves/1"}}
                assert http.post("/mcp/call", json=call).status_code == 200
            scrapes = [samples(http.get("/metrics").text) for _ in range(4)]
    finally:
        gateway.stop()
    calls = "mcpgen_tool_calls_total"
    for scraped in scrapes:  # whichever worker answers, it shows every worker's calls
        assert metric(scraped, calls, tool="Library_ListBooks", status="OK") == 6
        assert metric(scraped, "mcpgen_tool_calls_in_flight") == 0
    assert list(tmp_path.glob("counter_*.db"))
