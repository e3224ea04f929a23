"""Descriptor-driven random protobuf messages, for the tests that use protobuf as the oracle.

`RandomFiller` fills any message type of a descriptor pool with values chosen to stress the
proto3 JSON mapping: NaN, ±Infinity, -0.0, float32 and integer extremes, unknown numbers of open
enums, empty and set oneofs, maps of every key type, nested and recursive messages to a bounded
depth, extensions, and every well-known type with valid values (Timestamp within 0001..9999,
Duration within ±10000 years, Any packing a real message of the pool, nested Struct/Value/
ListValue, wrappers, FieldMask paths that have a JSON form).

`shrink` reduces a message that makes a predicate true, one field, list item or map entry at a
time, so that a failing property prints a small JSON document.
"""

from __future__ import annotations

import math
import random
import struct
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message

FD = FieldDescriptor
Pool = descriptor_pool.DescriptorPool

INT32 = (-(2**31), 2**31 - 1)
UINT32 = (0, 2**32 - 1)
INT64 = (-(2**63), 2**63 - 1)
UINT64 = (0, 2**64 - 1)
INT_RANGES: dict[int, tuple[int, int]] = {
    FD.TYPE_INT32: INT32, FD.TYPE_SINT32: INT32, FD.TYPE_SFIXED32: INT32,
    FD.TYPE_UINT32: UINT32, FD.TYPE_FIXED32: UINT32,
    FD.TYPE_INT64: INT64, FD.TYPE_SINT64: INT64, FD.TYPE_SFIXED64: INT64,
    FD.TYPE_UINT64: UINT64, FD.TYPE_FIXED64: UINT64,
}  # fmt: skip
FLOAT32_MAX = float.fromhex("0x1.fffffep+127")


def float32(value: float) -> float:
    """The float32 nearest to `value`, as a Python float."""
    return struct.unpack("<f", struct.pack("<f", value))[0]


SPECIAL_DOUBLES = (
    math.nan, math.inf, -math.inf, -0.0, 0.0, 1.0, 0.1, -2.5,
    sys.float_info.max, -sys.float_info.max, sys.float_info.min, 5e-324, -5e-324,
    2.0**53 + 2, 1e21, 1e-7,
)  # fmt: skip
SPECIAL_FLOATS = (
    math.nan, math.inf, -math.inf, -0.0, 0.0, 1.0, float32(0.1), -2.5,
    FLOAT32_MAX, -FLOAT32_MAX, float.fromhex("0x1.fffffcp+127"), float.fromhex("0x1p-126"),
    float.fromhex("0x1p-149"), -float.fromhex("0x1p-149"), 16777216.0, float32(1e-7),
)  # fmt: skip
#: 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z, the range of Timestamp.
TIMESTAMP_SECONDS = (-62135596800, 253402300799)
#: ±10000 years, the range of Duration.
DURATION_SECONDS = 315576000000
NANOS = (0, 1, 999_999_999, 500_000_000, 1_000, 1_000_000, 123_456_789)

ANY = "google.protobuf.Any"
STRUCT = "google.protobuf.Struct"
VALUE = "google.protobuf.Value"
LIST_VALUE = "google.protobuf.ListValue"
TIMESTAMP = "google.protobuf.Timestamp"
DURATION = "google.protobuf.Duration"
FIELD_MASK = "google.protobuf.FieldMask"
NULL_VALUE = "google.protobuf.NullValue"
WRAPPERS = frozenset(
    f"google.protobuf.{n}Value"
    for n in ("Double", "Float", "Int64", "UInt64", "Int32", "UInt32", "Bool", "String", "Bytes")
)
#: Message types whose JSON form is not an object of their fields.
SPECIAL_JSON = frozenset({ANY, STRUCT, VALUE, LIST_VALUE, TIMESTAMP, DURATION, FIELD_MASK})
SPECIAL_JSON |= WRAPPERS

# Characters for strings: ASCII, JSON escapes and controls, Latin-1, combining and invisible
# characters, line separators, CJK, right-to-left scripts, astral planes.
_ALPHABETS = (
    "abcxyzABCXYZ0189 _-./:",
    '\x00\x01\x1f\x7f"\\\n\t\r',
    "\u00e9\u00df\u00f8\u00c5\u00a0\u00ff",
    "\u0301\u200b\u200d\u2028\u2029\ufeff\ufffd",
    "\u4e2d\u6587\u65e5\u672c\ud55c\uad6d",
    "\u05e2\u05d1\u0639\u0631\u0628\u064a",
    "\U0001f600\U0001f389\U0001d11e\U0010fffd\U00020000",
)
_LOWER = "abcdefghijklmnopqrstuvwxyz"


def build_pool(files: Iterable[descriptor_pb2.FileDescriptorProto]) -> Pool:
    """A fresh pool holding `files` (dependencies first); files already present are skipped."""
    pool = Pool()
    for f in files:
        try:
            pool.FindFileByName(f.name)
        except KeyError:
            pool.Add(f)
    return pool


def message_class(pool: Pool, full_name: str) -> type[Message]:
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(full_name))


def message_names(files: Iterable[descriptor_pb2.FileDescriptorProto]) -> list[str]:
    """Full names of every message type the files declare, nested ones too, minus map entries."""
    names: list[str] = []

    def walk(prefix: str, message: descriptor_pb2.DescriptorProto) -> None:
        full = f"{prefix}.{message.name}" if prefix else message.name
        if not message.options.map_entry:
            names.append(full)
        for nested in message.nested_type:
            walk(full, nested)

    for f in files:
        for message in f.message_type:
            walk(f.package, message)
    return names


def is_map(field: FieldDescriptor) -> bool:
    return (
        field.is_repeated
        and field.message_type is not None
        and field.message_type.GetOptions().map_entry
    )


def container(message: Message, field: FieldDescriptor) -> Any:
    """The value of a field or extension as the Python API holds it."""
    if field.is_extension:
        return message.Extensions[field]
    return getattr(message, field.name)


def _assign(message: Message, field: FieldDescriptor, value: Any) -> None:
    if field.is_extension:
        message.Extensions[field] = value
    else:
        setattr(message, field.name, value)


def _clear(message: Message, field: FieldDescriptor) -> None:
    if field.is_extension:
        message.ClearExtension(field)
    else:
        message.ClearField(field.name)


class RandomFiller:
    """Fills messages of one pool with random values; deterministic for a seeded `rng`.

    Messages nest at most `max_depth` levels below the root (required fields excepted), lists
    and maps hold at most `max_items` elements, and about `budget` fields are set per message.
    Any fields pack one of `any_types` (full names of message types of the pool).
    """

    def __init__(
        self,
        pool: Pool,
        rng: random.Random,
        *,
        any_types: Sequence[str] = (),
        max_depth: int = 3,
        max_items: int = 3,
        budget: int = 120,
    ) -> None:
        self.pool = pool
        self.rng = rng
        self.any_types = tuple(any_types)
        self.max_depth = max_depth
        self.max_items = max_items
        self.budget = budget
        self._left = budget

    # ---- messages -----------------------------------------------------------------------------

    def message(self, full_name: str) -> Message:
        """A new message of the named type, randomly filled."""
        message = message_class(self.pool, full_name)()
        self._left = self.budget
        self.fill(message, 0)
        return message

    def fill(self, message: Message, depth: int) -> None:
        desc = message.DESCRIPTOR
        special = _SPECIAL_FILLERS.get(desc.full_name)
        if special is not None:
            special(self, message, depth)
            return
        for oneof in desc.oneofs:
            members = [f for f in oneof.fields if self._may_nest(f, depth)]
            if members and self.rng.random() < 0.7:
                self.fill_field(message, self.rng.choice(members), depth)
        for field in desc.fields:
            if field.containing_oneof is not None:
                continue
            if field.is_required or (self._may_nest(field, depth) and self._chance(0.6)):
                self.fill_field(message, field, depth)
        if desc.is_extendable:
            for ext in self.pool.FindAllExtensions(desc):
                if self._may_nest(ext, depth) and self._chance(0.3):
                    self.fill_field(message, ext, depth)

    def fill_field(self, message: Message, field: FieldDescriptor, depth: int) -> None:
        """Set one field (or extension) of `message`, to elements of random count if repeated."""
        self._left -= 1
        if is_map(field):
            entries = container(message, field)
            key_field, value_field = field.message_type.fields
            for _ in range(self._count()):
                key = self.scalar(key_field)
                if value_field.message_type is not None:
                    self.fill(entries[key], depth + 1)
                else:
                    entries[key] = self.scalar(value_field)
        elif field.is_repeated:
            items = container(message, field)
            for _ in range(self._count()):
                if field.message_type is not None:
                    self.fill(items.add(), depth + 1)
                else:
                    items.append(self.scalar(field))
        elif field.message_type is not None:
            sub = container(message, field)
            sub.SetInParent()
            self.fill(sub, depth + 1)
        else:
            _assign(message, field, self.scalar(field))

    def _may_nest(self, field: FieldDescriptor, depth: int) -> bool:
        return field.message_type is None or depth < self.max_depth or field.is_required

    def _chance(self, p: float) -> bool:
        return self._left > 0 and self.rng.random() < p

    def _count(self) -> int:
        if self._left <= 0:
            return 0
        return self.rng.choice([0, 1, 1, 2, self.max_items])

    # ---- scalars ------------------------------------------------------------------------------

    def scalar(self, field: FieldDescriptor) -> Any:
        """A value for a non-message field (or map key/value)."""
        kind = field.type
        if kind in INT_RANGES:
            return self.integer(*INT_RANGES[kind])
        if kind == FD.TYPE_DOUBLE:
            return self.double()
        if kind == FD.TYPE_FLOAT:
            return self.float32()
        if kind == FD.TYPE_BOOL:
            return self.rng.random() < 0.5
        if kind == FD.TYPE_STRING:
            return self.text()
        if kind == FD.TYPE_BYTES:
            size = self.rng.choice([0, 1, 2, 3, 4, 5, 16])
            return self.rng.getrandbits(8 * size).to_bytes(size, "little") if size else b""
        if kind == FD.TYPE_ENUM:
            return self.enum_number(field.enum_type)
        raise TypeError(f"not a scalar field: {field.full_name}")

    def integer(self, low: int, high: int) -> int:
        special = [low, high, 0, 1, low + 1, high - 1, 2**53 + 1, -(2**53) - 1, -1]
        if self.rng.random() < 0.5:
            return self.rng.choice([n for n in special if low <= n <= high])
        if self.rng.random() < 0.5:
            return self.rng.randint(max(low, -1000), min(high, 1000))
        return self.rng.randint(low, high)

    def double(self) -> float:
        if self.rng.random() < 0.5:
            return self.rng.choice(SPECIAL_DOUBLES)
        if self.rng.random() < 0.5:
            return struct.unpack("<d", self.rng.getrandbits(64).to_bytes(8, "little"))[0]
        return self.rng.uniform(-1, 1) * 10.0 ** self.rng.randint(-30, 30)

    def float32(self) -> float:
        if self.rng.random() < 0.5:
            return self.rng.choice(SPECIAL_FLOATS)
        if self.rng.random() < 0.5:
            return struct.unpack("<f", self.rng.getrandbits(32).to_bytes(4, "little"))[0]
        return float32(self.rng.uniform(-1, 1) * 10.0 ** self.rng.randint(-30, 30))

    def text(self, max_len: int = 8) -> str:
        size = self.rng.randint(0, max_len)
        return "".join(self.rng.choice(self.rng.choice(_ALPHABETS)) for _ in range(size))

    def enum_number(self, enum: EnumDescriptor) -> int:
        defined = sorted({v.number for v in enum.values})
        if enum.is_closed or self.rng.random() < 0.7:
            return self.rng.choice(defined)
        unknown = [INT32[0], INT32[1], defined[-1] + 1, -1, self.rng.randint(*INT32)]
        return self.rng.choice([n for n in unknown if n not in defined and INT32[0] <= n])

    # ---- well-known types ---------------------------------------------------------------------

    def _timestamp(self, message: Message, depth: int) -> None:
        low, high = TIMESTAMP_SECONDS
        message.seconds = self.rng.choice([low, high, 0, -1, self.rng.randint(low, high)])
        message.nanos = self.rng.choice([*NANOS, self.rng.randint(0, 999_999_999)])

    def _duration(self, message: Message, depth: int) -> None:
        limit = DURATION_SECONDS
        seconds = self.rng.choice([limit, -limit, 0, 1, -1, self.rng.randint(-limit, limit)])
        nanos = self.rng.choice([*NANOS, self.rng.randint(0, 999_999_999)])
        if seconds < 0 or (seconds == 0 and self.rng.random() < 0.5):
            nanos = -nanos  # seconds and nanos have the same sign
        message.seconds, message.nanos = seconds, nanos

    def _field_mask(self, message: Message, depth: int) -> None:
        for _ in range(self._count()):
            message.paths.append(self.field_path())

    def field_path(self) -> str:
        """A snake_case path that has a lowerCamelCase JSON form (segments joined by dots)."""

        def word() -> str:
            tail = "".join(self.rng.choice(_LOWER + "0123456789") for _ in range(3))
            return self.rng.choice(_LOWER) + tail[: self.rng.randint(0, 3)]

        def segment() -> str:
            return "_".join(word() for _ in range(self.rng.randint(1, 3)))

        return ".".join(segment() for _ in range(self.rng.randint(1, 3)))

    def _struct(self, message: Message, depth: int) -> None:
        for _ in range(self._count()):
            self._value(message.fields[self.text()], depth + 1)

    def _list_value(self, message: Message, depth: int) -> None:
        for _ in range(self._count()):
            self._value(message.values.add(), depth + 1)

    def _value(self, message: Message, depth: int) -> None:
        kinds = ["null", "number", "string", "bool"]
        if depth < self.max_depth:
            kinds += ["struct", "list"]
        kind = self.rng.choice(kinds)
        if kind == "null":
            message.null_value = 0
        elif kind == "number":  # Value cannot hold NaN or Infinity in JSON
            message.number_value = self.rng.choice(
                [n for n in (*SPECIAL_DOUBLES, self.double()) if math.isfinite(n)]
            )
        elif kind == "string":
            message.string_value = self.text()
        elif kind == "bool":
            message.bool_value = self.rng.random() < 0.5
        elif kind == "struct":
            message.struct_value.SetInParent()
            self._struct(message.struct_value, depth)
        else:
            message.list_value.SetInParent()
            self._list_value(message.list_value, depth)

    def _any(self, message: Message, depth: int) -> None:
        if not self.any_types or depth >= self.max_depth or self.rng.random() < 0.15:
            return  # an empty Any
        inner = message_class(self.pool, self.rng.choice(self.any_types))()
        self.fill(inner, depth + 1)
        message.Pack(inner)


_SPECIAL_FILLERS: dict[str, Callable[[RandomFiller, Message, int], None]] = {
    TIMESTAMP: RandomFiller._timestamp,
    DURATION: RandomFiller._duration,
    FIELD_MASK: RandomFiller._field_mask,
    STRUCT: RandomFiller._struct,
    VALUE: RandomFiller._value,
    LIST_VALUE: RandomFiller._list_value,
    ANY: RandomFiller._any,
}


def well_known_names(pool: Pool) -> list[str]:
    """The well-known message types the pool holds, for packing into Any."""
    found = []
    for name in sorted(SPECIAL_JSON | {"google.protobuf.Empty"}):
        try:
            pool.FindMessageTypeByName(name)
        except KeyError:
            continue
        found.append(name)
    return found


# ---- shrinking --------------------------------------------------------------------------------

Edit = Callable[[Message], None]


def _copy(message: Message) -> Message:
    copy = type(message)()
    copy.CopyFrom(message)
    return copy


def _within(field: FieldDescriptor, key: Any, edit: Edit) -> Edit:
    return lambda m: edit(container(m, field)[key])


def _within_field(field: FieldDescriptor, edit: Edit) -> Edit:
    return lambda m: edit(container(m, field))


def _deletions(message: Message) -> Iterator[Edit]:
    """Edits that each remove one thing: a field, a list item, a map entry, deeper ones too."""
    if message.DESCRIPTOR.full_name == ANY:
        return  # the payload is bytes; keep it whole
    for field, value in message.ListFields():
        yield lambda m, f=field: _clear(m, f)
        if is_map(field):
            nested = field.message_type.fields_by_name["value"].message_type is not None
            for key in list(value):
                yield lambda m, f=field, k=key: container(m, f).__delitem__(k)
                if nested:
                    for edit in _deletions(value[key]):
                        yield _within(field, key, edit)
        elif field.is_repeated:
            for index in range(len(value)):
                yield lambda m, f=field, i=index: container(m, f).__delitem__(i)
                if field.message_type is not None:
                    for edit in _deletions(value[index]):
                        yield _within(field, index, edit)
        elif field.message_type is not None:
            for edit in _deletions(value):
                yield _within_field(field, edit)


def shrink(message: Message, fails: Callable[[Message], bool], budget: int = 3000) -> Message:
    """A copy of `message` with as little set as still makes `fails` true (greedy, bounded)."""
    best = _copy(message)
    improved = True
    while improved and budget > 0:
        improved = False
        for edit in _deletions(best):
            budget -= 1
            candidate = _copy(best)
            edit(candidate)
            if fails(candidate):
                best, improved = candidate, True
                break
            if budget <= 0:
                break
    return best
