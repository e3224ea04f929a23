"""Bundle on disk: deterministic bytes, written all at once.

Same inputs give byte-identical files: tools sorted by name, no timestamps, no absolute paths.
The bundle is written into a temporary folder beside OUT and swapped in with renames, so a build
that fails at any point leaves an existing bundle untouched.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import orjson

from mcpgen import __version__
from mcpgen.errors import UserError
from mcpgen.tools import ToolSpec

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1


def to_json(document: Any) -> bytes:
    """Pretty JSON (2-space indent, key order as built), UTF-8, ending in a newline.

    orjson rather than the standard library: its pretty printer is ~20x faster, which matters
    for bundles of tens of megabytes.
    """
    return orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)


def manifest(specs: list[ToolSpec]) -> dict[str, Any]:
    return {
        "manifestVersion": MANIFEST_VERSION,
        "generator": f"mcpgen {__version__}",
        "tools": [s.tool for s in specs],
        "routes": {s.name: s.route for s in specs},
    }


def bundle_files(specs: list[ToolSpec]) -> dict[str, bytes]:
    """Every file of the bundle, by name, as the bytes to write."""
    return {MANIFEST: to_json(manifest(specs))}


def _check_target(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"output {out} exists and is not a folder", hint="choose another -o")
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST).is_file():
        raise UserError(
            f"output folder {out} is not empty and holds no {MANIFEST}",
            hint="mcpgen replaces its output folder whole; point -o at a new or bundle folder",
        )


def write_bundle(out: Path, files: dict[str, bytes]) -> None:
    _check_target(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.new-", dir=out.parent))
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)
        for name, data in files.items():
            target = tmp / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.rename(out, old / "bundle")
            try:
                os.rename(tmp, out)
            except OSError:
                os.rename(old / "bundle", out)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
