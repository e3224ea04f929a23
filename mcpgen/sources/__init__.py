"""Sources: read each input kind and produce the one IR, a `Catalog`.

`load_catalog` classifies the build's sources (.proto files, folders, descriptor sets, go-micro
registry snapshots), compiles the .proto files with protoc in one run, merges every descriptor
set, converts the result, and adds (or binds) the registries' services.
"""

from __future__ import annotations

from pathlib import Path

from google.protobuf import descriptor_pb2

from mcpgen.errors import UserError, Warnings
from mcpgen.model import Catalog
from mcpgen.sources.descriptors import catalog_from_files, read_descriptor_set
from mcpgen.sources.gomicro import RegistryService, read_registry, registry_catalog
from mcpgen.sources.protofiles import ProtoFiles, compile_protos, display_path

DESCRIPTOR_SET_SUFFIXES = (".binpb", ".pb", ".protoset", ".bin", ".desc")
_SKIP_DIRS = {"node_modules", "__pycache__"}


def _walk_protos(folder: Path) -> list[Path]:
    found = []
    for path in folder.rglob("*.proto"):
        rel = path.relative_to(folder).parts
        if any(p.startswith(".") or p in _SKIP_DIRS for p in rel[:-1]):
            continue
        if path.is_file():
            found.append(path)
    return sorted(found)


def load_catalog(sources: list[str], import_paths: list[str], warnings: Warnings) -> Catalog:
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

    descriptor_sets: list[Path] = []
    registry: list[RegistryService] = []
    for raw in sources:
        path = Path(raw).resolve()
        if not path.exists():
            raise UserError(
                f"source {raw!r} does not exist",
                hint="check the path (it is relative to the "
                "working directory, or to the config file for `sources` in the config)",
            )
        if path.is_dir():
            found = _walk_protos(path)
            if not found:
                raise UserError(f"folder {raw!r} holds no .proto files")
            for proto in found:
                protos.add_file(proto, fallback_root=path)
        elif path.suffix == ".proto":
            protos.add_file(path, fallback_root=path.parent)
        elif path.suffix in DESCRIPTOR_SET_SUFFIXES or path.name.endswith(".binpb.gz"):
            descriptor_sets.append(path)
        elif path.suffix == ".json":
            registry += read_registry(path, raw)
        else:
            raise UserError(
                f"cannot tell what kind of source {raw!r} is",
                hint="sources are .proto files, folders of them, descriptor sets "
                f"({', '.join(DESCRIPTOR_SET_SUFFIXES)}) or go-micro registry snapshots (.json)",
            )

    files: dict[str, descriptor_pb2.FileDescriptorProto] = {}
    exposed: set[str] = set()
    if protos.names:
        for f in compile_protos(protos):
            files[f.name] = f
        exposed |= set(protos.names)
    for path in descriptor_sets:
        fds, imports = read_descriptor_set(path)
        for f in fds.file:
            known = files.get(f.name)
            if known is None:
                files[f.name] = f
            elif _without_source_info(known) != _without_source_info(f):
                warnings.add(
                    f"{display_path(path)}: {f.name} differs from another input's copy; "
                    "using the first one"
                )
            if f.name not in imports:
                exposed.add(f.name)
    _check_dependencies(files)
    catalog = catalog_from_files(_dependencies_first(files), exposed, warnings)
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
    ordered: list[descriptor_pb2.FileDescriptorProto] = []
    done: set[str] = set()

    def visit(name: str) -> None:
        stack = [(name, iter(sorted(files[name].dependency)))]
        done.add(name)
        while stack:
            current, deps = stack[-1]
            for dep in deps:
                if dep not in done:
                    done.add(dep)
                    stack.append((dep, iter(sorted(files[dep].dependency))))
                    break
            else:
                stack.pop()
                ordered.append(files[current])

    for name in sorted(files):
        if name not in done:
            visit(name)
    return ordered
