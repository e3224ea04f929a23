"""The fast check of validate_tools: it passes good tools, and every broken one is still refused.

`validate_tools` first asks `_FastCheck` whether anything at all is wrong and runs the full,
path-naming checks only then; so each kind of problem the full checks report must fail the
fast check too, and the report must read as the full checks word it.
"""

from __future__ import annotations

import copy
import gc
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcpgen import validate
from mcpgen.config import Config
from mcpgen.errors import UserError, Warnings
from mcpgen.model import Scalar
from mcpgen.schema import SchemaRenderer
from mcpgen.sources.inputs import load_catalog
from mcpgen.tools import ToolSpec, build_tools
from mcpgen.validate import _FastCheck, _python_meta, _valid_shape, validate_tools
from tests.conftest import PROTOS


@pytest.fixture(scope="module")
def specs() -> list[ToolSpec]:
    catalog = load_catalog([str(PROTOS)], [], Warnings())
    return build_tools(catalog, Config(), SchemaRenderer(catalog), Warnings())


def _tool(specs: list[ToolSpec], suffix: str) -> int:
    return next(i for i, s in enumerate(specs) if s.name.endswith(suffix))


def _problems(specs: list[ToolSpec], portable: bool = True) -> list[str]:
    with pytest.raises(UserError) as caught:
        validate_tools(specs, portable_inputs=portable)
    return [p.message for p in caught.value.problems]


def test_good_tools_pass_the_fast_check(specs):
    assert len(specs) > 10
    assert _FastCheck().clean(specs, portable=True)
    validate_tools(specs, portable_inputs=True)


def test_the_build_path_never_imports_python_jsonschema():
    """Building its format checkers costs seconds; only a problem to word needs it."""
    code = (
        "import sys\n"
        "from mcpgen.config import Config\n"
        "from mcpgen.errors import Warnings\n"
        "from mcpgen.schema import SchemaRenderer\n"
        "from mcpgen.sources.inputs import load_catalog\n"
        "from mcpgen.tools import build_tools\n"
        "from mcpgen.validate import validate_tools\n"
        f"catalog = load_catalog([{str(PROTOS)!r}], [], Warnings())\n"
        "specs = build_tools(catalog, Config(), SchemaRenderer(catalog), Warnings())\n"
        "validate_tools(specs, portable_inputs=True)\n"
        "assert 'jsonschema' not in sys.modules, 'jsonschema was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def _first_property(schema: dict[str, Any]) -> dict[str, Any]:
    return next(iter(schema["properties"].values()))


def _input(spec: ToolSpec) -> dict[str, Any]:
    return spec.tool["inputSchema"]


def _output(spec: ToolSpec) -> dict[str, Any]:
    return spec.tool["outputSchema"]


# (what to break, how, the words of the problem the full checks report)
BREAKAGES = [
    ("type", lambda s: _first_property(_input(s)).update(type="strin"), "is not valid under"),
    ("negative length", lambda s: _first_property(_input(s)).update(minLength=-1), "minimum"),
    ("boolean length", lambda s: _first_property(_input(s)).update(minLength=True), "integer"),
    ("text", lambda s: _first_property(_input(s)).update(description=3), "is not of type"),
    ("regex", lambda s: _first_property(_input(s)).update(pattern="(x"), "invalid regex"),
    ("flag", lambda s: _first_property(_output(s)).update(readOnly="yes"), "is not of type"),
    ("empty anyOf", lambda s: _output(s).update(anyOf=[]), "should be non-empty"),
    ("enum", lambda s: _first_property(_output(s)).update(enum="x"), "is not of type"),
    ("required", lambda s: _output(s).update(required=["a", "a"]), "non-unique"),
    ("tuple", lambda s: _output(s).update(required=("a",)), "is not of type 'array'"),
    ("ref", lambda s: _first_property(_output(s)).update({"$ref": "#/$defs/Nope"}), "unresolv"),
    ("portable ref", lambda s: _first_property(_input(s)).update({"$ref": "#/x"}), "not portable"),
    ("type list", lambda s: _first_property(_input(s)).update(type=["string"]), "type arrays"),
    ("array", lambda s: _first_property(_input(s)).update(type="array"), "needs `items`"),
    ("unknown required", lambda s: _input(s).update(required=["nope"]), "known properties"),
    ("root", lambda s: _output(s).update(type="array"), "root must have type object"),
    ("under items", lambda s: _output(s).update(items={"items": {"type": "q"}}), "is not valid"),
    ("under a map", lambda s: _output(s).update(additionalProperties={"minItems": -1}), "minim"),
    ("under anyOf", lambda s: _output(s).update(anyOf=[{"required": 1}]), "is not of type"),
    ("portable under items", lambda s: _input(s).update(items={"const": 1}), "not portable"),
    ("name", lambda s: setattr(s, "name", "bad name"), "/name: must match"),
]


@pytest.mark.parametrize(("what", "breakage", "words"), BREAKAGES, ids=[b[0] for b in BREAKAGES])
def test_every_broken_schema_is_refused(specs, what, breakage, words):
    broken = copy.deepcopy(specs)
    spec = broken[_tool(broken, "CreateBook")]
    breakage(spec)
    assert not _FastCheck().clean(broken, portable=True)
    problems = _problems(broken)
    assert any(words in p for p in problems), problems
    # output schemas are shared by the tools of one response type, and so are their problems
    assert any(p.startswith(f"tool {spec.name}: /") for p in problems), problems


def test_a_problem_names_the_tool_and_the_json_path(specs):
    broken = copy.deepcopy(specs)
    spec = broken[_tool(broken, "CreateBook")]
    name = next(iter(_input(spec)["properties"]))
    _input(spec)["properties"][name]["type"] = "strin"
    problem = f"tool {spec.name}: /inputSchema/properties/{name}/type: 'strin' is not valid"
    assert any(p.startswith(problem) for p in _problems(broken))


def test_duplicate_names_are_refused(specs):
    broken = copy.deepcopy(specs)
    broken[1].name = broken[0].name
    assert not _FastCheck().clean(broken, portable=True)
    assert f"tool {broken[0].name}: /name: used by more than one tool" in _problems(broken)


def test_a_shared_broken_subtree_is_refused_wherever_it_is(specs):
    """Subtrees are checked once by identity: a broken one met late must still count."""
    broken = copy.deepcopy(specs)
    bad = {"type": "strin"}
    last = broken[-1]
    _output(last)["properties"] = {**_output(last)["properties"], "extra": bad}
    assert not _FastCheck().clean(broken, portable=True)
    assert any(p.startswith(f"tool {last.name}: /outputSchema/") for p in _problems(broken))


def test_portable_rules_apply_only_to_portable_inputs(specs):
    broken = copy.deepcopy(specs)
    spec = broken[_tool(broken, "CreateBook")]
    _first_property(_input(spec))["type"] = ["string", "null"]
    assert not _FastCheck().clean(broken, portable=True)
    assert _FastCheck().clean(broken, portable=False)
    validate_tools(broken, portable_inputs=False)


# ---- jsonschema-rs is only trusted where it agrees with the reference ----------------------

_KEYWORDS = [
    "type", "description", "minimum", "minLength", "maxItems", "required", "enum", "items",
    "properties", "anyOf", "deprecated", "readOnly", "format", "pattern", "$ref", "$defs",
    "const", "default", "examples", "additionalProperties", "uniqueItems", "multipleOf",
    "$anchor", "$id", "$schema", "contentEncoding", "dependentSchemas", "not", "title",
]  # fmt: skip
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["object", "string", "integer", "strin", "", "#/$defs/x", "1x", "a b"]),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(["_", "a", "type"]), inner, max_size=2),
    ),
    max_leaves=6,
)
_SHAPES = st.dictionaries(st.sampled_from(_KEYWORDS), _VALUES, max_size=4)


@settings(max_examples=400, deadline=None)
@given(_SHAPES)
def test_the_fast_metaschema_verdict_is_the_reference_verdict(shape):
    assert _valid_shape(shape) == (not list(_python_meta().iter_errors(shape)))


def test_values_of_no_plain_json_type_leave_the_verdict_to_the_full_checks(specs):
    broken = copy.deepcopy(specs)
    _output(broken[0])["title"] = Scalar.STRING  # a str to the full checks, not to the fast one
    assert not _FastCheck().clean(broken, portable=True)
    validate_tools(broken, portable_inputs=True)  # the full checks find nothing wrong with it


def test_the_metaschema_check_counts_booleans_as_no_numbers():
    node = {"type": "string", "minLength": True}
    assert validate._shallow(node)["minLength"] is True
    assert validate.MetaschemaCheck().problems(node, ["x"])


@pytest.mark.parametrize("enabled", [True, False])
def test_the_collector_is_left_as_it_was_found(specs, enabled):
    was = gc.isenabled()
    try:
        if not enabled:
            gc.disable()
        assert _FastCheck().clean(specs, portable=True)
        assert gc.isenabled() is enabled
        assert not _FastCheck().clean([*specs, specs[0]], portable=True)  # a duplicate name
        assert gc.isenabled() is enabled
    finally:
        if was:
            gc.enable()
