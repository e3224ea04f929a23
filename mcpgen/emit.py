"""Bundle on disk: deterministic bytes, written all at once.

Same inputs give byte-identical files: tools sorted by name, no timestamps, no absolute paths.
The bundle is written into a temporary folder beside OUT and swapped in with renames, so a build
that fails at any point leaves an existing bundle untouched.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from google.protobuf import descriptor_pb2

from mcpgen import __version__
from mcpgen.catalog_md import tools_markdown
from mcpgen.errors import UserError
from mcpgen.model import Catalog
from mcpgen.pymodels import models_module
from mcpgen.templating import render
from mcpgen.tools import ToolSpec

MANIFEST = "manifest.json"
DESCRIPTORS = "descriptors.binpb"
SERVER = "server.py"
MODELS = "models.py"
CATALOG = "TOOLS.md"
MANIFEST_VERSION = 1


def to_json(document: Any, newline: bool = True) -> bytes:
    """Pretty JSON (2-space indent, key order as built), UTF-8, ending in a newline.

    orjson rather than the standard library: its pretty printer is ~20x faster, which matters
    for bundles of tens of megabytes.
    """
    option = orjson.OPT_INDENT_2 | (orjson.OPT_APPEND_NEWLINE if newline else 0)
    return orjson.dumps(document, option=option)


@dataclass(frozen=True, slots=True)
class ToolJson:
    """A tool ready for the manifest: its name, route, and its Tool object as JSON bytes.

    The bytes are indented to sit at their place in the manifest (two levels deep), so the
    manifest is written as a sequence of chunks without copying any tool again.
    """

    name: str
    route: dict[str, Any]
    json: bytes

    @classmethod
    def of(cls, spec: ToolSpec) -> ToolJson:
        return cls(spec.name, spec.route, _nested(to_json(spec.tool, newline=False), 2))


def _nested(json: bytes, depth: int) -> bytes:
    """Pretty JSON of a value re-indented to sit `depth` levels deep."""
    return json.replace(b"\n", b"\n" + b"  " * depth)


#: A file of the bundle as the chunks of bytes to write one after another.
Chunks = list[bytes]


def manifest_chunks(tools: list[ToolJson], profile: str | None = None) -> Chunks:
    """The manifest, byte for byte as `to_json` would print the whole document; `profile` is
    the client the inputSchemas were made for (`--profile`), which the server must know.

    Tools arrive serialized; only the frame is written here. Chunks rather than one bytes
    object: for 12,000 tools the manifest is ~450 MB, and joining would copy it again.
    """
    frame: dict[str, Any] = {
        "manifestVersion": MANIFEST_VERSION,
        "generator": f"mcpgen {__version__}",
    }
    if profile is not None:
        frame["profile"] = profile
    head = to_json(frame, newline=False)[:-2]  # drop the closing "\n}"
    routes = to_json({t.name: t.route for t in tools}, newline=False)
    chunks = [head, b',\n  "tools": ']
    if tools:
        chunks.append(b"[\n    ")
        for i, tool in enumerate(tools):
            if i:
                chunks.append(b",\n    ")
            chunks.append(tool.json)
        chunks.append(b"\n  ]")
    else:
        chunks.append(b"[]")
    chunks += [b',\n  "routes": ', _nested(routes, 1), b"\n}\n"]
    return chunks


def descriptor_set(catalog: Catalog, tools: list[ToolJson]) -> bytes:
    """The FileDescriptorSet the server forwards with: the files defining the tools' gRPC
    services and everything they import, dependencies first, without source info (the text
    already lives in the manifest)."""
    files = {f.name: f for f in catalog.descriptor_files}
    services = {t.route["service"] for t in tools if t.route["kind"] == "grpc"}
    messages = {t.route[k] for t in tools for k in ("request", "response") if k in t.route}
    wanted: set[str] = set()
    todo = [f.name for f in catalog.descriptor_files
            if any(_qualified(f.package, s.name) in services for s in f.service)
            or any(_defines(f, m) for m in messages)]  # fmt: skip
    while todo:
        name = todo.pop()
        if name not in wanted:
            wanted.add(name)
            todo += files[name].dependency
    out = descriptor_pb2.FileDescriptorSet()
    for f in catalog.descriptor_files:  # already dependencies first, in a deterministic order
        if f.name in wanted:
            copy = out.file.add()
            copy.CopyFrom(f)
            copy.ClearField("source_code_info")
    return out.SerializeToString(deterministic=True)


def _defines(f: descriptor_pb2.FileDescriptorProto, message: str) -> bool:
    """Whether `f` declares `message` (top level or nested)."""
    return any(
        message == (q := _qualified(f.package, m.name)) or message.startswith(q + ".")
        for m in f.message_type
    )


def _qualified(package: str, name: str) -> str:
    return f"{package}.{name}" if package else name


def server_module(name: str, version: str, tools: int) -> bytes:
    """The generated server: a few lines that hand the bundle folder to `mcpgen.runtime`."""
    text = render(
        "server.py.j2", server_name=name, version=version, tools=tools, generator=__version__
    )
    return text.encode()


def bundle_files(
    tools: list[ToolJson],
    catalog: Catalog,
    server_name: str,
    server_version: str | None = None,
    models: bool = True,
    profile: str | None = None,
) -> dict[str, Chunks]:
    """Every file of the bundle, by name, as the chunks to write (models.py when `models`).

    The server's version defaults to mcpgen's version plus a digest of the manifest, so a
    running server names the exact bundle it serves.
    """
    manifest = manifest_chunks(tools, profile)
    if server_version is None:
        digest = hashlib.sha256()
        for chunk in manifest:
            digest.update(chunk)
        server_version = f"{__version__}+{digest.hexdigest()[:12]}"
    files = {MANIFEST: manifest, SERVER: [server_module(server_name, server_version, len(tools))]}
    if any(t.route["kind"] == "grpc" or "request" in t.route for t in tools):
        files[DESCRIPTORS] = [descriptor_set(catalog, tools)]
    if models:
        files[MODELS] = [models_module(tools, catalog)]
    files[CATALOG] = [tools_markdown(tools)]
    return files


def _check_target(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"output {out} exists and is not a folder", hint="choose another -o")
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST).is_file():
        raise UserError(
            f"output folder {out} is not empty and holds no {MANIFEST}",
            hint="mcpgen replaces its output folder whole; point -o at a new or bundle folder",
        )


def write_bundle(out: Path, files: dict[str, Chunks]) -> None:
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
            with target.open("wb") as stream:
                stream.writelines(data)
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
