"""Property tests that use protobuf itself as the oracle of mcpgen's precise schemas.

Corpora: the fixtures (every message type their services reach), the googleapis protos shipped
in `googleapis-common-protos` (every message type of google/api, google/rpc, google/type and
google/longrunning) and a small inline corpus of shapes neither has (well-known types as list
items, map values and request roots; NullValue everywhere; proto2 groups and extensions;
editions features).

Soundness: random messages (tests/randomfill.py) → `json_format.MessageToDict` → must validate
against `SchemaRenderer.precise(name, output=True)`.

Agreement: candidates are `MessageToDict` outputs and mutations of them (wrong types, numbers
out of range as numbers and strings, floats for integers, lenient integer/float/duration
spellings, unknown keys, proto field names, bad enum names, bad base64, bad timestamps,
durations and field masks, two members of one oneof, nulls, ...). Each candidate is checked
against the precise input schema, against the same schema rendered without validation rules
and required fields ("lenient"), and against `json_format.ParseDict`:

(a) when either schema accepts a candidate, the parser must accept it;
(b) when the precise input schema rejects a candidate the parser accepts, the difference must
    be one of the documented categories below (classified by the mutation applied).

Documented differences: the schema rejects, the parser accepts
- proto-names: the parser also accepts original proto field names, even beside the JSON name
  of the same field (the last one wins); the gateway renames them to JSON names before
  validation.
- validation-rules: validation rules and required fields (buf.validate, PGV,
  google.api.field_behavior REQUIRED, proto2 required) are enforced by the schema only; the
  parser ignores them (detected as: the lenient schema accepts).
- null-clears: the parser reads null for any singular, repeated or map field as "not set",
  also for a second member of a oneof.
- null-value-enum: NullValue fields also accept the name "NULL_VALUE" and the number 0.
- integer-strings: integers are read with Python's int() and then float(): "+7", "\\t7",
  "1_0", "7\\n", non-ASCII digits, "7.0" and "1e3" are accepted; so are such map keys.
- float-strings: floats are read with Python's float(): "1.5", "inf", "-inf", "infinity",
  " 2 ", "1_0.5", "1e5" are accepted, and so are true/false (as 1.0/0.0).
- enum-leniency: enum fields accept numbers as strings ("1"), floats (truncated), booleans,
  and numbers outside int32 (truncated to 32 bits, e.g. 2**40 → 0).
- extensions: set proto2 extensions print as "[pkg.extension]" keys, which output schemas
  allow; input schemas do not describe extensions, and the parser accepts known ones.
- base64-leniency: the parser skips characters outside the base64 alphabet (spaces, "!",
  non-ASCII, a trailing newline) and padding in the middle ("A=A=").
- timestamp-leniency: timestamps are read with strptime: unpadded fields ("2024-1-1T0:0:0Z"),
  an empty fraction ("...00.Z") and offsets of 24 hours or more are accepted.
- duration-leniency: durations are read with int()/float(): "+5s", " 5s", "1_0s", "5.s" and
  more than 9 fractional digits (rounded) are accepted.
- empty-any: {} is an empty Any to the parser; the input schema requires "@type".
- empty-message-forms: the parser iterates the JSON of a message, so "" and [] are accepted
  as empty messages.

By design: the schema accepts, the parser rejects
- any-payload: the precise schema of Any is an open object with "@type"; only the parser
  checks the payload against the packed type and that the type URL resolves (detected as: the
  parser accepts the candidate once every Any in it is emptied to {}).

Everything else where schema and parser disagree fails a test and is an mcpgen bug, and so does
a validator that raises instead of reporting errors.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import math
import os
import random
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import descriptor_pb2, json_format
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from mcpgen.errors import Warnings
from mcpgen.model import Catalog, FieldBehavior
from mcpgen.runtime.validation import SchemaValidator, validator_for
from mcpgen.schema import SchemaRenderer
from mcpgen.schema.scalars import OBJECT_WELL_KNOWN, ROOT_VALUE_KEY, WELL_KNOWN
from mcpgen.sources.descriptors import catalog_from_files
from mcpgen.sources.inputs import load_catalog

sys.path.insert(0, str(Path(__file__).parent))
from randomfill import (
    ANY,
    DURATION,
    FD,
    FIELD_MASK,
    INT_RANGES,
    LIST_VALUE,
    NULL_VALUE,
    SPECIAL_JSON,
    STRUCT,
    TIMESTAMP,
    VALUE,
    WRAPPERS,
    Pool,
    RandomFiller,
    build_pool,
    is_map,
    message_class,
    message_names,
    shrink,
    well_known_names,
)

JSON = Any
Path_ = tuple[str | int, ...]
ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures" / "protos"
GOOGLEAPIS_PACKAGES = ("api", "rpc", "type", "longrunning")

SOUNDNESS_EXAMPLES = int(os.environ.get("MCPGEN_ORACLE_EXAMPLES", "25"))
AGREEMENT_EXAMPLES = int(os.environ.get("MCPGEN_ORACLE_EXAMPLES", "15"))
MUTATIONS_PER_MESSAGE = 10
_COMMON = {
    "derandomize": True,
    "database": None,
    "deadline": None,
    "phases": [Phase.explicit, Phase.generate],  # the seed is opaque; `shrink` minimizes
    "suppress_health_check": [HealthCheck.too_slow],
}

# ---- documented differences -------------------------------------------------------------------

#: Categories where the schema rejects and the parser accepts, and the mutations that show them.
PARSER_LOOSER: dict[str, frozenset[str]] = {
    "proto-names": frozenset({"proto_name", "json_and_proto_name"}),
    "validation-rules": frozenset(),  # classified by the lenient schema, not by a mutation
    "null-clears": frozenset({"null_for_field", "null_oneof_member"}),
    "null-value-enum": frozenset({"null_value_name", "null_value_zero"}),
    "integer-strings": frozenset(
        {
            "int_string_plus_sign", "int_string_tab", "int_string_underscore",
            "int_string_trailing_newline",
            "int_string_unicode_digits", "int_float_string", "int_exponent_string",
            "map_key_plus_sign", "map_key_exponent", "map_key_underscore",
        }
    ),
    "float-strings": frozenset({"float_string", "python_float_spelling", "bool_for_float"}),
    "enum-leniency": frozenset(
        {"enum_number_string", "enum_float", "bool_for_enum", "enum_out_of_int32"}
    ),
    "base64-leniency": frozenset(
        {
            "base64_bad_char", "base64_non_ascii", "base64_whitespace",
            "base64_misplaced_padding", "base64_trailing_newline",
        }
    ),
    "timestamp-leniency": frozenset(
        {"timestamp_unpadded", "timestamp_empty_fraction", "timestamp_offset_24h"}
    ),
    "duration-leniency": frozenset(
        {
            "duration_plus_sign", "duration_leading_space", "duration_underscore",
            "duration_empty_fraction", "duration_long_fraction",
        }
    ),
    "empty-any": frozenset({"empty_any"}),
    "empty-message-forms": frozenset({"empty_string_for_message", "empty_list_for_message"}),
}  # fmt: skip
# By design, the schema accepts and the parser rejects only inside Any: "any-payload", detected
# as: the parser accepts the candidate once every Any in it is emptied.


def parser_looser_category(label: str) -> str | None:
    return next((c for c, labels in PARSER_LOOSER.items() if label in labels), None)


# ---- corpora ----------------------------------------------------------------------------------

_EDGE_PROTOS = {
    "oracle/edge/v1/edge.proto": """
syntax = "proto3";
package oracle.edge.v1;
import "google/protobuf/any.proto";
import "google/protobuf/duration.proto";
import "google/protobuf/empty.proto";
import "google/protobuf/field_mask.proto";
import "google/protobuf/struct.proto";
import "google/protobuf/timestamp.proto";
import "google/protobuf/wrappers.proto";

service Edge {
  rpc Echo(WellKnownContainers) returns (WellKnownContainers);
  rpc Wrapped(google.protobuf.Int64Value) returns (google.protobuf.DoubleValue);
  rpc Spans(google.protobuf.Duration) returns (google.protobuf.FieldMask);
  rpc Lists(google.protobuf.ListValue) returns (google.protobuf.Any);
  rpc Blobs(google.protobuf.BytesValue) returns (google.protobuf.BoolValue);
}

enum Level {
  LEVEL_UNSPECIFIED = 0;
  LOW = 1;
  HIGH = 2;
}

// One message per shape, so that one mcpgen bug does not hide the others.
message WrapperLists {
  repeated google.protobuf.Int64Value longs = 1;
  repeated google.protobuf.DoubleValue doubles = 2;
}

message WrapperMaps {
  map<string, google.protobuf.BoolValue> flags = 1;
  map<uint64, google.protobuf.BytesValue> blobs = 2;
}

message Nulls {
  google.protobuf.NullValue plain = 1;
  optional google.protobuf.NullValue maybe = 2;
  oneof pick {
    google.protobuf.NullValue nothing = 3;
    google.protobuf.Value anything = 4;
    google.protobuf.Struct object = 5;
    google.protobuf.Timestamp when = 6;
  }
}

message NullLists {
  repeated google.protobuf.NullValue nulls = 1;
}

message NullMaps {
  map<string, google.protobuf.NullValue> nulls = 1;
}

message WellKnownContainers {
  repeated google.protobuf.Any anys = 1;
  map<int32, google.protobuf.Timestamp> times = 2;
  repeated google.protobuf.FieldMask masks = 3;
  repeated google.protobuf.ListValue lists = 4;
  repeated google.protobuf.Empty empties = 5;
  repeated google.protobuf.Duration durations = 6;
  map<string, google.protobuf.Struct> structs = 7;
}

message Keys {
  map<bool, google.protobuf.Value> by_bool = 1;
  map<sfixed64, Level> levels = 2;
  map<fixed32, string> by_fixed32 = 3;
}

message Numbers {
  float ratio = 1;
  double weight = 2;
  string field_1_with_digits = 3;
}
""",
    "oracle/edge/v1/legacy.proto": """
syntax = "proto2";
package oracle.edge.v1;

service LegacyEdge {
  rpc Get(Legacy) returns (Legacy);
}

enum Mode {
  MODE_ZERO = 0;  // a map value's enum must define 0 first
  A = 1;
  B = 2;
}

message Legacy {
  extensions 100 to 199;
  optional group Result = 1 {
    optional string url = 2;
    optional int32 rank = 3;
  }
  repeated group Item = 4 {
    required int32 id = 5;
  }
  optional Mode mode = 6 [default = B];
  map<string, Mode> modes = 7;
  required bytes token = 8;
  optional double ratio = 9 [default = nan];
}

extend Legacy {
  optional string note = 100;
  repeated sint64 counters = 101;
}
""",
    "oracle/edge/v1/editions.proto": """
edition = "2023";
package oracle.edge.v1;
option features.enum_type = CLOSED;

service EditionEdge {
  rpc Get(Editioned) returns (Editioned);
}

enum Tier {
  TIER_ZERO = 0;
  GOLD = 1;
}

enum OpenTier {
  option features.enum_type = OPEN;
  OPEN_TIER_UNSPECIFIED = 0;
  OPEN_GOLD = 1;
}

message Editioned {
  Tier tier = 1;
  OpenTier open_tier = 2;
  int32 must = 3 [features.field_presence = LEGACY_REQUIRED];
  int32 implicit = 4 [features.field_presence = IMPLICIT];
  Editioned child = 5 [features.message_encoding = DELIMITED];
  repeated int32 unpacked = 6 [features.repeated_field_encoding = EXPANDED];
}
""",
}


def site_packages() -> Path:
    spec = importlib.util.find_spec("google.api")
    assert spec is not None and spec.submodule_search_locations, "googleapis-common-protos"
    return Path(next(iter(spec.submodule_search_locations))).parent.parent


def catalog_of_every_message(sources: list[str], import_paths: list[str]) -> Catalog:
    """Like `load_catalog`, but with every message type the sources declare.

    mcpgen converts only the types its services reach and has no option for "all types", so a
    synthetic file with one RPC per message type is added before conversion.
    """
    base = load_catalog(sources, import_paths, Warnings())
    roots = [Path(p).resolve() for p in import_paths]
    names = set()
    for source in sources:
        path = Path(source).resolve()
        root = next((r for r in roots if path.is_relative_to(r)), path.parent)
        names.add(path.relative_to(root).as_posix())
    declared = [f for f in base.descriptor_files if f.name in names]
    synthetic = descriptor_pb2.FileDescriptorProto(
        name="mcpgen_oracle/every_message.proto",
        package="mcpgen_oracle",
        syntax="proto3",
        dependency=sorted(names),
    )
    service = synthetic.service.add(name="EveryMessage")
    for i, name in enumerate(message_names(declared)):
        service.method.add(name=f"M{i}", input_type=f".{name}", output_type=f".{name}")
    return catalog_from_files([*base.descriptor_files, synthetic], {synthetic.name}, Warnings())


def without_rules(catalog: Catalog) -> Catalog:
    """The catalog with no validation rules and nothing required: what the parser checks."""
    messages = {}
    for name, message in catalog.messages.items():
        fields = [
            replace(
                f,
                rules=None,
                proto2_required=False,
                behaviors=f.behaviors - {FieldBehavior.REQUIRED},
            )
            for f in message.fields
        ]
        messages[name] = replace(message, fields=fields, required_oneofs=[])
    return replace(catalog, messages=messages)


@dataclass
class Corpus:
    name: str
    catalog: Catalog
    pool: Pool
    renderer: SchemaRenderer
    lenient: SchemaRenderer
    any_types: tuple[str, ...]
    _validators: dict[tuple[str, str], SchemaValidator] = field(default_factory=dict)

    def validator(self, type_name: str, kind: str) -> SchemaValidator:
        """`kind` is "output", "input" or "lenient" (input without rules and requirements)."""
        key = (type_name, kind)
        if key not in self._validators:
            renderer = self.lenient if kind == "lenient" else self.renderer
            schema = renderer.precise(type_name, output=kind == "output")
            self._validators[key] = validator_for(schema)
        return self._validators[key]

    def filler(self, rng: random.Random) -> RandomFiller:
        return RandomFiller(self.pool, rng, any_types=self.any_types)


def _corpus(name: str, catalog: Catalog) -> Corpus:
    pool = build_pool(catalog.descriptor_files)
    any_types = tuple(sorted(set(catalog.messages) | set(well_known_names(pool))))
    return Corpus(
        name=name,
        catalog=catalog,
        pool=pool,
        renderer=SchemaRenderer(catalog),
        lenient=SchemaRenderer(without_rules(catalog)),
        any_types=any_types,
    )


@cache
def corpus(name: str) -> Corpus:
    if name == "fixtures":
        return _corpus(name, load_catalog([str(FIXTURES)], [], Warnings()))
    if name == "googleapis":
        site = site_packages()
        sources = sorted(
            str(p)
            for package in GOOGLEAPIS_PACKAGES
            for p in (site / "google" / package).rglob("*.proto")
        )
        return _corpus(name, catalog_of_every_message(sources, [str(site)]))
    if name == "edge":
        with tempfile.TemporaryDirectory(prefix="mcpgen-oracle-") as tmp:
            sources = []
            for rel, text in _EDGE_PROTOS.items():
                path = Path(tmp) / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text, encoding="utf-8")
                sources.append(str(path))
            return _corpus(name, catalog_of_every_message(sources, [tmp]))
    raise KeyError(name)


CORPORA = ("fixtures", "googleapis", "edge")
CASES = [(c, t) for c in CORPORA for t in sorted(corpus(c).catalog.messages)]
CASE_IDS = [f"{c}:{t}" for c, t in CASES]


def test_corpora_cover_the_fixtures_and_every_googleapis_message() -> None:
    fixtures = corpus("fixtures").catalog.messages
    for name in ("acme.types.v1.Containers", "acme.legacy.v1.Item", "acme.library.v1.Book",
                 "acme.users.v2.User", "google.protobuf.Timestamp"):  # fmt: skip
        assert name in fixtures
    google = corpus("googleapis").catalog
    packages = {f"google/{p}/" for p in GOOGLEAPIS_PACKAGES}
    declared = [f for f in google.descriptor_files if f.name[: f.name.rfind("/") + 1] in packages
                or f.name.startswith("google/rpc/context/")]  # fmt: skip
    assert {f.name.split("/")[1] for f in declared} == set(GOOGLEAPIS_PACKAGES)
    missing = set(message_names(declared)) - set(google.messages)
    assert not missing, f"message types of googleapis not covered: {sorted(missing)}"


# ---- JSON as a tool sees it -------------------------------------------------------------------


def wrapped_root(type_name: str) -> bool:
    """Well-known types whose JSON is not an object travel as {"value": ...} at a tool's root."""
    return type_name in WELL_KNOWN and type_name not in OBJECT_WELL_KNOWN


def tool_json(c: Corpus, type_name: str, message: Message) -> JSON:
    data = json_format.MessageToDict(message, descriptor_pool=c.pool)
    return {ROOT_VALUE_KEY: data} if wrapped_root(type_name) else data


def parse_error(c: Corpus, type_name: str, candidate: JSON) -> str | None:
    """Why ParseDict rejects the candidate, or None when it accepts it."""
    payload = candidate
    if wrapped_root(type_name):
        if not isinstance(candidate, dict) or set(candidate) != {ROOT_VALUE_KEY}:
            return "not a {value: ...} object"
        payload = candidate[ROOT_VALUE_KEY]
    try:
        json_format.ParseDict(payload, message_class(c.pool, type_name)(), descriptor_pool=c.pool)
    except Exception as exc:  # not only ParseError: the parser leaks KeyError, OverflowError
        return f"{type(exc).__name__}: {exc}"
    return None


def schema_errors(validator: SchemaValidator, instance: JSON) -> list[str]:
    """The reference validator's errors; it must not fail on any JSON, and the fast validator
    must never accept what the reference refuses (the gateway trusts its acceptance)."""
    try:
        errors = list(validator.reference.iter_errors(instance))
    except Exception as exc:
        raise AssertionError(f"the validator fails with {exc!r} on {dumps(instance)}") from exc
    assert validator.fast is not None, "jsonschema-rs could not compile the schema"
    if errors:
        assert not validator.accepts_fast(instance), (
            f"jsonschema-rs accepts what the reference refuses ({errors[0].message[:200]}): "
            f"{dumps(instance)}"
        )
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message[:300]}" for e in errors]


def dumps(data: JSON) -> str:
    return json.dumps(data, ensure_ascii=False, default=repr)[:4000]


# ---- soundness --------------------------------------------------------------------------------


@pytest.mark.parametrize(("corpus_name", "type_name"), CASES, ids=CASE_IDS)
@settings(max_examples=SOUNDNESS_EXAMPLES, **_COMMON)
@given(rng=st.randoms(use_true_random=True))
def test_printed_json_validates_against_the_output_schema(
    corpus_name: str, type_name: str, rng: random.Random
) -> None:
    c = corpus(corpus_name)
    validator = c.validator(type_name, "output")

    def unsound(message: Message) -> bool:
        try:
            data = tool_json(c, type_name, message)
        except json_format.SerializeToJsonError:
            return False
        return bool(schema_errors(validator, data))

    message = c.filler(rng).message(type_name)
    if unsound(message):
        small = shrink(message, unsound)
        data = tool_json(c, type_name, small)
        pytest.fail(
            f"{type_name}: MessageToDict output fails the precise output schema\n"
            f"  JSON:   {dumps(data)}\n"
            f"  errors: {schema_errors(validator, data)}"
        )


# ---- agreement: sites of a JSON document ------------------------------------------------------

SINGULAR, ITEM, MAP_VALUE, REPEATED, MAP, ROOT_VALUE, ANY_VALUE = (
    "singular", "item", "map_value", "repeated", "map", "root", "any_value"
)  # fmt: skip


@dataclass(frozen=True)
class Slot:
    """The type of a JSON value: a field type, with its message or enum type."""

    type: int
    message: Descriptor | None = None
    enum: EnumDescriptor | None = None


def slot_of(f: FieldDescriptor) -> Slot:
    return Slot(f.type, f.message_type, f.enum_type)


@dataclass(frozen=True)
class ValueSite:
    path: Path_
    slot: Slot
    role: str
    in_any: bool


@dataclass(frozen=True)
class KeySite:
    path: Path_  # of the map
    key: str
    key_type: int
    in_any: bool


@dataclass(frozen=True)
class ObjectSite:
    path: Path_
    message: Descriptor
    in_any: bool


Site = ValueSite | KeySite | ObjectSite


def resolve(pool: Pool, type_url: Any) -> Descriptor | None:
    if not isinstance(type_url, str):
        return None
    try:
        return pool.FindMessageTypeByName(type_url.rsplit("/", 1)[-1])
    except KeyError:
        return None


def object_sites(
    data: JSON, desc: Descriptor, path: Path_, in_any: bool, pool: Pool
) -> Iterator[Site]:
    """Sites in the JSON object of a message (Any: of the Any, then of its payload)."""
    if not isinstance(data, dict):
        return
    if desc.full_name == ANY:
        if "@type" not in data:
            return
        yield ObjectSite(path, desc, in_any)
        inner = resolve(pool, data["@type"])
        if inner is None:
            return
        if inner.full_name in SPECIAL_JSON:
            if "value" in data:
                slot = Slot(FD.TYPE_MESSAGE, inner)
                yield from value_sites(data["value"], slot, (*path, "value"), ANY_VALUE, True, pool)
            return
        desc, in_any = inner, True
    yield ObjectSite(path, desc, in_any)
    fields = {f.json_name: f for f in desc.fields}
    for key, value in data.items():
        f = fields.get(key)
        if f is not None:
            yield from field_sites(value, f, (*path, key), in_any, pool)


def field_sites(
    value: JSON, f: FieldDescriptor, path: Path_, in_any: bool, pool: Pool
) -> Iterator[Site]:
    if is_map(f):
        yield ValueSite(path, slot_of(f), MAP, in_any)
        key_field, value_field = f.message_type.fields
        for key, item in value.items() if isinstance(value, dict) else ():
            yield KeySite(path, key, key_field.type, in_any)
            item_path = (*path, key)
            yield from value_sites(item, slot_of(value_field), item_path, MAP_VALUE, in_any, pool)
    elif f.is_repeated:
        yield ValueSite(path, slot_of(f), REPEATED, in_any)
        for index, item in enumerate(value if isinstance(value, list) else ()):
            yield from value_sites(item, slot_of(f), (*path, index), ITEM, in_any, pool)
    else:
        yield from value_sites(value, slot_of(f), path, SINGULAR, in_any, pool)


def value_sites(
    value: JSON, slot: Slot, path: Path_, role: str, in_any: bool, pool: Pool
) -> Iterator[Site]:
    yield ValueSite(path, slot, role, in_any)
    message = slot.message
    if message is not None and (message.full_name == ANY or message.full_name not in SPECIAL_JSON):
        yield from object_sites(value, message, path, in_any, pool)


def root_sites(c: Corpus, type_name: str, data: JSON) -> list[Site]:
    """Every place of a tool's JSON that a mutation can change."""
    desc = c.pool.FindMessageTypeByName(type_name)
    slot = Slot(FD.TYPE_MESSAGE, desc)
    if wrapped_root(type_name):
        if not isinstance(data, dict) or ROOT_VALUE_KEY not in data:
            return []
        path: Path_ = (ROOT_VALUE_KEY,)
        return list(value_sites(data[ROOT_VALUE_KEY], slot, path, ROOT_VALUE, False, c.pool))
    if type_name in WELL_KNOWN:  # Struct, Any, Empty: the root object is the value
        return list(value_sites(data, slot, (), ROOT_VALUE, False, c.pool))
    return list(object_sites(data, desc, (), False, c.pool))


# ---- agreement: edits -------------------------------------------------------------------------

Edit = tuple[str, Any]  # (label, replacement value)

_INT_EDITS: list[Edit] = [
    ("int_as_number", 7), ("int_as_string", "7"), ("integral_float_for_int", 7.0),
    ("float_for_int", 1.5), ("int_float_string", "7.0"), ("int_exponent_string", "1e3"),
    ("int_string_plus_sign", "+7"), ("int_string_tab", "\t7"), ("int_string_underscore", "1_0"),
    ("int_string_unicode_digits", "\u0663"), ("int_string_trailing_newline", "7\n"),
    ("int_string_space", " 7"), ("int_hex_string", "0x10"), ("bool_for_int", True),
    ("string_for_int", "seven"), ("empty_string_for_int", ""), ("object_for_scalar", {}),
    ("list_for_scalar", [7]), ("json_number_overflow", math.inf),
]  # fmt: skip
_FLOAT_EDITS: list[Edit] = [
    ("int_for_float", 3), ("negative_zero", -0.0), ("non_finite_string", "NaN"),
    ("non_finite_string", "Infinity"), ("non_finite_string", "-Infinity"),
    ("float_string", "1.5"), ("python_float_spelling", "inf"), ("python_float_spelling", "-inf"),
    ("python_float_spelling", "infinity"), ("python_float_spelling", " 2 "),
    ("python_float_spelling", "1_0.5"), ("python_float_spelling", "1e5"),
    ("nan_lowercase", "nan"), ("bool_for_float", True), ("string_for_float", "one"),
    ("json_number_overflow", math.inf), ("json_number_overflow", -math.inf),
    ("huge_integer_literal", 10**400), ("double_max", sys.float_info.max),
    ("float32_overflow", 3.5e38), ("object_for_scalar", {}),
]  # fmt: skip
_BOOL_EDITS: list[Edit] = [
    ("bool", True), ("bool", False), ("string_for_bool", "true"), ("int_for_bool", 1),
    ("object_for_scalar", {}),
]  # fmt: skip
_STRING_EDITS: list[Edit] = [
    ("int_for_string", 5), ("bool_for_string", False), ("empty_string", ""),
    ("unicode_string", "\u00fc\U0001f600\u200b\u2028"), ("list_for_string", ["a"]),
]  # fmt: skip
_BYTES_EDITS: list[Edit] = [
    ("base64_url_safe", "-_-_"), ("base64_unpadded", "AAE"), ("base64_padded", "AAE="),
    ("base64_misplaced_padding", "A=A="), ("base64_trailing_newline", "AAAA\n"),
    ("base64_bad_char", "AA!A"), ("base64_non_ascii", "\u00e9"), ("base64_whitespace", "AA AA"),
    ("base64_bad_length", "AAAAA"), ("base64_bad_length", "A"), ("int_for_bytes", 5),
]  # fmt: skip
_TIMESTAMP_EDITS: list[Edit] = [
    ("timestamp_offset", "2024-02-29T23:59:59.5+05:30"),
    ("timestamp_negative_zero_offset", "2024-01-01T00:00:00-00:00"),
    ("timestamp_lowercase", "2024-01-01t00:00:00z"),
    ("timestamp_lowercase", "2024-01-01T00:00:00z"),
    ("timestamp_long_fraction", "2024-01-01T00:00:00.1234567891Z"),
    ("timestamp_unpadded", "2024-1-1T0:0:0Z"),
    ("timestamp_offset_out_of_range", "0001-01-01T00:00:00+01:00"),
    ("timestamp_offset_out_of_range", "9999-12-31T23:59:59-01:00"),
    ("timestamp_leap_second", "2016-12-31T23:59:60Z"),
    ("timestamp_year_zero", "0000-01-01T00:00:00Z"),
    ("timestamp_no_offset", "2024-01-01T00:00:00"),
    ("timestamp_space_separator", "2024-01-01 00:00:00Z"),
    ("timestamp_offset_24h", "2024-01-01T00:00:00+24:00"),
    ("timestamp_empty_fraction", "2024-01-01T00:00:00.Z"),
    ("timestamp_trailing_newline", "2024-01-01T00:00:00Z\n"),
    ("timestamp_invalid_day", "2024-02-30T00:00:00Z"),
    ("timestamp_compact_offset", "2024-01-01T00:00:00+0100"),
    ("int_for_timestamp", 1700000000),
]  # fmt: skip
_DURATION_EDITS: list[Edit] = [
    ("duration", "1.5s"), ("duration", "-0.000000001s"), ("duration", "315576000000.999999999s"),
    ("duration_out_of_range", "315576000001s"), ("duration_out_of_range", "-315576000001s"),
    ("duration_no_suffix", "5"), ("duration_plus_sign", "+5s"), ("duration_leading_space", " 5s"),
    ("duration_underscore", "1_0s"), ("duration_empty_fraction", "5.s"),
    ("duration_long_fraction", "1.1234567891s"), ("duration_fraction_only", ".5s"),
    ("duration_exponent", "1e3s"), ("duration_iso8601", "PT5S"),
    ("duration_trailing_newline", "5s\n"), ("int_for_duration", 5),
]  # fmt: skip
_FIELD_MASK_EDITS: list[Edit] = [
    ("field_mask_camel_case", "updateTime,a.bC"), ("field_mask_empty", ""),
    ("field_mask_snake_case", "update_time"), ("field_mask_snake_case", "a.b_c"),
    ("field_mask_list", ["a"]), ("int_for_field_mask", 5),
]  # fmt: skip
_STRUCT_EDITS: list[Edit] = [
    ("struct_nested", {"a": [1, {"b": None}], "c": "d"}), ("list_for_struct", [1]),
    ("string_for_struct", "x"),
]  # fmt: skip
_VALUE_EDITS: list[Edit] = [
    ("json_value", 1.5), ("json_value", "x"), ("json_value", [None, True]),
    ("json_value", {"a": {}}),
]  # fmt: skip
_LIST_VALUE_EDITS: list[Edit] = [
    ("list_value_nested", [1, [2], {"a": None}]),
    ("object_for_list_value", {"a": 1}),
]
_MESSAGE_EDITS: list[Edit] = [
    ("empty_object", {}), ("string_for_message", "ab"), ("empty_string_for_message", ""),
    ("empty_list_for_message", []), ("list_for_message", [{}]), ("int_for_message", 3),
]  # fmt: skip
_ANY_EDITS: list[Edit] = [("empty_any", {}), ("string_for_any", "x"), ("list_for_any", [1])]
_EMPTY_EDITS: list[Edit] = [("empty_object", {}), ("unknown_key_in_empty", {"a": 1})]
_CONTAINER_EDITS = {
    REPEATED: [("empty_list", []), ("object_for_list", {}), ("scalar_for_list", 5),
               ("string_for_list", "ab")],
    MAP: [("empty_map", {}), ("list_for_map", []), ("scalar_for_map", 5)],
}  # fmt: skip
_NULL_LABELS = {
    SINGULAR: "null_for_field", ITEM: "null_element", MAP_VALUE: "null_map_value",
    REPEATED: "null_for_field", MAP: "null_for_field", ROOT_VALUE: "null_root",
    ANY_VALUE: "null_any_value",
}  # fmt: skip


def scalar_edits(kind: int, enum: EnumDescriptor | None, rng: random.Random) -> list[Edit]:
    if kind in INT_RANGES:
        low, high = INT_RANGES[kind]
        return [*_INT_EDITS, ("int_out_of_range_number", rng.choice([low - 1, high + 1])),
                ("int_out_of_range_string", str(rng.choice([low - 1, high + 1])))]  # fmt: skip
    if kind in (FD.TYPE_FLOAT, FD.TYPE_DOUBLE):
        return _FLOAT_EDITS
    if kind == FD.TYPE_BOOL:
        return _BOOL_EDITS
    if kind == FD.TYPE_STRING:
        return _STRING_EDITS
    if kind == FD.TYPE_BYTES:
        return _BYTES_EDITS
    assert enum is not None
    return enum_edits(enum, rng)


def enum_edits(enum: EnumDescriptor, rng: random.Random) -> list[Edit]:
    if enum.full_name == NULL_VALUE:
        return [("null_value_name", "NULL_VALUE"), ("null_value_zero", 0),
                ("string_for_null_value", "x")]  # fmt: skip
    value = rng.choice(list(enum.values))
    numbers = {v.number for v in enum.values}
    unknown = rng.choice([n for n in (max(numbers) + 1, -7, 2**31 - 1) if n not in numbers])
    edits: list[Edit] = [
        ("enum_name", value.name), ("enum_number", value.number),
        ("unknown_enum_number", unknown), ("enum_number_string", str(value.number)),
        ("enum_float", value.number + 0.5), ("bool_for_enum", True),
        ("enum_out_of_int32", 2**40 + value.number), ("bad_enum_name", "NO_SUCH_VALUE_X"),
        ("enum_name_trailing_newline", value.name + "\n"), ("object_for_scalar", {}),
    ]  # fmt: skip
    if value.name.lower() != value.name:
        edits.append(("lowercase_enum_name", value.name.lower()))
    return edits


def message_edits(desc: Descriptor, rng: random.Random) -> list[Edit]:
    name = desc.full_name
    if name in WRAPPERS:
        return scalar_edits(desc.fields_by_name["value"].type, None, rng)
    return {
        TIMESTAMP: _TIMESTAMP_EDITS, DURATION: _DURATION_EDITS, FIELD_MASK: _FIELD_MASK_EDITS,
        STRUCT: _STRUCT_EDITS, VALUE: _VALUE_EDITS, LIST_VALUE: _LIST_VALUE_EDITS,
        ANY: _ANY_EDITS, "google.protobuf.Empty": _EMPTY_EDITS,
    }.get(name, _MESSAGE_EDITS)  # fmt: skip


def value_edits(site: ValueSite, rng: random.Random) -> list[Edit]:
    edits: list[Edit] = [(_NULL_LABELS[site.role], None)]
    if site.role in _CONTAINER_EDITS:
        return edits + _CONTAINER_EDITS[site.role]
    if site.slot.message is not None:
        return edits + message_edits(site.slot.message, rng)
    return edits + scalar_edits(site.slot.type, site.slot.enum, rng)


def key_edits(key_type: int, rng: random.Random) -> list[tuple[str, str]]:
    if key_type in INT_RANGES:
        low, high = INT_RANGES[key_type]
        return [
            ("map_key_out_of_range", str(rng.choice([low - 1, high + 1]))),
            ("map_key_not_int", "abc"), ("map_key_plus_sign", "+5"), ("map_key_float", "1.5"),
            ("map_key_exponent", "1e2"), ("map_key_underscore", "1_0"),
            ("map_key_leading_zeros", "007"), ("map_key_negative", "-1"),
            ("map_key_space", " 5"),
        ]  # fmt: skip
    if key_type == FD.TYPE_BOOL:
        return [("map_key_bool", "false"), ("map_key_bool_case", "True"),
                ("map_key_bool_number", "1"), ("map_key_bool_newline", "true\n")]  # fmt: skip
    return [("map_key_unicode", "\u043a\u043b\u044e\u0447"), ("map_key_empty", "")]


# ---- agreement: applying edits ----------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    label: str  # the mutation applied
    data: JSON


def _get(data: JSON, path: Path_) -> JSON:
    for step in path:
        data = data[step]
    return data


def _put(data: JSON, path: Path_, value: JSON) -> JSON:
    if not path:
        return value
    _get(data, path[:-1])[path[-1]] = value
    return data


def _rename(obj: dict[str, JSON], old: str, new: str) -> None:
    items = [(new if k == old else k, v) for k, v in obj.items()]
    obj.clear()
    obj.update(items)


def mutate_value(data: JSON, site: ValueSite, rng: random.Random) -> Candidate:
    label, value = rng.choice(value_edits(site, rng))
    return Candidate(label, _put(copy.deepcopy(data), site.path, value))


def mutate_key(data: JSON, site: KeySite, rng: random.Random) -> Candidate:
    label, new = rng.choice(key_edits(site.key_type, rng))
    out = copy.deepcopy(data)
    _rename(_get(out, site.path), site.key, new)
    return Candidate(label, out)


def mutate_object(c: Corpus, data: JSON, site: ObjectSite, rng: random.Random) -> Candidate:
    out = copy.deepcopy(data)
    obj: dict[str, JSON] = _get(out, site.path)
    options: list[Callable[[], str]]
    if site.message.full_name == ANY:  # keys beside @type belong to the payload's own site
        options = [
            lambda: _drop_type(obj),
            lambda: _add(obj, "@type", "type.googleapis.com/no.such.Type", "any_unknown_type"),
            lambda: _add(obj, "@type", obj["@type"].rsplit("/", 1)[-1], "any_type_without_host"),
            lambda: _add(obj, "@type", 5, "int_for_type_url"),
        ]
    else:
        options = [
            lambda: _add(obj, "zzUnknownField", 1, "unknown_key"),
            lambda: _add(obj, "[no.such.extension]", 1, "extension_key"),
        ]
        by_json = {f.json_name: f for f in site.message.fields}
        renamable = [k for k in obj if k in by_json and by_json[k].name != k]
        if renamable:
            key = rng.choice(renamable)
            options += [
                lambda: (_rename(obj, key, by_json[key].name), "proto_name")[1],
                lambda: _add(obj, by_json[key].name, obj[key], "json_and_proto_name"),
            ]
        present = [k for k in obj if k in by_json]
        if present:
            options.append(lambda: (obj.pop(rng.choice(present)), "drop_field")[1])
        options += [lambda o=o: _second_member(c, obj, site.message, o, rng)
                    for o in site.message.oneofs if len(o.fields) > 1]  # fmt: skip
    label = rng.choice(options)()
    return Candidate(label, out)


def _add(obj: dict[str, JSON], key: str, value: JSON, label: str) -> str:
    obj[key] = value
    return label


def _drop_type(obj: dict[str, JSON]) -> str:
    del obj["@type"]
    return "any_drop_type" if obj else "empty_any"


def _second_member(c: Corpus, obj: dict[str, JSON], desc: Descriptor, oneof: Any,
                   rng: random.Random) -> str:  # fmt: skip
    """Set a member of the oneof besides the one set (or two, when none is)."""
    members = list(oneof.fields)
    present = [f for f in members if f.json_name in obj]
    first = present[0] if present else rng.choice(members)
    if first.json_name not in obj:
        obj[first.json_name] = member_json(c, desc, first, rng)
    second = rng.choice([f for f in members if f is not first])
    obj[second.json_name] = member_json(c, desc, second, rng)
    if obj[first.json_name] is None or obj[second.json_name] is None:
        return "null_oneof_member"
    return "second_oneof_member"


def member_json(c: Corpus, desc: Descriptor, f: FieldDescriptor, rng: random.Random) -> JSON:
    """A valid JSON value for one field, as MessageToDict writes it."""
    message = message_class(c.pool, desc.full_name)()
    filler = c.filler(rng)
    filler.fill_field(message, f, filler.max_depth - 1)
    return json_format.MessageToDict(message, descriptor_pool=c.pool).get(f.json_name)


def mutate(c: Corpus, data: JSON, site: Site, rng: random.Random) -> Candidate:
    if isinstance(site, ValueSite):
        return mutate_value(data, site, rng)
    if isinstance(site, KeySite):
        return mutate_key(data, site, rng)
    return mutate_object(c, data, site, rng)


# ---- agreement: the property ------------------------------------------------------------------


def without_any_payloads(c: Corpus, type_name: str, data: JSON) -> JSON:
    """The candidate with every outermost Any emptied to {}."""
    out = copy.deepcopy(data)
    for site in root_sites(c, type_name, data):
        if isinstance(site, ObjectSite) and site.message.full_name == ANY and not site.in_any:
            out = _put(out, site.path, {})
    return out


def identity_label(c: Corpus, type_name: str, data: JSON) -> str:
    """ "empty_any" when an empty Any is all the lenient schema objects to, else "identity"."""
    errors = list(c.validator(type_name, "lenient").iter_errors(data))
    empty_any = [e for e in errors if e.validator == "required" and e.instance == {}]
    return "empty_any" if errors and len(empty_any) == len(errors) else "identity"


def without_extensions(data: JSON) -> JSON:
    """`data` without proto2 extension fields (keys like "[pkg.extension]"), at any depth."""
    if isinstance(data, dict):
        return {
            k: without_extensions(v)
            for k, v in data.items()
            if not (k.startswith("[") and k.endswith("]"))
        }
    if isinstance(data, list):
        return [without_extensions(v) for v in data]
    return data


def disagreement(c: Corpus, type_name: str, candidate: Candidate) -> str | None:
    """Why schema and parser disagree on the candidate beyond the documented differences."""
    strict = schema_errors(c.validator(type_name, "input"), candidate.data)
    lenient = schema_errors(c.validator(type_name, "lenient"), candidate.data)
    parser = parse_error(c, type_name, candidate.data)
    where = f"{type_name} [{candidate.label}]"
    if parser is not None and (not strict or not lenient):
        # any-payload: the parser objects only to what is inside an Any
        if parse_error(c, type_name, without_any_payloads(c, type_name, candidate.data)) is None:
            return None
        which = "precise input schema" if not strict else "input schema without rules"
        return (
            f"{where}: the {which} accepts JSON that ParseDict rejects\n"
            f"  JSON:   {dumps(candidate.data)}\n  parser: {parser[:500]}"
        )
    if parser is None and strict:
        category = "validation-rules" if not lenient else parser_looser_category(candidate.label)
        if category is None and not schema_errors(
            c.validator(type_name, "input"), without_extensions(candidate.data)
        ):
            category = "extensions"
        if category is None:
            return (
                f"{where}: ParseDict accepts JSON the precise input schema rejects, and no "
                f"documented difference explains it\n  JSON:   {dumps(candidate.data)}\n"
                f"  schema: {strict[:5]}"
            )
    return None


@pytest.mark.parametrize(("corpus_name", "type_name"), CASES, ids=CASE_IDS)
@settings(max_examples=AGREEMENT_EXAMPLES, **_COMMON)
@given(rng=st.randoms(use_true_random=True))
def test_parser_agrees_with_the_input_schema(
    corpus_name: str, type_name: str, rng: random.Random
) -> None:
    c = corpus(corpus_name)
    base = tool_json(c, type_name, c.filler(rng).message(type_name))
    candidates = [Candidate(identity_label(c, type_name, base), base)]
    lenient_ok = not schema_errors(c.validator(type_name, "lenient"), base)
    if lenient_ok and parse_error(c, type_name, base) is None:
        sites = root_sites(c, type_name, base)
        candidates += [mutate(c, base, rng.choice(sites), rng)
                       for _ in range(MUTATIONS_PER_MESSAGE if sites else 0)]  # fmt: skip
    problems = [p for p in (disagreement(c, type_name, cand) for cand in candidates) if p]
    assert not problems, "\n".join(problems)


# ---- the documented differences are real ------------------------------------------------------

_SCALARS = "acme.types.v1.Scalars"
_WELL_KNOWN = "acme.types.v1.WellKnown"
_CONTAINERS = "acme.types.v1.Containers"
#: One example per documented difference: (category, label, type, JSON).
DIFFERENCE_EXAMPLES: list[tuple[str, str, str, JSON]] = [
    ("proto-names", "proto_name", _SCALARS, {"f_int32": 1}),
    ("proto-names", "json_and_proto_name", _SCALARS, {"fInt32": 1, "f_int32": 2}),
    ("null-clears", "null_for_field", _SCALARS, {"fString": None}),
    ("null-clears", "null_oneof_member", "acme.types.v1.Choice", {"text": "a", "number": None}),
    ("null-value-enum", "null_value_name", "oracle.edge.v1.Nulls", {"nothing": "NULL_VALUE"}),
    ("null-value-enum", "null_value_zero", "oracle.edge.v1.Nulls", {"nothing": 0}),
    ("integer-strings", "int_string_plus_sign", _SCALARS, {"fInt32": "+7"}),
    ("integer-strings", "int_string_tab", _SCALARS, {"fInt64": "\t7"}),
    ("integer-strings", "int_string_underscore", _SCALARS, {"fUint32": "1_0"}),
    ("integer-strings", "int_string_unicode_digits", _SCALARS, {"fInt32": "\u0663"}),
    ("integer-strings", "int_float_string", _SCALARS, {"fInt32": "7.0"}),
    ("integer-strings", "int_exponent_string", _SCALARS, {"fUint64": "1e3"}),
    ("integer-strings", "map_key_plus_sign", _CONTAINERS, {"byInt32": {"+5": "x"}}),
    ("integer-strings", "map_key_exponent", _CONTAINERS, {"byInt32": {"1e2": "x"}}),
    ("integer-strings", "map_key_underscore", _CONTAINERS, {"byInt32": {"1_0": "x"}}),
    ("float-strings", "float_string", _SCALARS, {"fDouble": "1.5"}),
    ("float-strings", "python_float_spelling", _SCALARS, {"fFloat": "inf"}),
    ("float-strings", "bool_for_float", _SCALARS, {"fDouble": True}),
    ("enum-leniency", "enum_number_string", _SCALARS, {"fColor": "1"}),
    ("enum-leniency", "enum_float", _SCALARS, {"fColor": 1.5}),
    ("enum-leniency", "bool_for_enum", _SCALARS, {"fColor": True}),
    ("enum-leniency", "enum_out_of_int32", _SCALARS, {"fColor": 2**40}),
    ("base64-leniency", "base64_bad_char", _SCALARS, {"fBytes": "AA!A"}),
    ("base64-leniency", "base64_non_ascii", _SCALARS, {"fBytes": "\u00e9"}),
    ("base64-leniency", "base64_whitespace", _SCALARS, {"fBytes": "AA AA"}),
    ("base64-leniency", "base64_misplaced_padding", _SCALARS, {"fBytes": "A=A="}),
    ("base64-leniency", "base64_trailing_newline", _SCALARS, {"fBytes": "AAAA\n"}),
    ("integer-strings", "int_string_trailing_newline", _SCALARS, {"fInt32": "7\n"}),
    ("timestamp-leniency", "timestamp_unpadded", _WELL_KNOWN, {"timestamp": "2024-1-1T0:0:0Z"}),
    ("timestamp-leniency", "timestamp_empty_fraction", _WELL_KNOWN,
     {"timestamp": "2024-01-01T00:00:00.Z"}),
    ("timestamp-leniency", "timestamp_offset_24h", _WELL_KNOWN,
     {"timestamp": "2024-01-01T00:00:00+24:00"}),
    ("duration-leniency", "duration_plus_sign", _WELL_KNOWN, {"duration": "+5s"}),
    ("duration-leniency", "duration_leading_space", _WELL_KNOWN, {"duration": " 5s"}),
    ("duration-leniency", "duration_underscore", _WELL_KNOWN, {"duration": "1_0s"}),
    ("duration-leniency", "duration_empty_fraction", _WELL_KNOWN, {"duration": "5.s"}),
    ("duration-leniency", "duration_long_fraction", _WELL_KNOWN, {"duration": "1.1234567891s"}),
    ("empty-any", "empty_any", _WELL_KNOWN, {"any": {}}),
    ("empty-message-forms", "empty_string_for_message", _CONTAINERS, {"nested": [""]}),
    ("empty-message-forms", "empty_list_for_message", "acme.types.v1.Ping", {"pong": []}),
    ("validation-rules", "identity", "acme.types.v1.Validated", {"email": "not an email"}),
]  # fmt: skip


@pytest.mark.parametrize(("category", "label", "type_name", "data"), DIFFERENCE_EXAMPLES,
                         ids=[f"{c}:{lbl}" for c, lbl, _, _ in DIFFERENCE_EXAMPLES])  # fmt: skip
def test_documented_difference_is_real(
    category: str, label: str, type_name: str, data: JSON
) -> None:
    c = corpus("edge" if type_name.startswith("oracle.") else "fixtures")
    assert category in __doc__
    assert schema_errors(c.validator(type_name, "input"), data), "the schema accepts it now"
    assert parse_error(c, type_name, data) is None, "the parser rejects it now"
    if category == "validation-rules":
        assert not schema_errors(c.validator(type_name, "lenient"), data)
    else:
        assert parser_looser_category(label) == category


def test_every_documented_label_has_an_example() -> None:
    documented = {lbl for labels in PARSER_LOOSER.values() for lbl in labels}
    assert documented == {lbl for _, lbl, _, _ in DIFFERENCE_EXAMPLES} - {"identity"}


def test_any_payload_is_open_by_design() -> None:
    c = corpus("fixtures")
    data = {"any": {"@type": "type.googleapis.com/acme.types.v1.Ping", "note": 5}}
    assert "any-payload" in __doc__
    assert not schema_errors(c.validator(_WELL_KNOWN, "input"), data)
    assert parse_error(c, _WELL_KNOWN, data) is not None
