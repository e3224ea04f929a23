"""The `mcpgen` command line (click). Bad input exits non-zero with a message, never a traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from mcpgen import __version__
from mcpgen.cache import ENV, Cache, default_dir
from mcpgen.config import CLIENT_PROFILES, Config, load_config
from mcpgen.diff import command as diff_command
from mcpgen.errors import UserError, Warnings
from mcpgen.errors import guarded as _guarded
from mcpgen.lint import command as lint_command
from mcpgen.progress import Progress
from mcpgen.runtime.cli import ServerIdentity, run_server, server_options


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mcpgen")
def main() -> None:
    """Compile service definitions into validated MCP tool bundles."""


def build_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The arguments of `build`, shared by `check` so both read the same inputs and config."""
    options = [
        click.argument("sources", nargs=-1),
        click.option("-I", "--import-path", "import_paths", multiple=True, metavar="DIR",
                     help="Folder that imports are relative to (repeatable)."),
        click.option("-o", "--out", default=None, metavar="OUT",
                     help="Bundle folder (default: mcp_bundle, or `out` in the config)."),
        click.option("--config", "config_file", default=None, metavar="FILE",
                     help="Config file (default: ./mcpgen.toml, or [tool.mcpgen] in "
                     "./pyproject.toml)."),
        click.option("--profile", type=click.Choice(CLIENT_PROFILES), default=None,
                     help="Write inputSchemas this client accepts (default: portable, which "
                     "all major ones do)."),
        click.option("--no-models", "no_models", is_flag=True,
                     help="Do not write the models/ modules."),
        click.option("--cache-dir", default=None, metavar="DIR",
                     help=f"Build cache folder (default: ${ENV}, else ~/.cache/mcpgen)."),
        click.option("--no-cache", "no_cache", is_flag=True,
                     help="Neither read nor write the build cache."),
        click.option("-q", "--quiet", is_flag=True, help="Print errors only."),
    ]  # fmt: skip
    for option in reversed(options):
        func = option(func)
    return func


def _config(
    sources: tuple[str, ...],
    import_paths: tuple[str, ...],
    out: str | None,
    config_file: str | None,
    profile: str | None,
    no_models: bool,
) -> Config:
    """The config file's settings, with the command line's on top."""
    config = load_config(config_file)
    if sources:
        config.sources = list(sources)
    config.import_paths = list(import_paths) + config.import_paths
    if out is not None:
        config.out = out
    if profile is not None:
        config.profile = profile
    if no_models:
        config.models = False
    return config


def _cache(cache_dir: str | None, no_cache: bool) -> Cache:
    if no_cache:
        return Cache.disabled()
    return Cache(Path(cache_dir) if cache_dir else default_dir())


def _print_warnings(warnings: Warnings, quiet: bool) -> None:
    if not quiet:
        for warning in warnings.items:
            click.echo(f"warning: {warning}", err=True)


@main.command()
@build_options
@click.option("--watch", is_flag=True,
              help="Rebuild whenever the sources change (files, etcd:// and grpc:// sources), "
              "until interrupted.")  # fmt: skip
@click.option("--interval", type=click.FloatRange(min=0.1), default=2.0, show_default=True,
              metavar="SECONDS", help="--watch: seconds between looks at the sources.")  # fmt: skip
@_guarded
def build(
    quiet: bool,
    cache_dir: str | None,
    no_cache: bool,
    watch: bool,
    interval: float,
    **options: Any,
) -> None:
    """Build SOURCES (.proto files, folders, descriptor sets, registry snapshots, and live
    systems: etcd://HOST:PORT for a go-micro registry, grpc://HOST:PORT for reflection) into a
    bundle."""
    from mcpgen.build import build as run_build
    from mcpgen.watch import live_config
    from mcpgen.watch import watch as watch_sources

    config = _config(**options)
    cache = _cache(cache_dir, no_cache)

    def once(config: Config, warnings: Warnings) -> None:
        progress = Progress(enabled=False if quiet else None)  # on a terminal only
        try:
            result = run_build(config, warnings, progress, cache)
        finally:
            progress.clear()
            _print_warnings(warnings, quiet)
            warnings.items.clear()  # printed once (the live sources' too, when it fails)
        if not quiet:
            click.echo(result.summary(_shown(result.out)), err=True)

    if watch:
        click.echo(f"mcpgen: watching the sources every {interval:g} s (Ctrl-C stops)", err=True)
        try:
            watch_sources(config, once, lambda line: click.echo(line, err=True), interval)
        except KeyboardInterrupt:
            click.echo("mcpgen: stopped watching", err=True)
        return
    warnings = Warnings()
    try:
        with live_config(config, warnings) as built:
            once(built, warnings)
    finally:
        _print_warnings(warnings, quiet)  # a live source's, when capturing it failed


@main.command()
@build_options
@_guarded
def check(quiet: bool, cache_dir: str | None, no_cache: bool, **options: Any) -> None:
    """Exit 0 if OUT is exactly what `build` would write; else 1 and what differs.

    An unchanged tree is decided from the digests the bundle records, without rendering;
    anything else is built into a temporary folder and compared file by file."""
    from mcpgen.check import check as run_check

    warnings = Warnings()
    progress = Progress(enabled=False if quiet else None)
    from mcpgen.watch import live_config

    try:
        with live_config(_config(**options), warnings) as config:
            verdict = run_check(config, warnings, progress, _cache(cache_dir, no_cache))
    finally:
        progress.clear()
        _print_warnings(warnings, quiet)
    shown = _shown(verdict.out)
    if verdict.stale:
        click.echo(verdict.report(shown), err=True)
        click.echo(
            "hint: run `mcpgen build` with the same arguments and commit the bundle", err=True
        )
        sys.exit(1)
    if not quiet:
        how = "from its digests" if verdict.by_digest else "compared file by file"
        click.echo(f"mcpgen: {shown}/ is up to date ({verdict.tools} tools, {how})", err=True)


@main.command("tools")
@click.argument("bundle", default="mcp_bundle")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help='Print {"tools": [...], "routes": {...}} for the whole bundle '
    '(with --toolsets: {"toolsets": [...]}).',
)
@click.option(
    "--toolsets",
    "toolsets",
    is_flag=True,
    help="List the toolsets (packages, registry services, the config's) and their sizes.",
)
@_guarded
def list_tools(bundle: str, as_json: bool, toolsets: bool) -> None:
    """List the tools of BUNDLE (default: mcp_bundle)."""
    from mcpgen.contract import open_bundle

    view = open_bundle(bundle)
    if toolsets:
        _print_toolsets(view, as_json)
        return
    if as_json:
        _print_json(view)
        return
    from mcpgen.templating import render

    click.echo(f"{view.index.tool_count} tool(s) in {bundle} ({view.index.generator})")
    tools = []
    for tool, route in view.tools():
        schema = tool.get("inputSchema", {})
        required = set(schema.get("required", []))
        inputs = ", ".join(
            name + ("*" if name in required else "") for name in schema.get("properties", {})
        )
        tools.append((tool, route, inputs))
        if len(tools) == 1000:  # a screenful at a time, not the whole bundle in memory
            click.echo(render("tools.txt.j2", tools=tools), nl=False)
            tools = []
    if tools:
        click.echo(render("tools.txt.j2", tools=tools), nl=False)


def _print_toolsets(view: Any, as_json: bool) -> None:
    """Every toolset with its size and how many of its tools are read-only."""
    from mcpgen.toolsets import all_toolsets

    view.require_current("lists toolsets of")
    entries = {name: view.entry(name) for name in view.index.shards}
    read_only = {t for e in entries.values() for t in e.read_only}
    rows = [
        {
            "name": t.name,
            "kind": t.kind,
            "tools": len(t.tools),
            "readOnly": sum(1 for n in t.tools if n in read_only),
        }
        for t in all_toolsets(view.index, entries)
    ]
    if as_json:
        import orjson

        sys.stdout.buffer.write(orjson.dumps({"toolsets": rows}, option=orjson.OPT_INDENT_2))
        sys.stdout.buffer.write(b"\n")
        return
    width = max((len(r["name"]) for r in rows), default=4)
    click.echo(f"{len(rows)} toolset(s) in {view.label}")
    for r in rows:
        click.echo(f"  {r['name']:<{width}}  {r['kind']:<7}  {r['tools']:>5} tool(s), "
                   f"{r['readOnly']} read-only")  # fmt: skip


def _print_json(view: Any) -> None:
    """The whole bundle as one JSON document, written tool by tool (shards stay on disk)."""
    import orjson

    out = sys.stdout.buffer
    routes: dict[str, Any] = {}
    out.write(b'{"tools": [')
    first = True
    for tool, route in view.tools():
        out.write(b"\n  " if first else b",\n  ")
        out.write(orjson.dumps(tool))
        routes[tool["name"]] = route.to_json()
        first = False
    out.write(b'\n], "routes": ' if not first else b'], "routes": ')
    out.write(orjson.dumps(routes))
    out.write(b"}\n")
    out.flush()


def _shown(path: Path) -> str:
    try:
        return path.resolve().relative_to(Path.cwd()).as_posix()
    except ValueError:
        return path.as_posix()


@main.command("serve", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("bundle", default="mcp_bundle", type=click.Path(file_okay=False, path_type=Path))
@server_options
@_guarded
def serve(bundle: Path, **flags: Any) -> None:
    """Serve a bundle (same as `python BUNDLE/server.py [flags]`)."""
    run_server(bundle, ServerIdentity.of_bundle(bundle), **flags)


@main.command("snapshot")
@click.argument("source")
@click.option("-o", "--out", required=True, metavar="FILE", help="File to write (.binpb or .json).")
@click.option(
    "--tls", is_flag=True, help="grpc, etcd: connect with TLS (system roots unless --ca)."
)
@click.option("--ca", default=None, metavar="FILE", help="grpc, etcd: PEM roots (implies --tls).")
@click.option(
    "--service", "services", multiple=True, metavar="NAME",
    help="grpc: capture only this service (full name; repeatable).",
)  # fmt: skip
@click.option(
    "--header", "headers", multiple=True, metavar="NAME:VALUE",
    help="grpc: metadata sent with reflection calls, e.g. 'authorization: Bearer ...'.",
)  # fmt: skip
@click.option(
    "--prefix", default="/micro/registry/", show_default=True,
    help="etcd: the key prefix of go-micro's registry.",
)  # fmt: skip
@click.option(
    "--timeout",
    type=float,
    default=10.0,
    show_default=True,
    help="grpc: deadline of the whole capture; etcd: of each request (seconds).",
)
@_guarded
def snapshot(
    source: str,
    out: str,
    tls: bool,
    ca: str | None,
    services: tuple[str, ...],
    headers: tuple[str, ...],
    prefix: str,
    timeout: float,
) -> None:
    """Capture a live schema: grpc://HOST:PORT (reflection) or etcd://HOST:PORT (go-micro)."""
    from mcpgen.snapshot import SnapshotOptions, take

    pairs = []
    for header in headers:
        name, sep, value = header.partition(":")
        if not sep or not name.strip():
            raise UserError(f"--header {header!r} is not NAME:VALUE")
        pairs.append((name.strip().lower(), value.strip()))
    options = SnapshotOptions(
        out=Path(out),
        tls=tls or ca is not None,
        ca=Path(ca) if ca else None,
        services=list(services),
        headers=pairs,
        prefix=prefix,
        timeout=timeout,
    )
    warnings = Warnings()
    try:
        result = take(source, options, warnings)
    finally:
        for warning in warnings.items:
            click.echo(f"warning: {warning}", err=True)
    click.echo(f"mcpgen: {result.summary} → {_shown(result.out)}", err=True)


main.add_command(diff_command)  # commands whose logic and options live in their own modules
main.add_command(lint_command)
