"""Validation of tool arguments against precise schemas, as strictly as protobuf's JSON parser.

Precise schemas name the range of every integer in `format` (int32, uint32, int64, uint64) and
of float in `format: float`; JSON Schema cannot check the range of a decimal string, so these
formats are asserted here, together with the standard formats (date-time, email, uri, ...).
"""

from __future__ import annotations

import math
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker

from mcpgen.schema.scalars import FLOAT_MAX, INT32, INT64, UINT32, UINT64

_RANGES = {"int32": INT32, "uint32": UINT32, "int64": INT64, "uint64": UINT64}
FORMAT_CHECKER = FormatChecker()


def _integer_in(bounds: tuple[int, int]):
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
            return not value.is_integer() or low <= value <= high
        if isinstance(value, int):
            return low <= value <= high
        return True

    return check


for _name, _bounds in _RANGES.items():
    FORMAT_CHECKER.checks(_name)(_integer_in(_bounds))


@FORMAT_CHECKER.checks("float")
def _float32(value: Any) -> bool:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return math.isnan(value) or math.isinf(value) or abs(value) <= FLOAT_MAX
    return True


def validator_for(schema: dict[str, Any]) -> Draft202012Validator:
    """A validator that asserts formats (ranges of integers and floats, date-time, ...)."""
    return Draft202012Validator(schema, format_checker=FORMAT_CHECKER)
