"""Tool arguments → a protobuf request, or every problem with them in words a model can act on.

Accepts what protobuf's JSON parser accepts: json names and original field names (original
names are renamed to json names before validation, so the precise schema needs only one
spelling), int64 as a number or a string, enum names or numbers. Validation against the
precise schema lists every problem at once; `json_format.ParseDict` then builds the message.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from mcpgen.runtime.validation import SchemaValidator

if TYPE_CHECKING:
    from jsonschema import ValidationError
from mcpgen.schema.scalars import OBJECT_WELL_KNOWN, ROOT_VALUE_KEY, WELL_KNOWN


class Validator(Protocol):
    """What the arguments step needs of a validator (validation.SchemaValidator, jsonschema's)."""

    def iter_errors(self, instance: Any) -> Iterable[ValidationError]: ...


class InvalidArguments(Exception):
    """Arguments a tool cannot take; `problems` say where and what was expected."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems

    def text(self, tool: str) -> str:
        lines = [f"Invalid arguments for tool {tool}:"]
        lines += [f"- {p}" for p in self.problems]
        lines.append("Fix these and call the tool again.")
        return "\n".join(lines)


def root_value(message_name: str) -> bool:
    """True when a message sits under `{"value": ...}` at a tool's root (non-object WKTs)."""
    return message_name in WELL_KNOWN and message_name not in OBJECT_WELL_KNOWN


# ---- original field names → json names -----------------------------------------------------


def _pointer(path: Iterable[str | int]) -> str:
    parts = [str(p).replace("~", "~0").replace("/", "~1") for p in path]
    return "/" + "/".join(parts) if parts else "/"


def to_json_names(
    value: Any, descriptor: Descriptor, path: list[str | int], problems: list[str]
) -> Any:
    """A copy of `value` with original field names renamed to json names, at every level."""
    if not isinstance(value, dict) or descriptor.full_name in WELL_KNOWN:
        return value  # WKT JSON forms (Struct, Any, ...) hold data, not field names
    by_name = descriptor.fields_by_name
    out: dict[str, Any] = {}
    for key, item in value.items():
        field: FieldDescriptor | None = by_name.get(key)
        if field is None or field.json_name == key:
            field = field or descriptor.fields_by_camelcase_name.get(key)
            field = field if field is not None and field.json_name == key else None
            name = key
        else:
            name = field.json_name
            if name in value:
                problems.append(
                    f"at {_pointer([*path, key])}: `{key}` and `{name}` are the same field; "
                    "give it once"
                )
                continue
        out[name] = _convert_field(item, field, [*path, name], problems) if field else item
    return out


def _convert_field(
    value: Any, field: FieldDescriptor, path: list[str | int], problems: list[str]
) -> Any:
    message = field.message_type
    if message is None:
        return value
    if message.GetOptions().map_entry:
        value_type = message.fields_by_name["value"].message_type
        if value_type is None or not isinstance(value, dict):
            return value
        return {k: to_json_names(v, value_type, [*path, k], problems) for k, v in value.items()}
    if field.is_repeated and isinstance(value, list):
        return [to_json_names(v, message, [*path, i], problems) for i, v in enumerate(value)]
    return to_json_names(value, message, path, problems)


# ---- schema errors → sentences ---------------------------------------------------------------

_ARTICLE = {"integer": "an integer", "object": "an object", "array": "an array"}


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _type_words(expected: Any) -> str:
    names = expected if isinstance(expected, list) else [expected]
    return " or ".join(_ARTICLE.get(n, f"a {n}" if n != "null" else "null") for n in names)


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


_FORMAT_WORDS = {
    "int32": "a 32-bit integer (a number, or a string of digits)",
    "uint32": "an unsigned 32-bit integer (a number, or a string of digits)",
    "int64": "a 64-bit integer (a number, or a string of digits)",
    "uint64": "an unsigned 64-bit integer (a number, or a string of digits)",
    "float": 'a finite 32-bit float (or "NaN", "Infinity", "-Infinity")',
    "double": 'a finite number (or "NaN", "Infinity", "-Infinity")',
    "date-time": 'an RFC 3339 timestamp such as "2024-01-31T12:00:00Z"',
    "google-duration": 'a duration in seconds such as "1.5s" (at most 315576000000s)',
}


def describe(error: ValidationError) -> str:
    """One schema error as a sentence naming the JSON path and what was expected."""
    where = f"at {_pointer(error.absolute_path)}"
    schema = error.schema if isinstance(error.schema, dict) else {}
    keyword, instance = error.validator, error.instance
    if keyword == "type":
        return f"{where}: expected {_type_words(error.validator_value)}, got {_kind(instance)}"
    if keyword == "required":
        missing = [r for r in error.validator_value if r not in instance]
        return f"{where}: missing required property {', '.join(f'`{m}`' for m in missing)}"
    if keyword == "additionalProperties":
        known = sorted(schema.get("properties") or {})
        extra = sorted(k for k in instance if k not in known)
        hint = f"; known properties: {', '.join(known)}" if known else "; it takes no properties"
        return f"{where}: unknown property {', '.join(f'`{e}`' for e in extra)}{hint}"
    if keyword == "enum":
        values = ", ".join(_short(v, 40) for v in error.validator_value[:30])
        more = " ..." if len(error.validator_value) > 30 else ""
        return f"{where}: expected one of {values}{more}; got {_short(instance)}"
    if keyword == "format":
        words = _FORMAT_WORDS.get(error.validator_value, f"format {error.validator_value}")
        return f"{where}: expected {words}; got {_short(instance)}"
    if keyword == "pattern" and schema.get("format") in _FORMAT_WORDS:
        return f"{where}: expected {_FORMAT_WORDS[schema['format']]}; got {_short(instance)}"
    if keyword == "pattern":
        return f"{where}: {_short(instance)} does not match the pattern {error.validator_value!r}"
    if keyword in ("anyOf", "oneOf"):
        forms = sorted({describe(sub).split(": ", 1)[1] for sub in error.context or []})
        return f"{where}: {_short(instance)} matches none of the allowed forms: " + " | ".join(
            forms
        )
    if error.schema is False:
        return f"{where}: no value is allowed here"
    return f"{where}: {error.message}"


def _oneof_member(error: ValidationError) -> str | None:
    """The oneof member whose `dependentSchemas` entry refused another member, if that is it."""
    if error.schema is not False:
        return None
    schema_path = [str(p) for p in error.absolute_schema_path]
    if "dependentSchemas" not in schema_path:
        return None
    at = len(schema_path) - 1 - schema_path[::-1].index("dependentSchemas")
    return schema_path[at + 1] if at + 1 < len(schema_path) else None


def validate_arguments(arguments: dict[str, Any], validator: Validator) -> list[str]:
    """Every problem of `arguments` against a precise schema, ordered by path, each once."""
    errors = sorted(
        validator.iter_errors(arguments),
        key=lambda e: ([str(p) for p in e.absolute_path], str(e.validator)),
    )
    problems: dict[str, None] = {}
    oneofs: dict[str, set[str]] = {}  # object path -> members set together
    for error in errors:
        member = _oneof_member(error)
        if member is not None:
            oneofs.setdefault(_pointer(error.absolute_path), set()).add(member)
        else:
            problems[describe(error)] = None
    for where, members in oneofs.items():
        names = ", ".join(f"`{m}`" for m in sorted(members))
        problems[f"at {where}: {names} belong to one oneof; set only one of them"] = None
    return list(problems)


# ---- openai-strict bundles -------------------------------------------------------------------


def strict_arguments(arguments: dict[str, Any], validator: SchemaValidator) -> dict[str, Any]:
    """Arguments for a tool of an `openai-strict` bundle, in the form the precise path takes.

    The manifest's strict inputSchema (`validator`) is what the client was promised, so it
    decides first: every property present, nothing else, JSON names only. Then the nulls it
    allows for optional properties (`"type": [T, "null"]`) are dropped: they mean "not set".
    A null elsewhere (a required NullValue field) is data and stays.
    """
    problems = validate_arguments(arguments, validator)
    if problems:
        raise InvalidArguments(problems)
    return _without_unset(arguments, validator.schema)


def _without_unset(value: Any, schema: dict[str, Any]) -> Any:
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [_without_unset(item, schema["items"]) for item in value]
    properties = schema.get("properties")
    if not isinstance(value, dict) or not isinstance(properties, dict):
        return value
    out = {}
    for key, item in value.items():
        sub = properties.get(key, {})
        kind = sub.get("type")
        if item is None and isinstance(kind, list) and "null" in kind:
            continue
        out[key] = _without_unset(item, sub)
    return out


# ---- the whole step --------------------------------------------------------------------------


def build_request(
    arguments: dict[str, Any] | None, message_class: type[Message], validator: Validator
) -> Message:
    """The request message for a tool call, or InvalidArguments listing every problem."""
    descriptor = message_class.DESCRIPTOR
    arguments = arguments or {}
    problems: list[str] = []
    normalized = to_json_names(arguments, descriptor, [], problems)
    if problems:
        raise InvalidArguments(problems)
    accepts_fast = getattr(validator, "accepts_fast", None)
    if accepts_fast is None or not accepts_fast(normalized):
        problems = validate_arguments(normalized, validator)
        if problems:
            raise InvalidArguments(problems)
    payload = normalized
    if root_value(descriptor.full_name):
        payload = normalized.get(ROOT_VALUE_KEY)
    message = message_class()
    try:
        # Any resolves its type URL in the bundle's pool, not protobuf's default one
        json_format.ParseDict(payload, message, descriptor_pool=descriptor.file.pool)
    except (json_format.ParseError, ValueError, TypeError, OverflowError) as exc:
        # protobuf refused what the fast validator let through: the reference words it
        reference = getattr(validator, "reference", validator)
        problems = validate_arguments(normalized, reference) or [f"at /: {exc}"]
        raise InvalidArguments(problems) from None
    return message


def response_json(message: Message) -> dict[str, Any]:
    """A response as protojson, with an object root (non-object WKTs under `value`)."""
    value = json_format.MessageToDict(message, descriptor_pool=message.DESCRIPTOR.file.pool)
    if root_value(message.DESCRIPTOR.full_name):
        return {ROOT_VALUE_KEY: value}
    return value
