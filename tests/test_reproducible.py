"""Reproducible bundles: the same inputs give byte-identical bundles (every file of them) on any
machine, from any working directory, under any PYTHONHASHSEED, whatever order the sources are
listed or found in."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import FIXTURES, PROTOS, ROOT

REGISTRY = FIXTURES / "registry"


def bundle_bytes(folder: Path) -> dict[str, bytes]:
    """Every file of a bundle, by its path inside the bundle."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def build(out: Path, sources: list[str], cwd: Path, seed: str) -> dict[str, bytes]:
    env = {**os.environ, "PYTHONHASHSEED": seed}
    done = subprocess.run(
        [sys.executable, "-m", "mcpgen", "build", *sources, "-o", str(out), "--no-cache"],
        cwd=cwd, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return bundle_bytes(out)


def test_every_file_is_identical_from_anywhere_in_any_order(tmp_path):
    elsewhere = tmp_path / "checkout" / "protos"
    shutil.copytree(PROTOS, elsewhere)
    files = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    shuffled = files[:]
    random.Random(7).shuffle(shuffled)
    assert shuffled != files
    reference = build(tmp_path / "a", [str(PROTOS)], ROOT, "0")
    from_files = build(tmp_path / "b", ["-I", ".", *files], elsewhere, "1")
    from_shuffled = build(
        tmp_path / "c", ["-I", "protos", *(f"protos/{f}" for f in shuffled)], elsewhere.parent, "42"
    )
    assert set(reference) >= {
        "manifest.json", "server.py", "TOOLS.md", "tools/acme.library.v1.json",
        "docs/acme.library.v1.md", "models/acme_library_v1.py",
        "descriptors/acme.library.v1.binpb",
    }  # fmt: skip
    assert from_files == reference
    assert from_shuffled == reference
    for data in reference.values():
        assert str(tmp_path).encode() not in data and str(ROOT).encode() not in data


def test_registry_snapshots_in_any_order_give_the_same_bundle(tmp_path):
    services = json.loads((REGISTRY / "gomicro-registry.json").read_text())
    for service in services:  # what another registry dump could print: other orders
        service["endpoints"].reverse()
        service["nodes"].reverse()
    reordered = tmp_path / "reordered.json"
    reordered.write_text(json.dumps(services[::-1], indent=4))
    protos = str(REGISTRY / "protos")
    reference = build(tmp_path / "a", [str(REGISTRY / "gomicro-registry.json"), protos], ROOT, "1")
    other = build(tmp_path / "b", [protos, str(reordered)], tmp_path, "99")
    assert other == reference
