"""go-micro registry snapshots as build inputs: every Value-tree form, the snapshot shapes,
registry + .proto together, sound output schemas, and hostile text."""

from __future__ import annotations

import ast
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from mcpgen.build import build as run_build
from mcpgen.config import Config
from mcpgen.errors import UserError, Warnings
from mcpgen.model import ValueTree
from mcpgen.runtime.validation import validator_for
from mcpgen.schema.registry import camel, known_structs
from mcpgen.sources.gomicro import read_registry
from tests.conftest import FIXTURES, read_tools, run_mcpgen

REGISTRY = FIXTURES / "registry"
EXAMPLE = REGISTRY / "gomicro-registry.json"
QUIRKS = REGISTRY / "quirks.json"


def build(*sources: Path | str) -> tuple[dict[str, Any], list[str], Any]:
    """The tools and routes of a bundle built from `sources`, its warnings, and the build."""
    warnings = Warnings()
    out = Path(tempfile.mkdtemp(prefix="mcpgen-gomicro-")) / "bundle"
    result = run_build(Config(sources=[str(s) for s in sources], out=str(out)), warnings)
    return read_tools(out), warnings.items, result


def tool(manifest: dict[str, Any], name: str) -> dict[str, Any]:
    return next(t for t in manifest["tools"] if t["name"] == name)


def test_example_snapshot_builds_its_tools():
    manifest, warnings, result = build(EXAMPLE)
    names = [t["name"] for t in manifest["tools"]]
    assert names == ["Orders_Get", "Orders_List", "Users_Create", "Users_Delete", "Users_Get"]
    skipped = next(w for w in warnings if "not callable" in w)
    assert "orders Orders.Watch (a streaming endpoint)" in skipped
    assert "orders Events.Handle (a message subscriber" in skipped
    assert result.skipped == 2  # counted in the build's summary line too
    create = tool(manifest, "Users_Create")
    assert create["description"].startswith("Create a new user account.")
    assert create["inputSchema"]["examples"] == [
        {"name": "Alice", "email": "alice@example.com", "age": 30}
    ]
    assert create["inputSchema"]["properties"]["tags"] == {
        "type": "array",
        "items": {"type": "string"},
    }
    assert manifest["routes"]["Users_Create"] == {
        "kind": "go-micro",
        "service": "users",
        "endpoint": "Users.Create",
        "nodes": ["127.0.0.1:43121"],
        "scopes": ["users:write"],
    }
    assert manifest["routes"]["Orders_List"]["nodes"] == ["127.0.0.1:39811", "127.0.0.1:40217"]
    assert tool(manifest, "Users_Delete")["description"] == (
        "Calls the Users.Delete endpoint of the go-micro service users."
    )
    assert not (result.out / "descriptors").exists()  # nothing protobuf to forward with
    index = json.loads((result.out / "manifest.json").read_text())
    assert sorted(index["shards"]) == ["orders", "users"]  # a shard per registry service
    assert index["shards"]["users"]["files"]["tools"] == "tools/users.json"


def test_every_value_tree_form():
    manifest, warnings, _ = build(QUIRKS)
    check = tool(manifest, "Stock_Check")
    inputs = check["inputSchema"]["properties"]
    assert inputs["qty"] == {"type": "integer"}
    assert inputs["ratio"] == {"type": "number"}
    assert inputs["raw"]["contentEncoding"] == "base64"
    assert inputs["attrs"]["type"] == "object"  # `""` is a map
    assert inputs["when"]["format"] == "date-time"
    assert inputs["extra"] == {"type": "object"}
    assert inputs["kind"].keys() == {"description"}  # an enum the registry cannot describe
    assert inputs["owner"]["properties"].keys() == {"owner_id", "display_name"}  # *Owner
    assert inputs["items"]["items"].keys() == {"description"}  # slice elements: not described
    assert inputs["codes"] == {"type": "array", "items": {"type": "integer"}}
    # level4 is cut off at depth 3 in the request and described in the response
    level4 = inputs["level1"]["properties"]["level2"]["properties"]["level3"]["properties"]
    assert level4["level4"]["properties"].keys() == {"note", "count"}
    outputs = check["outputSchema"]["properties"]
    assert outputs["availableQty"]["type"] == ["integer", "string"]
    assert outputs["unitPrice"]["type"] == ["number", "string"]
    assert "required" not in json.dumps(check["outputSchema"])
    assert "additionalProperties" not in json.dumps(check["outputSchema"])
    assert check["description"] == (
        'Check stock for a SKU.\nSays "how many" — {{ not a template }} {% neither %}'
    )
    assert manifest["routes"]["Stock_Check"]["scopes"] == ["stock:admin", "stock:read"]
    # versions merged, nodes sorted by id
    assert manifest["routes"]["Stock_Reserve"]["nodes"] == [
        "127.0.0.1:40001", "127.0.0.1:40002", "127.0.0.1:40003",
    ]  # fmt: skip
    assert any("versions 2.0.0, 2.1.0" in w for w in warnings)
    assert any("`example` metadata is not valid JSON" in w for w in warnings)
    assert any("legacy Legacy.Ping" in w and ".proto" in w for w in warnings)
    assert "Legacy_Ping" not in [t["name"] for t in manifest["tools"]]


def test_snapshot_shapes(tmp_path):
    services = json.loads(EXAMPLE.read_text())
    single = tmp_path / "single.json"
    single.write_text(json.dumps(services[0]))
    wrapped = tmp_path / "wrapped.json"
    wrapped.write_text(json.dumps({"services": services}))
    assert [t["name"] for t in build(single)[0]["tools"]] == [
        "Users_Create", "Users_Delete", "Users_Get",
    ]  # fmt: skip
    assert build(wrapped)[0] == build(EXAMPLE)[0]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[1, 2", "not valid JSON"),
        ('"users"', "expected a JSON array"),
        ('[{"version": "1"}]', "is not a go-micro service"),
        ('[{"name": "a", "nodes": [{"id": "x"}]}]', "has no `address`"),
        ('[{"name": "a", "endpoints": [{"name": "A.B", "request": 3}]}]', "is not a Value"),
        ('[{"name": "a", "endpoints": [{"name": "Nope", "request": null}]}]', "Handler.Method"),
        ('[{"name": "a b", "endpoints": [{"name": "A.B", "request": null}]}]', "cannot name"),
    ],
)
def test_bad_snapshots_are_clear_errors(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(UserError) as error:
        build(path)
    assert message in error.value.render()
    done = run_mcpgen("build", str(path), "-o", str(tmp_path / "out"))
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and message in done.stderr


def test_registry_and_proto_together():
    manifest, _, result = build(EXAMPLE, REGISTRY / "protos")
    create = tool(manifest, "Users_Create")
    # proto types and docs win: required fields, field docs, the User message
    assert create["inputSchema"]["required"] == ["name", "email"]
    assert create["inputSchema"]["properties"]["name"]["description"] == "The user's display name."
    assert "spentCents" in create["outputSchema"]["properties"]["user"]["properties"]
    # the registry supplies the description, example, scopes and nodes
    assert create["description"].startswith("Create a new user account.")
    assert create["inputSchema"]["examples"][0]["name"] == "Alice"
    assert manifest["routes"]["Users_Create"] == {
        "kind": "go-micro",
        "service": "users",
        "endpoint": "Users.Create",
        "request": "example.users.v1.CreateRequest",
        "response": "example.users.v1.CreateResponse",
        "nodes": ["127.0.0.1:43121"],
        "scopes": ["users:write"],
    }
    # without a registry description, the proto comment
    assert tool(manifest, "Users_Delete")["description"].startswith("Deletes a user")
    # the proto service is not also a gRPC tool, and the server gets its descriptors
    assert all(r["kind"] == "go-micro" for r in manifest["routes"].values())
    assert (result.out / "descriptors" / "example.users.v1.binpb").is_file()


# ---- soundness of registry output schemas -------------------------------------------------


def protojson_like(
    tree: ValueTree, rng: random.Random, known: dict[str, ValueTree], depth: int = 0
) -> Any:
    """A value as a go-micro service could answer for `tree`: protojson or encoding/json.
    `known` are the structs the service describes elsewhere (a cut-off or slice element)."""
    go = tree.type.lstrip("*")
    if depth == 0 and not tree.values:  # a handler's response is a struct: `{}` when empty
        return {} if rng.random() < 0.5 else {"unknownExtra": 1}
    if tree.values:
        out: dict[str, Any] = {}
        for child in tree.values:
            if rng.random() < 0.2:
                continue
            key = child.name if rng.random() < 0.3 else camel(child.name)
            out[key] = protojson_like(child, rng, known, depth + 1)
        if rng.random() < 0.2:
            out["unknownExtra"] = rng.choice([1, "x", None, {"a": 1}])
        return out
    if go == "string":
        return rng.choice(["", "x", "ünï", "123"])
    if go == "bool":
        return rng.random() < 0.5
    if go in ("int32", "uint32", "int16", "uint8"):
        return rng.randint(-(2**31), 2**31 - 1)
    if go in ("int64", "uint64", "int", "uint"):
        n = rng.randint(-(2**63), 2**63 - 1)
        return str(n) if rng.random() < 0.7 else n
    if go in ("float32", "float64"):
        return rng.choice([0, 1.5, -2.25e10, "NaN", "Infinity", "-Infinity"])
    if go in ("[]uint8", "[]byte"):
        return rng.choice(["", "AAEC", "aGVsbG8="])
    if go.startswith("[]"):
        element = ValueTree("", go[2:])
        return [protojson_like(element, rng, known, depth + 1) for _ in range(2)]
    if go == "":
        return {"k": rng.choice(["v", 1, True])}
    if go == "Timestamp":
        return rng.choice(["2024-01-31T12:00:00Z", "2024-01-31T12:00:00.123456789Z"])
    if go == "Duration":
        return rng.choice(["1s", "1.5s", "-0.000000001s"])
    if go == "Struct":
        return {"any": [1, "two", None]}
    struct = known.get(go)
    if struct is not None and depth < 8:
        return protojson_like(struct, rng, known, depth + 1)
    # an enum (name or unknown number) or a struct the registry cut off
    return rng.choice(["STATUS_SHIPPED", 7, {"nested": "struct"}])


def _endpoint_trees(path: Path) -> list[tuple[str, ValueTree, dict[str, ValueTree]]]:
    out = []
    for s in read_registry(path, path.name):
        known = known_structs([t for e in s.endpoints.values() for t in (e.request, e.response)])
        for e in s.endpoints.values():
            if e.response is not None and e.response.type != "Stream":
                out.append((f"{s.name} {e.name}", e.response, known))
    return out


@pytest.mark.parametrize("snapshot", [EXAMPLE, QUIRKS], ids=lambda p: p.name)
def test_output_schemas_accept_what_services_answer(snapshot):
    manifest, _, _ = build(snapshot)
    by_endpoint = {
        f"{r['service']} {r['endpoint']}": tool(manifest, name)["outputSchema"]
        for name, r in manifest["routes"].items()
    }
    rng = random.Random(20261124)
    checked = 0
    for endpoint, tree, known in _endpoint_trees(snapshot):
        if endpoint not in by_endpoint:
            continue  # skipped endpoints
        validator = validator_for(by_endpoint[endpoint])
        for _ in range(200):
            answer = protojson_like(tree, rng, known)
            errors = [e.message for e in validator.reference.iter_errors(answer)]
            assert not errors, f"{endpoint}: {errors} for {json.dumps(answer)}"
            checked += 1
    assert checked >= 200


# ---- hostile text ------------------------------------------------------------------------------

HOSTILE = (
    "\"'\n{{ 7*7 }} {% import os %} __import__('os').system('touch PWNED') \\ \u2028 </script>"
)


def test_hostile_text_is_data(tmp_path):
    services = json.loads(EXAMPLE.read_text())
    users = services[0]
    users["endpoints"][0]["metadata"]["description"] = HOSTILE
    users["endpoints"][0]["metadata"]["example"] = json.dumps({"name": HOSTILE})
    users["endpoints"][0]["request"]["values"][0]["name"] = HOSTILE
    users["metadata"] = {"owner": HOSTILE}
    snapshot = tmp_path / "hostile.json"
    snapshot.write_text(json.dumps(services))
    out = tmp_path / "bundle"
    done = run_mcpgen("build", str(snapshot), "-o", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    manifest = read_tools(out)
    create = tool(manifest, "Users_Create")
    assert create["description"] == HOSTILE
    assert create["inputSchema"]["examples"] == [{"name": HOSTILE}]
    assert HOSTILE in create["inputSchema"]["properties"]
    ast.parse((out / "server.py").read_text())  # still a plain module
    help_run = subprocess.run(
        [sys.executable, str(out / "server.py"), "--help"],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert help_run.returncode == 0, help_run.stderr
    assert not (tmp_path / "PWNED").exists()


def test_hostile_names_are_sanitized_or_refused(tmp_path):
    services = json.loads(EXAMPLE.read_text())
    services[0]["name"] = "users-v2.eu_west"
    snapshot = tmp_path / "names.json"
    snapshot.write_text(json.dumps(services))
    manifest, _, _ = build(snapshot)
    assert "Users_Create" in [t["name"] for t in manifest["tools"]]
    assert manifest["routes"]["Users_Create"]["service"] == "users-v2.eu_west"
    services[0]["endpoints"][0]["name"] = "Users.Create'); import os; ('"
    snapshot.write_text(json.dumps(services))
    with pytest.raises(UserError, match=r"is not `Handler\.Method`"):
        build(snapshot)


def test_empty_and_undescribed_structs_are_open_objects(tmp_path):
    empty = {"name": "PingRequest", "type": "PingRequest", "values": None}
    fields = [{"name": "n", "type": "uint32", "values": None},
              {"name": "big", "type": "uint64", "values": None}]  # fmt: skip
    snapshot = tmp_path / "ping.json"
    snapshot.write_text(json.dumps([{
        "name": "billing", "version": "latest", "metadata": None, "nodes": None,
        "endpoints": [
            {"name": "Health.Ping", "request": empty, "response": None, "metadata": None},
            {"name": "Health.Count", "request": {"name": "C", "type": "C", "values": fields},
             "response": {**empty, "name": "CountResponse"}, "metadata": None},
        ],
    }]))  # fmt: skip
    manifest, warnings, _ = build(snapshot)
    ping = tool(manifest, "Health_Ping")
    assert ping["inputSchema"] == {"type": "object", "properties": {}}  # not `{"value": ...}`
    assert ping["outputSchema"] == {"type": "object"}
    count = tool(manifest, "Health_Count")
    assert count["inputSchema"]["properties"]["n"] == {"type": "integer", "minimum": 0}
    assert count["inputSchema"]["properties"]["big"] == {"type": "integer", "minimum": 0}
    assert count["outputSchema"] == {"type": "object"}
    assert any("'billing' has no nodes" in w for w in warnings)
