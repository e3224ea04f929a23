"""Catalog → MCP Tool objects and their routes: names, titles, descriptions, annotations.

Names are `{Service}_{Method}` by default. Names that collide are qualified with the trailing
segments of their package, as few as make them unique; names over 64 characters keep a readable
prefix and end in a short hash of the full method name. Every step is deterministic.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
from dataclasses import dataclass, replace
from typing import Any

from mcpgen.config import Config
from mcpgen.errors import UserError, Warnings
from mcpgen.model import Catalog, GoMicroBinding, Idempotency, Method, Service, Streaming
from mcpgen.schema import SchemaRenderer
from mcpgen.schema.profiles import for_profile
from mcpgen.schema.registry import RegistrySchemas, known_structs

NAME_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_NAME = 64
_HASH_LEN = 8
STREAM_KEY = "messages"


@dataclass(slots=True)
class ToolSpec:
    """One tool: the MCP Tool object as `tools/list` returns it, and how to reach its backend."""

    name: str
    method: str  # full method name, pkg.Service.Method
    tool: dict[str, Any]
    route: dict[str, Any]


@dataclass(slots=True)
class _Candidate:
    service: Service
    method: Method

    @property
    def full_name(self) -> str:
        return self.service.method_full_name(self.method)


def title_of(method_name: str) -> str:
    """GetHTTPRoute → Get HTTP Route."""
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", " ", method_name)
    return words.replace("_", " ").strip()


def sanitize(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", name)


def shorten(name: str, full_method: str) -> str:
    if len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha256(full_method.encode()).hexdigest()[:_HASH_LEN]
    return f"{name[: MAX_NAME - _HASH_LEN - 1]}_{digest}"


def _selected(full_name: str, config: Config) -> bool:
    if config.include and not any(fnmatch.fnmatchcase(full_name, g) for g in config.include):
        return False
    return not any(fnmatch.fnmatchcase(full_name, g) for g in config.exclude)


def select_methods(catalog: Catalog, config: Config, warnings: Warnings) -> list[_Candidate]:
    known = {s.method_full_name(m) for s in catalog.services for m in s.methods}
    for table in ("rename", "descriptions", "annotations", "scopes"):
        for key in getattr(config, table):
            if key not in known:
                close = [k for k in known if k.endswith("." + key.rpartition(".")[2])][:3]
                raise UserError(
                    f"config [{table}] names {key!r}, which is not a method of the inputs",
                    file=config.file,
                    hint="keys are full method names, e.g. "
                    + (", ".join(sorted(close)) if close else "acme.users.v1.Users.GetUser"),
                )
    chosen: list[_Candidate] = []
    skipped: list[str] = []
    for service in catalog.services:
        for method in service.methods:
            candidate = _Candidate(service, method)
            if not _selected(candidate.full_name, config):
                continue
            if method.streaming in (Streaming.CLIENT, Streaming.BIDI):
                skipped.append(f"{candidate.full_name} ({method.streaming.value} streaming)")
                continue
            chosen.append(candidate)
    if skipped:
        warnings.add(
            f"skipped {len(skipped)} RPC(s) that MCP tools cannot express "
            f"(client or bidirectional streaming): {', '.join(sorted(skipped))}"
        )
    return chosen


def assign_names(candidates: list[_Candidate], config: Config) -> dict[str, str]:
    """Full method name → tool name, unique and valid."""
    names: dict[str, str] = {}
    fixed: dict[str, str] = {}
    for c in candidates:
        if c.full_name in config.rename:
            wanted = config.rename[c.full_name]
            if not NAME_PATTERN.match(wanted):
                raise UserError(
                    f"rename of {c.full_name} to {wanted!r} is not a valid tool name",
                    file=config.file,
                    hint="tool names are 1-64 characters of A-Z a-z 0-9 _ -",
                )
            fixed[c.full_name] = wanted
    taken_fixed: dict[str, str] = {}
    for full, wanted in sorted(fixed.items()):
        if wanted in taken_fixed:
            raise UserError(
                f"{full} and {taken_fixed[wanted]} are both renamed to {wanted!r}",
                file=config.file,
            )
        taken_fixed[wanted] = full
    auto = sorted((c for c in candidates if c.full_name not in fixed), key=lambda c: c.full_name)

    def base(c: _Candidate, segments: int) -> str:
        pkg = [p for p in c.service.package.split(".") if p]
        prefix = pkg[len(pkg) - segments :] if segments else []
        core = config.name_template.format(
            service=c.service.name,
            method=c.method.name,
            package=c.service.package.replace(".", "_"),
            full_service=c.service.full_name.replace(".", "_"),
        )
        return sanitize("_".join([*prefix, core]))

    depth = {c.full_name: 0 for c in auto}
    while True:
        proposed = {c.full_name: base(c, depth[c.full_name]) for c in auto}
        groups: dict[str, list[_Candidate]] = {}
        for c in auto:
            groups.setdefault(proposed[c.full_name], []).append(c)
        changed = False
        for name, members in sorted(groups.items()):
            if len(members) == 1 and name not in taken_fixed:
                continue
            deepened = False
            for c in members:
                max_depth = len([p for p in c.service.package.split(".") if p])
                if depth[c.full_name] < max_depth:
                    depth[c.full_name] += 1
                    deepened = True
            changed = changed or deepened
            if not deepened:
                clash = [c.full_name for c in members] + (
                    [taken_fixed[name]] if name in taken_fixed else []
                )
                raise UserError(
                    f"methods {', '.join(clash)} all map to the tool name {name!r}",
                    file=config.file,
                    hint="give them distinct names with [rename] in the config, "
                    "or use {package} in name_template",
                )
        if not changed:
            break
    for c in auto:
        names[c.full_name] = shorten(proposed[c.full_name], c.full_name)
    names.update(fixed)
    # shortening can (in theory) collide; a hash of the full method name makes that astronomically
    # unlikely, but never emit a duplicate
    seen: dict[str, str] = {}
    for full, name in sorted(names.items()):
        if name in seen:
            raise UserError(
                f"methods {seen[name]} and {full} both map to the tool name {name!r}",
                hint="give one of them another name with [rename] in the config",
            )
        seen[name] = full
    return names


def annotations_of(method: Method, overrides: dict[str, bool] | None) -> dict[str, Any]:
    hints: dict[str, Any] = {}
    if method.idempotency is Idempotency.NO_SIDE_EFFECTS:
        hints |= {"readOnlyHint": True, "idempotentHint": True}
    elif method.idempotency is Idempotency.IDEMPOTENT:
        hints["idempotentHint"] = True
    if method.http is not None and method.http.verb == "get":
        hints["readOnlyHint"] = True
    if overrides:
        hints |= overrides
    order = ["readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint"]
    return {k: hints[k] for k in order if k in hints}


def description_of(service: Service, method: Method, override: str | None) -> str:
    if override is not None:
        text = override
    elif method.doc:
        text = method.doc
    elif isinstance(service.binding, GoMicroBinding):
        text = f"Calls the {method.endpoint} endpoint of the go-micro service "
        text += f"{service.binding.service}."
    else:
        text = f"Calls the {method.name} RPC of the gRPC service {service.full_name}."
    if method.streaming is Streaming.SERVER:
        text += f"\n\nThe server streams its responses; the result collects them in `{STREAM_KEY}`."
    if (method.deprecated or service.deprecated) and not text.startswith("Deprecated"):
        text = "Deprecated. " + text
    return text


@dataclass(slots=True)
class PlannedTool:
    """A method chosen to become a tool, with its final name (decided for all tools at once)."""

    service: Service
    method: Method
    name: str

    @property
    def full_name(self) -> str:
        return self.service.method_full_name(self.method)


def plan_tools(catalog: Catalog, config: Config, warnings: Warnings) -> list[PlannedTool]:
    """Which methods become tools and under which names, sorted by name."""
    candidates = select_methods(catalog, config, warnings)
    names = assign_names(candidates, config)
    planned = [PlannedTool(c.service, c.method, names[c.full_name]) for c in candidates]
    return sorted(planned, key=lambda p: p.name)


def render_tool(planned: PlannedTool, config: Config, renderer: SchemaRenderer) -> ToolSpec:
    service, method, name = planned.service, planned.method, planned.name
    if not method.input_type:  # described by a go-micro registry only
        registry = RegistrySchemas(known_structs(_trees(service)))
        input_schema = registry.input(method.input_tree)
        output_schema = registry.output(method.output_tree)
    else:
        if config.schema_profile == "full":
            input_schema = renderer.precise(method.input_type, output=False)
        else:
            input_schema = renderer.portable(method.input_type)
        output_schema = renderer.precise(method.output_type, output=True)
    if config.profile is not None:
        input_schema = for_profile(input_schema, config.profile, name)
    if method.examples:
        input_schema = {**input_schema, "examples": method.examples}
    if method.deprecated or service.deprecated:
        input_schema = {**input_schema, "deprecated": True}
    if method.streaming is Streaming.SERVER:
        output_schema = stream_wrapper(output_schema)
    tool: dict[str, Any] = {
        "name": name,
        "title": title_of(method.name),
        "description": description_of(service, method, config.descriptions.get(planned.full_name)),
        "inputSchema": input_schema,
        "outputSchema": output_schema,
    }
    annotations = annotations_of(method, config.annotations.get(planned.full_name))
    if annotations:
        tool["annotations"] = annotations
    scopes = config.scopes.get(planned.full_name)
    if scopes is not None:  # [tool.mcpgen.scopes] replaces what a registry said
        method = replace(method, scopes=tuple(sorted(set(scopes))))
    return ToolSpec(name=name, method=planned.full_name, tool=tool, route=route_of(service, method))


def route_of(service: Service, method: Method) -> dict[str, Any]:
    """How the server reaches a tool's backend (the manifest's `routes` entry)."""
    binding = service.binding
    route: dict[str, Any] = {
        "kind": "grpc",
        "service": service.full_name,
        "method": method.name,
        "path": f"/{service.full_name}/{method.name}",
        "streaming": method.streaming.value,
    }
    if not isinstance(binding, GoMicroBinding):
        return route
    if binding.server == "grpc":  # go-micro's gRPC server: /<registry name>.<Handler>/<Method>
        handler = method.endpoint.partition(".")[0]
        route["path"] = f"/{binding.service}.{handler}/{method.name}"
    else:
        route = {"kind": "go-micro", "service": binding.service, "endpoint": method.endpoint}
        if method.input_type:  # the protos describe it: requests are checked against them
            route |= {"request": method.input_type, "response": method.output_type}
    route["nodes"] = list(binding.nodes)
    if method.scopes:
        route["scopes"] = list(method.scopes)
    return route


def _trees(service: Service) -> list[Any]:
    return [t for m in service.methods for t in (m.input_tree, m.output_tree)]


def build_tools(
    catalog: Catalog, config: Config, renderer: SchemaRenderer, warnings: Warnings
) -> list[ToolSpec]:
    """Every tool of the catalog, sorted by name."""
    return [render_tool(p, config, renderer) for p in plan_tools(catalog, config, warnings)]


def stream_wrapper(message_schema: dict[str, Any]) -> dict[str, Any]:
    """outputSchema of a server-streaming tool: every streamed message, in order."""
    item = {k: v for k, v in message_schema.items() if k != "$defs"}
    wrapper: dict[str, Any] = {
        "type": "object",
        "properties": {
            STREAM_KEY: {
                "type": "array",
                "description": "the messages the server streamed, in order",
                "items": item,
            },
            "truncated": {
                "type": "boolean",
                "description": "true when the gateway ended the stream (at its message limit "
                "or its deadline) before the server did",
            },
        },
        "additionalProperties": False,
    }
    if "$defs" in message_schema:
        wrapper["$defs"] = message_schema["$defs"]
    return wrapper
