"""The build cache and shards: a cached build is byte-identical to a cold one, a change to one
package rewrites only its own files and the index, damaged or foreign entries are never trusted,
and workers render exactly what one process renders."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mcpgen import build as build_module
from mcpgen.build import build
from mcpgen.cache import Cache, key_of
from mcpgen.config import Config
from mcpgen.errors import Warnings
from tests.conftest import PROTOS


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*")
            if p.is_file()}  # fmt: skip


def make(tmp_path: Path, name: str, cache: Cache, sources: Path = PROTOS, **kw):
    out = tmp_path / name
    result = build(Config(sources=[str(sources)], out=str(out)), Warnings(), cache=cache, **kw)
    return files_of(out), result


@pytest.fixture
def protos(tmp_path: Path) -> Path:
    copy = tmp_path / "protos"
    shutil.copytree(PROTOS, copy)
    return copy


def test_cached_builds_are_byte_identical_to_cold_ones(tmp_path):
    cold, _ = make(tmp_path, "cold", Cache.disabled())
    cache = Cache(tmp_path / "cache")
    filled, first = make(tmp_path, "filling", cache)
    warm, second = make(tmp_path, "warm", cache)
    assert filled == cold and warm == cold
    assert (first.shards_cached, first.files_compiled) == (0, first.files_total)
    assert (second.shards_cached, second.files_compiled) == (second.shards, 0)
    summary = second.summary("out")
    assert "(2 skipped, from the cache: 5 of 5 packages and 18 of 18 .proto files, " in summary


def test_a_change_to_one_package_rewrites_only_its_files_and_the_index(tmp_path, protos):
    cache = Cache(tmp_path / "cache")
    before, _ = make(tmp_path, "before", cache, protos)
    users = protos / "acme" / "users" / "v2" / "users.proto"
    users.write_text(users.read_text().replace("email is new in v2.", "email is new."))
    after, result = make(tmp_path, "after", cache, protos)
    changed = sorted(n for n in after if before.get(n) != after[n])
    # the models carry no method descriptions; the descriptors no comments
    assert changed == [
        "docs/acme.users.v2.md", "manifest.json", "search/acme.users.v2.json",
        "tools/acme.users.v2.json",
    ]  # fmt: skip
    assert result.shards_cached == result.shards - 1
    assert result.files_compiled == 1  # nothing imports users.proto
    cold, _ = make(tmp_path, "cold", Cache.disabled(), protos)
    assert cold == after


def test_a_changed_import_recompiles_and_rerenders_what_uses_it(tmp_path, protos):
    cache = Cache(tmp_path / "cache")
    before, _ = make(tmp_path, "before", cache, protos)
    types = protos / "acme" / "types" / "v1" / "types.proto"
    types.write_text(types.read_text() + "\n// trailing comment\n")
    after, result = make(tmp_path, "after", cache, protos)
    assert after == make(tmp_path, "cold", Cache.disabled(), protos)[0]
    users_files = [n for n in after if "users" in n]
    assert all(before[n] == after[n] for n in users_files)  # they do not import types.proto
    assert result.files_compiled < result.files_total


def test_damaged_and_foreign_entries_are_rejected_and_rewritten(tmp_path):
    cache_dir = tmp_path / "cache"
    cold, _ = make(tmp_path, "cold", Cache(cache_dir))
    entries = sorted(p for p in cache_dir.rglob("*") if p.is_file())
    assert entries
    blobs = [p for p in entries if "/blob/" in p.as_posix()]
    protoc_entries = [p for p in entries if "/protoc/" in p.as_posix()]
    damaged = blobs[0].read_bytes()[:-7] + b"garbage"
    blobs[0].unlink()
    blobs[0].write_bytes(damaged)  # damaged (a new file: the cold bundle keeps its bytes)
    shutil.copy(protoc_entries[1], protoc_entries[0])  # foreign: another key's entry
    cache = Cache(cache_dir)
    again, result = make(tmp_path, "again", cache)
    assert again == cold
    assert cache.stats["blob"].rejected == 1 and cache.stats["protoc"].rejected == 1
    assert result.shards_cached == result.shards - 1
    third = Cache(cache_dir)
    assert make(tmp_path, "third", third)[0] == cold
    assert third.stats["blob"].rejected == 0 and third.stats["protoc"].rejected == 0


def test_an_unwritable_cache_slows_builds_down_but_never_fails_them(tmp_path):
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache folder would be")
    built, _ = make(tmp_path, "out", Cache(blocker))
    assert built == make(tmp_path, "cold", Cache.disabled())[0]


def test_workers_render_what_one_process_renders(tmp_path, monkeypatch):
    alone, _ = make(tmp_path, "alone", Cache.disabled(), workers=1)
    monkeypatch.setattr(build_module, "PARALLEL_TOOLS", 1)
    forked, _ = make(tmp_path, "forked", Cache.disabled(), workers=2)
    assert forked == alone


def test_what_workers_and_their_parent_render_is_cached(tmp_path, monkeypatch):
    monkeypatch.setattr(build_module, "PARALLEL_TOOLS", 1)
    cache = Cache(tmp_path / "cache")
    forked, _ = make(tmp_path, "forked", cache, workers=2)
    again, result = make(tmp_path, "again", Cache(tmp_path / "cache"), workers=2)
    assert again == forked
    assert (result.shards_cached, result.files_compiled) == (result.shards, 0)


def test_keys_cover_every_part_and_the_version():
    assert key_of("a", "bc") != key_of("ab", "c")
    assert len(key_of("x")) == 64


def test_the_index_records_inputs_and_every_file(tmp_path):
    built, _ = make(tmp_path, "out", Cache.disabled())
    index = json.loads(built["manifest.json"])
    assert set(index["digests"]) == set(built) - {"manifest.json"}
    assert "acme/library/v1/library.proto" in index["inputs"]["protos"]
    assert "google/protobuf/timestamp.proto" in index["inputs"]["protos"]
    assert index["inputs"]["config"].startswith("sha256:")


def test_files_too_large_for_git_hosts_are_named_in_a_warning(tmp_path, monkeypatch):
    monkeypatch.setattr(build_module, "LARGE_FILE", 20_000)
    warnings = Warnings()
    build(Config(sources=[str(PROTOS)], out=str(tmp_path / "b"), models=False), warnings)
    large = [w for w in warnings.items if "git hosts warn above 50 MB" in w]
    assert large and all(w.split(" ")[0] in files_of(tmp_path / "b") for w in large)
    assert any(w.startswith("tools/acme.types.v1.json is ") for w in large)


def test_a_rebuild_links_the_files_it_keeps_and_never_trusts_an_edited_one(tmp_path):
    cache = Cache(tmp_path / "cache")
    out = tmp_path / "bundle"
    config = Config(sources=[str(PROTOS)], out=str(out))
    build(config, Warnings(), cache=cache)
    first = files_of(out)
    shard = out / "tools" / "acme.types.v1.json"
    shard.write_bytes(shard.read_bytes().replace(b"Echo", b"Ekko"))  # edited in place
    inode = (out / "tools" / "acme.library.v1.json").stat().st_ino
    build(config, Warnings(), cache=cache)
    assert files_of(out) == first  # the edited file (and its blob, one inode) rendered again
    assert (out / "tools" / "acme.library.v1.json").stat().st_ino == inode  # linked, not copied
    assert cache.stats["blob"].rejected == 1


def test_a_cold_build_links_its_files_into_the_cache_and_a_new_folder_links_them_out(tmp_path):
    cache = Cache(tmp_path / "cache")
    first, _ = make(tmp_path, "first", cache)
    kept = tmp_path / "first" / "tools" / "acme.library.v1.json"
    assert kept.stat().st_nlink == 2  # the bundle's file and the cache's blob: bytes written once
    again, result = make(tmp_path, "again", Cache(tmp_path / "cache"))
    assert again == first and result.shards_cached == result.shards
    assert (tmp_path / "again" / "tools" / "acme.library.v1.json").stat().st_ino == (
        kept.stat().st_ino
    )


def test_a_cache_on_another_file_system_holds_copies(tmp_path, monkeypatch):
    import errno
    import os

    def no_links(source: object, target: object) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_links)
    first, _ = make(tmp_path, "first", Cache(tmp_path / "cache"))
    assert (tmp_path / "first" / "tools" / "acme.library.v1.json").stat().st_nlink == 1
    again, result = make(tmp_path, "again", Cache(tmp_path / "cache"))
    assert again == first and result.shards_cached == result.shards  # copied out of the cache


def test_other_mcpgen_code_never_reuses_entries(tmp_path, monkeypatch):
    from mcpgen import cache as cache_module

    cache = Cache(tmp_path / "cache")
    first, _ = make(tmp_path, "first", cache)
    monkeypatch.setattr(cache_module, "code_identity", lambda: "edited checkout")
    again, result = make(tmp_path, "again", cache)
    assert (result.shards_cached, result.files_compiled) == (0, result.files_total)
    assert again == first  # what the bundle records does not depend on the code's hash


def test_protoc_runs_split_the_files_by_bytes_in_name_order(tmp_path):
    from mcpgen.sources.protofiles import ProtoFiles, _chunks

    sizes = {"a.proto": 10, "b.proto": 10, "c.proto": 10, "d.proto": 970, "e.proto": 10}
    for name, size in sizes.items():
        (tmp_path / name).write_text("x" * size)
    files = ProtoFiles(roots=[tmp_path], names={n: tmp_path / n for n in sizes})
    chunks = _chunks(sorted(sizes), files, 2)
    assert [n for c in chunks for n in c] == sorted(sizes)  # every file once, in order
    assert chunks == [["a.proto", "b.proto", "c.proto", "d.proto"], ["e.proto"]]
    assert _chunks(sorted(sizes), files, 1) == [sorted(sizes)]


def test_a_failure_beside_the_workers_fails_the_build_and_keeps_the_bundle(tmp_path, monkeypatch):
    before, _ = make(tmp_path, "out", Cache.disabled())

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(build_module, "PARALLEL_TOOLS", 1)
    monkeypatch.setattr(build_module, "_write_descriptors", broken)
    with pytest.raises(OSError, match="disk full"):
        make(tmp_path, "out", Cache.disabled(), workers=2)
    assert files_of(tmp_path / "out") == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]  # no temp folder left
