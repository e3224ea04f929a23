"""Build-time checks of every tool: what reaches a client was validated before deploy.

Every schema against the JSON Schema 2020-12 metaschema, every `$ref` resolvable, every portable
`inputSchema` against the portable rules (see docs of `mcpgen.schema`), every name against the
client-safe pattern and for uniqueness. Problems name the tool and the JSON path.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from jsonschema import Draft202012Validator

from mcpgen.errors import Problem, UserError
from mcpgen.tools import NAME_PATTERN, ToolSpec

_META = Draft202012Validator(Draft202012Validator.META_SCHEMA)
_COMBINATORS = ("anyOf", "oneOf", "allOf", "not")
_FORBIDDEN_PORTABLE = ("$ref", "$defs", "definitions", "const", *_COMBINATORS)
# keywords whose value is a schema, a list of schemas, or a table of schemas
_SCHEMA_KEYS = ("items", "additionalProperties", "propertyNames", "not", "contains")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SCHEMA_TABLES = ("properties", "$defs", "dependentSchemas", "patternProperties")


def _pointer(parts: list[str | int]) -> str:
    return "/" + "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def subschemas(schema: Any, path: list[str | int]) -> Iterator[tuple[dict[str, Any], list]]:
    """Every schema object inside `schema` (itself included), with its JSON path."""
    stack = [(schema, path)]
    while stack:
        node, where = stack.pop()
        if not isinstance(node, dict):
            continue
        yield node, where
        for key in _SCHEMA_KEYS:
            if key in node:
                stack.append((node[key], [*where, key]))
        for key in _SCHEMA_LISTS:
            for i, sub in enumerate(node.get(key) or []):
                stack.append((sub, [*where, key, i]))
        for key in _SCHEMA_TABLES:
            table = node.get(key)
            if isinstance(table, dict):
                for name, sub in table.items():
                    stack.append((sub, [*where, key, name]))


def portable_problems(schema: dict[str, Any], path: list[str | int]) -> list[str]:
    """Why a schema is not portable (empty when it is)."""
    problems = []
    if schema.get("type") != "object" or not isinstance(schema.get("properties"), dict):
        problems.append(f"{_pointer(path)}: root must be an object with properties")
    for node, where in subschemas(schema, path):
        for key in _FORBIDDEN_PORTABLE:
            if key in node:
                problems.append(f"{_pointer([*where, key])}: `{key}` is not portable")
        kind = node.get("type")
        if isinstance(kind, list):
            problems.append(f"{_pointer([*where, 'type'])}: type arrays are not portable")
        if kind == "array" and not isinstance(node.get("items"), dict):
            problems.append(f"{_pointer(where)}: an array needs `items`")
        if "required" in node:
            required = node["required"]
            props = node.get("properties") or {}
            if not isinstance(required, list) or any(r not in props for r in required):
                problems.append(f"{_pointer([*where, 'required'])}: must list known properties")
    return problems


def _metaschema_problems(schema: Any, path: list[str | int]) -> list[str]:
    return [
        f"{_pointer([*path, *err.absolute_path])}: {err.message}"
        for err in _META.iter_errors(schema)
    ]


def _ref_problems(schema: dict[str, Any], path: list[str | int]) -> list[str]:
    defs = schema.get("$defs") or {}
    problems = []
    for node, where in subschemas(schema, path):
        ref = node.get("$ref")
        if ref is None:
            continue
        target = ref.removeprefix("#/$defs/")
        if not ref.startswith("#/$defs/") or target not in defs:
            problems.append(f"{_pointer([*where, '$ref'])}: unresolvable reference {ref!r}")
    return problems


def validate_tools(specs: list[ToolSpec], portable_inputs: bool) -> None:
    """Raise a UserError listing every problem of every tool; return quietly when all is well."""
    problems: list[Problem] = []
    seen: set[str] = set()
    checked: set[int] = set()  # schema objects shared between tools are checked once

    def report(tool: str, messages: list[str]) -> None:
        problems.extend(Problem(f"tool {tool}: {m}") for m in messages)

    for spec in specs:
        name = spec.name
        if not NAME_PATTERN.match(name):
            report(name, ["/name: must match ^[A-Za-z0-9_-]{1,64}$"])
        if name in seen:
            report(name, ["/name: used by more than one tool"])
        seen.add(name)
        for key in ("inputSchema", "outputSchema"):
            schema = spec.tool[key]
            if schema.get("type") != "object":
                report(name, [f"/{key}: root must have type object"])
            if id(schema) in checked:
                continue
            checked.add(id(schema))
            report(name, _metaschema_problems(schema, [key]))
            report(name, _ref_problems(schema, [key]))
        if portable_inputs:
            report(name, portable_problems(spec.tool["inputSchema"], ["inputSchema"]))
    if problems:
        raise UserError(
            f"{len(problems)} problem(s) in the generated tools",
            problems=problems[:50],
            hint="this usually means an input the mapping cannot express; "
            "report it with the .proto that caused it",
        )
