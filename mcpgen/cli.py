"""The `mcpgen` command line (click). Bad input exits non-zero with a message, never a traceback."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from mcpgen import __version__
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
        click.option("--no-models", "no_models", is_flag=True, help="Do not write models.py."),
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


def _print_warnings(warnings: Warnings, quiet: bool) -> None:
    if not quiet:
        for warning in warnings.items:
            click.echo(f"warning: {warning}", err=True)


@main.command()
@build_options
@_guarded
def build(quiet: bool, **options: Any) -> None:
    """Build SOURCES (.proto files, folders, descriptor sets, registry snapshots) into a bundle."""
    from mcpgen.build import build as run_build

    warnings = Warnings()
    progress = Progress(enabled=False if quiet else None)  # on a terminal only
    try:
        result = run_build(_config(**options), warnings, progress)
    finally:
        progress.clear()
        _print_warnings(warnings, quiet)
    if not quiet:
        click.echo(
            f"mcpgen: {len(result.tools)} tools from {result.services} services "
            f"→ {_shown(result.out)}/ ({result.skipped} skipped, {result.seconds:.2f} s)",
            err=True,
        )


@main.command()
@build_options
@_guarded
def check(quiet: bool, **options: Any) -> None:
    """Exit 0 if OUT is exactly what `build` would write; else 1 and what differs."""
    from mcpgen.build import compile_bundle
    from mcpgen.check import compare, report

    warnings = Warnings()
    try:
        result = compile_bundle(_config(**options), warnings)
    finally:
        _print_warnings(warnings, quiet)
    staleness = compare(result)
    shown = _shown(result.out)
    if staleness.stale:
        click.echo(report(staleness, shown), err=True)
        click.echo(
            "hint: run `mcpgen build` with the same arguments and commit the bundle", err=True
        )
        sys.exit(1)
    if not quiet:
        click.echo(f"mcpgen: {shown}/ is up to date ({len(result.tools)} tools)", err=True)


@main.command("tools")
@click.argument("bundle", default="mcp_bundle")
@_guarded
def list_tools(bundle: str) -> None:
    """List the tools of BUNDLE (default: mcp_bundle)."""
    from mcpgen.templating import render

    path = Path(bundle)
    manifest_path = path / "manifest.json" if path.is_dir() else path
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        tools = manifest["tools"]
    except FileNotFoundError as exc:
        raise UserError(f"no manifest at {manifest_path}", hint="run `mcpgen build` first") from exc
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise UserError(f"{manifest_path} is not an mcpgen manifest") from exc
    inputs = {}
    for tool in tools:
        schema = tool.get("inputSchema", {})
        required = set(schema.get("required", []))
        inputs[tool["name"]] = ", ".join(
            name + ("*" if name in required else "") for name in schema.get("properties", {})
        )
    click.echo(render("tools.txt.j2", manifest=manifest, bundle=bundle, inputs=inputs), nl=False)


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
