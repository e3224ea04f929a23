"""Portable inputSchemas → the form one client profile accepts (`mcpgen build --profile P`).

claude, openai and cursor accept the portable rendering as it is. gemini rejects
`additionalProperties` (portable maps), `const` and type arrays: maps keep their value type in
words, `const` becomes a one-value `enum`, a type array its first type plus `nullable`.

openai-strict (OpenAI's strict function calling) needs every object closed and every property
in `required`: optional properties become nullable the way OpenAI documents it,
`"type": [T, "null"]`. In a strict schema `null` only ever means "not set": the server drops
those nulls again (`mcpgen.runtime.arguments.strict_arguments`). What strict mode cannot express
is said in words or left out. Keywords and formats it does not support move into the
description (the server still enforces them). Objects without declared properties (maps,
Struct, Empty, recursion stubs) and objects nested deeper than OpenAI allows are left out, and
the parent's description names them; when such a field is required, the build fails. A value
of any JSON type (google.protobuf.Value, ListValue items) can be a string, number or boolean.
"""

from __future__ import annotations

import json
from typing import Any

from mcpgen.errors import UserError
from mcpgen.lint import STRICT_FORMATS, STRICT_KEYWORDS, STRICT_MAX_DEPTH, pointer
from mcpgen.schema.render import join_text

Schema = dict[str, Any]
STRICT = "openai-strict"
GEMINI = "gemini"
_JSON_SCALARS = ["string", "number", "boolean"]
_TYPED = ("type", "anyOf", "enum", "const", "$ref")


def for_profile(schema: Schema, profile: str, tool: str) -> Schema:
    """The inputSchema of `tool` as `profile` accepts it (portable `schema` for the others)."""
    if profile == STRICT:
        return _StrictSchema(tool).object(schema, ["inputSchema"], 1)
    if profile == GEMINI:
        return _gemini(schema)
    return schema


def _types(schema: Schema) -> list[Any]:
    kind = schema.get("type", [])
    return list(kind) if isinstance(kind, list) else [kind]


def _word(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _described(schema: Schema, notes: list[str]) -> Schema:
    if notes:
        schema["description"] = join_text(schema.get("description"), *notes)
    return schema


# ---- openai-strict ---------------------------------------------------------------------------


def _strict_keywords(node: Schema) -> tuple[Schema, list[str]]:
    """The keywords strict mode supports, and the others as a sentence for the description."""
    kept: Schema = {}
    moved: list[str] = []
    for key, value in node.items():
        if key in STRICT_KEYWORDS and (key != "format" or value in STRICT_FORMATS):
            kept[key] = value
        else:
            moved.append(f"{key} {_word(value)}")
    return kept, [f"Constraints: {', '.join(moved)}."] if moved else []


def nullable(schema: Schema) -> Schema:
    """`schema` that also takes null: how strict mode spells an optional property."""
    if "anyOf" in schema:
        if {"type": "null"} in schema["anyOf"]:
            return schema
        return {**schema, "anyOf": [*schema["anyOf"], {"type": "null"}]}
    out = dict(schema)
    types = _types(schema)
    out["type"] = types if "null" in types else [*types, "null"]  # a list: the server's marker
    if "enum" in out and None not in out["enum"]:
        out["enum"] = [*out["enum"], None]
    return out


class _StrictSchema:
    """One tool's inputSchema for OpenAI strict mode; `depth` counts enclosing objects."""

    def __init__(self, tool: str) -> None:
        self.tool = tool

    def object(self, node: Schema, path: list[str | int], depth: int) -> Schema:
        kept, notes = _strict_keywords(node)
        required = set(node.get("required") or [])
        properties: Schema = {}
        left_out: list[str] = []
        for name, sub in (node.get("properties") or {}).items():
            value = self.value(sub, [*path, "properties", name], depth)
            if value is None and name in required:
                raise UserError(
                    f"tool {self.tool}: {pointer([*path, 'properties', name])}: the required "
                    "field is an object with open keys or nested too deeply, which OpenAI "
                    "strict mode cannot express",
                    hint="build this tool without `--profile openai-strict`",
                )
            if value is None:
                left_out.append(f"`{name}`")
            else:
                properties[name] = value if name in required else nullable(value)
        if left_out:
            notes.append(f"Cannot be sent with this client profile: {', '.join(left_out)}.")
        elif not properties and node.get("description"):
            notes.append("With this client profile it takes no properties.")
        kept |= {"type": "object", "properties": properties, "additionalProperties": False}
        kept["required"] = list(properties)
        return _described(kept, notes)

    def value(self, node: Schema, path: list[str | int], depth: int) -> Schema | None:
        """A property's or item's schema for strict mode, or None when it cannot be sent."""
        if not node.keys() & set(_TYPED):  # any JSON value: its scalar forms
            kept, notes = _strict_keywords(node)
            notes.append("With this client profile it is a string, number or boolean.")
            return _described({**kept, "type": _JSON_SCALARS}, notes)
        types = _types(node)
        if "object" in types:
            if not node.get("properties") or depth >= STRICT_MAX_DEPTH:
                return None
            return self.object(node, path, depth + 1)
        kept, notes = _strict_keywords(node)
        if "array" in types:
            items = self.value(node.get("items", {}), [*path, "items"], depth)
            if items is None:
                return None
            kept["items"] = items
        return _described(kept, notes)


# ---- gemini ----------------------------------------------------------------------------------


def _gemini(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    out: Schema = {}
    notes: list[str] = []
    for key, value in node.items():
        if key == "additionalProperties":
            kind = value.get("type") if isinstance(value, dict) else None
            if value is not False:
                every = f"; every value is of type {kind}" if isinstance(kind, str) else ""
                notes.append(f"An object of key-value pairs{every}.")
        elif key == "const":
            out["enum"] = [value]
        elif key == "type" and isinstance(value, list):
            kinds = [t for t in value if t != "null"] or ["null"]
            out["type"] = kinds[0]
            if "null" in value:
                out["nullable"] = True
            if len(kinds) > 1:
                notes.append(f"Also accepts: {', '.join(kinds[1:])}.")
        elif key == "properties" and isinstance(value, dict):
            out[key] = {name: _gemini(sub) for name, sub in value.items()}
        elif key in ("items", "anyOf", "oneOf", "allOf", "prefixItems"):
            out[key] = [_gemini(v) for v in value] if isinstance(value, list) else _gemini(value)
        else:
            out[key] = value
    if "array" in _types(out) and "items" not in out:
        out["items"] = {"description": "any JSON value"}
    return _described(out, notes)
