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
import gc
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


class _Unclean(Exception):
    """Something in the tools is wrong: the full checks must say what and where."""


_NO_REFS: frozenset[str] = frozenset()
_BLANKED_TEXT = frozenset((*_ANNOTATION_TEXT, "pattern", "format"))
_FORBIDDEN = frozenset(_FORBIDDEN_PORTABLE)
_KEY_SET, _LIST_SET, _TABLE_SET = map(frozenset, (_SCHEMA_KEYS, _SCHEMA_LISTS, _SCHEMA_TABLES))
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


def _portable_node(node: dict[str, Any]) -> bool:
    """portable_problems of one node, without its subschemas, as a yes or no."""
    if not _FORBIDDEN.isdisjoint(node):
        return False
    kind = node.get("type")
    if isinstance(kind, list) or (kind == "array" and not isinstance(node.get("items"), dict)):
        return False
    if "required" in node:
        required = node["required"]
        props = node.get("properties") or {}
        if not isinstance(required, list) or any(r not in props for r in required):
            return False
    return True


class _FastCheck:
    """Whether every tool passes every check of `validate_tools`, without paths or messages.

    The same nodes and the same predicates as the full checks, so it passes only when they
    would find nothing: each distinct node (by identity; schemas share subtrees) once, in one
    pass for all checks; each distinct shape once (jsonschema-rs accepts; where it does not,
    Python's `jsonschema` decides); each distinct pattern once. Anything unexpected fails it,
    and the full checks then run and decide.
    """

    def __init__(self) -> None:
        #: id of a node -> the `$ref`s under it, and whether it is portable all through
        self._nodes: dict[int, tuple[frozenset[str], bool]] = {}
        self._shapes: dict[tuple, bool] = {}
        self._patterns: dict[str, bool] = {}

    def clean(self, specs: list[ToolSpec], portable: bool) -> bool:
        # It allocates a tuple or two per node and makes no reference cycles: the collector,
        # which would walk every schema again and again meanwhile, waits (half of the time).
        collecting = gc.isenabled()
        gc.disable()
        try:
            self._check(specs, portable)
        except Exception:  # _Unclean, or data the full checks must report on (or raise for)
            return False
        finally:
            if collecting:
                gc.enable()
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
                if type(schema) is not dict or schema.get("type") != "object":
                    raise _Unclean
                refs, _ = self._visit(schema)
                if refs:
                    defs = schema.get("$defs") or {}
                    for ref in refs:
                        if (
                            not ref.startswith("#/$defs/")
                            or ref.removeprefix("#/$defs/") not in defs
                        ):
                            raise _Unclean
            if portable:
                schema = spec.tool["inputSchema"]
                if not isinstance(schema.get("properties"), dict) or not self._visit(schema)[1]:
                    raise _Unclean

    def _visit(self, node: dict[str, Any]) -> tuple[frozenset[str], bool]:
        """Check a node and what is under it on first sight; its `$ref`s and portability.

        Its subschemas are those `subschemas` and `RefCheck.refs` visit; its shape key is equal
        for two nodes only when their `_shallow` shapes are (types included), and is cheaper
        to build than the shape, which is built once per distinct key.
        """
        known = self._nodes.get(id(node))
        if known is not None:
            return known
        refs = _NO_REFS
        portable = _portable_node(node)
        children: list[dict[str, Any]] = []
        parts = []
        for key, value in node.items():
            kind = type(value)
            if kind is str:
                if key in _BLANKED_TEXT:
                    parts.append((key, 0, ""))
                    if key == "pattern":
                        self._pattern(value)
                else:
                    parts.append((key, 0, value))
                    if key == "$ref":
                        refs = frozenset((value,))
            elif kind is dict:
                if key in _KEY_SET:
                    parts.append((key, 1))
                    children.append(value)
                elif key in _TABLE_SET:
                    parts.append((key, 2, not value))
                    children += [v for v in value.values() if isinstance(v, dict)]
                elif key in _LIST_SET:
                    raise _Unclean
                else:
                    parts.append((key, 6, _freeze(value)))
            elif key in _LIST_SET:
                if kind is not list:
                    raise _Unclean
                parts.append((key, 5, len(value)))
                children += [v for v in value if isinstance(v, dict)]
            elif kind is bool:
                parts.append((key, 3, value))
            elif (kind is int or kind is float) and key in _NUMERIC_KEYWORDS:
                parts.append((key, 4, value >= 0))
            elif kind is list and key == "enum" and value:
                parts.append((key, 7))
            elif kind is list and key == "required" and _unique_strings(value):
                parts.append((key, 8, not value))
            else:
                parts.append((key, 6, _freeze(value)))
        shape_key = tuple(parts)
        valid = self._shapes.get(shape_key)
        if valid is None:
            valid = self._shapes[shape_key] = _valid_shape(_shallow(node))
        if not valid:
            raise _Unclean
        for child in children:
            child_refs, child_portable = self._visit(child)
            if child_refs:
                refs |= child_refs
            portable = portable and child_portable
        result = (refs, portable)
        self._nodes[id(node)] = result
        return result

    def _pattern(self, pattern: str) -> None:
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


def _valid_shape(shape: dict[str, Any]) -> bool:
    """No metaschema error: jsonschema-rs accepts, or the reference finds nothing."""
    if _plain_json(shape) and _rust_meta().is_valid(shape):
        return True
    return not any(True for _ in _python_meta().iter_errors(shape))


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
