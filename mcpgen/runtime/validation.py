"""Validation of tool arguments against precise schemas, as strictly as protobuf's JSON parser.

Precise schemas name the range of every integer in `format` (int32, uint32, int64, uint64), of
floats (`float`, `double`) and of durations (`google-duration`); JSON Schema cannot check the
range of a decimal string, so these formats are asserted here, together with a `date-time`
that is as strict as protobuf's Timestamp parser and the standard formats (email, uri, ...).
Patterns follow ECMA-262/RE2 semantics: `$` matches only at the very end of the text.

Python's `jsonschema` is the reference: it decides and words every refusal. It is slow, though
(tens of microseconds for a small call), so `jsonschema-rs` accepts valid instances first, with
the same format checks; anything it does not accept goes to the reference. The property tests
of tests/test_oracle.py check that it never accepts what the reference refuses.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import sys
from collections.abc import Callable, Iterator
from functools import cache, lru_cache
from typing import TYPE_CHECKING, Any

import jsonschema_rs

from mcpgen.schema.scalars import DOUBLE_MAX, FLOAT_MAX, INT32, INT64, UINT32, UINT64


def _import_jsonschema() -> None:
    """Import `jsonschema` without `rfc3987_syntax`, which compiles a Lark grammar on import
    (1.6 of a server's 2.5 s to start) only to check the `iri` formats; precise schemas never
    use them (their formats: integer and float ranges, date-time, google-duration, and the
    validation rules' email, hostname, ipv4, ipv6, uri, uri-reference, uuid). A process that
    imported jsonschema already keeps what it has."""
    if "jsonschema" in sys.modules or "rfc3987_syntax" in sys.modules:
        return
    sys.modules["rfc3987_syntax"] = None  # type: ignore[assignment]  # an ImportError, skipped
    try:
        import jsonschema  # noqa: F401
    finally:
        del sys.modules["rfc3987_syntax"]


if TYPE_CHECKING:
    from jsonschema import FormatChecker, ValidationError

_RANGES = {"int32": INT32, "uint32": UINT32, "int64": INT64, "uint64": UINT64}
MAX_DURATION_SECONDS = 315_576_000_000


def _integer_in(bounds: tuple[int, int]) -> Callable[[Any], bool]:
    low, high = bounds

    def check(value: Any) -> bool:
        if isinstance(value, bool):
            return True  # not an integer form; `type` decides
        if isinstance(value, str):
            try:
                number = int(value)
            except ValueError:
                return True  # `pattern` reports malformed strings
            return low <= number <= high
        if isinstance(value, float):
            return not math.isfinite(value) or not value.is_integer() or low <= value <= high
        if isinstance(value, int):
            return low <= value <= high
        return True

    return check


def _finite_within(limit: float) -> Callable[[Any], bool]:
    def check(value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return True  # strings are "NaN"/"Infinity"/"-Infinity", checked by `pattern`
        if isinstance(value, float) and not math.isfinite(value):
            return False  # JSON numbers cannot be NaN or infinite; use the strings
        return abs(value) <= limit  # exact for ints of any size

    return check


_TIMESTAMP = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})"
)
_MIN_INSTANT = dt.datetime(1, 1, 1, tzinfo=dt.UTC)
_MAX_INSTANT = dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC)


def _timestamp(value: Any) -> bool:
    """RFC 3339 as google.protobuf.Timestamp takes it: upper-case T and Z, 0001-9999 in UTC."""
    if not isinstance(value, str):
        return True
    match = _TIMESTAMP.fullmatch(value)
    if match is None:
        return False
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    zone = match.group(8)
    try:
        offset = dt.timedelta(0)
        if zone != "Z":
            hours, minutes = int(zone[1:3]), int(zone[4:6])
            if hours > 23 or minutes > 59:  # RFC 3339 offsets
                return False
            sign = 1 if zone[0] == "+" else -1
            offset = sign * dt.timedelta(hours=hours, minutes=minutes)
        local = dt.datetime(year, month, day, hour, minute, second, tzinfo=dt.UTC)
        instant = local - offset
    except (ValueError, OverflowError):
        return False
    return _MIN_INSTANT <= instant <= _MAX_INSTANT


def _duration(value: Any) -> bool:
    if not isinstance(value, str) or not value.endswith("s"):
        return True  # `pattern` reports the form
    whole = value[:-1].lstrip("-").partition(".")[0]
    return not whole.isdigit() or int(whole) <= MAX_DURATION_SECONDS


@lru_cache(maxsize=4096)
def ecma_regex(pattern: str) -> re.Pattern[str]:
    """Compile a JSON Schema pattern so that `$` matches only at the end, as in ECMA-262."""
    out, escaped, in_class = [], False, False
    for ch in pattern:
        if escaped:
            out.append(ch)
            escaped = False
        elif ch == "\\":
            out.append(ch)
            escaped = True
        elif ch == "[":
            in_class = True
            out.append(ch)
        elif ch == "]":
            in_class = False
            out.append(ch)
        elif ch == "$" and not in_class:
            out.append(r"\Z")
        else:
            out.append(ch)
    return re.compile("".join(out))


@cache
def reference() -> tuple[Any, FormatChecker]:
    """The reference validator class and its format checker, made on first use: importing
    jsonschema is a sixth of a server's start, and a server that is never called needs none."""
    _import_jsonschema()
    from jsonschema import Draft202012Validator, FormatChecker, ValidationError, validators

    checker = FormatChecker()
    for name, bounds in _RANGES.items():
        checker.checks(name)(_integer_in(bounds))
    checker.checks("float")(_finite_within(FLOAT_MAX))
    checker.checks("double")(_finite_within(DOUBLE_MAX))
    checker.checks("date-time")(_timestamp)
    checker.checks("google-duration")(_duration)

    def pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[Any]:
        if validator.is_type(instance, "string") and not ecma_regex(pattern).search(instance):
            yield ValidationError(f"{instance!r} does not match {pattern!r}")

    return validators.extend(Draft202012Validator, {"pattern": pattern}), checker


def _format_check(checker: FormatChecker, name: str) -> Callable[[str], bool]:
    return lambda value: checker.conforms(value, name)


class SchemaValidator:
    """A precise schema's validator: a fast accept, then the reference for everything else."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self.schema = schema
        precise, checker = reference()
        self.reference = precise(schema, format_checker=checker)
        self.fast: Any = None
        formats = {name: _format_check(checker, name) for name in checker.checkers}
        try:
            self.fast = jsonschema_rs.validator_for(
                schema, formats=formats, validate_formats=True, ignore_unknown_formats=True
            )
        except Exception:  # a pattern Rust cannot compile, say: the reference alone then
            self.fast = None

    def accepts_fast(self, instance: Any) -> bool:
        """True when the fast validator accepts; False means only "ask the reference"."""
        if self.fast is None:
            return False
        try:
            return bool(self.fast.is_valid(instance))
        except Exception:  # values JSON cannot hold (NaN, huge integers): the reference decides
            return False

    def iter_errors(self, instance: Any) -> Iterator[ValidationError]:
        if self.accepts_fast(instance):
            return iter(())
        return self.reference.iter_errors(instance)

    def is_valid(self, instance: Any) -> bool:
        return self.accepts_fast(instance) or self.reference.is_valid(instance)


def validator_for(schema: dict[str, Any]) -> SchemaValidator:
    """A validator that asserts formats (ranges of numbers, date-time, ...) and ECMA patterns."""
    return SchemaValidator(schema)
