"""What every call leaves behind: audit lines, Prometheus metrics, OpenTelemetry spans.

Each is an `Observer` of the gateway (`gateway.Observer`): told when a call starts and given
its `CallRecord` when it ends, whatever the transport and whatever the outcome. A record holds
no arguments, tokens or headers, so nothing an observer writes can leak them. Observers run on
the call's path: they must stay cheap and must never raise.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click
import orjson
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from mcpgen import __version__
from mcpgen.errors import UserError

if TYPE_CHECKING:
    from mcpgen.runtime.gateway import CallRecord, Observer

logger = logging.getLogger(__name__)

#: Loggers that write whole payloads (results echo arguments) at DEBUG: never below INFO.
PAYLOAD_LOGGERS = ("sse_starlette",)

#: The server flags of usage tracking (click options), added to `runtime.cli.server_options`.
OPTIONS: list[Callable[..., Any]] = [
    click.option("--audit-log", envvar="MCPGEN_AUDIT_LOG", metavar="FILE|-",
                 help="Append one JSON line per tool call, denials included, to FILE "
                 "(`-`: stdout, HTTP only)."),
    click.option("--metrics/--no-metrics", default=True, envvar="MCPGEN_METRICS",
                 show_default=True, help="HTTP: count calls and serve them at GET /metrics."),
    click.option("--otel", is_flag=True, envvar="MCPGEN_OTEL",
                 help="Export an OpenTelemetry span per tool call over OTLP/HTTP "
                 "(OTEL_EXPORTER_OTLP_ENDPOINT); needs mcpgen[otel]."),
]  # fmt: skip


def from_flags(settings: Any) -> list[Observer]:
    """The observers the server's settings (`runtime.settings.ServerSettings`) ask for.

    Spans also without `--otel` when a tracer provider is already set up (for example by
    `opentelemetry-instrument` from the `OTEL_*` variables): the gateway then joins its traces.
    """
    for name in PAYLOAD_LOGGERS:  # no secret ever logged, even at --log-level debug
        logging.getLogger(name).setLevel(max(logging.INFO, logging.getLogger().level))
    observers: list[Observer] = []
    if settings.audit_log:
        observers.append(AuditLog.open(settings.audit_log, settings.transport))
    if settings.metrics and settings.transport == "http":  # nothing serves /metrics on stdio
        observers.append(Metrics())
    if settings.otel:
        observers.append(Spans(otlp_provider()))
    elif not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        observers.append(Spans())
    return observers


# ---- audit lines -----------------------------------------------------------------------------


class AuditLog:
    """One JSON line per finished call, appended with a single `write` to an `O_APPEND` file:
    lines of several processes (`--workers`) sharing the file never interleave."""

    def __init__(self, fd: int, name: str) -> None:
        self.fd = fd
        self.name = name
        self.failing = False

    @classmethod
    def open(cls, target: str, transport: str) -> AuditLog:
        """`target` is a path or `-` (stdout); stdout is refused on stdio, where it is the MCP
        channel (`/dev/stderr` is a path that works there)."""
        if target == "-":
            fd, name = sys.stdout.fileno(), "stdout"
        else:
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
            try:
                fd, name = os.open(target, flags, 0o640), target
            except OSError as error:
                raise UserError(f"--audit-log {target}: {error.strerror}") from None
        if transport == "stdio" and _same_file(fd, sys.stdout.fileno()):
            raise UserError(
                "--audit-log would write to stdout, which carries MCP over --transport stdio",
                hint="give a file (or /dev/stderr) instead",
            )
        return cls(fd, name)

    def started(self, tool: str) -> None:
        pass

    def finished(self, record: CallRecord) -> None:
        line = orjson.dumps(
            {
                "trace_id": record.trace_id,
                "timestamp": rfc3339(time.time() - record.duration_ms / 1000),
                "tool": record.tool,
                "account": record.account,
                "scopes_required": record.scopes_required,
                "allowed": record.allowed,
                "denied_reason": record.denied_reason,
                "duration_ms": round(record.duration_ms, 3),
                "status": record.status,
                "transport": record.transport,
            },
            option=orjson.OPT_APPEND_NEWLINE,
        )
        try:
            os.write(self.fd, line)
        except OSError as error:  # a full disk must not fail calls; say so once
            if not self.failing:
                self.failing = True
                logger.error("cannot write the audit log %s: %s", self.name, error.strerror)


def rfc3339(seconds: float) -> str:
    """UTC with milliseconds, e.g. `2025-01-31T12:00:00.123Z`."""
    whole = int(seconds)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
    return f"{stamp}.{int((seconds - whole) * 1000):03d}Z"


def _same_file(fd: int, other: int) -> bool:
    try:
        a, b = os.fstat(fd), os.fstat(other)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


# ---- Prometheus ------------------------------------------------------------------------------

#: Latency buckets in seconds: 1 ms to the 30 s default deadline.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """Counters of one gateway, in its own registry, served at `GET /metrics`.

    Each process counts its own calls; with `PROMETHEUS_MULTIPROC_DIR` set (an empty folder
    shared by the processes of `--workers`), `/metrics` shows the sum of all of them.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        if self.multiprocess:  # a live process's in-flight calls count; a dead one's go
            atexit.register(multiprocess.mark_process_dead, os.getpid())
        registry = self.registry
        self.calls = Counter(
            "mcpgen_tool_calls",
            "Tool calls by outcome (a gRPC code name, DENIED or INVALID_ARGUMENT).",
            ["tool", "status"],
            registry=registry,
        )
        self.duration = Histogram(
            "mcpgen_tool_call_duration_seconds",
            "Latency of the calls the policy admitted.",
            ["tool"],
            buckets=BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            "mcpgen_tool_calls_in_flight",
            "Tool calls being served.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.denials = Counter(
            "mcpgen_denials",
            "Calls the policy refused, by reason.",
            ["tool", "reason"],
            registry=registry,
        )
        self.rate_limited = Counter(
            "mcpgen_rate_limited", "Calls refused by a rate limit.", ["tool"], registry=registry
        )
        self.store_up = Gauge(
            "mcpgen_rate_limit_store_up",
            "1 while the shared rate-limit store (--rate-limit-store) answers, else 0.",
            ["store"],
            registry=registry,
            multiprocess_mode="livemin",
        )
        self.store_fallbacks = Counter(
            "mcpgen_rate_limit_store_fallbacks",
            "Calls decided without the unreachable rate-limit store, by fallback policy.",
            ["policy"],
            registry=registry,
        )
        # labelled children, looked up once: `labels()` costs about a microsecond a call
        self._calls: dict[tuple[str, str], Any] = {}
        self._durations: dict[str, Any] = {}
        self._denials: dict[tuple[str, str], Any] = {}

    def started(self, tool: str) -> None:
        self.in_flight.inc()

    def finished(self, record: CallRecord) -> None:
        self.in_flight.dec()
        key = (record.tool, record.status)
        counter = self._calls.get(key)
        if counter is None:
            counter = self._calls[key] = self.calls.labels(*key)
        counter.inc()
        if record.allowed:
            histogram = self._durations.get(record.tool)
            if histogram is None:
                histogram = self._durations[record.tool] = self.duration.labels(record.tool)
            histogram.observe(record.duration_ms / 1000)
            return
        reason = record.denied_reason or ""
        denials = self._denials.get((record.tool, reason))
        if denials is None:
            denials = self._denials[record.tool, reason] = self.denials.labels(record.tool, reason)
        denials.inc()
        if reason == "rate_limit":
            self.rate_limited.labels(record.tool).inc()

    def store_state(self, store: str, up: bool) -> None:
        self.store_up.labels(store).set(1 if up else 0)

    def store_fallback(self, policy: str) -> None:
        self.store_fallbacks.labels(policy).inc()

    def render(self) -> tuple[bytes, str]:
        """The text exposition of `GET /metrics` and its content type."""
        registry = self.registry
        if self.multiprocess:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST


# ---- OpenTelemetry ---------------------------------------------------------------------------

_TRACE_CONTEXT = TraceContextTextMapPropagator()


class Spans:
    """A span per tool call, `tools/call <tool>`, made once the call ended with its real start
    and end times (the observer has no handle per call to keep a span open in).

    Its parent is the current span when there is one (an instrumented HTTP server), else the
    caller's `traceparent`, so the span's trace id is the call's `trace_id` in audit lines. A
    call without either starts a trace of its own; `mcpgen.trace_id` still names the call.
    """

    def __init__(self, provider: trace.TracerProvider | None = None) -> None:
        self.tracer = trace.get_tracer("mcpgen", __version__, tracer_provider=provider)

    def started(self, tool: str) -> None:
        pass

    def finished(self, record: CallRecord) -> None:
        end = time.time_ns()
        parent = None
        if record.traceparent and not trace.get_current_span().get_span_context().is_valid:
            parent = _TRACE_CONTEXT.extract({"traceparent": record.traceparent})
        attributes: dict[str, Any] = {
            "mcp.method.name": "tools/call",
            "mcp.tool.name": record.tool,
            "rpc.system": record.backend,
            "mcpgen.account": record.account,
            "mcpgen.status": record.status,
            "mcpgen.transport": record.transport,
            "mcpgen.trace_id": record.trace_id,
        }
        if record.denied_reason:
            attributes["mcpgen.denied_reason"] = record.denied_reason
        span = self.tracer.start_span(
            f"tools/call {record.tool}",
            context=parent,
            kind=trace.SpanKind.SERVER,
            attributes=attributes,
            start_time=end - int(record.duration_ms * 1_000_000),
        )
        if record.status != "OK":
            span.set_status(trace.Status(trace.StatusCode.ERROR, record.status))
        span.end(end_time=end)


def otlp_provider() -> trace.TracerProvider:
    """The SDK's tracer provider exporting over OTLP/HTTP in batches, set as the global one.

    The SDK reads the standard variables: `OTEL_EXPORTER_OTLP_ENDPOINT` (or
    `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`), `OTEL_SERVICE_NAME` (default here: mcpgen),
    `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`, `OTEL_SDK_DISABLED`, ...
    """
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        raise UserError(
            "--otel needs the OpenTelemetry SDK and its OTLP exporter",
            hint="pip install 'mcpgen[otel]'",
        ) from None
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: "mcpgen"}))
    provider = TracerProvider(resource=resource)  # flushed at exit
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return provider
