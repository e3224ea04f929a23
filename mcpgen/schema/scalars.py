"""Schemas of scalars and well-known types, in both renderings, per the proto3 JSON mapping."""

from __future__ import annotations

from typing import Any

from mcpgen.model import Scalar

INT32 = (-(2**31), 2**31 - 1)
UINT32 = (0, 2**32 - 1)
INT64 = (-(2**63), 2**63 - 1)
UINT64 = (0, 2**64 - 1)
FLOAT_MAX = 3.4028234663852886e38  # largest float32; the parser rejects anything above
FLOAT_MAX_PRINTED = 3.4028235e38  # how the printer writes it (shortest repr, slightly above)
DOUBLE_MAX = 1.7976931348623157e308

SIGNED_DIGITS = "^-?[0-9]+$"
DIGITS = "^[0-9]+$"
NON_FINITE = "^(NaN|-?Infinity)$"
_B64 = "[A-Za-z0-9+/_-]"
BASE64 = f"^(?:{_B64}{{4}})*(?:{_B64}{{2}}(?:==)?|{_B64}{{3}}=?)?$"  # standard or URL-safe
DURATION = r"^-?[0-9]+(\.[0-9]{1,9})?s$"

_INTEGERS: dict[Scalar, tuple[str, tuple[int, int], str]] = {
    Scalar.INT32: ("int32", INT32, SIGNED_DIGITS),
    Scalar.SINT32: ("int32", INT32, SIGNED_DIGITS),
    Scalar.SFIXED32: ("int32", INT32, SIGNED_DIGITS),
    Scalar.UINT32: ("uint32", UINT32, DIGITS),
    Scalar.FIXED32: ("uint32", UINT32, DIGITS),
    Scalar.INT64: ("int64", INT64, SIGNED_DIGITS),
    Scalar.SINT64: ("int64", INT64, SIGNED_DIGITS),
    Scalar.SFIXED64: ("int64", INT64, SIGNED_DIGITS),
    Scalar.UINT64: ("uint64", UINT64, DIGITS),
    Scalar.FIXED64: ("uint64", UINT64, DIGITS),
}
SIXTY_FOUR_BIT = {"int64", "uint64"}


def scalar_schema(kind: Scalar, precise: bool, output: bool = False) -> dict[str, Any]:
    """The schema of one scalar value.

    Precise accepts every form protobuf's JSON parser takes and its printer writes: integers as
    numbers or decimal strings (`format` names the range, which the gateway checks on strings),
    floats as numbers or "NaN"/"Infinity"/"-Infinity". Portable picks the one form a model
    should send: 64-bit integers as decimal strings, others as plain JSON types.
    """
    if kind in _INTEGERS:
        fmt, (low, high), pattern = _INTEGERS[kind]
        if precise:
            return {
                "type": ["integer", "string"],
                "format": fmt,
                "minimum": low,
                "maximum": high,
                "pattern": pattern,
            }
        if fmt in SIXTY_FOUR_BIT:
            unsigned = "unsigned " if fmt == "uint64" else ""
            return {
                "type": "string",
                "pattern": pattern,
                "description": f"{unsigned}64-bit integer, as a decimal string",
            }
        return {"type": "integer", "minimum": low, "maximum": high}
    if kind in (Scalar.FLOAT, Scalar.DOUBLE):
        if not precise:
            return {"type": "number"}
        schema: dict[str, Any] = {"type": ["number", "string"]}
        if kind is Scalar.DOUBLE:
            schema["format"] = "double"
            if not output:  # integers beyond float64 (10**400): the parser overflows on them
                schema |= {"minimum": -DOUBLE_MAX, "maximum": DOUBLE_MAX}
        elif output:  # the printer may round float32's maximum up in its shortest form
            schema |= {"minimum": -FLOAT_MAX_PRINTED, "maximum": FLOAT_MAX_PRINTED}
        else:
            schema |= {"format": "float", "minimum": -FLOAT_MAX, "maximum": FLOAT_MAX}
        schema["pattern"] = NON_FINITE
        return schema
    if kind is Scalar.BOOL:
        return {"type": "boolean"}
    if kind is Scalar.STRING:
        return {"type": "string"}
    # bytes
    if precise:
        return {"type": "string", "contentEncoding": "base64", "pattern": BASE64}
    return {"type": "string", "contentEncoding": "base64", "description": "base64-encoded bytes"}


_WRAPPERS = {
    "google.protobuf.DoubleValue": Scalar.DOUBLE,
    "google.protobuf.FloatValue": Scalar.FLOAT,
    "google.protobuf.Int64Value": Scalar.INT64,
    "google.protobuf.UInt64Value": Scalar.UINT64,
    "google.protobuf.Int32Value": Scalar.INT32,
    "google.protobuf.UInt32Value": Scalar.UINT32,
    "google.protobuf.BoolValue": Scalar.BOOL,
    "google.protobuf.StringValue": Scalar.STRING,
    "google.protobuf.BytesValue": Scalar.BYTES,
}
WRAPPERS = frozenset(_WRAPPERS)
WELL_KNOWN = {
    *_WRAPPERS,
    "google.protobuf.Timestamp",
    "google.protobuf.Duration",
    "google.protobuf.FieldMask",
    "google.protobuf.Struct",
    "google.protobuf.Value",
    "google.protobuf.ListValue",
    "google.protobuf.Any",
    "google.protobuf.Empty",
}
NULL_VALUE = "google.protobuf.NullValue"
#: Well-known types whose JSON form is an object; others become `{"value": ...}` at a tool's root.
OBJECT_WELL_KNOWN = {"google.protobuf.Struct", "google.protobuf.Any", "google.protobuf.Empty"}
ROOT_VALUE_KEY = "value"


def well_known_schema(full_name: str, precise: bool, output: bool) -> dict[str, Any]:
    """The schema of a well-known message type, which JSON maps specially."""
    if full_name in _WRAPPERS:  # a single wrapper field may also be null: see the renderer
        return scalar_schema(_WRAPPERS[full_name], precise, output)
    if full_name == "google.protobuf.Timestamp":
        return {
            "type": "string",
            "format": "date-time",
            "description": "RFC 3339 timestamp, e.g. 2024-01-31T12:00:00Z",
        }
    if full_name == "google.protobuf.Duration":
        schema = {
            "type": "string",
            "description": "duration in seconds with an `s` suffix, e.g. 1.5s",
            "pattern": DURATION,
        }
        if precise:  # the gateway checks the range, ±315,576,000,000 s
            schema["format"] = "google-duration"
        return schema
    if full_name == "google.protobuf.FieldMask":
        schema = {
            "type": "string",
            "description": "comma-separated lowerCamelCase field paths, e.g. name,address.city",
        }
        if precise:
            schema["pattern"] = "^[^_]*$"
        return schema
    if full_name == "google.protobuf.Struct":
        return {"type": "object", "description": "any JSON object"}
    if full_name == "google.protobuf.Value":
        return {"description": "any JSON value"}
    if full_name == "google.protobuf.ListValue":
        return {"type": "array", "items": {}, "description": "JSON array of any values"}
    if full_name == "google.protobuf.Any":
        schema: dict[str, Any] = {
            "type": "object",
            "description": "a message of any type, named by @type and its fields beside it",
            "properties": {
                "@type": {
                    "type": "string",
                    "description": "type URL, e.g. type.googleapis.com/pkg.Message",
                }
            },
        }
        if not output:  # an empty Any prints as {}
            schema["required"] = ["@type"]
        return schema
    if full_name == "google.protobuf.Empty":
        schema = {"type": "object", "properties": {}}
        if precise:
            schema["additionalProperties"] = False
        return schema
    raise KeyError(full_name)
