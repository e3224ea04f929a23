"""Arguments → request, with protobuf's JSON parser as the oracle.

For every tool of the fixture bundle and random JSON arguments: the gateway either builds the
request or answers InvalidArguments (never anything else), and it never accepts what
`json_format.ParseDict` refuses.
"""

from __future__ import annotations

import random

import pytest
from google.protobuf import json_format
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcpgen.runtime.arguments import InvalidArguments, build_request, root_value
from mcpgen.runtime.bundle import Bundle
from tests.conftest import read_tools
from tests.randomfill import RandomFiller

_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**65), 2**65), st.floats(allow_nan=False),
    st.text(max_size=6), st.sampled_from(["1", "-3", "NaN", "Infinity", "2024-01-01T00:00:00Z",
                                          "1.5s", "GENRE_FICTION", "a/b", "AQID"]),
)  # fmt: skip


def _json(names: list[str]):
    keys = st.sampled_from(names) if names else st.text(max_size=4)
    return st.recursive(
        _SCALARS,
        lambda children: st.one_of(
            st.lists(children, max_size=3),
            st.dictionaries(st.one_of(keys, st.text(max_size=3)), children, max_size=4),
        ),
        max_leaves=12,
    )


def _field_names(descriptor, seen=None) -> list[str]:
    seen = seen or set()
    if descriptor.full_name in seen:
        return []
    seen.add(descriptor.full_name)
    names = []
    for field in descriptor.fields:
        names += [field.name, field.json_name]
        if field.message_type is not None:
            names += _field_names(field.message_type, seen)
    return sorted(set(names))


@pytest.fixture(scope="module")
def bundle(library_bundle) -> Bundle:
    return Bundle(library_bundle)


def _tools(library_bundle_path) -> list[str]:
    return [t["name"] for t in read_tools(library_bundle_path)["tools"]]


TOOLS = [
    "Inventory_Lookup", "Library_CreateBook", "Library_UpdateBook", "Library_ListBooks",
    "Types_EchoChoice", "Types_EchoContainers", "Types_EchoPair", "Types_EchoScalars",
    "Types_EchoStruct", "Types_EchoTree", "Types_EchoValidated", "Types_EchoValue",
    "Types_EchoWellKnown", "v1_Users_GetUser",
]  # fmt: skip


@pytest.mark.parametrize("tool", TOOLS)
def test_gateway_never_accepts_what_protobuf_refuses(tool, bundle):
    method = bundle.method(tool)
    validator = bundle.input_validator(tool)
    names = _field_names(method.input_descriptor)

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.dictionaries(st.sampled_from(names) if names else st.text(max_size=3),
                           _json(names), max_size=5))  # fmt: skip
    def check(arguments):
        try:
            request = build_request(arguments, method.input_class, validator)
        except InvalidArguments as error:
            assert error.problems and all(p.startswith("at /") for p in error.problems)
            return
        oracle = method.input_class()
        payload = arguments.get("value") if root_value(oracle.DESCRIPTOR.full_name) else arguments
        json_format.ParseDict(payload, oracle)  # must not raise
        assert request == oracle

    check()


def test_original_and_json_names_both_work_but_not_together(bundle):
    method = bundle.method("Library_CreateBook")
    validator = bundle.input_validator("Library_CreateBook")
    a = build_request({"parent": "p", "book": {"title": "t", "page_count": 3}},
                      method.input_class, validator)  # fmt: skip
    b = build_request({"parent": "p", "book": {"title": "t", "pageCount": "3"}},
                      method.input_class, validator)  # fmt: skip
    assert a == b and a.book.page_count == 3
    with pytest.raises(InvalidArguments) as both:
        build_request({"parent": "p", "book": {"title": "t", "page_count": 3, "pageCount": 3}},
                      method.input_class, validator)  # fmt: skip
    assert "`page_count` and `pageCount` are the same field" in both.value.problems[0]


def test_map_keys_are_data_not_field_names(bundle):
    method = bundle.method("Library_CreateBook")
    validator = bundle.input_validator("Library_CreateBook")
    request = build_request(
        {"parent": "p", "book": {"title": "t", "labels": {"page_count": "x", "title": "y"}}},
        method.input_class, validator,
    )  # fmt: skip
    assert dict(request.book.labels) == {"page_count": "x", "title": "y"}


ROUND_TRIP = ["Types_EchoScalars", "Types_EchoContainers", "Types_EchoTree", "Types_EchoChoice",
              "Types_EchoWellKnown", "Types_EchoStruct", "Types_EchoValue"]  # fmt: skip


@pytest.mark.parametrize("tool", ROUND_TRIP)
@pytest.mark.parametrize("seed", range(40))
def test_what_protobuf_prints_the_gateway_takes_back(tool, seed, bundle):
    """Random messages, printed with json names or original names, come back unchanged.

    Except where protobuf's own parser refuses its printer's output (float32's extremes are
    printed rounded up, beyond the range the parser takes): the gateway refuses those too.
    """
    rng = random.Random(seed)
    method = bundle.method(tool)
    pool = method.input_descriptor.file.pool
    filler = RandomFiller(pool, rng, any_types=["acme.types.v1.Scalars"])
    message = filler.message(method.input_descriptor.full_name)
    printed = json_format.MessageToDict(
        message, preserving_proto_field_name=rng.random() < 0.5, descriptor_pool=pool
    )
    oracle = method.input_class()
    try:
        json_format.ParseDict(printed, oracle, descriptor_pool=pool)
    except json_format.ParseError:
        oracle = None
    if root_value(method.input_descriptor.full_name):
        printed = {"value": printed}
    validator = bundle.input_validator(tool)
    if oracle is None:
        with pytest.raises(InvalidArguments):
            build_request(printed, method.input_class, validator)
        return
    try:
        request = build_request(printed, method.input_class, validator)
    except InvalidArguments as error:  # documented: an empty Any prints as {} without @type
        assert all("missing required property `@type`" in p for p in error.problems), error
        return
    deterministic = {"deterministic": True}
    assert request.SerializeToString(**deterministic) == oracle.SerializeToString(**deterministic)
