""".proto files → FileDescriptorSet, compiled by the protoc that ships in `grpcio-tools`.

Files are named the way protoc names them: relative to the import root (`-I`) that contains
them, or to the folder given as a source (or the file's own folder) when no root does. The
well-known types and the common googleapis protos (`google/api`, `google/rpc`, `google/type`)
are importable without vendoring: their .proto files ship inside installed packages.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2

from mcpgen.errors import Problem, UserError, display_path

#: googleapis packages whose .proto files ship in `googleapis-common-protos`.
GOOGLEAPIS_PACKAGES = ("google/api", "google/rpc", "google/type", "google/longrunning")


@dataclass(slots=True)
class ProtoFiles:
    """The .proto inputs of one build: import roots and the files to compile, by protoc name."""

    roots: list[Path] = field(default_factory=list)
    names: dict[str, Path] = field(default_factory=dict)  # protoc name -> file on disk

    def add_root(self, root: Path) -> None:
        if root not in self.roots:
            self.roots.append(root)

    def add_file(self, path: Path, fallback_root: Path) -> None:
        text = str(path)
        root = next((r for r in self.roots if _inside(text, r)), None)
        if root is None:
            root = fallback_root
            self.add_root(root)
        name = text[len(str(root)) :].lstrip(os.sep).replace(os.sep, "/")
        other = self.names.get(name)
        if other is not None and other != path:
            raise UserError(
                f"two different files are both named {name!r}",
                file=display_path(path),
                hint=f"the other one is {display_path(other)}; give -I roots so names are unique",
            )
        self.names[name] = path


def _inside(path: str, root: Path) -> bool:
    """`Path.is_relative_to` on strings (absolute, resolved paths): thousands of files a build."""
    prefix = str(root)
    return path.startswith(prefix) and (
        len(path) == len(prefix) or path[len(prefix)] == os.sep or prefix.endswith(os.sep)
    )


def builtin_import_paths() -> list[str]:
    """protoc `-I` arguments for the well-known types and the common googleapis protos."""
    import grpc_tools

    paths = []
    spec = importlib.util.find_spec("google.api")
    if spec is not None and spec.submodule_search_locations:
        site = Path(next(iter(spec.submodule_search_locations))).parent.parent
        for package in GOOGLEAPIS_PACKAGES:
            if (site / package).is_dir():
                paths.append(f"{package}={site / package}")
    paths.append(str(Path(grpc_tools.__file__).parent / "_proto"))
    return paths


_PROTOC_LINE = re.compile(r"^(?P<file>[^:\n]+?):(?:(?P<line>\d+):(?P<col>\d+):)?\s*(?P<msg>.+)$")


#: Below this many files one protoc run is fastest; above, the files are split among processes.
PARALLEL_THRESHOLD = 100


def _workers(count: int) -> int:
    if count < PARALLEL_THRESHOLD:
        return 1
    return max(1, min(os.cpu_count() or 1, 4))


def _chunks(names: list[str], files: ProtoFiles, count: int) -> list[list[str]]:
    """`names` (sorted) cut into `count` runs of about equal source bytes: protoc's time grows
    with what it parses, and files differ a hundredfold in size (googleapis split by count
    gave runs of 4.7 s and 11.6 s; by bytes, two of about 8 s)."""
    if count == 1:
        return [names]
    sizes = [_size(files.names[n]) for n in names]
    total, chunks, start, done = sum(sizes) or 1, [], 0, 0
    for i, size in enumerate(sizes):
        done += size
        if done * count >= total * (len(chunks) + 1) and len(chunks) < count - 1:
            chunks.append(names[start : i + 1])
            start = i + 1
    chunks.append(names[start:])
    return [c for c in chunks if c]


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:  # protoc reports it
        return 0


def compile_protos(files: ProtoFiles) -> list[descriptor_pb2.FileDescriptorProto]:
    """Run protoc over every file; return the file descriptors with imports and source info.

    Large inputs are split, in name order, among one protoc process per core (up to four):
    protoc is single-threaded, and neighbouring files share most of their imports. Each run
    includes its imports, so the union is complete; a file compiled twice is the same twice.
    """
    names = sorted(files.names)
    if not names:
        return []
    chunks = _chunks(names, files, _workers(len(names)))
    with tempfile.TemporaryDirectory(prefix="mcpgen-protoc-") as tmp:
        runs = []
        for i, chunk in enumerate(chunks):
            out = Path(tmp) / f"set{i}.binpb"
            argfile = Path(tmp) / f"args{i}"
            args = ["--include_imports", "--include_source_info", f"--descriptor_set_out={out}"]
            args += [f"--proto_path={root}" for root in files.roots]
            args += [f"--proto_path={p}" for p in builtin_import_paths()]
            args += chunk
            argfile.write_text("\n".join(args) + "\n", encoding="utf-8")
            proc = subprocess.Popen(
                [sys.executable, "-m", "grpc_tools.protoc", f"@{argfile}"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                env={**os.environ, "PYTHONWARNINGS": "ignore"},
            )
            runs.append((proc, out))
        errors = []
        for proc, out in runs:
            _, stderr = proc.communicate()
            if proc.returncode != 0 or not out.exists():
                errors.append(stderr)
        if errors:
            raise _protoc_error("\n".join(dict.fromkeys(errors)), files)
        merged: dict[str, descriptor_pb2.FileDescriptorProto] = {}
        for _, out in runs:
            for f in descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file:
                merged.setdefault(f.name, f)
        return list(merged.values())


def _protoc_error(stderr: str, files: ProtoFiles) -> UserError:
    problems: list[Problem] = []
    for raw in stderr.splitlines():
        text = raw.strip()
        if not text or text.startswith("warning:") or ": warning:" in text:
            continue
        match = _PROTOC_LINE.match(text)
        if match and (match["file"] in files.names or match["file"].endswith(".proto")):
            name = match["file"]
            disk = files.names.get(name)
            problems.append(
                Problem(
                    match["msg"],
                    file=display_path(disk) if disk else name,
                    line=int(match["line"]) if match["line"] else None,
                    column=int(match["col"]) if match["col"] else None,
                )
            )
        else:
            problems.append(Problem(text))
    if not problems:
        problems.append(Problem("protoc failed without a message"))
    first = problems[0]
    hint = "fix the .proto file named above"
    if any("not found" in p.message or "File not found" in p.message for p in problems):
        hint = (
            "an imported file was not found: add the folder its import path is relative to "
            "with -I DIR (or `import_paths` in the config)"
        )
    return UserError(
        f"protoc could not compile the sources: {first.message}",
        file=first.file,
        line=first.line,
        problems=problems[1:] if len(problems) > 1 else [],
        hint=hint,
    )


# ---- compiling through the build cache -------------------------------------------------------

_IMPORT = re.compile(rb'import\s+(?:public\s+|weak\s+)?"([^"]+)"\s*;')


def imports_of(data: bytes) -> list[str]:
    """The files a .proto's import statements name (also any in comments, which only add to a
    key). `find` skips to each `import` at C speed; a regex over every line was 7x slower."""
    found: set[str] = set()
    at = data.find(b"import")
    while at != -1:
        match = _IMPORT.match(data, at)
        if match:
            found.add(match.group(1).decode("utf-8", "replace"))
        at = data.find(b"import", match.end() if match else at + 6)
    return sorted(found)


def _import_roots(files: ProtoFiles) -> list[tuple[str, Path]]:
    """protoc's `--proto_path` order as (virtual prefix, folder): the roots, then built-ins."""
    roots: list[tuple[str, Path]] = [("", r) for r in files.roots]
    for entry in builtin_import_paths():
        prefix, sep, folder = entry.partition("=")
        roots.append((prefix, Path(folder)) if sep else ("", Path(entry)))
    return roots


def resolve(name: str, roots: list[tuple[str, Path]]) -> Path | None:
    """The file protoc reads for an import name: the first root that has it."""
    for prefix, folder in roots:
        if prefix:
            if not name.startswith(prefix + "/"):
                continue
            candidate = folder / name[len(prefix) + 1 :]
        else:
            candidate = folder / name
        if candidate.is_file():
            return candidate
    return None


@dataclass(slots=True)
class SourceDigests:
    """What a set of .proto files is made of: each file's bytes and its transitive imports'.

    `content` is the digest of each file's own bytes (recorded in the bundle, which `check`
    compares); `closure` covers a file and everything it imports (the compile cache's key).
    """

    content: dict[str, str] = field(default_factory=dict)
    closure: dict[str, str] = field(default_factory=dict)
    paths: dict[str, Path] = field(default_factory=dict)


def source_digests(files: ProtoFiles) -> SourceDigests:
    """Digests of every .proto file the build reads: the sources and, found by their import
    statements, everything they import (resolved as protoc resolves them).

    An import inside a comment only adds to a key; an import that resolves nowhere is left to
    protoc to report."""
    import hashlib

    from mcpgen.cache import key_of

    roots = _import_roots(files)
    found = SourceDigests()
    imports: dict[str, list[str]] = {}
    todo = sorted(files.names)
    while todo:
        name = todo.pop()
        if name in found.paths:
            continue
        path = files.names.get(name) or resolve(name, roots)
        if path is None:
            continue
        data = path.read_bytes()
        found.paths[name] = path
        found.content[name] = "sha256:" + hashlib.sha256(data).hexdigest()
        imports[name] = imports_of(data)
        todo += [i for i in imports[name] if i not in found.paths]
    import grpc_tools

    tool = f"grpcio-tools {getattr(grpc_tools, '__version__', '')}"

    def closure(name: str, visiting: frozenset[str]) -> str:
        known = found.closure.get(name)
        if known is not None:
            return known
        parts = [tool, name, found.content[name]]
        for dep in imports[name]:
            if dep in found.content and dep not in visiting:
                parts += [dep, closure(dep, visiting | {name})]
        found.closure[name] = key_of("protoc", *parts)
        return found.closure[name]

    for name in sorted(found.content):
        closure(name, frozenset())
    return found


def compile_cached(
    files: ProtoFiles, digests: SourceDigests, cache: Any
) -> tuple[list[descriptor_pb2.FileDescriptorProto], int]:
    """The descriptors of every source and import: from the cache where their key is there,
    compiled by protoc otherwise (and then stored). Returns the descriptors and how many
    files protoc compiled."""
    result: dict[str, descriptor_pb2.FileDescriptorProto] = {}
    missing: dict[str, Path] = {}
    for name in sorted(digests.closure):
        blob = cache.get("protoc", digests.closure[name])
        fdp = None
        if blob is not None:
            try:
                fdp = descriptor_pb2.FileDescriptorProto.FromString(blob)
            except Exception:  # a payload that passed its digest but is no descriptor
                fdp = None
            if fdp is not None and (fdp.name != name or not _deps_known(fdp, digests)):
                fdp = None  # an import the scan missed: recompile rather than trust the key
        if fdp is None:
            missing[name] = digests.paths[name]
        else:
            result[name] = fdp
    if missing:
        subset = ProtoFiles(roots=list(files.roots), names=missing)
        for fdp in compile_protos(subset):
            if fdp.name in result:
                continue
            result[fdp.name] = fdp
            key = digests.closure.get(fdp.name)
            if key is not None and fdp.name in missing and _deps_known(fdp, digests):
                cache.put("protoc", key, fdp.SerializeToString(deterministic=True))
    return list(result.values()), len(missing)


def _deps_known(fdp: descriptor_pb2.FileDescriptorProto, digests: SourceDigests) -> bool:
    """Whether every import protoc saw is one the key covers."""
    return all(dep in digests.closure for dep in fdp.dependency)
