"""The pipeline, start to end: config → sources → Catalog → schemas → tools → checks → bundle."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from mcpgen.config import Config
from mcpgen.emit import bundle_files, write_bundle
from mcpgen.errors import Warnings
from mcpgen.model import Catalog
from mcpgen.schema import SchemaRenderer
from mcpgen.sources import load_catalog
from mcpgen.tools import ToolSpec, build_tools
from mcpgen.validate import validate_tools


@dataclass(slots=True)
class BuildResult:
    catalog: Catalog
    tools: list[ToolSpec]
    files: dict[str, bytes]
    out: Path
    seconds: float = 0.0
    warnings: Warnings = field(default_factory=Warnings)

    @property
    def services(self) -> int:
        return len({t.route["service"] for t in self.tools})

    @property
    def skipped(self) -> int:
        total = sum(len(s.methods) for s in self.catalog.services)
        return total - len(self.tools)


def compile_bundle(config: Config, warnings: Warnings | None = None) -> BuildResult:
    """Run every stage in memory; nothing is written."""
    started = time.perf_counter()
    warnings = warnings or Warnings()
    catalog = load_catalog(config.sources, config.import_paths, warnings)
    renderer = SchemaRenderer(
        catalog,
        recursion_depth=config.recursion_depth,
        portable_max_nodes=config.portable_max_nodes,
    )
    tools = build_tools(catalog, config, renderer, warnings)
    validate_tools(tools, portable_inputs=config.schema_profile == "portable")
    files = bundle_files(tools)
    return BuildResult(
        catalog=catalog,
        tools=tools,
        files=files,
        out=Path(config.out),
        seconds=time.perf_counter() - started,
        warnings=warnings,
    )


def build(config: Config, warnings: Warnings | None = None) -> BuildResult:
    result = compile_bundle(config, warnings)
    write_bundle(result.out, result.files)
    return result
