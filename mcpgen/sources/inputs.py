"""A build's inputs: read each source kind and produce the one IR, a `Catalog`.

`load_catalog` classifies the build's sources (.proto files, folders, descriptor sets, go-micro
registry snapshots), compiles the .proto files with protoc in one run, merges every descriptor
set, converts the result, and adds (or binds) the registries' services.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from google.protobuf import descriptor_pb2

from mcpgen.cache import Cache
from mcpgen.contract import digest
from mcpgen.errors import UserError, Warnings, display_path
from mcpgen.model import Catalog, Method, Service, Streaming
from mcpgen.sources.descriptors import catalog_from_files, read_descriptor_set
from mcpgen.sources.gomicro import RegistryService, read_registry, registry_catalog
from mcpgen.sources.protofiles import (
    ProtoFiles,
    compile_cached,
    source_digests,
)

DESCRIPTOR_SET_SUFFIXES = (".binpb", ".pb", ".protoset", ".bin", ".desc")
_SKIP_DIRS = {"node_modules", "__pycache__"}


def _walk_protos(folder: Path) -> list[Path]:
    """The .proto files under `folder`, skipping hidden folders and `node_modules`
    (os.walk, which prunes them unvisited: pathlib's rglob was a third of a warm build)."""
    found = []
    for where, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in _SKIP_DIRS]
        found += [os.path.join(where, n) for n in names if n.endswith(".proto")]
    return [Path(p) for p in sorted(found) if os.path.isfile(p)]


@dataclass(slots=True)
class SourceSet:
    """The build's sources by kind: .proto files (with import roots), descriptor sets and
    registry snapshots."""

    protos: ProtoFiles
    descriptor_sets: list[Path] = field(default_factory=list)
    registries: list[tuple[Path, str]] = field(default_factory=list)  # (path, as given)


def classify_sources(sources: list[str], import_paths: list[str]) -> SourceSet:
    if not sources:
        raise UserError(
            "no sources to build",
            hint="name .proto files, folders or descriptor sets, or set `sources` in the config",
        )
    protos = ProtoFiles()
    for raw in import_paths:
        root = Path(raw).resolve()
        if not root.is_dir():
            raise UserError(
                f"import path {raw!r} is not a folder",
                hint="give -I an existing folder that imports are relative to",
            )
        protos.add_root(root)
    found = SourceSet(protos)
    for raw in sources:
        path = Path(raw).resolve()
        if not path.exists():
            raise UserError(
                f"source {raw!r} does not exist",
                hint="check the path (it is relative to the "
                "working directory, or to the config file for `sources` in the config)",
            )
        if path.is_dir():
            walked = _walk_protos(path)
            if not walked:
                raise UserError(f"folder {raw!r} holds no .proto files")
            for proto in walked:
                protos.add_file(proto, fallback_root=path)
        elif path.suffix == ".proto":
            protos.add_file(path, fallback_root=path.parent)
        elif path.suffix in DESCRIPTOR_SET_SUFFIXES or path.name.endswith(".binpb.gz"):
            found.descriptor_sets.append(path)
        elif path.suffix == ".json":
            found.registries.append((path, raw))
        else:
            raise UserError(
                f"cannot tell what kind of source {raw!r} is",
                hint="sources are .proto files, folders of them, descriptor sets "
                f"({', '.join(DESCRIPTOR_SET_SUFFIXES)}) or go-micro registry snapshots (.json)",
            )
    return found


@dataclass(slots=True)
class LoadedFiles:
    """Every proto file of a build, dependencies first, with what identifies its content."""

    files: list[descriptor_pb2.FileDescriptorProto]
    exposed: set[str]  # files whose services become tools
    digests: dict[str, str]  # file → digest of it and all it imports (cache keys build on it)
    proto_contents: dict[str, str]  # .proto file → digest of its bytes (recorded for `check`)
    snapshot_digests: list[str]  # descriptor sets and registries, sorted
    compiled: int = 0  # files protoc compiled (the rest came from the cache)


def load_files(found: SourceSet, cache: Any, warnings: Warnings) -> LoadedFiles:
    """Compile (or take from the cache) and merge every proto file of the sources."""
    files: dict[str, descriptor_pb2.FileDescriptorProto] = {}
    exposed: set[str] = set()
    digests: dict[str, str] = {}
    contents: dict[str, str] = {}
    compiled = 0
    if found.protos.names:
        sums = source_digests(found.protos)
        compiled_files, compiled = compile_cached(found.protos, sums, cache)
        for f in compiled_files:
            files[f.name] = f
        exposed |= set(found.protos.names)
        digests |= sums.closure
        contents = {n: sums.content[n] for n in sorted(files) if n in sums.content}
    snapshots = []
    for path in found.descriptor_sets:
        raw = path.read_bytes() if path.is_file() else b""
        snapshots.append(digest(raw))
        fds, imports = read_descriptor_set(path)
        for f in fds.file:
            known = files.get(f.name)
            if known is None:
                files[f.name] = f
                digests[f.name] = digest(f.SerializeToString(deterministic=True))
            elif _without_source_info(known) != _without_source_info(f):
                warnings.add(
                    f"{display_path(path)}: {f.name} differs from another input's copy; "
                    "using the first one"
                )
            if f.name not in imports:
                exposed.add(f.name)
    if found.registries:
        snapshots.append(registry_digest(registry_services(found)))
    _check_dependencies(files)
    return LoadedFiles(
        files=_dependencies_first(files),
        exposed=exposed,
        digests=digests,
        proto_contents=contents,
        snapshot_digests=sorted(snapshots),
        compiled=compiled,
    )


def registry_digest(services: list[RegistryService]) -> str:
    """What the registry snapshots say, whatever order they list services, endpoints and
    nodes in (the bundle does not depend on it either), and wherever they are."""
    canonical = sorted(
        orjson.dumps(
            {
                "name": s.name,
                "version": s.version,
                "nodes": sorted(s.nodes),
                "endpoints": [dataclasses.asdict(s.endpoints[n]) for n in sorted(s.endpoints)],
            },
            option=orjson.OPT_SORT_KEYS,
        )
        for s in services
    )
    return digest(b"\n".join(canonical))


def registry_services(found: SourceSet) -> list[RegistryService]:
    services: list[RegistryService] = []
    for path, raw in found.registries:
        services += read_registry(path, raw)
    return services


def load_catalog(
    sources: list[str], import_paths: list[str], warnings: Warnings, cache: Any = None
) -> Catalog:
    """The whole catalog of the sources in one process (small builds, tests, tools)."""
    found = classify_sources(sources, import_paths)
    registry = registry_services(found)
    loaded = load_files(found, cache or Cache.disabled(), warnings)
    catalog = catalog_from_files(loaded.files, loaded.exposed, warnings)
    if registry:
        catalog = registry_catalog(registry, catalog, warnings)
    return catalog


def _without_source_info(f: descriptor_pb2.FileDescriptorProto) -> bytes:
    copy = descriptor_pb2.FileDescriptorProto()
    copy.CopyFrom(f)
    copy.ClearField("source_code_info")
    return copy.SerializeToString(deterministic=True)


def _check_dependencies(files: dict[str, descriptor_pb2.FileDescriptorProto]) -> None:
    for f in files.values():
        missing = [d for d in f.dependency if d not in files]
        if missing:
            raise UserError(
                f"{f.name} imports {', '.join(missing)}, which no input provides",
                hint="write descriptor sets with imports (`protoc --include_imports`, "
                "`buf build`), or add the missing files to the sources",
            )


def _dependencies_first(
    files: dict[str, descriptor_pb2.FileDescriptorProto],
) -> list[descriptor_pb2.FileDescriptorProto]:
    """Files in a deterministic order where every file follows its imports."""
    return [files[name] for name in dependencies_first(sorted(files), files)]


def dependencies_first(
    roots: list[str], files: dict[str, descriptor_pb2.FileDescriptorProto]
) -> list[str]:
    """`roots` and everything they import (among `files`), each after its imports, ties by
    name."""
    ordered: list[str] = []
    done: set[str] = set()

    def visit(name: str) -> None:
        stack = [(name, iter(sorted(files[name].dependency)))]
        done.add(name)
        while stack:
            current, deps = stack[-1]
            for dep in deps:
                if dep not in done and dep in files:
                    done.add(dep)
                    stack.append((dep, iter(sorted(files[dep].dependency))))
                    break
            else:
                stack.pop()
                ordered.append(current)

    for root in sorted(roots):
        if root not in done and root in files:
            visit(root)
    return ordered


def outline_catalog(files: list[descriptor_pb2.FileDescriptorProto], exposed: set[str]) -> Catalog:
    """The services of the exposed files with their methods' names, types and streaming, and
    nothing else: enough to choose and name every tool of a large build without converting
    a single message (that happens per package, where each package's tools are rendered)."""
    catalog = Catalog(files=sorted(f.name for f in files), descriptor_files=files)
    for f in files:
        if f.name not in exposed:
            continue
        for s in f.service:
            service = Service(
                full_name=f"{f.package}.{s.name}" if f.package else s.name,
                package=f.package,
                file=f.name,
            )
            for m in s.method:
                streaming = (
                    Streaming.BIDI if m.client_streaming and m.server_streaming
                    else Streaming.CLIENT if m.client_streaming
                    else Streaming.SERVER if m.server_streaming
                    else Streaming.UNARY
                )  # fmt: skip
                service.methods.append(
                    Method(
                        name=m.name,
                        input_type=m.input_type.lstrip("."),
                        output_type=m.output_type.lstrip("."),
                        streaming=streaming,
                    )
                )
            catalog.services.append(service)
    catalog.services.sort(key=lambda s: s.full_name)
    return catalog
