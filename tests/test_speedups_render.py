"""Caches of the renderer change nothing: a rendering is the same however it was reached.

The portable rendering of a message at one depth is shared by every depth deep enough for it,
and one that met no recursive type by every recursion budget; fields of no message type are
rendered once. A renderer that remembers nothing across depths must render the same bytes.
"""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest

from mcpgen.errors import Warnings
from mcpgen.model import Catalog, Enum, EnumValue, Field, FieldBehavior, Message, Scalar, TypeRef
from mcpgen.schema import SchemaRenderer
from mcpgen.schema.render import UNLIMITED
from mcpgen.sources.inputs import load_catalog
from tests.conftest import PROTOS

DEPTHS = (1, 2, 3, 4, 5, 7, UNLIMITED)
RECURSION = (-1, 0, 1, 2, 3)


class _Forgetful(dict):
    """A cache that keeps nothing."""

    def __setitem__(self, key: Any, value: Any) -> None:
        pass


def _reference(catalog: Catalog) -> SchemaRenderer:
    """A renderer that shares nothing across depths, recursion budgets or tools."""
    renderer = SchemaRenderer(catalog)
    renderer._uncut = _Forgetful()
    renderer._portable_field = renderer._portable_field_of  # every field at its depth
    renderer._roots = _Forgetful()
    return renderer


def _field(name: str, number: int, **kwargs: Any) -> Field:
    return Field(name=name, json_name=name, number=number, doc=f"the {name}", **kwargs)


def _synthetic() -> Catalog:
    """Types that make depth and recursion matter: chains, cycles, a cycle only through an
    output-only field (recursive, yet its portable rendering never meets itself), maps."""
    enum, text = TypeRef(enum="t.Color"), TypeRef(scalar=Scalar.STRING)

    def ref(name: str) -> TypeRef:
        return TypeRef(message=f"t.{name}")

    out = frozenset({FieldBehavior.OUTPUT_ONLY})
    shapes: dict[str, list[Field]] = {
        "Leaf": [_field("text", 1, type=text), _field("color", 2, type=enum)],
        "Quiet": [_field("parent", 1, type=ref("Quiet"), behaviors=out), _field("x", 2, type=text)],
        "UsesQuiet": [_field("quiet", 1, type=ref("Quiet")), _field("leaf", 2, type=ref("Leaf"))],
        "Tree": [
            _field("kids", 1, type=ref("Tree"), repeated=True),
            _field("q", 2, type=ref("UsesQuiet")),
        ],
        "Ping": [_field("pong", 1, type=ref("Pong")), _field("leaf", 2, type=ref("Leaf"))],
        "Pong": [_field("ping", 1, type=ref("Ping")), _field("tree", 2, type=ref("Tree"))],
        "Chain3": [_field("leaf", 1, type=ref("Leaf"), map_key=Scalar.INT64)],
        "Chain2": [
            _field("next", 1, type=ref("Chain3")),
            _field("quiet", 2, type=ref("UsesQuiet")),
        ],
        "Chain1": [_field("next", 1, type=ref("Chain2")), _field("ping", 2, type=ref("Ping"))],
        "Root": [
            _field(f"c{i}", i, type=ref(n)) for i, n in enumerate(["Chain1", "Tree", "Leaf"], 1)
        ],
    }
    catalog = Catalog()
    for name, fields in shapes.items():
        catalog.messages[f"t.{name}"] = Message(full_name=f"t.{name}", fields=fields, doc=name)
    values = [EnumValue(name="RED", number=0), EnumValue(name="BLUE", number=1, doc="blue")]
    catalog.enums["t.Color"] = Enum(full_name="t.Color", values=values, doc="a color")
    return catalog


@pytest.fixture(scope="module", params=["fixtures", "synthetic"])
def catalog(request: pytest.FixtureRequest) -> Catalog:
    if request.param == "synthetic":
        return _synthetic()
    return load_catalog([str(PROTOS)], [], Warnings())


def _bytes(rendering: tuple) -> bytes:
    schema, size, *_ = rendering
    return orjson.dumps([schema, size])


def test_portable_renderings_do_not_depend_on_the_order_they_were_made(catalog):
    keys = [(m, d, r) for m in sorted(catalog.messages) for d in DEPTHS for r in RECURSION]
    assert len(keys) > 300
    random.Random(7).shuffle(keys)
    shared = SchemaRenderer(catalog)
    upward = SchemaRenderer(catalog)
    for key in sorted(keys, key=lambda k: (k[1], k[2])):  # shallow first: the reverse of use
        upward._portable_message(*key)
    for key in keys:
        expected = _bytes(_reference(catalog)._portable_message(*key))
        assert _bytes(shared._portable_message(*key)) == expected, key
        assert _bytes(upward._portable_message(*key)) == expected, key


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("max_nodes", [3, 10, 2000])
def test_portable_and_precise_roots_match_a_renderer_that_shares_nothing(catalog, depth, max_nodes):
    shared = SchemaRenderer(catalog, recursion_depth=depth, portable_max_nodes=max_nodes)
    for name in sorted(catalog.messages):
        fresh = _reference(catalog)
        fresh.recursion_depth, fresh.portable_max_nodes = depth, max_nodes
        assert orjson.dumps(shared.portable(name)) == orjson.dumps(fresh.portable(name)), name
        for output in (False, True):
            got = orjson.dumps(shared.precise(name, output=output))
            assert got == orjson.dumps(fresh.precise(name, output=output)), name


def test_precise_roots_with_definitions_are_new_for_each_caller(catalog):
    renderer = SchemaRenderer(catalog)
    name = next(n for n in sorted(catalog.messages) if "$defs" in renderer.precise(n, output=True))
    first = renderer.precise(name, output=True)
    assert "$defs" in first
    first.pop("$defs")  # as the models generator does
    first["x"] = 1
    again = renderer.precise(name, output=True)
    assert "$defs" in again and "x" not in again
