"""One test per row of the proto → JSON Schema mapping (shared/reference/proto-to-json-schema.md).

Exact schema fragments where the fragment is the point of the row; the oracle tests in
test_oracle.py prove soundness and agreement with protobuf on random data.
"""

from __future__ import annotations

import pytest

from mcpgen.config import Config
from mcpgen.errors import Warnings
from mcpgen.runtime.validation import validator_for
from mcpgen.schema import SchemaRenderer
from mcpgen.sources.inputs import load_catalog
from mcpgen.tools import build_tools, shorten, title_of
from tests.conftest import PROTOS

T = "acme.types.v1."


@pytest.fixture(scope="module")
def renderer() -> SchemaRenderer:
    return SchemaRenderer(load_catalog([str(PROTOS)], [], Warnings()))


def portable(r: SchemaRenderer, message: str, field: str) -> dict:
    return r.portable(T + message)["properties"][field]


def precise(r: SchemaRenderer, message: str, field: str, output: bool = True) -> dict:
    return r.precise(T + message, output=output)["properties"][field]


def accepts(schema: dict, value: object) -> bool:
    return not list(validator_for(schema).iter_errors(value))


def test_int32_family(renderer):
    for field in ("fInt32", "fSint32", "fSfixed32"):
        assert portable(renderer, "Scalars", field) == {
            "type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1,
        }  # fmt: skip
        schema = precise(renderer, "Scalars", field)
        assert schema["type"] == ["integer", "string"] and schema["format"] == "int32"
        assert accepts(schema, "-12") and accepts(schema, 7)
        assert not accepts(schema, "2147483648") and not accepts(schema, 1.5)


def test_uint32_family(renderer):
    for field in ("fUint32", "fFixed32"):
        assert portable(renderer, "Scalars", field) == {
            "type": "integer", "minimum": 0, "maximum": 2**32 - 1,
        }  # fmt: skip
        assert not accepts(precise(renderer, "Scalars", field), -1)


def test_int64_family_is_a_decimal_string_in_portable_and_both_in_precise(renderer):
    for field in ("fInt64", "fSint64", "fSfixed64"):
        schema = portable(renderer, "Scalars", field)
        assert schema["type"] == "string" and schema["pattern"] == "^-?[0-9]+$"
        assert "64-bit integer" in schema["description"]
        exact = precise(renderer, "Scalars", field)
        assert accepts(exact, "-9223372036854775808") and accepts(exact, 42)
        assert not accepts(exact, "9223372036854775808")


def test_uint64_family(renderer):
    for field in ("fUint64", "fFixed64"):
        assert portable(renderer, "Scalars", field)["pattern"] == "^[0-9]+$"
        exact = precise(renderer, "Scalars", field)
        assert accepts(exact, "18446744073709551615") and not accepts(exact, "-1")


def test_float_and_double(renderer):
    for field in ("fFloat", "fDouble"):
        assert portable(renderer, "Scalars", field) == {"type": "number"}
        exact = precise(renderer, "Scalars", field)
        for value in ("NaN", "Infinity", "-Infinity", 1.5, 0):
            assert accepts(exact, value)
        assert not accepts(exact, "nan")


def test_bool_string_bytes(renderer):
    assert portable(renderer, "Scalars", "fBool") == {"type": "boolean"}
    assert portable(renderer, "Scalars", "fString") == {"type": "string"}
    blob = portable(renderer, "Scalars", "fBytes")
    assert blob["contentEncoding"] == "base64" and "base64" in blob["description"]
    exact = precise(renderer, "Scalars", "fBytes")
    assert accepts(exact, "aGk=") and accepts(exact, "-_8") and not accepts(exact, "A")


def test_json_name_is_the_property_name(renderer):
    assert "customName" in renderer.portable(T + "Scalars")["properties"]
    assert "renamed" not in renderer.portable(T + "Scalars")["properties"]


def test_enum_names_in_portable_names_or_numbers_in_precise(renderer):
    schema = portable(renderer, "Scalars", "fColor")
    assert schema["enum"] == ["COLOR_UNSPECIFIED", "RED", "GREEN", "BLUE"]
    assert "- BLUE: Alias values share a number." in schema["description"]
    exact = precise(renderer, "Scalars", "fColor")
    assert accepts(exact, "RED") and accepts(exact, 99)  # open enum: unknown numbers
    assert not accepts(exact, "PURPLE")


def test_closed_proto2_enum_takes_only_known_numbers(renderer):
    item = renderer.precise("acme.legacy.v1.Item", output=True)["properties"]["condition"]
    assert accepts(item, "NEW") and accepts(item, 2) and not accepts(item, 9)


def test_message_is_an_inline_object_always_with_properties(renderer):
    nested = portable(renderer, "Containers", "nested")["items"]
    assert nested["type"] == "object" and "fInt32" in nested["properties"]
    empty = renderer.portable("google.protobuf.Empty")
    assert empty == {"type": "object", "properties": {}}


def test_recursive_message(renderer):
    schema = renderer.portable(T + "TreeNode")
    depth, node = 0, schema
    while "properties" in node:
        node = node["properties"]["children"]["items"]
        depth += 1
    assert depth == 3  # root + 2 more levels, then a stub
    assert node["type"] == "object" and "acme.types.v1.TreeNode" in node["description"]
    exact = renderer.precise(T + "TreeNode", output=True)
    assert exact["properties"]["children"]["items"] == {"$ref": "#/$defs/acme.types.v1.TreeNode"}
    assert set(exact["$defs"]) == {"acme.types.v1.TreeNode"}
    mutual = renderer.precise(T + "Ping", output=True)
    assert set(mutual["$defs"]) == {"acme.types.v1.Ping", "acme.types.v1.Pong"}


def test_repeated(renderer):
    assert portable(renderer, "Containers", "ints") == {
        "type": "array", "items": {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1},
    }  # fmt: skip


def test_maps(renderer):
    by_string = portable(renderer, "Containers", "byString")
    assert by_string == {"type": "object", "additionalProperties": {"type": "string"}}
    by_int = portable(renderer, "Containers", "byInt32")
    assert "Keys are int32 values written as strings." in by_int["description"]
    exact = precise(renderer, "Containers", "byInt32")
    assert exact["propertyNames"] == {"pattern": "^-?[0-9]+$", "format": "int32"}
    assert accepts(exact, {"-5": "x"}) and not accepts(exact, {"five": "x"})
    assert precise(renderer, "Containers", "byBool")["propertyNames"] == {
        "pattern": "^(true|false)$"
    }


def test_oneof(renderer):
    schema = renderer.portable(T + "Choice")
    assert "Set at most one of: text, number, scalars, color." in schema["description"]
    assert not {"anyOf", "oneOf", "allOf", "not"} & schema.keys()
    assert "Member of oneof `kind`." in schema["properties"]["text"]["description"]
    exact = renderer.precise(T + "Choice", output=False)
    assert accepts(exact, {"text": "a", "flag": True})
    assert not accepts(exact, {"text": "a", "number": "1"})


def test_proto3_optional_is_not_required(renderer):
    schema = renderer.portable(T + "Scalars")
    assert "maybeInt" in schema["properties"] and "required" not in schema


def test_required_sources(renderer):
    assert renderer.portable("acme.library.v1.GetBookRequest")["required"] == ["name"]
    assert renderer.portable("acme.legacy.v1.ReserveRequest")["required"] == [
        "sku", "quantity", "pickFrom",
    ]  # proto2 required and PGV message.required  # fmt: skip
    assert renderer.portable(T + "Validated")["required"] == ["requiredName"]
    assert "required" not in renderer.precise("acme.library.v1.Book", output=True)


def test_well_known_types(renderer):
    wk = renderer.portable(T + "WellKnown")["properties"]
    assert wk["timestamp"]["format"] == "date-time"
    assert wk["duration"]["pattern"] == r"^-?[0-9]+(\.[0-9]{1,9})?s$"
    assert wk["duration"].get("format") != "duration"
    assert wk["fieldMask"]["type"] == "string"
    assert wk["struct"]["type"] == "object"
    assert "type" not in wk["value"]
    assert wk["listValue"] == {
        "type": "array", "items": {}, "description": "JSON array of any values"
    }  # fmt: skip
    assert precise(renderer, "WellKnown", "nullValue") == {"type": "null"}
    assert wk["any"]["required"] == ["@type"]
    assert "required" not in precise(renderer, "WellKnown", "any")  # an empty Any prints {}
    assert wk["empty"] == {"type": "object", "properties": {}}


def test_wrappers(renderer):
    wk = renderer.portable(T + "WellKnown")["properties"]
    assert wk["boolValue"] == {"type": "boolean"}
    assert wk["int64Value"]["type"] == "string"
    assert precise(renderer, "WellKnown", "stringValue")["type"] == ["string", "null"]


def test_deprecated_field_and_method(renderer):
    book = renderer.portable("acme.library.v1.Book")["properties"]
    assert book["oldCode"]["deprecated"] is True
    catalog = renderer.catalog
    specs = {s.name: s for s in build_tools(catalog, Config(), renderer, Warnings())}
    legacy = specs["Library_LegacySearch"].tool
    assert legacy["inputSchema"]["deprecated"] is True
    assert legacy["description"].startswith("Deprecated.")


def test_buf_validate_rules(renderer):
    v = renderer.portable(T + "Validated")["properties"]
    assert v["email"]["format"] == "email"
    assert (v["code"]["minLength"], v["code"]["maxLength"]) == (6, 6)
    assert v["code"]["pattern"] == "^[A-Z0-9]+$"
    assert v["choice"]["enum"] == ["a", "b", "c"]
    assert (v["percent"]["minimum"], v["percent"]["maximum"]) == (0, 100)
    assert (v["ratio"]["exclusiveMinimum"], v["ratio"]["exclusiveMaximum"]) == (0, 1)
    assert v["tags"]["minItems"] == 1 and v["tags"]["uniqueItems"] is True
    assert v["tags"]["items"]["minLength"] == 2
    assert v["counts"]["maxProperties"] == 3
    assert v["color"]["enum"] == ["RED", "GREEN", "BLUE"]  # not_in: [0]
    assert "must not contain 'x'" in v["notHere"]["description"]  # no JSON Schema form
    assert v["uuid"]["format"] == "uuid" and v["website"]["format"] == "uri"


def test_pgv_rules(renderer):
    lookup = renderer.portable("acme.legacy.v1.LookupRequest")["properties"]["sku"]
    assert (lookup["minLength"], lookup["maxLength"]) == (3, 32)


def test_comments_become_descriptions(tmp_path):
    proto = tmp_path / "c.proto"
    proto.write_text(
        'syntax = "proto3";\npackage c;\n'
        "// Leading text.\n// buf:lint:ignore RPC_REQUEST_STANDARD_NAME\n"
        "// (-- api-linter: core::0131=disabled --)\n"
        "service S {\n  rpc M(R) returns (R);  // Trailing text.\n}\n"
        "message R {\n  // The id.\n  string id = 1;  // More.\n}\n"
    )
    catalog = load_catalog([str(proto)], [], Warnings())
    service = catalog.services[0]
    assert service.doc == "Leading text."
    assert service.methods[0].doc == "Trailing text."
    assert catalog.messages["c.R"].fields[0].doc == "The id.\n\nMore."


def test_names_titles_annotations(renderer):
    specs = {s.name: s for s in build_tools(renderer.catalog, Config(), renderer, Warnings())}
    assert {"v1_Users_GetUser", "v2_Users_GetUser", "Library_GetBook"} <= specs.keys()
    get = specs["Library_GetBook"].tool
    assert get["annotations"] == {"readOnlyHint": True, "idempotentHint": True}
    assert specs["Library_UpdateBook"].tool["annotations"] == {"idempotentHint": True}
    assert specs["Library_ListBooks"].tool["annotations"] == {"readOnlyHint": True}
    assert "annotations" not in specs["Library_CreateBook"].tool
    assert specs["Types_EchoScalars"].tool["description"].startswith("Calls the EchoScalars RPC")
    watch = specs["Library_WatchBooks"].tool["outputSchema"]
    assert watch["properties"]["messages"]["type"] == "array"
    assert title_of("GetHTTPRoute") == "Get HTTP Route"
    long_name = "X" * 80
    short = shorten(long_name, "pkg.S.M")
    assert len(short) == 64 and short == shorten(long_name, "pkg.S.M")
    assert short != shorten(long_name, "pkg.S.N")


def test_well_known_roots(renderer):
    specs = {s.name: s for s in build_tools(renderer.catalog, Config(), renderer, Warnings())}
    now = specs["Types_Now"].tool
    assert now["inputSchema"] == {"type": "object", "properties": {}}
    assert now["outputSchema"]["properties"]["value"]["format"] == "date-time"


def test_portable_budget_cuts_deep_schemas():
    catalog = load_catalog([str(PROTOS)], [], Warnings())
    small = SchemaRenderer(catalog, portable_max_nodes=10)
    schema = small.portable("acme.library.v1.UpdateBookRequest")
    book = schema["properties"]["book"]
    assert book["type"] == "object" and "properties" not in book
    assert "acme.library.v1.Book" in book["description"]
