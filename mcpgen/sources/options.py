"""Custom options read from descriptors: google.api annotations and validation rules.

Options arrive as extensions that the default descriptor pool may or may not know, so they are
read from the options' wire bytes by field number: the same code works whether or not the
extension's Python module was ever imported. Rule messages (`buf.validate`, PGV) are decoded
with message classes built from the catalog's own copy of their .proto file.

A tiny wire-format reader is used instead of `google.protobuf.internal.decoder` because the
latter is private API.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from google.api import http_pb2
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory

from mcpgen.model import FieldBehavior, HttpBinding, Rules

FIELD_BEHAVIOR = 1052  # google.api.field_behavior on FieldOptions
HTTP = 72295728  # google.api.http on MethodOptions
BUF_VALIDATE = 1159  # buf.validate.field / .message / .oneof
PGV = 1071  # validate.rules on FieldOptions, validate.required on OneofOptions

_BEHAVIORS = {
    1: FieldBehavior.OPTIONAL,
    2: FieldBehavior.REQUIRED,
    3: FieldBehavior.OUTPUT_ONLY,
    4: FieldBehavior.INPUT_ONLY,
    5: FieldBehavior.IMMUTABLE,
    6: FieldBehavior.UNORDERED_LIST,
    7: FieldBehavior.NON_EMPTY_DEFAULT,
    8: FieldBehavior.IDENTIFIER,
}


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def wire_fields(buf: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """Yield (field number, wire type, value) for the top-level fields of a serialized message."""
    pos, end = 0, len(buf)
    while pos < end:
        tag, pos = _varint(buf, pos)
        number, wire_type = tag >> 3, tag & 7
        if wire_type == 0:
            value, pos = _varint(buf, pos)
            yield number, wire_type, value
        elif wire_type == 2:
            size, pos = _varint(buf, pos)
            yield number, wire_type, buf[pos : pos + size]
            pos += size
        elif wire_type == 1:
            yield number, wire_type, buf[pos : pos + 8]
            pos += 8
        elif wire_type == 5:
            yield number, wire_type, buf[pos : pos + 4]
            pos += 4
        else:  # groups never appear in the options mcpgen reads; stop rather than misread
            return


#: The top-level fields of a serialized options message: field number -> values, in order.
OptionFields = dict[int, list[int | bytes]]


def option_fields(options_bytes: bytes) -> OptionFields:
    """Parse an options message once; each reader below looks up its extension number."""
    table: OptionFields = {}
    for number, _, value in wire_fields(options_bytes):
        table.setdefault(number, []).append(value)
    return table


def _payloads(table: OptionFields, number: int) -> list[bytes]:
    return [v for v in table.get(number, ()) if isinstance(v, bytes)]


def field_behaviors(table: OptionFields) -> frozenset[FieldBehavior]:
    found: set[FieldBehavior] = set()
    for value in table.get(FIELD_BEHAVIOR, ()):
        if isinstance(value, bytes):  # packed
            pos = 0
            while pos < len(value):
                number, pos = _varint(value, pos)
                if number in _BEHAVIORS:
                    found.add(_BEHAVIORS[number])
        elif value in _BEHAVIORS:
            found.add(_BEHAVIORS[value])
    return frozenset(found)


def http_binding(table: OptionFields) -> HttpBinding | None:
    payloads = _payloads(table, HTTP)
    if not payloads:
        return None
    rule = http_pb2.HttpRule.FromString(payloads[-1])
    pattern = rule.WhichOneof("pattern")
    if pattern is None:
        return None
    if pattern == "custom":
        return HttpBinding(verb=rule.custom.kind.lower(), path=rule.custom.path, body=rule.body)
    return HttpBinding(verb=pattern, path=getattr(rule, pattern), body=rule.body)


class RuleDecoder:
    """Decodes `buf.validate` and protoc-gen-validate field rules into `Rules`.

    The rule message types come from the inputs themselves (their validate.proto), so any
    version of those files works; without them, rules are reported once and ignored.
    """

    BUF_FILE = "buf/validate/validate.proto"
    PGV_FILE = "validate/validate.proto"

    def __init__(self, files: dict[str, descriptor_pb2.FileDescriptorProto]) -> None:
        self._files = files
        self._classes: dict[str, Any] = {}
        self.missing: set[str] = set()

    def _rules_class(self, filename: str, type_name: str) -> Any:
        if type_name in self._classes:
            return self._classes[type_name]
        cls = None
        if filename in self._files:
            pool = descriptor_pool.DescriptorPool()
            added: set[str] = set()

            def add(name: str) -> None:
                if name in added:
                    return
                added.add(name)
                proto = self._files.get(name)
                if proto is None:
                    raise KeyError(name)
                for dep in proto.dependency:
                    add(dep)
                pool.Add(proto)

            try:
                add(filename)
                cls = message_factory.GetMessageClass(pool.FindMessageTypeByName(type_name))
            except (KeyError, TypeError):
                cls = None
        if cls is None:
            self.missing.add(filename)
        self._classes[type_name] = cls
        return cls

    def field_rules(self, table: OptionFields) -> Rules | None:
        for number, filename, type_name in (
            (BUF_VALIDATE, self.BUF_FILE, "buf.validate.FieldRules"),
            (PGV, self.PGV_FILE, "validate.FieldRules"),
        ):
            payloads = _payloads(table, number)
            if not payloads:
                continue
            cls = self._rules_class(filename, type_name)
            if cls is None:
                continue
            message = cls.FromString(b"".join(payloads))
            data = json_format.MessageToDict(message, preserving_proto_field_name=True)
            return rules_from_dict(data)
        return None

    def oneof_required(self, table: OptionFields) -> bool:
        for number in (BUF_VALIDATE, PGV):
            for value in table.get(number, ()):
                if number == PGV and value == 1:
                    return True
                if (
                    number == BUF_VALIDATE
                    and isinstance(value, bytes)
                    and any(n == 1 and v == 1 for n, _, v in wire_fields(value))
                ):
                    return True
        return False


# JSON Schema `format` for the well-known string rules.
_FORMATS = {
    "email": "email",
    "hostname": "hostname",
    "ipv4": "ipv4",
    "ipv6": "ipv6",
    "uri": "uri",
    "uri_ref": "uri-reference",
    "uuid": "uuid",
}
_NUMERIC = {
    "float", "double", "int32", "int64", "uint32", "uint64", "sint32", "sint64",
    "fixed32", "fixed64", "sfixed32", "sfixed64",
}  # fmt: skip
_BOUNDS = {"gt": "exclusiveMinimum", "gte": "minimum", "lt": "exclusiveMaximum", "lte": "maximum"}


def _number(value: Any) -> int | float:
    """protojson writes 64-bit integers as strings; JSON Schema bounds are numbers."""
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return float(value)
    return value


def rules_from_dict(data: dict[str, Any]) -> Rules:
    """Map the JSON form of a `FieldRules` message (buf.validate or PGV) to `Rules`."""
    rules = Rules()
    if data.get("required") is True:
        rules.required = True
    message_rules = data.get("message") or {}
    if message_rules.get("required") is True:  # PGV: message.required
        rules.required = True
    for kind, spec in data.items():
        if not isinstance(spec, dict) or kind in ("message", "cel"):
            continue
        if kind in _NUMERIC:
            _numeric_rules(spec, rules)
        elif kind == "string":
            _string_rules(spec, rules)
        elif kind == "bytes":
            _bytes_rules(spec, rules)
        elif kind == "enum":
            _enum_rules(spec, rules)
        elif kind == "repeated":
            _container_rules(spec, rules, "min_items", "max_items")
            if spec.get("unique") is True:
                rules.schema["uniqueItems"] = True
            if isinstance(spec.get("items"), dict):
                rules.items = rules_from_dict(spec["items"])
        elif kind == "map":
            _container_rules(spec, rules, "min_pairs", "max_pairs")
            if isinstance(spec.get("keys"), dict):
                rules.keys = rules_from_dict(spec["keys"])
            if isinstance(spec.get("values"), dict):
                rules.values = rules_from_dict(spec["values"])
        elif kind in ("bool", "any", "duration", "timestamp", "field_mask"):
            _note_rules(kind, spec, rules)
    return rules


def _numeric_rules(spec: dict[str, Any], rules: Rules) -> None:
    for key, keyword in _BOUNDS.items():
        if key in spec:
            rules.schema[keyword] = _number(spec[key])
    if "const" in spec:
        rules.schema["enum"] = [_number(spec["const"])]
    elif spec.get("in"):
        rules.schema["enum"] = [_number(v) for v in spec["in"]]
    if spec.get("not_in"):
        rules.notes.append("must not be one of: " + ", ".join(str(v) for v in spec["not_in"]))
    if spec.get("finite") is True:
        rules.notes.append("must be finite (not NaN or infinity)")


def _string_rules(spec: dict[str, Any], rules: Rules) -> None:
    schema = rules.schema
    if "len" in spec:
        schema["minLength"] = schema["maxLength"] = int(spec["len"])
    if "min_len" in spec:
        schema["minLength"] = int(spec["min_len"])
    if "max_len" in spec:
        schema["maxLength"] = int(spec["max_len"])
    if "const" in spec:
        schema["enum"] = [spec["const"]]
    elif spec.get("in"):
        schema["enum"] = list(spec["in"])
    patterns = []
    if "pattern" in spec:
        patterns.append(spec["pattern"])
    if "prefix" in spec:
        patterns.append("^" + re.escape(spec["prefix"]))
    if "suffix" in spec:
        patterns.append(re.escape(spec["suffix"]) + "$")
    if "contains" in spec:
        patterns.append(re.escape(spec["contains"]))
    if patterns:
        schema["pattern"] = patterns[0]
        rules.notes += [f"must match the pattern {p}" for p in patterns[1:]]
    for key, fmt in _FORMATS.items():
        if spec.get(key) is True:
            schema["format"] = fmt
    for key in ("min_bytes", "max_bytes", "len_bytes"):
        if key in spec:
            rules.notes.append(f"{key.replace('_', ' ')}: {spec[key]} (UTF-8 bytes)")
    if "not_contains" in spec:
        rules.notes.append(f"must not contain {spec['not_contains']!r}")
    if spec.get("not_in"):
        rules.notes.append("must not be one of: " + ", ".join(spec["not_in"]))
    for key in ("ip", "address", "tuuid", "ulid", "ip_with_prefixlen", "ip_prefix",
                "ipv4_with_prefixlen", "ipv6_with_prefixlen", "ipv4_prefix", "ipv6_prefix",
                "host_and_port", "protobuf_fqn", "protobuf_dot_fqn"):  # fmt: skip
        if spec.get(key) is True:
            rules.notes.append(f"must be a valid {key.replace('_', ' ')}")
    if "well_known_regex" in spec:
        rules.notes.append(f"must match {spec['well_known_regex']}")


def _bytes_rules(spec: dict[str, Any], rules: Rules) -> None:
    for key in ("len", "min_len", "max_len"):
        if key in spec:
            rules.notes.append(f"{key.replace('_', ' ')}: {spec[key]} bytes (before base64)")
    for key in ("pattern", "prefix", "suffix", "contains"):
        if key in spec:
            rules.notes.append(f"{key}: {spec[key]!r}")
    for key in ("ip", "ipv4", "ipv6", "uuid"):
        if spec.get(key) is True:
            rules.notes.append(f"must be a {key} address in bytes")


def _enum_rules(spec: dict[str, Any], rules: Rules) -> None:
    if "const" in spec:
        rules.enum_allowed = [int(spec["const"])]
    elif spec.get("in"):
        rules.enum_allowed = [int(v) for v in spec["in"]]
    if spec.get("not_in"):
        rules.enum_excluded = [int(v) for v in spec["not_in"]]
    if spec.get("defined_only") is True:
        rules.enum_defined_only = True


def _container_rules(spec: dict[str, Any], rules: Rules, low: str, high: str) -> None:
    if low in spec:
        rules.schema["minItems" if low == "min_items" else "minProperties"] = int(spec[low])
    if high in spec:
        rules.schema["maxItems" if high == "max_items" else "maxProperties"] = int(spec[high])


def _note_rules(kind: str, spec: dict[str, Any], rules: Rules) -> None:
    for key, value in sorted(spec.items()):
        rules.notes.append(f"{kind} {key.replace('_', ' ')}: {value}")
