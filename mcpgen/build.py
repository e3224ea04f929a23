"""The pipeline, start to end: config → sources → Catalog → schemas → tools → checks → bundle."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from mcpgen.config import Config
from mcpgen.emit import Chunks, ToolJson, bundle_files, write_bundle
from mcpgen.errors import Warnings
from mcpgen.model import Catalog
from mcpgen.progress import Progress
from mcpgen.schema import SchemaRenderer
from mcpgen.sources import load_catalog
from mcpgen.tools import PlannedTool, plan_tools, render_tool
from mcpgen.validate import validate_tools


@dataclass(slots=True)
class BuildResult:
    catalog: Catalog
    tools: list[ToolJson]
    files: dict[str, Chunks]
    out: Path
    seconds: float = 0.0
    warnings: Warnings = field(default_factory=Warnings)

    def content(self, name: str) -> bytes:
        """One file of the bundle as bytes (for tests and checks; large for big builds)."""
        return b"".join(self.files[name])

    @property
    def services(self) -> int:
        return len({t.route["service"] for t in self.tools})

    @property
    def skipped(self) -> int:
        """RPCs and endpoints the build found but made no tool of (each named in a warning)."""
        total = sum(len(s.methods) for s in self.catalog.services)
        return total - len(self.tools) + len(self.catalog.skipped)


def _render_share(
    catalog: Catalog, config: Config, share: list[PlannedTool], progress: Progress
) -> list[ToolJson]:
    """Render, check and serialize tools.

    Serialized per tool, so that the manifest frame can be written around any set of tools.
    (Splitting this between two forked processes was tried: copy-on-write of the shared catalog
    doubled peak memory to 3.4 GB on googleapis and the run got slower, so it stays serial.)
    """
    renderer = SchemaRenderer(
        catalog,
        recursion_depth=config.recursion_depth,
        portable_max_nodes=config.portable_max_nodes,
    )
    specs = []
    for planned in share:
        specs.append(render_tool(planned, config, renderer))
        progress.count("tools rendered", len(specs), len(share))
    progress.stage(f"checking {len(specs):,} tools")
    validate_tools(
        specs,
        portable_inputs=config.schema_profile == "portable",
        profile=config.profile,
        server_name=config.server_name,
    )
    return [ToolJson.of(spec) for spec in specs]


def compile_bundle(
    config: Config, warnings: Warnings | None = None, progress: Progress | None = None
) -> BuildResult:
    """Run every stage in memory; nothing is written."""
    started = time.perf_counter()
    warnings = warnings or Warnings()
    progress = progress or Progress.silent()
    progress.stage(f"compiling {len(config.sources)} source(s)")
    catalog = load_catalog(config.sources, config.import_paths, warnings)
    progress.stage(f"{len(catalog.files):,} files compiled")
    planned = plan_tools(catalog, config, warnings)
    tools = _render_share(catalog, config, planned, progress)
    if config.models:
        progress.stage(f"generating models.py for {len(tools):,} tools")
    files = bundle_files(
        tools,
        catalog,
        config.server_name,
        config.server_version,
        models=config.models,
        profile=config.profile,
    )
    return BuildResult(
        catalog=catalog,
        tools=tools,
        files=files,
        out=Path(config.out),
        seconds=time.perf_counter() - started,
        warnings=warnings,
    )


def build(
    config: Config, warnings: Warnings | None = None, progress: Progress | None = None
) -> BuildResult:
    progress = progress or Progress.silent()
    result = compile_bundle(config, warnings, progress)
    progress.stage(f"writing {len(result.files)} files")
    write_bundle(result.out, result.files)
    progress.clear()
    return result
