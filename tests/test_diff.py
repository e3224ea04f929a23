"""`mcpgen diff`: every kind of tool change classified as a client sees it, in every format."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from mcpgen.build import build
from mcpgen.config import Config
from mcpgen.diff import Change, changed_tools, diff_manifests, load_manifest
from mcpgen.errors import UserError
from tests.conftest import run_cli, run_mcpgen

SHELF = """\
syntax = "proto3";
package acme.shelf.v1;

import "google/api/field_behavior.proto";

// Keeps books.
service Shelf {
  // Gets a book by name.
  rpc GetBook(GetBookRequest) returns (Book) {
    option idempotency_level = NO_SIDE_EFFECTS;
  }
  // Deletes a book.
  rpc DeleteBook(DeleteBookRequest) returns (Book);
}

enum Genre {
  GENRE_UNSPECIFIED = 0;
  FICTION = 1;
  POETRY = 2;
}

message GetBookRequest {
  // The book's resource name.
  string name = 1 [(google.api.field_behavior) = REQUIRED];
  int32 limit = 2;
  Genre genre = 3;
}

message DeleteBookRequest {
  string name = 1;
}

message Book {
  string title = 1;
  int32 pages = 2;
  Genre genre = 3;
  Node tree = 4;
}

message Node {
  string label = 1;
  repeated Node children = 2;
}
"""


def make_bundle(folder: Path, proto: str = SHELF, **config: Any) -> Path:
    """Build `proto` (as shelf.proto) into folder/mcp_bundle."""
    source = folder / "src" / "shelf.proto"
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_text(proto, encoding="utf-8")
    out = folder / "mcp_bundle"
    build(Config(sources=[str(source)], out=str(out), models=False, **config))
    return out


def manifest(bundle: Path) -> dict[str, Any]:
    """The bundle's tools and routes, as diff reads them."""
    return load_manifest(str(bundle))


def edited(proto_old: str, proto_new: str) -> str:
    assert proto_old in SHELF, proto_old  # the edit must apply, or the test proves nothing
    return SHELF.replace(proto_old, proto_new)


def changes_of(tmp_path: Path, new_proto: str, **config: Any) -> set[tuple[str, str, str]]:
    """(kind, tool, path) of every change from SHELF to new_proto."""
    old = manifest(make_bundle(tmp_path / "old"))
    new = manifest(make_bundle(tmp_path / "new", new_proto, **config))
    return {(c.kind, c.tool, c.path) for c in diff_manifests(old, new)}


@pytest.fixture(scope="module")
def shelf(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The manifest of SHELF, to edit by hand (tests deep-copy it)."""
    return manifest(make_bundle(tmp_path_factory.mktemp("shelf")))


def tool(manifest: dict[str, Any], name: str) -> dict[str, Any]:
    return next(t for t in manifest["tools"] if t["name"] == name)


def diff_edited(shelf: dict[str, Any], edit: Any) -> set[tuple[str, str, str]]:
    new = copy.deepcopy(shelf)
    edit(new)
    return {(c.kind, c.tool, c.path) for c in diff_manifests(shelf, new)}


# ---- proto edits -----------------------------------------------------------------------------


def test_identical_bundles_have_no_changes(tmp_path, shelf):
    assert diff_manifests(shelf, manifest(make_bundle(tmp_path))) == []


def test_a_removed_input_field_is_breaking(tmp_path):
    assert changes_of(tmp_path, edited("  int32 limit = 2;\n", "")) == {
        ("breaking", "Shelf_GetBook", "inputSchema.properties.limit"),
    }


def test_a_new_required_input_is_breaking(tmp_path):
    new = edited(
        "  Genre genre = 3;\n}\n\nmessage DeleteBookRequest",
        "  Genre genre = 3;\n  string isbn = 4 [(google.api.field_behavior) = REQUIRED];\n}\n\n"
        "message DeleteBookRequest",
    )
    assert changes_of(tmp_path, new) == {
        ("breaking", "Shelf_GetBook", "inputSchema.properties.isbn"),
    }


def test_a_new_optional_input_is_compatible(tmp_path):
    new = edited("  int32 limit = 2;\n", "  int32 limit = 2;\n  string isbn = 9;\n")
    assert changes_of(tmp_path, new) == {
        ("compatible", "Shelf_GetBook", "inputSchema.properties.isbn"),
    }


def test_an_existing_input_made_required_is_breaking_and_the_reverse_compatible(tmp_path):
    required = edited(
        "  int32 limit = 2;", "  int32 limit = 2 [(google.api.field_behavior) = REQUIRED];"
    )
    optional = edited(
        "  string name = 1 [(google.api.field_behavior) = REQUIRED];", "  string name = 1;"
    )
    assert changes_of(tmp_path / "a", required) == {
        ("breaking", "Shelf_GetBook", "inputSchema.properties.limit"),
    }
    assert changes_of(tmp_path / "b", optional) == {
        ("compatible", "Shelf_GetBook", "inputSchema.properties.name"),
    }


def test_an_input_type_change_is_breaking(tmp_path):
    assert changes_of(tmp_path, edited("  int32 limit = 2;", "  bool limit = 2;")) == {
        ("breaking", "Shelf_GetBook", "inputSchema.properties.limit.type"),
    }


def test_an_output_type_change_is_breaking_once_per_field(tmp_path):
    assert changes_of(tmp_path, edited("  int32 pages = 2;", "  string pages = 2;")) == {
        ("breaking", "Shelf_GetBook", "outputSchema.properties.pages.type"),
        ("breaking", "Shelf_DeleteBook", "outputSchema.properties.pages.type"),
    }


def test_a_removed_output_field_is_breaking_and_a_new_one_compatible(tmp_path):
    new = edited("  string title = 1;\n", "  string subtitle = 5;\n")
    assert changes_of(tmp_path, new) == {
        ("breaking", "Shelf_GetBook", "outputSchema.properties.title"),
        ("breaking", "Shelf_DeleteBook", "outputSchema.properties.title"),
        ("compatible", "Shelf_GetBook", "outputSchema.properties.subtitle"),
        ("compatible", "Shelf_DeleteBook", "outputSchema.properties.subtitle"),
    }


def test_a_removed_enum_value_breaks_inputs_and_narrows_outputs(tmp_path):
    changes = changes_of(tmp_path, edited("  POETRY = 2;\n", ""))
    assert changes == {
        ("breaking", "Shelf_GetBook", "inputSchema.properties.genre.enum"),
        ("compatible", "Shelf_GetBook", "outputSchema.properties.genre.anyOf.0.enum"),
        ("compatible", "Shelf_DeleteBook", "outputSchema.properties.genre.anyOf.0.enum"),
    }


def test_an_added_enum_value_widens_inputs_and_breaks_outputs(tmp_path):
    changes = changes_of(tmp_path, edited("  POETRY = 2;\n", "  POETRY = 2;\n  DRAMA = 3;\n"))
    assert changes == {
        ("compatible", "Shelf_GetBook", "inputSchema.properties.genre.enum"),
        ("breaking", "Shelf_GetBook", "outputSchema.properties.genre.anyOf.0.enum"),
        ("breaking", "Shelf_DeleteBook", "outputSchema.properties.genre.anyOf.0.enum"),
    }


def test_a_change_inside_a_recursive_message_is_found_through_refs(tmp_path):
    changes = changes_of(tmp_path, edited("  string label = 1;", "  bool label = 1;"))
    assert changes == {
        ("breaking", "Shelf_GetBook", "outputSchema.properties.tree.properties.label.type"),
        ("breaking", "Shelf_DeleteBook", "outputSchema.properties.tree.properties.label.type"),
    }


def test_a_renamed_rpc_is_a_removed_tool_and_a_new_one(tmp_path):
    new = edited("rpc GetBook(", "rpc FetchBook(")
    assert changes_of(tmp_path, new) == {
        ("breaking", "Shelf_GetBook", ""),
        ("compatible", "Shelf_FetchBook", ""),
    }


def test_a_renamed_tool_of_the_same_rpc_is_reported_as_a_rename(tmp_path):
    old = manifest(make_bundle(tmp_path / "old"))
    new = manifest(
        make_bundle(tmp_path / "new", rename={"acme.shelf.v1.Shelf.GetBook": "get_book"})
    )
    assert diff_manifests(old, new) == [
        Change("get_book", "name", "renamed from Shelf_GetBook to get_book", "breaking")
    ]


def test_a_removed_rpc_is_breaking_and_a_new_one_compatible(tmp_path):
    removed = edited(
        "  // Deletes a book.\n  rpc DeleteBook(DeleteBookRequest) returns (Book);\n", ""
    )
    added = edited(
        "  rpc DeleteBook(DeleteBookRequest) returns (Book);\n",
        "  rpc DeleteBook(DeleteBookRequest) returns (Book);\n"
        "  rpc ListBooks(DeleteBookRequest) returns (Book);\n",
    )
    assert changes_of(tmp_path / "a", removed) == {("breaking", "Shelf_DeleteBook", "")}
    assert changes_of(tmp_path / "b", added) == {("compatible", "Shelf_ListBooks", "")}


def test_comment_changes_are_compatible_text_changes(tmp_path):
    new = edited("// Gets a book by name.", "// Fetches one book.")
    new = new.replace("// The book's resource name.", "// Its name.")
    assert changes_of(tmp_path, new) == {
        ("compatible", "Shelf_GetBook", "description"),
        ("compatible", "Shelf_GetBook", "inputSchema.properties.name.description"),
    }


def test_a_new_side_effect_from_the_proto_is_breaking(tmp_path):
    new = edited("    option idempotency_level = NO_SIDE_EFFECTS;\n", "")
    assert changes_of(tmp_path, new) == {
        ("breaking", "Shelf_GetBook", "annotations.readOnlyHint"),
        ("breaking", "Shelf_GetBook", "annotations.idempotentHint"),
    }


# ---- hand edits: annotations, schema keywords, routes ----------------------------------------


@pytest.mark.parametrize(
    ("hint", "old", "new", "kind"),
    [
        ("readOnlyHint", True, False, "breaking"),
        ("readOnlyHint", None, True, "compatible"),  # default false
        ("destructiveHint", False, True, "breaking"),
        ("destructiveHint", False, None, "breaking"),  # default true
        ("destructiveHint", True, False, "compatible"),
        ("idempotentHint", True, False, "breaking"),
        ("idempotentHint", False, True, "compatible"),
        ("openWorldHint", False, True, "breaking"),
        ("openWorldHint", True, False, "compatible"),
        ("openWorldHint", None, True, None),  # the default, written out: no change
    ],
)
def test_annotations_that_widen_side_effects_are_breaking(shelf, hint, old, new, kind):
    def annotate(manifest: dict[str, Any], value: bool | None) -> None:
        annotations = tool(manifest, "Shelf_DeleteBook").setdefault("annotations", {})
        annotations.pop(hint, None)
        if value is not None:
            annotations[hint] = value

    before = copy.deepcopy(shelf)
    annotate(before, old)
    changes = diff_edited(before, lambda m: annotate(m, new))
    assert changes == ({(kind, "Shelf_DeleteBook", f"annotations.{hint}")} if kind else set())


def get_book_property(manifest: dict[str, Any], name: str, schema: str) -> dict[str, Any]:
    return tool(manifest, "Shelf_GetBook")[schema]["properties"][name]


@pytest.mark.parametrize(
    ("key", "before", "after", "kind"),
    [
        ("maxLength", None, 10, "breaking"),
        ("maxLength", 10, 5, "breaking"),
        ("maxLength", 5, 10, "compatible"),
        ("minLength", 1, 2, "breaking"),
        ("minLength", 2, None, "compatible"),
        ("pattern", None, "^[a-z]+$", "breaking"),
        ("pattern", "^[a-z]+$", "^[a-z0-9]+$", "breaking"),
        ("pattern", "^[a-z]+$", None, "compatible"),
        ("format", None, "email", "breaking"),
        ("type", "string", ["string", "null"], "compatible"),
        ("type", ["string", "null"], "string", "breaking"),
        ("title", None, "Name", "compatible"),
    ],
)
def test_input_keywords_that_narrow_are_breaking(shelf, key, before, after, kind):
    def set_keyword(manifest: dict[str, Any], value: Any) -> None:
        schema = get_book_property(manifest, "name", "inputSchema")
        schema.pop(key, None)
        if value is not None:
            schema[key] = value

    old = copy.deepcopy(shelf)
    set_keyword(old, before)
    changes = diff_edited(old, lambda m: set_keyword(m, after))
    assert changes == {(kind, "Shelf_GetBook", f"inputSchema.properties.name.{key}")}


@pytest.mark.parametrize(
    ("key", "after", "kind"),
    [
        ("maximum", 10, "compatible"),  # fewer values than int32: a validating client is fine
        ("maximum", None, "breaking"),  # more values than the client expects
        ("type", "integer", "breaking"),  # was ["integer", "string"]
        ("type", ["number", "string"], "breaking"),
    ],
)
def test_output_keywords_that_widen_are_breaking(shelf, key, after, kind):
    def edit(manifest: dict[str, Any]) -> None:
        schema = get_book_property(manifest, "pages", "outputSchema")
        schema.pop(key)
        if after is not None:
            schema[key] = after

    changes = diff_edited(shelf, edit)
    assert changes == {(kind, "Shelf_GetBook", f"outputSchema.properties.pages.{key}")}


def test_additional_properties_allowed_in_outputs_is_breaking(shelf):
    changes = diff_edited(
        shelf, lambda m: tool(m, "Shelf_GetBook")["outputSchema"].pop("additionalProperties")
    )
    assert changes == {("breaking", "Shelf_GetBook", "outputSchema.additionalProperties")}


def test_additional_properties_refused_in_inputs_is_breaking(shelf):
    def refuse(manifest: dict[str, Any]) -> None:
        tool(manifest, "Shelf_GetBook")["inputSchema"]["additionalProperties"] = False

    assert diff_edited(shelf, refuse) == {
        ("breaking", "Shelf_GetBook", "inputSchema.additionalProperties")
    }


def test_array_items_are_compared(shelf):
    def narrow(manifest: dict[str, Any]) -> None:
        tree = tool(manifest, "Shelf_GetBook")["outputSchema"]["$defs"]["acme.shelf.v1.Node"]
        tree["properties"]["children"]["items"] = {"type": "string"}

    items = "outputSchema.properties.tree.properties.children.items"
    assert diff_edited(shelf, narrow) == {("breaking", "Shelf_GetBook", f"{items}.type")}


def test_refs_that_loop_or_dangle_do_not_hang(shelf):
    def loop(manifest: dict[str, Any]) -> None:
        defs = tool(manifest, "Shelf_GetBook")["outputSchema"]["$defs"]
        defs["a"], defs["b"] = {"$ref": "#/$defs/b"}, {"$ref": "#/$defs/a"}
        tool(manifest, "Shelf_GetBook")["outputSchema"]["properties"]["tree"] = {
            "$ref": "#/$defs/a"
        }

    def dangle(manifest: dict[str, Any]) -> None:
        tool(manifest, "Shelf_GetBook")["outputSchema"]["properties"]["tree"] = {
            "$ref": "#/$defs/missing"
        }

    looped = diff_edited(shelf, loop)
    assert looped == {("breaking", "Shelf_GetBook", "outputSchema.properties.tree.$ref")}
    assert diff_edited(shelf, dangle) == {
        ("breaking", "Shelf_GetBook", "outputSchema.properties.tree.$ref")
    }


def test_a_changed_def_is_found_behind_unchanged_refs(shelf):
    def forest(manifest: dict[str, Any]) -> None:
        output = tool(manifest, "Shelf_GetBook")["outputSchema"]
        output["properties"]["forest"] = {
            "type": "array",
            "items": {"$ref": "#/$defs/acme.shelf.v1.Node"},
        }
        del output["properties"]["tree"]

    def retype(manifest: dict[str, Any]) -> None:
        node = tool(manifest, "Shelf_GetBook")["outputSchema"]["$defs"]["acme.shelf.v1.Node"]
        node["properties"]["label"]["type"] = "boolean"

    old = copy.deepcopy(shelf)
    forest(old)
    label = "outputSchema.properties.forest.items.properties.label.type"
    assert diff_edited(old, retype) == {("breaking", "Shelf_GetBook", label)}


def test_a_ref_inlined_compares_equal(shelf):
    def inline(manifest: dict[str, Any]) -> None:
        output = tool(manifest, "Shelf_GetBook")["outputSchema"]
        node = output["$defs"]["acme.shelf.v1.Node"]
        output["properties"]["tree"] = copy.deepcopy(node)

    assert diff_edited(shelf, inline) == set()


def test_a_moved_backend_is_a_compatible_route_change(shelf):
    def move(manifest: dict[str, Any]) -> None:
        manifest["routes"]["Shelf_GetBook"]["service"] = "acme.shelf.v2.Shelf"

    assert diff_edited(shelf, move) == {("compatible", "Shelf_GetBook", "route")}


def test_changes_are_sorted_by_tool_then_path(tmp_path):
    new = edited("  string title = 1;\n", "").replace("  int32 limit = 2;\n", "")
    old = manifest(make_bundle(tmp_path / "old"))
    changes = diff_manifests(old, manifest(make_bundle(tmp_path / "new", new)))
    assert [(c.tool, c.path) for c in changes] == [
        ("Shelf_DeleteBook", "outputSchema.properties.title"),
        ("Shelf_GetBook", "inputSchema.properties.limit"),
        ("Shelf_GetBook", "outputSchema.properties.title"),
    ]


def test_changed_tools_names_what_differs(shelf):
    new = copy.deepcopy(shelf)
    tool(new, "Shelf_GetBook")["title"] = "Get"
    new["tools"] = [t for t in new["tools"] if t["name"] != "Shelf_DeleteBook"]
    new["tools"].append({"name": "Shelf_New", "inputSchema": {"type": "object"}})
    assert changed_tools(shelf, new) == (["Shelf_New"], ["Shelf_DeleteBook"], ["Shelf_GetBook"])
    assert changed_tools(shelf, shelf) == ([], [], [])


# ---- the command: formats and exit codes -----------------------------------------------------


@pytest.fixture(scope="module")
def two_bundles(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """SHELF, and SHELF with one input removed (breaking) and one added (compatible)."""
    folder = tmp_path_factory.mktemp("two")
    new = edited("  int32 limit = 2;\n", "  string isbn = 9;\n")
    return make_bundle(folder / "old"), make_bundle(folder / "new", new)


def test_text_format_summarizes_then_groups(two_bundles):
    old, new = two_bundles
    result = run_cli("diff", str(old), str(new))
    assert result.exit_code == 1
    assert result.stdout == (
        "1 breaking, 1 compatible changes\n"
        "\n"
        "breaking:\n"
        "  Shelf_GetBook\n"
        "    inputSchema.properties.limit: input property `limit` removed\n"
        "\n"
        "compatible:\n"
        "  Shelf_GetBook\n"
        "    inputSchema.properties.isbn: new optional input `isbn`\n"
    )
    assert "--allow-breaking" in result.stderr


def test_json_format_is_a_stable_document(two_bundles):
    old, new = two_bundles
    result = run_cli("diff", str(old / "manifest.json"), str(new), "--format", "json")
    assert result.exit_code == 1
    assert json.loads(result.stdout) == {
        "breaking": [
            {
                "tool": "Shelf_GetBook",
                "path": "inputSchema.properties.limit",
                "message": "input property `limit` removed",
            }
        ],
        "compatible": [
            {
                "tool": "Shelf_GetBook",
                "path": "inputSchema.properties.isbn",
                "message": "new optional input `isbn`",
            }
        ],
        "summary": {
            "breaking": 1,
            "compatible": 1,
            "tools": {"added": [], "removed": [], "changed": ["Shelf_GetBook"]},
        },
    }


def test_markdown_format_is_a_pr_comment_with_breaking_changes_first(two_bundles):
    old, new = two_bundles
    result = run_cli("diff", str(old), str(new), "--format", "markdown")
    text = result.stdout
    assert text.startswith("## MCP tool changes: 1 breaking, 1 compatible changes\n")
    assert text.index("### Breaking changes") < text.index("### Compatible changes")
    assert "| tool | where | change |" in text
    assert (
        "| `Shelf_GetBook` | `inputSchema.properties.limit` | input property `limit` removed |"
        in text
    )
    assert "<details" not in text


def test_markdown_folds_long_lists_and_keeps_names_out_of_html(tmp_path, shelf):
    new = copy.deepcopy(shelf)
    for index in range(12):
        new["tools"].append({"name": f"T{index:02}", "inputSchema": {"type": "object"}})
    tool(new, "Shelf_GetBook")["inputSchema"]["properties"].pop("limit")
    tool(new, "Shelf_GetBook")["inputSchema"]["properties"]["</details>|x"] = {}
    (tmp_path / "old.json").write_text(json.dumps(shelf), encoding="utf-8")
    (tmp_path / "new.json").write_text(json.dumps(new), encoding="utf-8")
    result = run_cli("diff", "old.json", "new.json", "--format", "markdown", cwd=tmp_path)
    text = result.stdout
    assert "<details><summary>13 compatible changes</summary>" in text
    assert [line for line in text.splitlines() if line.startswith(("<details", "</details"))] == [
        "<details><summary>13 compatible changes</summary>",
        "</details>",
    ]  # the name stays in code spans, where GitHub reads no HTML, and the table holds
    assert (
        "| `inputSchema.properties.</details>\\|x` | new optional input `</details>\\|x` |" in text
    )
    assert "### Breaking changes\n\n| tool |" in text  # a short list stays open


def test_exit_codes(two_bundles, tmp_path):
    old, new = two_bundles
    assert run_cli("diff", str(old), str(new)).exit_code == 1
    assert run_cli("diff", str(old), str(new), "--allow-breaking").exit_code == 0
    assert run_cli("diff", str(new), str(new)).exit_code == 0
    compatible = make_bundle(
        tmp_path, edited("  int32 limit = 2;\n", "  int32 limit = 2;\n  int32 x = 8;\n")
    )
    result = run_cli("diff", str(old), str(compatible))
    assert result.exit_code == 0
    assert result.stdout.startswith("0 breaking, 1 compatible changes\n")
    assert result.stderr == ""


# ---- git revisions ---------------------------------------------------------------------------


def git(repo: Path, *args: str) -> None:
    identity = ["-c", "user.name=mcpgen tests", "-c", "user.email=tests@example.invalid"]
    subprocess.run(["git", *identity, *args], cwd=repo, check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository with SHELF's bundle committed, then rebuilt with `limit` removed."""
    git(tmp_path, "init", "-q", "-b", "main")
    make_bundle(tmp_path)
    git(tmp_path, "add", "mcp_bundle", "src")
    git(tmp_path, "commit", "-q", "-m", "bundle")
    make_bundle(tmp_path, edited("  int32 limit = 2;\n", ""))
    return tmp_path


@pytest.mark.parametrize(
    "old",
    ["main:mcp_bundle/manifest.json", "HEAD:mcp_bundle", "main:mcp_bundle/", "main:./mcp_bundle"],
)
def test_a_git_revision_is_read_with_git_show(repo, old):
    result = run_cli("diff", old, "mcp_bundle", "--format", "json", cwd=repo)
    assert result.exit_code == 1, result.output
    breaking = json.loads(result.stdout)["breaking"]
    assert [(c["tool"], c["path"]) for c in breaking] == [
        ("Shelf_GetBook", "inputSchema.properties.limit")
    ]


def test_a_version_1_bundle_committed_before_the_upgrade_is_still_compared(tmp_path, shelf):
    git(tmp_path, "init", "-q", "-b", "main")
    folder = tmp_path / "mcp_bundle"
    folder.mkdir()
    old_layout = {"manifestVersion": 1, "generator": "mcpgen 0.1.0", **shelf}
    (folder / "manifest.json").write_text(json.dumps(old_layout), encoding="utf-8")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-q", "-m", "bundle, version 1")
    shutil.rmtree(folder)
    make_bundle(tmp_path, edited("  int32 limit = 2;\n", ""))
    result = run_cli("diff", "main:mcp_bundle", "mcp_bundle", "--format", "json", cwd=tmp_path)
    assert result.exit_code == 1, result.output
    breaking = json.loads(result.stdout)["breaking"]
    assert [(c["tool"], c["path"]) for c in breaking] == [
        ("Shelf_GetBook", "inputSchema.properties.limit")
    ]


def test_a_path_on_disk_wins_over_a_git_revision(tmp_path, shelf):
    old_layout = {"manifestVersion": 1, "generator": "mcpgen 0.1.0", **shelf}
    (tmp_path / "v1:manifest.json").write_text(json.dumps(old_layout), encoding="utf-8")
    assert load_manifest(str(tmp_path / "v1:manifest.json")) == shelf
    result = run_cli("diff", "v1:manifest.json", "v1:manifest.json", cwd=tmp_path)
    assert result.exit_code == 0, result.output


# ---- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "spec", "message"),
    [
        (None, "missing.json", "no bundle at missing.json"),
        ("{not json", "bad.json", "bad.json is not JSON"),
        ('{"tools": []}', "bad.json", "bad.json is not an mcpgen manifest"),
        ('{"manifestVersion": 3, "tools": []}', "bad.json", "has manifestVersion 3"),
        ('{"manifestVersion": 2, "tools": []}', "bad.json", "is not a readable mcpgen index"),
        ('{"manifestVersion": 1, "tools": [1]}', "bad.json", "is not an mcpgen manifest"),
        (None, "main:mcp_bundle", "is not in a git repository"),
    ],
)
def test_bad_input_is_a_clear_error_without_a_traceback(tmp_path, make, spec, message):
    if make is not None:
        (tmp_path / spec).write_text(make, encoding="utf-8")
    (tmp_path / "empty").mkdir()
    result = run_mcpgen("diff", spec, "empty", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("error: ")
    assert message in result.stderr.splitlines()[0]
    assert "Traceback" not in result.stderr


def test_unknown_revisions_and_paths_in_git_are_clear_errors(repo):
    unknown = run_mcpgen("diff", "nope:mcp_bundle", "mcp_bundle", cwd=repo)
    assert unknown.returncode == 1
    assert "error: unknown git revision 'nope'" in unknown.stderr
    assert "Traceback" not in unknown.stderr
    missing = run_mcpgen("diff", "main:elsewhere/manifest.json", "mcp_bundle", cwd=repo)
    assert missing.returncode == 1
    assert "error: main:elsewhere/manifest.json does not exist in git" in missing.stderr
    folder = run_mcpgen("diff", "main:src", "mcp_bundle", cwd=repo)
    assert "error: main:src/manifest.json does not exist in git" in folder.stderr


def test_a_folder_without_a_manifest_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r"holds no manifest\.json"):
        load_manifest(str(tmp_path / "empty"))


def test_two_bundles_are_compared_by_the_shards_that_differ(tmp_path, monkeypatch):
    from mcpgen.contract import BundleView
    from mcpgen.diff import load_pair
    from tests.conftest import PROTOS

    protos = tmp_path / "protos"
    shutil.copytree(PROTOS, protos)
    old, new = tmp_path / "old", tmp_path / "new"
    build(Config(sources=[str(protos)], out=str(old), models=False))
    types = protos / "acme" / "types" / "v1" / "types.proto"
    text = types.read_text()
    assert "rpc EchoWellKnown(WellKnown) returns (WellKnown);" in text
    types.write_text(text.replace("  rpc EchoWellKnown(WellKnown) returns (WellKnown);\n", ""))
    build(Config(sources=[str(protos)], out=str(new), models=False))
    full = diff_manifests(load_manifest(str(old)), load_manifest(str(new)))
    read: list[str] = []
    shard = BundleView.shard
    monkeypatch.setattr(
        BundleView, "shard", lambda view, name: read.append(name) or shard(view, name)
    )
    assert diff_manifests(*load_pair(str(old), str(new))) == full
    assert read == ["acme.types.v1", "acme.types.v1"]  # one shard of five, once per side
    assert [(c.tool, c.message) for c in full] == [("Types_EchoWellKnown", "tool removed")]
