"""Build-time checks of every tool: what reaches a client was validated before deploy.

Every schema against the JSON Schema 2020-12 metaschema, every `$ref` resolvable, every portable
`inputSchema` against the portable rules (see docs of `mcpgen.schema`), every name against the
client-safe pattern and for uniqueness. Problems name the tool and the JSON path.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import orjson
from jsonschema import Draft202012Validator

from mcpgen.errors import Problem, UserError
from mcpgen.lint import ERROR, lint_tools
from mcpgen.tools import NAME_PATTERN, ToolSpec

_META = Draft202012Validator(Draft202012Validator.META_SCHEMA)
_COMBINATORS = ("anyOf", "oneOf", "allOf", "not")
_FORBIDDEN_PORTABLE = ("$ref", "$defs", "definitions", "const", *_COMBINATORS)
# keywords whose value is a schema, a list of schemas, or a table of schemas
_SCHEMA_KEYS = ("items", "additionalProperties", "propertyNames", "not", "contains")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SCHEMA_TABLES = ("properties", "$defs", "dependentSchemas", "patternProperties")
_CHILD_KEYS = frozenset((*_SCHEMA_KEYS, *_SCHEMA_LISTS, *_SCHEMA_TABLES))


def _pointer(parts: list[str | int]) -> str:
    return "/" + "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def subschemas(
    schema: Any, path: list[str | int], seen: set[int] | None = None
) -> Iterator[tuple[dict[str, Any], list]]:
    """Every schema object inside `schema` (itself included), with its JSON path.

    With `seen`, objects already visited (schemas share subtrees) are skipped with their subtree.
    """
    stack = [(schema, path)]
    while stack:
        node, where = stack.pop()
        if not isinstance(node, dict):
            continue
        if seen is not None:
            if id(node) in seen:
                continue
            seen.add(id(node))
        yield node, where
        if not node.keys() & _CHILD_KEYS:
            continue
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


def portable_problems(
    schema: dict[str, Any], path: list[str | int], seen: set[int] | None = None
) -> list[str]:
    """Why a schema is not portable (empty when it is)."""
    problems = []
    if schema.get("type") != "object" or not isinstance(schema.get("properties"), dict):
        problems.append(f"{_pointer(path)}: root must be an object with properties")
    for node, where in subschemas(schema, path, seen):
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


_ANNOTATION_TEXT = ("description", "title", "$comment")
_NUMERIC_KEYWORDS = frozenset(
    ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength",
     "minItems", "maxItems", "minProperties", "maxProperties", "multipleOf")
)  # fmt: skip


def _unique_strings(value: Any) -> bool:
    return (
        isinstance(value, list)
        and all(isinstance(v, str) for v in value)
        and len(set(value)) == len(value)
    )


def _shallow(node: dict[str, Any]) -> dict[str, Any]:
    """`node` with every subschema replaced by `true` and free text blanked: its shape.

    The 2020-12 metaschema applies itself to each subschema independently, so a schema is valid
    exactly when the shape of every node in it is. Shapes repeat a lot, so each is checked once.
    """
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _SCHEMA_KEYS and isinstance(value, dict | bool):
            out[key] = True
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            out[key] = [True] * len(value)
        elif key in _SCHEMA_TABLES and isinstance(value, dict):
            out[key] = {"_": True} if value else {}
        elif key in _ANNOTATION_TEXT and isinstance(value, str):
            out[key] = ""
        elif key == "enum" and isinstance(value, list) and value:
            out[key] = ["_"]
        elif key == "required" and _unique_strings(value):
            out[key] = ["_"] if value else []
        elif key in _NUMERIC_KEYWORDS and isinstance(value, int | float) and value >= 0:
            out[key] = 0
        elif key in _NUMERIC_KEYWORDS and isinstance(value, int | float):
            out[key] = -1
        elif key in ("pattern", "format") and isinstance(value, str):
            out[key] = ""  # patterns are compiled separately
        else:
            out[key] = value
    return out


class MetaschemaCheck:
    """Checks schemas against the 2020-12 metaschema, node by node, each distinct shape once."""

    def __init__(self) -> None:
        self._seen: set[int] = set()
        self._shapes: dict[bytes, list[tuple[list[str | int], str]]] = {}

    def problems(self, schema: Any, path: list[str | int]) -> list[str]:
        found = []
        for node, where in subschemas(schema, path, self._seen):
            shape = _shallow(node)
            key = orjson.dumps(shape, option=orjson.OPT_SORT_KEYS)
            errors = self._shapes.get(key)
            if errors is None:
                errors = [(list(e.absolute_path), e.message) for e in _META.iter_errors(shape)]
                self._shapes[key] = errors
            found += [f"{_pointer([*where, *sub])}: {message}" for sub, message in errors]
            pattern = node.get("pattern")
            if isinstance(pattern, str):
                try:
                    re.compile(pattern)
                except re.error as exc:
                    found.append(f"{_pointer([*where, 'pattern'])}: invalid regex: {exc}")
        return found


class RefCheck:
    """Every `$ref` must point into the `$defs` of its tool's schema."""

    def __init__(self) -> None:
        self._refs: dict[int, frozenset[str]] = {}

    def refs(self, node: Any) -> frozenset[str]:
        if not isinstance(node, dict):
            return frozenset()
        known = self._refs.get(id(node))
        if known is not None:
            return known
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        if not node.keys() & _CHILD_KEYS:
            return frozenset(found)
        for key in _SCHEMA_KEYS:
            found |= self.refs(node.get(key))
        for key in _SCHEMA_LISTS:
            for sub in node.get(key) or []:
                found |= self.refs(sub)
        for key in _SCHEMA_TABLES:
            table = node.get(key)
            if isinstance(table, dict):
                for sub in table.values():
                    found |= self.refs(sub)
        result = frozenset(found)
        self._refs[id(node)] = result
        return result

    def problems(self, schema: dict[str, Any], path: list[str | int]) -> list[str]:
        defs = schema.get("$defs") or {}
        return [
            f"{_pointer(path)}: unresolvable reference {ref!r}"
            for ref in sorted(self.refs(schema))
            if not ref.startswith("#/$defs/") or ref.removeprefix("#/$defs/") not in defs
        ]


def validate_tools(
    specs: list[ToolSpec],
    portable_inputs: bool,
    profile: str | None = None,
    server_name: str = "mcpgen",
) -> None:
    """Raise a UserError listing every problem of every tool; return quietly when all is well.

    With a client `profile`, that client's lint rules replace the portable rules.
    """
    problems: list[Problem] = []
    seen: set[str] = set()
    metaschema = MetaschemaCheck()
    refs = RefCheck()
    portable_seen: set[int] = set()

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
            report(name, metaschema.problems(schema, [key]))
            report(name, refs.problems(schema, [key]))
        if portable_inputs and profile is None:
            report(
                name, portable_problems(spec.tool["inputSchema"], ["inputSchema"], portable_seen)
            )
    if problems:
        raise UserError(
            f"{len(problems)} problem(s) in the generated tools",
            problems=problems[:50],
            hint="this usually means an input the mapping cannot express; "
            "report it with the .proto that caused it",
        )
    if profile is not None:
        tools = [spec.tool for spec in specs]
        found = [v for v in lint_tools(tools, profile, server_name, False) if v.severity == ERROR]
        if found:
            raise UserError(
                f"{len(found)} tool(s) break the rules of the {profile} profile",
                problems=[Problem(str(v)) for v in found[:50]],
                hint="rename tools with [rename] in the config, or build for another profile",
            )
