"""JSON Schemas from go-micro registry Value trees.

A registry says less than a .proto file: field names (json tags, usually snake_case), Go type
names, no enum values, no slice elements, no comments, and structs cut off at depth 3. So these
schemas are loose where the registry is silent:

- inputs list the registry's fields with their types, require nothing and allow other keys
  (go-micro decodes lowerCamelCase names too);
- outputs must accept what the service really answers, which for protobuf-backed handlers is
  protojson: lowerCamelCase keys, 64-bit integers as strings, enums as names, NaN as a string.
  So output properties are named in lowerCamelCase, nothing is required, other keys are
  allowed, and scalar types admit their protojson forms.

A struct cut off by the depth limit takes the shape the same service describes elsewhere under
that type name, when it does (once per path, so recursive types end in an open object).
"""

from __future__ import annotations

from typing import Any

from mcpgen.model import ValueTree

_INTEGERS_32 = {"int8", "int16", "int32", "uint8", "uint16", "uint32", "byte", "rune"}
_INTEGERS_64 = {"int", "int64", "uint", "uint64", "uintptr"}
_FLOATS = {"float32", "float64"}
_WELL_KNOWN: dict[str, dict[str, Any]] = {
    "Timestamp": {"type": "string", "format": "date-time",
                  "description": "RFC 3339 timestamp, e.g. 2024-01-31T12:00:00Z"},
    "Duration": {"type": "string", "description": 'a duration in seconds, e.g. "1.5s"'},
    "Struct": {"type": "object"},
    "Any": {"type": "object"},
    "Empty": {"type": "object"},
    "ListValue": {"type": "array"},
    "Value": {},
    "FieldMask": {"type": "string", "description": "comma-separated field paths"},
    "Time": {"type": "string", "format": "date-time"},  # Go's time.Time
}  # fmt: skip
_BASE64 = {"type": "string", "contentEncoding": "base64", "description": "base64-encoded bytes"}


def known_structs(trees: list[ValueTree | None]) -> dict[str, ValueTree]:
    """Every struct a service describes, by Go type name (the most detailed description)."""
    found: dict[str, ValueTree] = {}

    def visit(tree: ValueTree) -> None:
        if tree.values:
            name = _base_type(tree.type)
            if name and (name not in found or _size(tree) > _size(found[name])):
                found[name] = tree
            for child in tree.values:
                visit(child)

    for tree in trees:
        if tree is not None:
            visit(tree)
    return found


def _size(tree: ValueTree) -> int:
    return 1 + sum(_size(c) for c in tree.values or ())


def _base_type(go_type: str) -> str:
    return go_type.lstrip("*").rpartition(".")[2]


def camel(name: str) -> str:
    """A json tag as protojson spells the field (protoc's json_name rule)."""
    out, upper = [], False
    for ch in name:
        if ch == "_":
            upper = True
        elif upper:
            out.append(ch.upper())
            upper = False
        else:
            out.append(ch)
    return "".join(out)


class RegistrySchemas:
    """Input and output schemas of one service's endpoints."""

    def __init__(self, known: dict[str, ValueTree]) -> None:
        self.known = known

    def input(self, tree: ValueTree | None) -> dict[str, Any]:
        return self._root(tree, output=False)

    def output(self, tree: ValueTree | None) -> dict[str, Any]:
        return self._root(tree, output=True)

    def _root(self, tree: ValueTree | None, output: bool) -> dict[str, Any]:
        schema = {"type": "object"} if tree is None else self._value(tree, output, ())
        if "type" not in schema:  # a handler's request and response are structs, even empty
            schema = {"type": "object"}
        elif schema["type"] != "object":  # tool schemas have object roots
            schema = {"type": "object", "properties": {"value": schema}}
        if not output:  # clients want input roots with properties, even none
            schema.setdefault("properties", {})
        return schema

    def _value(self, tree: ValueTree, output: bool, path: tuple[str, ...]) -> dict[str, Any]:
        go = tree.type.lstrip("*")
        if tree.values:
            return self._struct(tree.values, output, (*path, _base_type(go)))
        if go == "":
            return {"type": "object", "description": "a map"}
        if go in ("[]uint8", "[]byte"):
            return dict(_BASE64)
        if go.startswith("[]"):
            element = ValueTree(name="", type=go[2:])
            return {"type": "array", "items": self._value(element, output, path)}
        if go.startswith("map["):
            return {"type": "object"}
        return self._named(go, output, path)

    def _struct(
        self, fields: tuple[ValueTree, ...], output: bool, path: tuple[str, ...]
    ) -> dict[str, Any]:
        properties: dict[str, Any] = {}
        for child in fields:
            if not child.name or child.name == "-":
                continue
            key = camel(child.name) if output else child.name
            properties.setdefault(key, self._value(child, output, path))
        schema: dict[str, Any] = {"type": "object"}
        if properties:
            schema["properties"] = properties
        return schema

    def _named(self, go: str, output: bool, path: tuple[str, ...]) -> dict[str, Any]:
        if go == "string":
            return {"type": "string"}
        if go == "bool":
            return {"type": "boolean"}
        unsigned = {"minimum": 0} if go.startswith("uint") and not output else {}
        if go in _INTEGERS_32:
            return {"type": "integer", **unsigned}
        if go in _INTEGERS_64:
            if output:  # protojson writes them as strings, encoding/json as numbers
                return {"type": ["integer", "string"], "pattern": "^-?[0-9]+$"}
            return {"type": "integer", **unsigned}  # what encoding/json and protojson decode
        if go in _FLOATS:
            if output:
                return {"type": ["number", "string"]}  # protojson's "NaN", "Infinity"
            return {"type": "number"}
        if go in ("interface {}", "interface{}", "any"):
            return {}
        name = _base_type(go)
        if name in _WELL_KNOWN:
            schema = dict(_WELL_KNOWN[name])
            if output:  # a Go time.Time may print offsets and precision protobuf would not
                schema.pop("format", None)
            return schema
        struct = self.known.get(name)
        if struct is not None and struct.values and name not in path:
            return self._struct(struct.values, output, (*path, name))
        return {
            "description": f"a Go {name} (the registry does not describe it: "
            "an enum name or number, or a struct)"
        }
