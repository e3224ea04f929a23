"""Build-time checks of every tool: what reaches a client was validated before deploy.

Every schema against the JSON Schema 2020-12 metaschema, every `$ref` resolvable, every portable
`inputSchema` against the portable rules (see docs of `mcpgen.schema`), every name against the
client-safe pattern and for uniqueness. Problems name the tool and the JSON path.

A build's tools are first checked for whether anything at all is wrong (`_FastCheck`: each
distinct schema object once, no paths, the metaschema through jsonschema-rs); only then do the
checks below run again to say what and where. Python's `jsonschema` words every metaschema
problem, and is imported only for that: building its format checkers takes seconds.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterator
from typing import Any

import orjson

from mcpgen.errors import Problem, UserError
from mcpgen.lint import ERROR, lint_tools
from mcpgen.tools import NAME_PATTERN, ToolSpec

_METASCHEMA_URI = "https://json-schema.org/draft/2020-12/schema"


@functools.cache
def _python_meta() -> Any:
    """The reference metaschema validator, which decides and words every problem."""
    from jsonschema import Draft202012Validator

    return Draft202012Validator(Draft202012Validator.META_SCHEMA)


@functools.cache
def _rust_meta() -> Any:
    """The 2020-12 metaschema in jsonschema-rs (bundled with it): a fast first opinion."""
    import jsonschema_rs

    return jsonschema_rs.Draft202012Validator({"$schema": _METASCHEMA_URI, "$ref": _METASCHEMA_URI})


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


def _is_number(value: Any) -> bool:
    """A JSON number (`True` is an int to Python, a boolean to the metaschema)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


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
        elif key in _NUMERIC_KEYWORDS and _is_number(value) and value >= 0:
            out[key] = 0
        elif key in _NUMERIC_KEYWORDS and _is_number(value):
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
                found_errors = _python_meta().iter_errors(shape)
                errors = [(list(e.absolute_path), e.message) for e in found_errors]
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


def _nodes(schema: dict[str, Any], seen: set[int]) -> Iterator[dict[str, Any]]:
    """`subschemas(schema, [], seen)` without the paths."""
    stack = [schema]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        yield node
        if _CHILD_KEYS.isdisjoint(node):
            continue
        for key in _SCHEMA_KEYS:
            child = node.get(key)
            if isinstance(child, dict):
                stack.append(child)
        for key in _SCHEMA_LISTS:
            for child in node.get(key) or []:
                if isinstance(child, dict):
                    stack.append(child)
        for key in _SCHEMA_TABLES:
            table = node.get(key)
            if isinstance(table, dict):
                for child in table.values():
                    if isinstance(child, dict):
                        stack.append(child)


class _Unclean(Exception):
    """Something in the tools is wrong: the full checks must say what and where."""


_NO_REFS: frozenset[str] = frozenset()
_BLANKED_TEXT = frozenset((*_ANNOTATION_TEXT, "pattern", "format"))
_FORBIDDEN = frozenset(_FORBIDDEN_PORTABLE)
_JSON_SCALARS = (str, bool, type(None))
_INT64 = (-(2**63), 2**64 - 1)


def _freeze(value: Any) -> Any:
    """A hashable copy of JSON data in which equal means the same types and values."""
    kind = type(value)
    if kind in (str, int, float, bool, type(None)):
        return kind, value
    if kind is list or kind is tuple:
        return kind, tuple(_freeze(v) for v in value)
    if kind is dict:
        return kind, tuple((_freeze(k), _freeze(v)) for k, v in value.items())
    raise _Unclean  # not JSON data: leave it to the full checks


def _shape_key(node: dict[str, Any]) -> tuple:
    """Equal for two nodes only when their `_shallow` shapes are equal (types included).

    Cheaper than building the shape; the shape itself is built once per distinct key.
    """
    parts = []
    for key, value in node.items():
        kind = type(value)
        if kind is str:
            parts.append((key, 0, "" if key in _BLANKED_TEXT else value))
        elif kind is dict and key in _SCHEMA_KEYS:
            parts.append((key, 1))
        elif kind is dict and key in _SCHEMA_TABLES:
            parts.append((key, 2, not value))
        elif kind is bool:
            parts.append((key, 3, value))
        elif (kind is int or kind is float) and key in _NUMERIC_KEYWORDS:
            parts.append((key, 4, value >= 0))
        elif kind is list and key in _SCHEMA_LISTS:
            parts.append((key, 5, len(value)))
        elif kind is list and key == "enum" and value:
            parts.append((key, 7))
        elif kind is list and key == "required" and _unique_strings(value):
            parts.append((key, 8, not value))
        else:
            parts.append((key, 6, _freeze(value)))
    return tuple(parts)


def _plain_json(value: Any) -> bool:
    """JSON data both validators read alike: exact JSON types, finite numbers in 64 bits."""
    kind = type(value)
    if kind in _JSON_SCALARS:
        return True
    if kind is int:
        return _INT64[0] <= value <= _INT64[1]
    if kind is float:
        return math.isfinite(value)
    if kind is list:
        return all(_plain_json(v) for v in value)
    if kind is dict:
        return all(type(k) is str and _plain_json(v) for k, v in value.items())
    return False


class _FastCheck:
    """Whether every tool passes every check of `validate_tools`, without paths or messages.

    The same nodes and the same predicates as the full checks, so it passes only when they
    would find nothing: each distinct node (by identity; schemas share subtrees) once, each
    distinct shape once (jsonschema-rs accepts; where it does not, Python's `jsonschema`
    decides), each distinct pattern once. Anything unexpected fails it, and the full checks
    then run and decide.
    """

    def __init__(self) -> None:
        self._refs: dict[int, frozenset[str]] = {}
        self._shapes: dict[tuple, bool] = {}
        self._patterns: dict[str, bool] = {}
        self._portable_seen: set[int] = set()

    def clean(self, specs: list[ToolSpec], portable: bool) -> bool:
        try:
            self._check(specs, portable)
        except Exception:  # _Unclean, or data the full checks must report on (or raise for)
            return False
        return True

    def _check(self, specs: list[ToolSpec], portable: bool) -> None:
        names: set[str] = set()
        for spec in specs:
            name = spec.name
            if not NAME_PATTERN.match(name) or name in names:
                raise _Unclean
            names.add(name)
            for key in ("inputSchema", "outputSchema"):
                schema = spec.tool[key]
                if schema.get("type") != "object":
                    raise _Unclean
                refs = self.refs(schema)
                if refs:
                    defs = schema.get("$defs") or {}
                    for ref in refs:
                        if (
                            not ref.startswith("#/$defs/")
                            or ref.removeprefix("#/$defs/") not in defs
                        ):
                            raise _Unclean
            if portable:
                self.portable(spec.tool["inputSchema"])

    def refs(self, node: dict[str, Any]) -> frozenset[str]:
        """The `$ref`s under `node`, checking each node against the metaschema on first sight."""
        known = self._refs.get(id(node))
        if known is not None:
            return known
        self._node(node)
        ref = node.get("$ref")
        found = frozenset((ref,)) if isinstance(ref, str) else _NO_REFS
        if not _CHILD_KEYS.isdisjoint(node):  # the children RefCheck.refs and subschemas visit
            for key in _SCHEMA_KEYS:
                child = node.get(key)
                if isinstance(child, dict):
                    sub = self.refs(child)
                    if sub:
                        found |= sub
            for key in _SCHEMA_LISTS:
                for child in node.get(key) or []:
                    if isinstance(child, dict):
                        sub = self.refs(child)
                        if sub:
                            found |= sub
            for key in _SCHEMA_TABLES:
                table = node.get(key)
                if isinstance(table, dict):
                    for child in table.values():
                        if isinstance(child, dict):
                            sub = self.refs(child)
                            if sub:
                                found |= sub
        self._refs[id(node)] = found
        return found

    def _node(self, node: dict[str, Any]) -> None:
        """MetaschemaCheck.problems of one node, as a yes or no."""
        key = _shape_key(node)
        valid = self._shapes.get(key)
        if valid is None:
            shape = _shallow(node)
            valid = (_plain_json(shape) and _rust_meta().is_valid(shape)) or not any(
                True for _ in _python_meta().iter_errors(shape)
            )
            self._shapes[key] = valid
        if not valid:
            raise _Unclean
        pattern = node.get("pattern")
        if isinstance(pattern, str):
            compiles = self._patterns.get(pattern)
            if compiles is None:
                try:
                    re.compile(pattern)
                    compiles = True
                except re.error:
                    compiles = False
                self._patterns[pattern] = compiles
            if not compiles:
                raise _Unclean

    def portable(self, schema: dict[str, Any]) -> None:
        """portable_problems of one input schema, as a yes or no."""
        if schema.get("type") != "object" or not isinstance(schema.get("properties"), dict):
            raise _Unclean
        for node in _nodes(schema, self._portable_seen):
            if not _FORBIDDEN.isdisjoint(node):
                raise _Unclean
            kind = node.get("type")
            if isinstance(kind, list):
                raise _Unclean
            if kind == "array" and not isinstance(node.get("items"), dict):
                raise _Unclean
            if "required" in node:
                required = node["required"]
                props = node.get("properties") or {}
                if not isinstance(required, list) or any(r not in props for r in required):
                    raise _Unclean


def validate_tools(
    specs: list[ToolSpec],
    portable_inputs: bool,
    profile: str | None = None,
    server_name: str = "mcpgen",
) -> None:
    """Raise a UserError listing every problem of every tool; return quietly when all is well.

    With a client `profile`, that client's lint rules replace the portable rules.
    """
    portable = portable_inputs and profile is None
    if not _FastCheck().clean(specs, portable):
        _raise_problems(specs, portable)
    if profile is not None:
        tools = [spec.tool for spec in specs]
        found = [v for v in lint_tools(tools, profile, server_name, False) if v.severity == ERROR]
        if found:
            raise UserError(
                f"{len(found)} tool(s) break the rules of the {profile} profile",
                problems=[Problem(str(v)) for v in found[:50]],
                hint="rename tools with [rename] in the config, or build for another profile",
            )


def _raise_problems(specs: list[ToolSpec], portable: bool) -> None:
    """Raise a UserError naming every problem, with its tool and JSON path (if there is one)."""
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
        if portable:
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
