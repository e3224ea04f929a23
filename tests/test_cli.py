"""`mcpgen build` and `mcpgen tools` as a user runs them: inputs, config, errors, the bundle."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

from tests.conftest import PROTOS, ROOT, protoc_descriptor_set, read_tools, run_cli, run_mcpgen


def manifest_of(out: Path) -> dict:
    return read_tools(out)


def index_of(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text(encoding="utf-8"))


def tool_names(out: Path) -> list[str]:
    return [t["name"] for t in manifest_of(out)["tools"]]


# ---- the main job --------------------------------------------------------------------------


def test_build_fixtures_writes_a_manifest_with_every_unary_and_server_streaming_rpc(tmp_path):
    out = tmp_path / "bundle"
    result = run_cli("build", str(PROTOS), "-o", str(out))
    assert result.exit_code == 0, result.output
    index = index_of(out)
    assert index["manifestVersion"] == 2
    assert index["generator"].startswith("mcpgen ")
    assert index["tools"] == 21
    manifest = manifest_of(out)
    names = [t["name"] for t in manifest["tools"]]
    for shard in index["shards"].values():  # each shard's tools sorted by name
        assert shard["tools"] == sorted(shard["tools"])
        listed = json.loads((out / shard["files"]["tools"]).read_text())["tools"]
        assert [t["name"] for t in listed] == shard["tools"]
    assert sorted(n for s in index["shards"].values() for n in s["tools"]) == names
    assert "Library_WatchBooks" in names  # server streaming
    assert "Library_Discuss" not in names and "Library_ImportBooks" not in names
    assert {"v1_Users_GetUser", "v2_Users_GetUser"} <= set(names)
    assert set(manifest["routes"]) == set(names)
    assert manifest["routes"]["Library_GetBook"] == {
        "kind": "grpc",
        "service": "acme.library.v1.Library",
        "method": "GetBook",
        "path": "/acme.library.v1.Library/GetBook",
        "streaming": "unary",
    }
    assert manifest["routes"]["Library_WatchBooks"]["streaming"] == "server"
    for tool in manifest["tools"]:
        assert list(tool)[:5] == ["name", "title", "description", "inputSchema", "outputSchema"]


def test_build_warns_about_skipped_streaming_rpcs_and_prints_a_summary(tmp_path):
    result = run_mcpgen("build", str(PROTOS), "-o", str(tmp_path / "b"))
    assert result.returncode == 0, result.stderr
    assert "acme.library.v1.Library.Discuss (bidi streaming)" in result.stderr
    assert "acme.library.v1.Library.ImportBooks (client streaming)" in result.stderr
    assert "21 tools from 5 services" in result.stderr.splitlines()[-1]
    quiet = run_mcpgen("build", str(PROTOS), "-o", str(tmp_path / "b"), "--quiet")
    assert quiet.returncode == 0 and quiet.stderr == ""


def test_tools_command_lists_the_bundle(tmp_path):
    out = tmp_path / "bundle"
    run_cli("build", str(PROTOS), "-o", str(out))
    listing = run_cli("tools", str(out))
    assert listing.exit_code == 0
    assert "Library_GetBook  —  Get Book" in listing.output
    assert "route:  grpc /acme.library.v1.Library/GetBook" in listing.output
    assert "inputs: name*" in listing.output
    missing = run_cli("tools", str(tmp_path / "nothing"))
    assert missing.exit_code == 1 and "run `mcpgen build` first" in missing.output


# ---- determinism and atomic writes -----------------------------------------------------------


def test_same_inputs_give_byte_identical_bundles_from_anywhere(tmp_path):
    copy = tmp_path / "elsewhere" / "protos"
    shutil.copytree(PROTOS, copy)
    first = tmp_path / "one"
    second = tmp_path / "two"
    env_runs = [
        (run_mcpgen, ("build", str(PROTOS), "-o", str(first)), ROOT, "1"),
        (run_mcpgen, ("build", "protos", "-o", str(second)), copy.parent, "977"),
    ]
    for runner, args, cwd, seed in env_runs:
        os.environ["PYTHONHASHSEED"] = seed
        try:
            assert runner(*args, cwd=cwd).returncode == 0
        finally:
            del os.environ["PYTHONHASHSEED"]
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    for name in files:
        data = (first / name).read_bytes()
        assert data == (second / name).read_bytes(), name
        assert str(tmp_path).encode() not in data and str(ROOT).encode() not in data


def test_a_failed_build_leaves_the_existing_bundle_untouched(tmp_path):
    out = tmp_path / "bundle"
    assert run_cli("build", str(PROTOS), "-o", str(out)).exit_code == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    bad = tmp_path / "bad.proto"
    bad.write_text('syntax = "proto3";\nmessage Broken {\n  strin name = 1;\n}\n')
    result = run_cli("build", str(bad), "-o", str(out))
    assert result.exit_code == 1
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.proto", "bundle"]  # no temp left


def test_refuses_to_replace_a_folder_that_is_not_a_bundle(tmp_path):
    precious = tmp_path / "src"
    precious.mkdir()
    (precious / "keep.txt").write_text("mine")
    result = run_cli("build", str(PROTOS), "-o", str(precious))
    assert result.exit_code == 1
    assert "is not empty and holds no manifest.json" in result.output
    assert (precious / "keep.txt").read_text() == "mine"


# ---- sources ---------------------------------------------------------------------------------


def test_descriptor_set_gives_the_same_tools_as_the_proto_files(tmp_path):
    files = ["acme/library/v1/library.proto", "acme/types/v1/types.proto"]
    fds = protoc_descriptor_set(tmp_path / "set.binpb", files, [PROTOS])
    from_protos = tmp_path / "a"
    from_set = tmp_path / "b"
    assert run_cli("build", *[str(PROTOS / f) for f in files], "-I", str(PROTOS),
                   "-o", str(from_protos)).exit_code == 0  # fmt: skip
    assert run_cli("build", str(fds), "-o", str(from_set)).exit_code == 0
    by_name = {t["name"]: t for t in manifest_of(from_set)["tools"]}
    for tool in manifest_of(from_protos)["tools"]:
        other = by_name[tool["name"]]
        # a descriptor set without source info has no comments; everything else is the same
        assert other["inputSchema"].get("required") == tool["inputSchema"].get("required")
        assert list(other["inputSchema"]["properties"]) == list(tool["inputSchema"]["properties"])
        assert other.get("annotations") == tool.get("annotations")
    assert manifest_of(from_set)["routes"] == manifest_of(from_protos)["routes"]


def test_gzipped_descriptor_set_and_buf_image_imports(tmp_path):
    fds_path = protoc_descriptor_set(
        tmp_path / "set.binpb", ["acme/users/v1/users.proto", "acme/users/v2/users.proto"], [PROTOS]
    )
    fds = descriptor_pb2.FileDescriptorSet.FromString(fds_path.read_bytes())
    # a buf image marks imported files with ImageFile.buf_extension.is_import (field 8042)
    image = b""
    for f in fds.file:
        body = f.SerializeToString()
        if f.name == "acme/users/v1/users.proto":
            body += bytes([0xD2, 0xF6, 0x03, 0x02, 0x08, 0x01])  # field 8042, {is_import: true}
        image += bytes([0x0A]) + _varint(len(body)) + body
    image_path = tmp_path / "image.binpb.gz"
    image_path.write_bytes(gzip.compress(image))
    out = tmp_path / "out"
    result = run_cli("build", str(image_path), "-o", str(out))
    assert result.exit_code == 0, result.output
    assert tool_names(out) == ["Users_GetUser"]  # v1 is an import: not exposed, no collision
    assert manifest_of(out)["routes"]["Users_GetUser"]["service"] == "acme.users.v2.Users"


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def test_folder_names_files_relative_to_the_import_root_that_holds_them(tmp_path):
    root = tmp_path / "proto"
    (root / "shop" / "v1").mkdir(parents=True)
    (root / "shop" / "v1" / "shop.proto").write_text(
        'syntax = "proto3";\npackage shop.v1;\nimport "shop/v1/types.proto";\n'
        "service Shop { rpc Buy(Item) returns (Item); }\n"
    )
    (root / "shop" / "v1" / "types.proto").write_text(
        'syntax = "proto3";\npackage shop.v1;\nmessage Item { string sku = 1; }\n'
    )
    out = tmp_path / "out"
    # the folder given is inside the -I root: names are shop/v1/..., so the import resolves
    result = run_cli("build", str(root / "shop"), "-I", str(root), "-o", str(out))
    assert result.exit_code == 0, result.output
    assert tool_names(out) == ["Shop_Buy"]
    # without -I the folder itself is the root and the import "shop/v1/types.proto" fails
    failed = run_cli("build", str(root / "shop"), "-o", str(out))
    assert failed.exit_code == 1
    assert "shop/v1/types.proto" in failed.output and "-I DIR" in failed.output


def test_well_known_and_googleapis_imports_need_no_vendoring(tmp_path):
    proto = tmp_path / "svc.proto"
    proto.write_text(
        'syntax = "proto3";\npackage svc;\n'
        'import "google/api/annotations.proto";\nimport "google/rpc/status.proto";\n'
        'import "google/type/date.proto";\nimport "google/protobuf/timestamp.proto";\n'
        "service S { rpc M(google.type.Date) returns (google.rpc.Status) {\n"
        '  option (google.api.http) = {get: "/v1/m"}; } }\n'
    )
    out = tmp_path / "out"
    result = run_cli("build", str(proto), "-o", str(out))
    assert result.exit_code == 0, result.output
    tool = manifest_of(out)["tools"][0]
    assert tool["annotations"] == {"readOnlyHint": True}
    assert set(tool["inputSchema"]["properties"]) == {"year", "month", "day"}


# ---- bad input: a message, a non-zero exit, never a traceback --------------------------------


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        ("syntax", ["bad.proto:3:", "fix the .proto file"]),
        ("import", ["bad.proto:2:", "missing/thing.proto", "-I DIR"]),
        ("missing", ["does not exist"]),
        ("corrupt", ["not a FileDescriptorSet", "set.binpb"]),
        ("kind", ["cannot tell what kind of source", "notes.txt"]),
    ],
)
def test_bad_input_is_a_clear_message_and_exit_1(tmp_path, setup, expected):
    if setup == "syntax":
        (tmp_path / "bad.proto").write_text('syntax = "proto3";\nmessage B {\n  strin x = 1;\n}\n')
        source = "bad.proto"
    elif setup == "import":
        (tmp_path / "bad.proto").write_text('syntax = "proto3";\nimport "missing/thing.proto";\n')
        source = "bad.proto"
    elif setup == "missing":
        source = "nowhere.proto"
    elif setup == "corrupt":
        (tmp_path / "set.binpb").write_bytes(b"\x0a\xff\xff\xff\x0fgarbage")
        source = "set.binpb"
    else:
        (tmp_path / "notes.txt").write_text("hello")
        source = "notes.txt"
    result = run_mcpgen("build", source, "-o", "out", cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ")
    for text in expected:
        assert text in result.stderr
    assert not (tmp_path / "out").exists()


def test_comment_text_reaches_the_manifest_verbatim_as_data(tmp_path):
    hostile = 'Say "hi" {{ 7*7 }} {% raw %} <b>x</b> \\n `rm -rf /` ${HOME} \u00e9\u4e2d'
    proto = tmp_path / "h.proto"
    proto.write_text(
        f'syntax = "proto3";\npackage h;\nservice S {{\n  // {hostile}\n'
        "  rpc M(R) returns (R);\n}\nmessage R {}\n",
        encoding="utf-8",
    )
    out = tmp_path / "out"
    assert run_cli("build", str(proto), "-o", str(out)).exit_code == 0
    assert manifest_of(out)["tools"][0]["description"] == hostile


# ---- config -----------------------------------------------------------------------------------


def _library_config(body: str) -> str:
    return (
        '[tool.mcpgen]\nsources = ["protos/acme/library/v1/library.proto"]\n'
        'import_paths = ["protos"]\nout = "generated"\n' + body
    )


def test_config_in_pyproject_drives_the_build(tmp_path):
    shutil.copytree(PROTOS, tmp_path / "protos")
    (tmp_path / "pyproject.toml").write_text(
        _library_config(
            'exclude = ["*.LegacySearch", "*.Watch*"]\n'
            'name_template = "library_{method}"\n'
            '[tool.mcpgen.rename]\n"acme.library.v1.Library.GetBook" = "fetch_book"\n'
            '[tool.mcpgen.descriptions]\n"acme.library.v1.Library.DeleteBook" = "Deletes."\n'
            '[tool.mcpgen.annotations."acme.library.v1.Library.DeleteBook"]\n'
            "destructiveHint = true\nidempotentHint = true\n"
        )
    )
    result = run_cli("build", cwd=tmp_path)
    assert result.exit_code == 0, result.output
    out = tmp_path / "generated"
    assert tool_names(out) == [
        "fetch_book", "library_CreateBook", "library_DeleteBook", "library_ListBooks",
        "library_UpdateBook",
    ]  # fmt: skip
    delete = next(t for t in manifest_of(out)["tools"] if t["name"] == "library_DeleteBook")
    assert delete["description"] == "Deletes."
    assert delete["annotations"] == {"destructiveHint": True, "idempotentHint": True}


def test_mcpgen_toml_include_and_full_profile(tmp_path):
    shutil.copytree(PROTOS, tmp_path / "protos")
    (tmp_path / "mcpgen.toml").write_text(
        'sources = ["protos"]\ninclude = ["acme.types.v1.Types.EchoTree"]\n'
        'schema_profile = "full"\nout = "b"\n'
    )
    assert run_cli("build", cwd=tmp_path).exit_code == 0
    [tool] = manifest_of(tmp_path / "b")["tools"]
    assert tool["name"] == "Types_EchoTree"
    assert "$defs" in tool["inputSchema"]  # the precise rendering


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('sourcez = ["x"]\n', ["unknown config key 'sourcez'", "pyproject.toml:5", "'sources'"]),
        ("recursion_depth = 0\n", ["recursion_depth", "an integer from 1 to 32"]),
        ('schema_profile = "tiny"\n', ["schema_profile", "portable, full"]),
        ('name_template = "{service}"\n', ["must use {method}"]),
        ('[tool.mcpgen.rename]\n"acme.Nope.Get" = "x"\n', ["[rename] names 'acme.Nope.Get'"]),
        (
            '[tool.mcpgen.rename]\n"acme.library.v1.Library.GetBook" = "bad name!"\n',
            ["not a valid tool name"],
        ),
    ],
)
def test_config_mistakes_are_errors_that_name_the_file(tmp_path, body, expected):
    shutil.copytree(PROTOS, tmp_path / "protos")
    (tmp_path / "pyproject.toml").write_text(_library_config(body))
    result = run_mcpgen("build", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "pyproject.toml" in result.stderr
    for text in expected:
        assert text in result.stderr


def test_explicit_config_file_and_missing_config(tmp_path):
    shutil.copytree(PROTOS, tmp_path / "protos")
    (tmp_path / "ci.toml").write_text('sources = ["protos/acme/users"]\nout = "u"\n')
    assert run_cli("build", "--config", "ci.toml", cwd=tmp_path).exit_code == 0
    assert tool_names(tmp_path / "u") == ["v1_Users_GetUser", "v2_Users_GetUser"]
    missing = run_mcpgen("build", "--config", "nope.toml", cwd=tmp_path)
    assert missing.returncode == 1 and "does not exist" in missing.stderr
    nothing = run_mcpgen("build", cwd=tmp_path)
    assert nothing.returncode == 1 and "no sources to build" in nothing.stderr


def test_protoc_split_across_processes_gives_the_same_bundle(tmp_path, monkeypatch):
    from mcpgen.sources import protofiles

    single = tmp_path / "single"
    assert run_cli("build", str(PROTOS), "-o", str(single), "--no-cache").exit_code == 0
    monkeypatch.setattr(protofiles, "PARALLEL_THRESHOLD", 2)
    monkeypatch.setattr(protofiles.os, "cpu_count", lambda: 3)
    split = tmp_path / "split"
    assert run_cli("build", str(PROTOS), "-o", str(split), "--no-cache").exit_code == 0
    for path in single.rglob("*"):
        if path.is_file():
            assert (split / path.relative_to(single)).read_bytes() == path.read_bytes()
    (tmp_path / "protos").mkdir()
    for i in range(4):
        (tmp_path / "protos" / f"f{i}.proto").write_text(
            f'syntax = "proto3";\npackage p{i};\nmessage M {{ {"strin" if i == 3 else "string"}'
            " x = 1; }\n"
        )
    failed = run_cli("build", str(tmp_path / "protos"), "-o", str(tmp_path / "out"), "--no-cache")
    assert failed.exit_code == 1
    assert "f3.proto:3:" in failed.output


def test_tools_json_is_the_whole_bundle_as_one_document(tmp_path):
    out = tmp_path / "bundle"
    assert run_cli("build", str(PROTOS), "-o", str(out)).exit_code == 0
    done = run_mcpgen("tools", str(out), "--json")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert set(document) == {"tools", "routes"}
    assert sorted(t["name"] for t in document["tools"]) == tool_names(out)
    assert document["routes"] == manifest_of(out)["routes"]
    index = index_of(out)  # shard by shard, in the index's order, each sorted by name
    assert [t["name"] for t in document["tools"]] == [
        name for shard in sorted(index["shards"]) for name in index["shards"][shard]["tools"]
    ]
    piped = subprocess.run(
        f"{sys.executable} -m mcpgen tools {out} --json | head -c 10",
        shell=True, capture_output=True, text=True,
    )  # fmt: skip
    assert piped.stdout == '{"tools": ' and "Traceback" not in piped.stderr
    assert "internal error" not in piped.stderr


def test_server_settings_default_to_the_flags_defaults(monkeypatch):
    """One typed object for the server: what no flag gives is what ServerSettings() holds."""
    import click

    from mcpgen.runtime.cli import server_options
    from mcpgen.runtime.settings import ServerSettings

    for name in [k for k in os.environ if k.startswith("MCPGEN_")]:
        monkeypatch.delenv(name)
    seen = {}

    @click.command()
    @server_options
    def command(**flags):
        seen["settings"] = ServerSettings.from_flags(flags)

    command([], standalone_mode=False)
    assert seen["settings"] == ServerSettings()
    command(["--tool-timeout", "A=2.5", "--rate-limit", "5:10", "--scope", "A=x,y",
             "--forward-header", "Authorization", "--toolset", "t", "--read-only"],
            standalone_mode=False)  # fmt: skip
    settings = seen["settings"]
    assert settings.tool_timeouts == {"A": 2.5}
    assert (settings.rate_limit.per_second, settings.rate_limit.burst) == (5.0, 10.0)
    assert settings.scopes == {"A": ("x", "y")}
    assert settings.forward_headers == ("authorization",)
    assert settings.selection.toolsets == ("t",) and settings.selection.read_only
