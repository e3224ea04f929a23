"""`mcpgen check`: exit 0 when the bundle is exactly what build would write, 1 with a summary of
what differs — tools by name first — otherwise."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import run_mcpgen

PROTO = """syntax = "proto3";
package shop.v1;

service Shop {
  // Reads an item.
  rpc GetItem(GetItemRequest) returns (Item);
  rpc ListItems(ListItemsRequest) returns (ListItemsResponse);
}

message GetItemRequest { string id = 1; }
message Item { string id = 1; string title = 2; }
message ListItemsRequest { int32 page_size = 1; }
message ListItemsResponse { repeated Item items = 1; }
"""


def project(tmp_path: Path, proto: str = PROTO) -> Path:
    (tmp_path / "protos").mkdir(exist_ok=True)
    (tmp_path / "protos" / "shop.proto").write_text(proto)
    (tmp_path / "mcpgen.toml").write_text('sources = ["protos"]\nout = "mcp_bundle"\n')
    return tmp_path


def test_a_fresh_bundle_checks_clean(tmp_path):
    root = project(tmp_path)
    assert run_mcpgen("build", cwd=root).returncode == 0
    done = run_mcpgen("check", cwd=root)
    assert done.returncode == 0, done.stderr
    assert "mcp_bundle/ is up to date (2 tools, from its digests)" in done.stderr


def test_an_input_that_changed_without_changing_the_bundle_is_compared_in_full(tmp_path):
    root = project(tmp_path)
    assert run_mcpgen("build", cwd=root).returncode == 0
    (root / "protos" / "shop.proto").write_text(PROTO + "\n\n")  # new bytes, same tools
    done = run_mcpgen("check", cwd=root)
    assert done.returncode == 1, done.stderr  # the index records the old input digest
    assert "files changed: manifest.json" in done.stderr
    assert "tools " not in done.stderr
    assert run_mcpgen("build", cwd=root).returncode == 0
    again = run_mcpgen("check", cwd=root)
    assert again.returncode == 0 and "from its digests" in again.stderr


def test_an_edited_bundle_file_is_never_up_to_date_by_digest(tmp_path):
    root = project(tmp_path)
    assert run_mcpgen("build", cwd=root).returncode == 0
    shard = root / "mcp_bundle" / "tools" / "shop.v1.json"
    shard.write_text(shard.read_text().replace("Reads an item.", "Reads two items."))
    done = run_mcpgen("check", cwd=root)
    assert done.returncode == 1
    assert "tools changed (1): Shop_GetItem" in done.stderr
    assert "files changed: tools/shop.v1.json" in done.stderr


def test_a_version_1_bundle_is_explained(tmp_path):
    root = project(tmp_path)
    bundle = root / "mcp_bundle"
    bundle.mkdir()
    (bundle / "manifest.json").write_text('{"manifestVersion": 1, "tools": [], "routes": {}}')
    done = run_mcpgen("check", cwd=root)
    assert done.returncode == 1
    assert "is a version-1 bundle" in done.stderr and "rebuild it" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_stale_bundle_names_the_tools_that_changed(tmp_path):
    root = project(tmp_path)
    assert run_mcpgen("build", cwd=root).returncode == 0
    changed = PROTO.replace(
        "  rpc ListItems(ListItemsRequest) returns (ListItemsResponse);\n",
        "  rpc DeleteItem(GetItemRequest) returns (Item);\n",
    ).replace("string id = 1; string title = 2;", "string id = 1; string title = 2; int32 n = 3;")
    project(root, changed)
    done = run_mcpgen("check", cwd=root)
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert lines[0] == "mcp_bundle/ is stale: `mcpgen build` would write something else"
    assert "  tools added (1): Shop_DeleteItem" in lines
    assert "  tools removed (1): Shop_ListItems" in lines
    assert "  tools changed (1): Shop_GetItem" in lines
    assert any(
        line.startswith("  files changed: ") and "tools/shop.v1.json" in line for line in lines
    )
    assert "--- tools/shop.v1.json (on disk)" in done.stderr  # the raw diff after the summary
    assert done.stderr.index("tools added") < done.stderr.index("--- tools/shop.v1.json")
    assert "Traceback" not in done.stderr
    assert run_mcpgen("build", cwd=root).returncode == 0
    assert run_mcpgen("check", cwd=root).returncode == 0


def test_missing_or_edited_files_are_stale(tmp_path):
    root = project(tmp_path)
    bundle = root / "mcp_bundle"
    missing = run_mcpgen("check", cwd=root)
    assert missing.returncode == 1
    assert "tools added (2): Shop_GetItem, Shop_ListItems" in missing.stderr
    assert run_mcpgen("build", cwd=root).returncode == 0
    (bundle / "server.py").write_text((bundle / "server.py").read_text() + "# edited\n")
    (bundle / "notes.txt").write_text("mine")
    edited = run_mcpgen("check", cwd=root)
    assert edited.returncode == 1
    assert "files changed: server.py" in edited.stderr
    assert "files build would not write: notes.txt" in edited.stderr
    assert "tools " not in edited.stderr  # the manifest is current: no tool changed


def test_check_takes_builds_arguments_and_writes_nothing(tmp_path):
    root = project(tmp_path)
    out = tmp_path / "elsewhere"
    assert run_mcpgen("build", "protos", "-o", str(out), cwd=root).returncode == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert run_mcpgen("check", "protos", "-o", str(out), cwd=root).returncode == 0
    (root / "protos" / "shop.proto").write_text(PROTO.replace("Reads an item.", "Reads one."))
    stale = run_mcpgen("check", "protos", "-o", str(out), "-q", cwd=root)
    assert stale.returncode == 1 and "tools changed (1): Shop_GetItem" in stale.stderr
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in out.parent.iterdir()) == ["elsewhere", "mcpgen.toml", "protos"]
    broken = run_mcpgen("check", "protos/nope.proto", cwd=root)
    assert broken.returncode == 1 and "does not exist" in broken.stderr


def test_registry_and_descriptor_set_bundles_check_clean_from_digests(tmp_path):
    from tests.conftest import FIXTURES, PROTOS, protoc_descriptor_set

    registry = FIXTURES / "registry" / "gomicro-registry.json"
    fds = protoc_descriptor_set(tmp_path / "set.binpb", ["acme/users/v1/users.proto"], [PROTOS])
    for sources in ([str(registry)], [str(fds)]):
        out = tmp_path / "out"
        assert run_mcpgen("build", *sources, "-o", str(out), cwd=tmp_path).returncode == 0
        done = run_mcpgen("check", *sources, "-o", str(out), cwd=tmp_path)
        assert done.returncode == 0 and "from its digests" in done.stderr, done.stderr
