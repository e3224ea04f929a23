"""Server flags, shared by `python OUT/server.py` and `mcpgen serve OUT`.

Every flag can also come from the environment (`MCPGEN_<FLAG>`; repeatable flags take
whitespace-separated values there), so a container needs no command line.
"""

from __future__ import annotations

import ast
import asyncio
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from mcpgen.errors import UserError, guarded
from mcpgen.runtime import auth, observe
from mcpgen.runtime.limits import DEFAULT_MAX_BODY

if TYPE_CHECKING:
    from mcpgen.runtime.settings import ServerSettings

DEFAULT_NAME = "mcpgen"
WORKER_ENV = "_MCPGEN_WORKER"  # the bundle and flags, for the processes of --workers


def server_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The server's flags, as click options (each with its MCPGEN_* variable)."""
    options = [
        click.option("--transport", type=click.Choice(["stdio", "http"]), default="stdio",
                     envvar="MCPGEN_TRANSPORT", show_default=True, help="How clients connect."),
        click.option("--host", default="127.0.0.1", envvar="MCPGEN_HOST", show_default=True,
                     help="HTTP: address to bind."),
        click.option("--port", type=int, default=3000, envvar="MCPGEN_PORT", show_default=True,
                     help="HTTP: port to bind (0: one the system picks; the server says which "
                     "on stderr)."),
        click.option("--backend", "backends", multiple=True, envvar="MCPGEN_BACKEND",
                     metavar="[SERVICE=]TARGET",
                     help="Where services live: TARGET for all, SERVICE=TARGET for one "
                     "(full name, package prefix or simple name). Repeatable."),
        click.option("--stateless", is_flag=True, envvar="MCPGEN_STATELESS",
                     help="HTTP: no sessions; every request stands alone (for scale-out)."),
        click.option("--json-response", is_flag=True, envvar="MCPGEN_JSON_RESPONSE",
                     help="HTTP: answer with JSON instead of SSE streams."),
        click.option("--timeout", type=float, default=30.0, envvar="MCPGEN_TIMEOUT",
                     show_default=True, help="Deadline of a backend call, in seconds."),
        click.option("--tool-timeout", "tool_timeouts", multiple=True,
                     envvar="MCPGEN_TOOL_TIMEOUT", metavar="TOOL=SECONDS",
                     help="Deadline of one tool. Repeatable."),
        click.option("--max-stream-messages", type=click.IntRange(min=1), default=1000,
                     envvar="MCPGEN_MAX_STREAM_MESSAGES", show_default=True,
                     help="Server streams: messages kept in a result; the rest are dropped."),
        click.option("--forward-header", "forward_headers", multiple=True,
                     envvar="MCPGEN_FORWARD_HEADER", metavar="NAME",
                     help="HTTP: a request header sent to backends as gRPC metadata "
                     "(e.g. authorization). Repeatable."),
        click.option("--backend-tls", is_flag=True, envvar="MCPGEN_BACKEND_TLS",
                     help="Connect to backends with TLS (system roots unless --backend-ca)."),
        click.option("--backend-ca", envvar="MCPGEN_BACKEND_CA", metavar="FILE",
                     help="PEM roots that backend certificates must chain to."),
        click.option("--backend-cert", envvar="MCPGEN_BACKEND_CERT", metavar="FILE",
                     help="PEM client certificate for mTLS (with --backend-key)."),
        click.option("--backend-key", envvar="MCPGEN_BACKEND_KEY", metavar="FILE",
                     help="PEM private key of --backend-cert."),
        click.option("--allowed-origin", "allowed_origins", multiple=True,
                     envvar="MCPGEN_ALLOWED_ORIGINS", metavar="ORIGIN",
                     help="HTTP: an Origin browsers may call from (`:*` for any port). "
                     "Loopback origins are allowed on a loopback bind. Repeatable."),
        click.option("--allowed-host", "allowed_hosts", multiple=True,
                     envvar="MCPGEN_ALLOWED_HOSTS", metavar="HOST",
                     help="HTTP: a Host header to accept besides loopback names. Repeatable."),
        click.option("--max-body", type=click.IntRange(min=1), default=DEFAULT_MAX_BODY,
                     envvar="MCPGEN_MAX_BODY", metavar="BYTES", show_default=True,
                     help="HTTP: largest request body; larger ones get 413."),
        click.option("--shutdown-grace", type=click.FloatRange(min=0), default=30.0,
                     envvar="MCPGEN_SHUTDOWN_GRACE", metavar="SECONDS", show_default=True,
                     help="HTTP: on SIGTERM, how long in-flight calls may take to finish."),
        click.option("--keep-alive-timeout", type=click.FloatRange(min=0, min_open=True),
                     default=5.0, envvar="MCPGEN_KEEP_ALIVE_TIMEOUT", metavar="SECONDS",
                     show_default=True,
                     help="HTTP: how long an idle connection stays open; behind a load "
                     "balancer, longer than its idle timeout."),
        click.option("--workers", type=click.IntRange(min=1), default=1,
                     envvar="MCPGEN_WORKERS", metavar="N", show_default=True,
                     help="HTTP: serving processes; more than 1 implies --stateless."),
        # ---- which tools: every transport
        click.option("--toolset", "toolsets", multiple=True, envvar="MCPGEN_TOOLSET",
                     metavar="NAME",
                     help="Serve this toolset (a package, a registry service or one of the "
                     "config's; `mcpgen tools BUNDLE --toolsets` lists them). Repeatable; "
                     "with --tools, the union. Default: every tool."),
        click.option("--tools", "tool_globs", multiple=True, envvar="MCPGEN_TOOLS",
                     metavar="GLOB",
                     help="Serve the tools whose name or full method name (pkg.Service.Method) "
                     "matches. Repeatable."),
        click.option("--read-only", is_flag=True, envvar="MCPGEN_READ_ONLY",
                     help="Serve only tools whose readOnlyHint is true."),
        click.option("--watch", is_flag=True, envvar="MCPGEN_WATCH",
                     help="Reload the bundle when `mcpgen build` replaces it (SIGHUP reloads "
                     "without this too); clients are told the tool list changed."),
        click.option("--discovery", is_flag=True, envvar="MCPGEN_DISCOVERY",
                     help="List search_tools, describe_tool, call_tool and enable_toolset "
                     "instead of the tools (for clients that take few tools)."),
        click.option("--page-size", type=click.IntRange(min=1), default=100,
                     envvar="MCPGEN_PAGE_SIZE", show_default=True,
                     help="Tools per tools/list page."),
        click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
                     default="warning", envvar="MCPGEN_LOG_LEVEL", show_default=True,
                     help="Logging on stderr."),
        # ---- policy: every transport
        click.option("--scope", "scopes", multiple=True, envvar="MCPGEN_SCOPE",
                     metavar="TOOL=SCOPE[,SCOPE]",
                     help="Scopes that grant a tool (any one does), replacing the bundle's; "
                     "TOOL= for none. Repeatable."),
        click.option("--rate-limit", envvar="MCPGEN_RATE_LIMIT", metavar="RPS[:BURST]",
                     help="Token bucket of every tool: calls per second, and burst."),
        click.option("--rate-limit-per-caller", envvar="MCPGEN_RATE_LIMIT_PER_CALLER",
                     metavar="RPS[:BURST]", help="Token bucket of every caller (account)."),
        click.option("--rate-limit-store", envvar="MCPGEN_RATE_LIMIT_STORE", default="local",
                     metavar="local|URL", show_default=True,
                     help="Where the rate limits' buckets live: this process, or Redis "
                     "(redis://HOST:PORT/DB, rediss://..., unix:///PATH), shared by every "
                     "worker and replica."),
        click.option("--rate-limit-store-fallback", type=click.Choice(["local", "refuse"]),
                     default="local", envvar="MCPGEN_RATE_LIMIT_STORE_FALLBACK",
                     show_default=True,
                     help="While the Redis store is unreachable: limit each process on its own "
                     "(local), or refuse calls with UNAVAILABLE (refuse)."),
        click.option("--max-concurrency", type=click.IntRange(min=1), default=None,
                     envvar="MCPGEN_MAX_CONCURRENCY",
                     help="Calls in flight at most; more are refused at once (retry soon)."),
        click.option("--max-argument-bytes", type=click.IntRange(min=2), default=1024 * 1024,
                     envvar="MCPGEN_MAX_ARGUMENT_BYTES", show_default=True,
                     help="Largest arguments of a call, as JSON."),
        click.option("--max-argument-depth", type=click.IntRange(min=1, max=100), default=64,
                     envvar="MCPGEN_MAX_ARGUMENT_DEPTH", show_default=True,
                     help="Deepest nesting of a call's arguments."),
        click.option("--breaker-failures", type=click.IntRange(min=0), default=5,
                     envvar="MCPGEN_BREAKER_FAILURES", metavar="N", show_default=True,
                     help="Consecutive backend failures that open a target's circuit (calls "
                     "then fail fast); 0 disables the breakers."),
        click.option("--breaker-cooldown", type=click.FloatRange(min=0, min_open=True),
                     default=10.0, envvar="MCPGEN_BREAKER_COOLDOWN", metavar="SECONDS",
                     show_default=True, help="How long a circuit stays open before a probe."),
    ]  # fmt: skip
    options += [*auth.OPTIONS, *observe.OPTIONS]
    for option in reversed(options):
        func = option(func)
    return func


@dataclass(frozen=True, slots=True)
class ServerIdentity:
    """What the server says it is (serverInfo; at 2026-07-28 also on every result's `_meta`):
    server.py's name and version, and server.json's title, description and website."""

    name: str
    version: str
    title: str | None = None
    description: str | None = None
    website_url: str | None = None

    @classmethod
    def of_bundle(cls, folder: Path) -> ServerIdentity:
        """The name and version the build wrote into server.py (read as data, never run), and
        what server.json adds."""
        values: dict[str, str | None] = {"SERVER_NAME": DEFAULT_NAME, "SERVER_VERSION": None}
        try:
            tree = ast.parse((folder / "server.py").read_text(encoding="utf-8"))
        except (OSError, SyntaxError, ValueError):
            return cls.resolved(DEFAULT_NAME, None, folder)
        for node in tree.body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                target = node.targets[0]
                if isinstance(target, ast.Name) and target.id in values:
                    value = node.value
                    if isinstance(value, ast.Constant) and isinstance(value.value, str | None):
                        values[target.id] = value.value
        return cls.resolved(values["SERVER_NAME"] or DEFAULT_NAME, values["SERVER_VERSION"], folder)

    @classmethod
    def resolved(cls, name: str, version: str | None, folder: Path) -> ServerIdentity:
        """A server.py without a fixed version names its bundle by a digest of the index;
        server.json adds the title, description and website."""
        if version is None:
            from mcpgen import __version__
            from mcpgen.contract import INDEX, file_digest

            found = file_digest(folder / INDEX) or "sha256:unknown"
            version = f"{__version__}+{found.removeprefix('sha256:')[:12]}"
        try:
            described = json.loads((folder / "server.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            described = {}
        texts = described if isinstance(described, dict) else {}
        texts = {k: v for k, v in texts.items() if isinstance(v, str)}
        return cls(name, version, texts.get("title"), texts.get("description"),
                   texts.get("websiteUrl"))  # fmt: skip


def make_frontend(folder: Path, identity: ServerIdentity, settings: ServerSettings) -> Any:
    """The bundle's gateway and its MCP frontend, as the settings configure them (each worker
    process of `--workers` makes its own)."""
    from mcpgen.runtime.breaker import Breakers
    from mcpgen.runtime.bundle import Bundle
    from mcpgen.runtime.gateway import Gateway, GatewayOptions
    from mcpgen.runtime.grpc_backend import GrpcBackends
    from mcpgen.runtime.mucp_backend import MucpBackends
    from mcpgen.runtime.policy import Policy, PolicyOptions
    from mcpgen.runtime.reload import BundleWatcher
    from mcpgen.runtime.server import McpFrontend

    bundle = Bundle(folder, settings.selection)
    breakers = Breakers(settings.breaker_failures, settings.breaker_cooldown)
    backends = GrpcBackends(settings.backend, breakers)
    micro = MucpBackends(settings.backend, breakers)  # --backend users=HOST:PORT: its nodes
    unknown = set(settings.tool_timeouts) - bundle.all_names
    if unknown:
        raise UserError(f"--tool-timeout names unknown tools: {', '.join(sorted(unknown))}")
    observers = observe.from_flags(settings)
    policy = Policy(
        bundle.declared_scopes,
        PolicyOptions(
            scopes=dict(settings.scopes),
            rate_limit=settings.rate_limit,
            rate_limit_per_caller=settings.rate_limit_per_caller,
            max_concurrency=settings.max_concurrency,
        ),
        known=bundle.all_names,
        rates=_rate_store(settings, identity, observers),
    )
    gateway = Gateway(
        bundle,
        backends,
        GatewayOptions(
            timeout=settings.timeout,
            tool_timeouts=dict(settings.tool_timeouts),
            max_stream_messages=settings.max_stream_messages,
            forward_headers=settings.forward_headers,
            max_argument_bytes=settings.max_argument_bytes,
            max_depth=settings.max_argument_depth,
        ),
        micro=micro,
        policy=policy,
        observers=observers,
    )
    frontend = McpFrontend(
        gateway,
        identity.name,
        identity.version,
        identity=identity,
        page_size=settings.page_size,
        discovery=settings.discovery,
        stateless=settings.stateless,
    )
    watcher = BundleWatcher(
        folder,
        lambda: Bundle(folder, settings.selection),
        frontend.replace_bundle,
        poll=settings.watch,
    )
    gateway.reload = lambda: watcher.check(forced=True)
    frontend.watcher = watcher  # started by the transport, in its event loop
    return frontend


def _rate_store(settings: ServerSettings, identity: ServerIdentity, observers: list[Any]) -> Any:
    """The shared rate-limit store of `--rate-limit-store URL`; None for the local one."""
    from mcpgen.runtime.ratelimit import RedisRates

    if settings.rate_limit_store == "local":
        return None
    if settings.rate_limit is None and settings.rate_limit_per_caller is None:
        logging.getLogger(__name__).warning(
            "--rate-limit-store has nothing to store without --rate-limit or "
            "--rate-limit-per-caller"
        )
    metrics = [o for o in observers if isinstance(o, observe.Metrics)]
    return RedisRates(
        settings.rate_limit_store,
        namespace=identity.name,  # replicas of one server share buckets; other servers do not
        fallback=settings.rate_limit_store_fallback,
        observer=metrics[0] if metrics else None,
    )


def http_options(settings: ServerSettings) -> Any:
    from mcpgen.runtime.server import HttpOptions

    return HttpOptions(
        host=settings.host,
        port=settings.port,
        stateless=settings.stateless,
        json_response=settings.json_response,
        allowed_origins=list(settings.allowed_origins),
        allowed_hosts=list(settings.allowed_hosts),
        authenticator=auth.from_flags(settings),
        max_body=settings.max_body,
    )


def run_server(folder: Path, identity: ServerIdentity, **flags: Any) -> None:
    """Load the bundle and serve it until the transport closes (stdio) or a signal (HTTP)."""
    from mcpgen.runtime.settings import ServerSettings

    settings = ServerSettings.from_flags(flags)
    _configure_logging(settings.log_level)
    if settings.transport == "stdio":
        frontend = make_frontend(folder, identity, settings)
        asyncio.run(_serve_stdio(frontend, frontend.gateway))
        return
    import uvicorn

    if settings.workers == 1:
        # uvicorn re-raises the SIGTERM it shut down on; a graceful stop is a success (exit 0)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        frontend = make_frontend(folder, identity, settings)
        app = _http_app(frontend, settings)
        tools = len(frontend.gateway.bundle.names)
        config = uvicorn.Config(app, **_uvicorn_settings(settings))
        asyncio.run(_announcing(uvicorn.Server, tools)(config).serve())
        return
    make_frontend(folder, identity, settings)  # bad flags fail here, once, not in each worker
    http_options(settings)  # and so do bad authentication flags
    if not settings.stateless:
        logging.getLogger(__name__).warning(
            "--workers %d implies --stateless: processes share no sessions", settings.workers
        )
    spec = {"bundle": str(folder), "name": identity.name, "version": identity.version}
    spec["flags"] = {**flags, "stateless": True}  # the workers parse the same flags again
    os.environ[WORKER_ENV] = json.dumps(spec)  # spawned workers inherit the environment
    shared_metrics = None
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:  # /metrics of any worker sums them all
        shared_metrics = tempfile.mkdtemp(prefix="mcpgen-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = shared_metrics
    try:
        uvicorn.run(
            f"{__name__}:worker_app",
            factory=True,
            workers=settings.workers,
            **_uvicorn_settings(settings),
        )
    finally:
        if shared_metrics is not None:
            shutil.rmtree(shared_metrics, ignore_errors=True)


def _announcing(server: type, tools: int) -> type:
    """uvicorn's Server, saying on stderr where it listens once it does (with `--port 0`,
    the port the system chose: how scripts and tests learn it)."""

    class Announcing(server):  # type: ignore[misc, valid-type]
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets=sockets)
            for listening in getattr(self, "servers", ()):
                for sock in listening.sockets:
                    host, port = sock.getsockname()[:2]
                    host = f"[{host}]" if ":" in host else host
                    print(f"mcpgen: serving {tools} tools on http://{host}:{port}/mcp",
                          file=sys.stderr, flush=True)  # fmt: skip

    return Announcing


def worker_app() -> Any:
    """The app of one `--workers` process: uvicorn calls it in each worker, which builds its
    own gateway from the bundle and flags that `run_server` left in the environment."""
    from mcpgen.runtime.settings import ServerSettings

    spec = json.loads(os.environ[WORKER_ENV])
    settings = ServerSettings.from_flags(spec["flags"])
    _configure_logging(settings.log_level)
    identity = ServerIdentity(spec["name"], spec["version"])
    return _http_app(make_frontend(Path(spec["bundle"]), identity, settings), settings)


def _uvicorn_settings(settings: ServerSettings) -> dict[str, Any]:
    """uvicorn's settings; on SIGTERM/SIGINT it stops accepting, lets in-flight requests finish
    for up to --shutdown-grace seconds, then runs the lifespan shutdown (`Lifecycle`)."""
    return {
        "host": settings.host,
        "port": settings.port,
        "log_level": "warning",
        "lifespan": "on",
        "loop": "asyncio",  # grpc.aio's loop, with or without uvloop installed
        "timeout_graceful_shutdown": settings.shutdown_grace,
        "timeout_keep_alive": settings.keep_alive_timeout,
    }


def _http_app(frontend: Any, settings: ServerSettings) -> Any:
    """The HTTP app, which closes the gateway once the MCP session manager has stopped."""
    from mcpgen.runtime.limits import Lifecycle
    from mcpgen.runtime.server import http_app

    async def close() -> None:
        await frontend.watcher.stop()
        await frontend.gateway.close()

    app = http_app(frontend, http_options(settings))
    return Lifecycle(app, close, start=frontend.watcher.start)


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


async def _serve_stdio(frontend: Any, gateway: Any) -> None:
    from mcp.server.stdio import stdio_server

    frontend.watcher.start()
    try:
        async with stdio_server() as (read, write):
            server = frontend.server
            await server.run(read, write, server.create_initialization_options())
    finally:
        await frontend.watcher.stop()
        await gateway.close()


def serve_bundle(folder: Path, name: str = DEFAULT_NAME, version: str | None = None) -> None:
    """Entry point of a generated server.py: parse the flags and serve `folder`."""

    @click.command(context_settings={"help_option_names": ["-h", "--help"]})
    @server_options
    @guarded
    def command(**flags: Any) -> None:
        """Serve this bundle's tools over MCP, forwarding each call to its backend."""
        run_server(folder, ServerIdentity.resolved(name, version, folder), **flags)

    command(prog_name=f"python {folder.name}/server.py")
