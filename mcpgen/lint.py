"""`mcpgen lint`: a bundle's tools against what each MCP client and model provider accepts.

The rules are data: one `ClientRules` per profile, from `reference/mcp-and-clients.md`. Only the
`inputSchema` reaches a model; of the `outputSchema`, clients need an object root (2025-era
clients fail `tools/list` without one), and that is all that is checked of it. Every violation
is an error, except where the client itself only warns (Cursor above 80 tools). The same rules
run at build time for `mcpgen build --profile P` (see `mcpgen.validate`).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import click

from mcpgen.contract import CLIENT_PROFILES, BundleView, open_bundle
from mcpgen.errors import UserError, guarded

ALL = "all"
ERROR, WARNING = "error", "warning"
_COMPOSITION = ("anyOf", "oneOf", "allOf")

#: OpenAI strict mode: keywords it supports (annotations pass through), the string formats it
#: knows, how deep objects may nest (the root object is level 1; OpenAI's error reads "6 levels
#: of nesting exceeds limit of 5") and how many properties a schema may have in total.
STRICT_KEYWORDS = frozenset(
    ("type", "properties", "required", "additionalProperties", "items", "anyOf", "enum", "const",
     "$ref", "$defs", "pattern", "format", "minimum", "maximum", "exclusiveMinimum",
     "exclusiveMaximum", "multipleOf", "minItems", "maxItems",
     "title", "description", "deprecated", "examples", "default", "readOnly", "writeOnly")
)  # fmt: skip
STRICT_FORMATS = frozenset(
    ("date-time", "time", "date", "duration", "email", "hostname", "ipv4", "ipv6", "uuid")
)
STRICT_MAX_DEPTH = 5
STRICT_MAX_PROPERTIES = 5000


@dataclass(frozen=True, slots=True)
class ClientRules:
    """What one client profile rejects. `name_prefix` is how the client shows a tool's name
    (`{server}` is the server's name), and `max_name` counts that prefix."""

    profile: str
    client: str
    name_pattern: str
    max_name: int
    name_prefix: str = ""
    max_tools: int | None = None
    warn_tools: int | None = None  # the client warns, and keeps working, above this many
    forbidden: tuple[str, ...] = ()  # keywords rejected anywhere in an inputSchema
    forbidden_at_root: tuple[str, ...] = ()
    type_arrays: bool = True  # accepts `"type": ["string", "null"]`
    array_items: bool = False  # every array must have `items`
    required_null: bool = True  # survives a `"required": null`
    strict: bool = False  # OpenAI strict mode


_OPENAI_NAMES = {"name_pattern": r"^[a-zA-Z0-9_-]+$", "max_name": 64}
RULES: dict[str, ClientRules] = {
    "claude": ClientRules(
        "claude", "Claude Code", r"^[a-zA-Z0-9_-]{1,64}$", 64, name_prefix="mcp__{server}__",
        forbidden_at_root=_COMPOSITION,
    ),
    "openai": ClientRules("openai", "OpenAI", **_OPENAI_NAMES, max_tools=128, array_items=True),
    "openai-strict": ClientRules(
        "openai-strict", "OpenAI strict mode", **_OPENAI_NAMES, max_tools=128, array_items=True,
        forbidden_at_root=_COMPOSITION, strict=True,
    ),
    "gemini": ClientRules(
        "gemini", "Gemini", r"^[a-zA-Z_][a-zA-Z0-9_.:-]*$", 64,
        forbidden=("$ref", "$defs", "definitions", "const", "additionalProperties"),
        type_arrays=False, array_items=True,
    ),
    "cursor": ClientRules(
        "cursor", "Cursor", r"^[a-zA-Z0-9_-]+$", 60, name_prefix="{server}", warn_tools=80,
        forbidden=_COMPOSITION, required_null=False,
    ),
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Violation:
    profile: str
    tool: str | None  # None: the bundle as a whole (tool counts)
    path: str  # JSON pointer, into the manifest or into the tool
    message: str
    severity: str = ERROR

    def __str__(self) -> str:
        tool = f"tool {self.tool}: " if self.tool is not None else ""
        return f"{self.severity} [{self.profile}] {tool}{self.path}: {self.message}"


def pointer(parts: list[str | int]) -> str:
    return "/" + "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in parts)


_SCHEMA_KEYS = ("items", "additionalProperties", "propertyNames", "not", "contains")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SCHEMA_TABLES = ("properties", "$defs", "definitions", "dependentSchemas", "patternProperties")


def _types(node: dict[str, Any]) -> list[Any]:
    kind = node.get("type", [])
    return kind if isinstance(kind, list) else [kind]


def schema_nodes(
    schema: Any, path: list[str | int], depth: int = 0
) -> Iterator[tuple[dict[str, Any], list[str | int], int]]:
    """Every schema object in `schema`, with its path and how many objects enclose it (itself
    included: the root object is at depth 1)."""
    if not isinstance(schema, dict):
        return
    depth += "object" in _types(schema)
    yield schema, path, depth
    for key in _SCHEMA_KEYS:
        if key in schema:
            yield from schema_nodes(schema[key], [*path, key], depth)
    for key in _SCHEMA_LISTS:
        if isinstance(schema.get(key), list):
            for i, sub in enumerate(schema[key]):
                yield from schema_nodes(sub, [*path, key, i], depth)
    for key in _SCHEMA_TABLES:
        if isinstance(schema.get(key), dict):
            for name, sub in schema[key].items():
                yield from schema_nodes(sub, [*path, key, name], depth)


def _cycles(schema: dict[str, Any], path: list[str | int]) -> Iterator[tuple[list, str]]:
    """`$ref`s that lead back into a definition they are inside of: a recursive schema."""
    defs = {**(schema.get("definitions") or {}), **(schema.get("$defs") or {})}
    reported: set[str] = set()

    def walk(node: dict[str, Any], where: list, open_defs: tuple[str, ...]) -> Iterator:
        for sub, sub_path, _ in schema_nodes(node, where):
            ref = sub.get("$ref")
            if not isinstance(ref, str):
                continue
            name = ref.rpartition("/")[2]
            if name in open_defs and name not in reported:
                reported.add(name)
                yield sub_path, name
            elif name in defs and name not in open_defs:
                yield from walk(defs[name], sub_path, (*open_defs, name))

    body = {k: v for k, v in schema.items() if k not in ("$defs", "definitions")}
    yield from walk(body, path, ())


def _node_problems(
    node: dict[str, Any], depth: int, rules: ClientRules
) -> Iterator[tuple[list[str], str]]:
    """(path below the node, message) for each rule of `rules` that the node breaks."""
    client = rules.client
    for key in rules.forbidden:
        if key in node:
            yield [key], f"{client} rejects `{key}`"
    if not rules.type_arrays and isinstance(node.get("type"), list):
        yield ["type"], f"{client} rejects type arrays"
    if rules.array_items and "array" in _types(node) and not isinstance(node.get("items"), dict):
        yield [], f"{client} rejects arrays without `items`"
    if not rules.required_null and "required" in node and node["required"] is None:
        yield ["required"], f"{client} drops the whole tool list when a tool has `required: null`"
    if rules.strict:
        yield from _strict_problems(node, depth, client)


def _strict_problems(node: dict[str, Any], depth: int, client: str) -> Iterator:
    if not node.keys() & {"type", "anyOf", "enum", "const", "$ref"}:
        yield [], f"{client} needs a `type` on every schema"
    for key in sorted(node.keys() - STRICT_KEYWORDS):
        yield [key], f"{client} does not support `{key}`"
    fmt = node.get("format")
    if fmt is not None and fmt not in STRICT_FORMATS:
        yield ["format"], f"{client} does not support format {fmt!r}"
    if "object" not in _types(node):
        return
    if depth > STRICT_MAX_DEPTH:
        yield [], f"{client} allows {STRICT_MAX_DEPTH} levels of nested objects; this is {depth}"
    if node.get("additionalProperties") is not False:
        yield [], f"{client} needs `additionalProperties: false` on every object"
    properties = node.get("properties")
    if not isinstance(properties, dict):
        yield [], f"{client} needs `properties` on every object"
        return
    required = node.get("required") or []
    missing = [p for p in properties if p not in required]
    if missing:
        names = ", ".join(f"`{m}`" for m in missing)
        yield ["required"], f"{client} needs every property in `required` (missing {names})"


def tool_violations(
    tool: dict[str, Any], rules: ClientRules, server: str, where: list[str | int]
) -> list[Violation]:
    """Every violation of one tool; paths start with `where` (its place in the manifest)."""
    name = str(tool.get("name", ""))
    found: list[Violation] = []

    def add(path: list[str | int], message: str) -> None:
        found.append(Violation(rules.profile, name, pointer(path), message))

    if not re.fullmatch(rules.name_pattern, name):
        add([*where, "name"], f"{rules.client} needs names matching {rules.name_pattern}")
    shown = rules.name_prefix.format(server=re.sub(r"[^a-zA-Z0-9_-]", "_", server)) + name
    if len(shown) > rules.max_name:
        add(
            [*where, "name"],
            f"{rules.client} allows {rules.max_name} characters; `{shown}` has {len(shown)}",
        )
    schema = tool.get("inputSchema")
    at = [*where, "inputSchema"]
    if not isinstance(schema, dict) or schema.get("type") != "object":
        add(at, "the root of an inputSchema must be `type: object` (MCP)")
        schema = schema if isinstance(schema, dict) else {}
    for key in rules.forbidden_at_root:
        if key in schema:
            add([*at, key], f"{rules.client} rejects `{key}` at the root of a schema")
    properties = 0
    for node, path, depth in schema_nodes(schema, at):
        properties += len(node.get("properties") or {})
        for below, message in _node_problems(node, depth, rules):
            add([*path, *below], message)
    if rules.strict and properties > STRICT_MAX_PROPERTIES:
        add(at, f"{rules.client} allows {STRICT_MAX_PROPERTIES} properties; this has {properties}")
    for path, definition in _cycles(schema, at):
        add(path, f"recursive schema ({definition} contains itself): clients expand it forever")
    output = tool.get("outputSchema")
    if output is not None and (not isinstance(output, dict) or output.get("type") != "object"):
        add([*where, "outputSchema"], "the root of an outputSchema must be `type: object` (MCP)")
    return found


def lint_tools(
    tools: list[dict[str, Any]], profile: str, server: str, in_manifest: bool = True
) -> list[Violation]:
    """Every violation of `tools` for one profile. Paths point into the manifest
    (`/tools/3/inputSchema/...`), or with `in_manifest=False` into each tool (`/inputSchema/...`).
    """
    rules = RULES[profile]
    found: list[Violation] = []
    for i, tool in enumerate(tools):
        found += tool_violations(tool, rules, server, ["tools", i] if in_manifest else [])
    where = "/tools" if in_manifest else "/"
    if rules.max_tools is not None and len(tools) > rules.max_tools:
        message = f"{rules.client} allows at most {rules.max_tools} tools; this has {len(tools)}"
        found.append(Violation(profile, None, where, message))
    if rules.warn_tools is not None and len(tools) > rules.warn_tools:
        message = f"{rules.client} warns above {rules.warn_tools} tools; this has {len(tools)}"
        found.append(Violation(profile, None, where, message, WARNING))
    return found


# ---- the command -----------------------------------------------------------------------------


def lint_bundle(view: BundleView, profile: str, server: str) -> list[Violation]:
    """Every violation of a bundle for one profile, shard by shard; paths name the shard file
    and point into it (`tools/acme.v1.json#/tools/3/inputSchema/...`)."""
    rules = RULES[profile]
    found: list[Violation] = []
    for name in sorted(view.index.shards):
        shard_file = view.index.shards[name].files.tools
        for i, tool in enumerate(view.shard(name).tools):
            for v in tool_violations(tool, rules, server, ["tools", i]):
                found.append(replace(v, path=f"{shard_file}#{v.path}"))
    count = view.index.tool_count
    if rules.max_tools is not None and count > rules.max_tools:
        message = f"{rules.client} allows at most {rules.max_tools} tools; this has {count}"
        found.append(Violation(profile, None, "/", message))
    if rules.warn_tools is not None and count > rules.warn_tools:
        message = f"{rules.client} warns above {rules.warn_tools} tools; this has {count}"
        found.append(Violation(profile, None, "/", message, WARNING))
    return found


REGISTRY = "mcp-registry"  # the profile name of server.json's checks
_REGISTRY_NAME = re.compile(r"^[a-zA-Z0-9.-]+/[a-zA-Z0-9._-]+$")
_VERSION_RANGE = re.compile(r"^[\^~<>=]|[\s*]|(^|\.)[xX](\.|$)|\|\|")


def registry_violations(view: BundleView, identity: Any) -> list[Violation]:
    """server.json against the MCP Registry's rules for server.json (the published schema's
    constraints, checked here offline), and against the identity server.py gives."""
    from mcpgen.contract import SERVER_JSON

    def problem(path: str, message: str, severity: str = ERROR) -> Violation:
        return Violation(REGISTRY, None, f"{SERVER_JSON}#{path}", message, severity)

    try:
        document = json.loads(view.read(SERVER_JSON))
    except UserError:
        return [problem("", "the bundle has no server.json; rebuild it with `mcpgen build`",
                        WARNING)]  # fmt: skip
    except ValueError as exc:
        return [problem("", f"not JSON: {exc}")]
    if not isinstance(document, dict):
        return [problem("", "must be a JSON object")]
    found: list[Violation] = []
    for key in ("name", "description", "version"):
        if not isinstance(document.get(key), str) or not document[key]:
            found.append(problem(f"/{key}", f"`{key}` is required (a non-empty string)"))
    name, version = document.get("name"), document.get("version")
    publishing = bool(document.get("packages") or document.get("remotes"))
    valid_name = isinstance(name, str) and _REGISTRY_NAME.match(name) and 3 <= len(name) <= 200
    if publishing and isinstance(name, str) and not valid_name:  # says where it is published
        found.append(problem("/name", f"{name!r} is not a registry name: the MCP Registry "
                             "takes reverse-DNS names with one slash (io.github.you/library); "
                             "set server_name in the config to publish it", WARNING))  # fmt: skip
    description = document.get("description")
    if isinstance(description, str) and len(description) > 100:
        found.append(problem("/description", "at most 100 characters"))
    if isinstance(version, str) and (version == "latest" or _VERSION_RANGE.search(version)):
        found.append(problem("/version", f"{version!r}: a specific version, not a range"))
    for i, package in enumerate(document.get("packages") or []):
        where = f"/packages/{i}"
        for key in ("registryType", "identifier", "version", "transport"):
            if key not in package:
                found.append(problem(f"{where}/{key}", f"`{key}` is required"))
        pv = package.get("version")
        if isinstance(pv, str) and (pv == "latest" or _VERSION_RANGE.search(pv)):
            found.append(problem(f"{where}/version", f"{pv!r}: a specific version, not a range"))
        kind = (package.get("transport") or {}).get("type")
        if kind not in ("stdio", "streamable-http", "sse"):
            found.append(problem(f"{where}/transport/type", f"{kind!r} is not a transport"))
    for i, remote in enumerate(document.get("remotes") or []):
        if remote.get("type") not in ("streamable-http", "sse"):
            found.append(problem(f"/remotes/{i}/type", "streamable-http or sse"))
        url = remote.get("url")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            found.append(problem(f"/remotes/{i}/url", "an http(s) URL"))
    if isinstance(name, str) and name != identity.name:
        found.append(problem("/name", f"{name!r}, but server.py serves as {identity.name!r}"))
    if isinstance(version, str) and identity.version.split("+")[0] != version:
        found.append(problem("/version", f"{version!r}, but server.py serves version "
                             f"{identity.version!r}"))  # fmt: skip
    return found


@click.command("lint")
@click.argument("bundle", default="mcp_bundle", type=click.Path(path_type=Path))
@click.option(
    "--profile",
    "profiles",
    multiple=True,
    type=click.Choice([*CLIENT_PROFILES, ALL]),
    help="Client to check for (repeatable; default: the profile the bundle was built for, "
    "else all).",
)
@click.option(
    "--server-name",
    default=None,
    metavar="NAME",
    help="Server name clients prefix tool names with (default: SERVER_NAME of BUNDLE/server.py).",
)
@click.option(
    "--format", "output_format", type=click.Choice(["text", "json"]), default="text",
    show_default=True, help="text: a line per violation; json: one document.",
)  # fmt: skip
@guarded
def command(
    bundle: Path, profiles: tuple[str, ...], server_name: str | None, output_format: str
) -> None:
    """Check BUNDLE (a folder or its manifest.json; default: mcp_bundle) against clients' limits.

    Exits 1 when any client would reject a tool; warnings alone exit 0.
    """
    from mcpgen.runtime.cli import ServerIdentity

    view = open_bundle(bundle)
    view.require_current("lints")
    folder = view.storage.path("") or bundle
    built_for = view.index.profile
    chosen = list(profiles) or ([built_for] if built_for in RULES else [ALL])
    names = list(CLIENT_PROFILES) if ALL in chosen else list(dict.fromkeys(chosen))
    identity = ServerIdentity.of_bundle(Path(folder))
    server = server_name or identity.name
    found = [v for p in names for v in lint_bundle(view, p, server)]
    found += registry_violations(view, identity)
    errors = sum(v.severity == ERROR for v in found)
    if output_format == "json":
        document = {
            "profiles": names,
            "server": server,
            "errors": errors,
            "warnings": len(found) - errors,
            "violations": [asdict(v) for v in found],
        }
        click.echo(json.dumps(document, indent=2, ensure_ascii=False))
    else:
        for violation in found:
            click.echo(str(violation))
        click.echo(
            f"mcpgen lint: {view.index.tool_count} tools, {', '.join(names)}: "
            f"{errors} error(s), {len(found) - errors} warning(s)",
            err=True,
        )
    if errors:
        sys.exit(1)
