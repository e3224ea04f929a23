"""The bundle contract: what a bundle folder holds, written and read in one place.

A bundle (manifest version 2) is an index plus shards, one shard per proto package (go-micro:
per registry service), so that a large API surface stays under git hosts' file limits and a
change to one package rewrites only that package's files and the index lines about it:

    manifest.json              the index (this module's `Index`)
    server.py                  the generated server
    server.json                the server as the MCP Registry describes servers
    TOOLS.md                   the catalog's index: a line per package
    tools/<shard>.json         {"package", "tools": [MCP Tool objects], "routes": {name: route}}
    docs/<shard>.md            the package's catalog for reviewers
    search/<shard>.json        what `--discovery` searches: names, titles, descriptions, fields
    models/<module>.py         the package's Pydantic models
    descriptors/<shard>.binpb  the FileDescriptorSet of one proto package's files

`build` writes through `BundleWriter`; `check`, `diff`, `lint`, `tools` and the runtime read
through `open_bundle`. Version 1 bundles (one manifest.json holding every tool) are still read,
so that `diff` can compare against a bundle committed before the upgrade, and every other
reader explains what to do with one. This module imports nothing of the build stages: the
runtime uses it too.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson

from mcpgen.errors import UserError

MANIFEST_VERSION = 2
INDEX = "manifest.json"
SERVER = "server.py"
SERVER_JSON = "server.json"  # the MCP Registry's description of the server
CATALOG = "TOOLS.md"
TOOLS_DIR, DOCS_DIR, MODELS_DIR, DESCRIPTORS_DIR = "tools", "docs", "models", "descriptors"
SEARCH_DIR = "search"
#: Version 1's single files, named only to recognise and explain an old bundle.
V1_DESCRIPTORS, V1_MODELS = "descriptors.binpb", "models.py"
#: Clients a build can target (`--profile`): inputSchemas that client accepts, and lint rules.
CLIENT_PROFILES = ("claude", "openai", "openai-strict", "gemini", "cursor")
STRICT_PROFILE = "openai-strict"
DIGEST_PREFIX = "sha256:"
REBUILD = "rebuild the bundle with `mcpgen build` (same arguments as before)"

Json = dict[str, Any]


def to_json(document: Any, newline: bool = True) -> bytes:
    """Pretty JSON (2-space indent, key order as built), UTF-8, ending in a newline.

    orjson rather than the standard library: its pretty printer is ~20x faster, which matters
    for shards of tens of megabytes.
    """
    option = orjson.OPT_INDENT_2 | (orjson.OPT_APPEND_NEWLINE if newline else 0)
    return orjson.dumps(document, option=option)


def digest(data: bytes | Iterable[bytes]) -> str:
    """`sha256:<hex>` of bytes or of a sequence of chunks."""
    h = hashlib.sha256()
    if isinstance(data, bytes | bytearray | memoryview):
        h.update(data)
    else:
        for chunk in data:
            h.update(chunk)
    return DIGEST_PREFIX + h.hexdigest()


# ---- routes ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GrpcRoute:
    """A tool forwarded to a gRPC method (`nodes`: a go-micro gRPC server's registered nodes)."""

    service: str
    method: str
    path: str
    streaming: Literal["unary", "server"]
    nodes: tuple[str, ...] | None = None
    scopes: tuple[str, ...] = ()
    kind: Literal["grpc"] = "grpc"

    @property
    def full_method(self) -> str:
        return f"{self.service}.{self.method}"

    def to_json(self) -> Json:
        out: Json = {"kind": self.kind, "service": self.service, "method": self.method,
                     "path": self.path, "streaming": self.streaming}  # fmt: skip
        if self.nodes is not None:
            out["nodes"] = list(self.nodes)
        if self.scopes:
            out["scopes"] = list(self.scopes)
        return out


@dataclass(frozen=True, slots=True)
class GoMicroRoute:
    """A tool forwarded over mucp to a go-micro endpoint; `request`/`response` name the proto
    types when the build had the service's .proto files (arguments are then checked by them)."""

    service: str
    endpoint: str
    nodes: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ()
    request: str | None = None
    response: str | None = None
    kind: Literal["go-micro"] = "go-micro"

    @property
    def full_method(self) -> str:
        """go-micro's own name of the endpoint: `users.Users.Get`."""
        return f"{self.service}.{self.endpoint}"

    def to_json(self) -> Json:
        out: Json = {"kind": self.kind, "service": self.service, "endpoint": self.endpoint}
        if self.request is not None and self.response is not None:
            out |= {"request": self.request, "response": self.response}
        out["nodes"] = list(self.nodes)
        if self.scopes:
            out["scopes"] = list(self.scopes)
        return out

    @property
    def streaming(self) -> str:
        return "unary"


Route = GrpcRoute | GoMicroRoute


def route_from_json(data: Any, where: str = "a route") -> Route:
    """A route as the bundle stores it; a malformed one is the bundle's fault, said so."""
    try:
        kind = data["kind"]
        scopes = tuple(data.get("scopes", ()))
        if kind == "grpc":
            nodes = data.get("nodes")
            return GrpcRoute(
                service=data["service"],
                method=data["method"],
                path=data["path"],
                streaming=data["streaming"],
                nodes=tuple(nodes) if nodes is not None else None,
                scopes=scopes,
            )
        if kind == "go-micro":
            return GoMicroRoute(
                service=data["service"],
                endpoint=data["endpoint"],
                nodes=tuple(data.get("nodes", ())),
                scopes=scopes,
                request=data.get("request"),
                response=data.get("response"),
            )
    except (KeyError, TypeError) as exc:
        raise UserError(f"{where} is malformed ({exc!r} missing or wrong)", hint=REBUILD) from None
    raise UserError(f"{where} has the unknown kind {kind!r}", hint="use a newer mcpgen")


# ---- file names ------------------------------------------------------------------------------

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
NO_PACKAGE = "_"  # the file stem of the shard of files without a package


def shard_stems(names: Iterable[str]) -> dict[str, str]:
    """Shard name → file stem: the name with unsafe characters replaced by `_`, plus a short
    hash where two names would share a stem (also ignoring case, for macOS and Windows)."""
    names = sorted(set(names))
    wanted = {n: (_UNSAFE.sub("_", n).strip(".") or NO_PACKAGE) for n in names}
    counts: dict[str, int] = {}
    for stem in wanted.values():
        counts[stem.lower()] = counts.get(stem.lower(), 0) + 1
    return {
        n: s if counts[s.lower()] == 1 else f"{s}-{hashlib.sha256(n.encode()).hexdigest()[:8]}"
        for n, s in wanted.items()
    }


def module_name(stem: str) -> str:
    """A Python module name for a shard's models (`google.cloud.v1` → `google_cloud_v1`)."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", stem)
    return name if name[:1].isalpha() else f"m_{name}"


@dataclass(frozen=True, slots=True)
class ShardFiles:
    """Where one shard's files live in the bundle (relative, `/`-separated)."""

    tools: str
    docs: str
    models: str | None
    search: str | None = None  # none in bundles of mcpgen 0.2.0

    @classmethod
    def of(cls, stem: str, module: str | None) -> ShardFiles:
        """The files of the shard with file stem `stem`; models in `module` (None: none)."""
        return cls(
            tools=f"{TOOLS_DIR}/{stem}.json",
            docs=f"{DOCS_DIR}/{stem}.md",
            models=f"{MODELS_DIR}/{module}.py" if module is not None else None,
            search=f"{SEARCH_DIR}/{stem}.json",
        )

    def to_json(self) -> Json:
        out = {"tools": self.tools, "docs": self.docs}
        if self.models is not None:
            out["models"] = self.models
        if self.search is not None:
            out["search"] = self.search
        return out

    @classmethod
    def from_json(cls, files: Json) -> ShardFiles:
        return cls(files["tools"], files["docs"], files.get("models"), files.get("search"))

    def names(self) -> list[str]:
        return [n for n in (self.tools, self.docs, self.models, self.search) if n is not None]


def descriptor_file(stem: str) -> str:
    return f"{DESCRIPTORS_DIR}/{stem}.binpb"


# ---- the index -------------------------------------------------------------------------------


@dataclass(slots=True)
class ShardEntry:
    """A shard as the index lists it: enough to choose tools and check callers (toolsets,
    `--read-only`, scopes) without reading the shard."""

    tools: list[str]  # tool names, sorted
    files: ShardFiles
    methods: dict[str, str] = field(default_factory=dict)  # tool → full method name
    read_only: list[str] = field(default_factory=list)  # tools whose readOnlyHint is true
    scopes: dict[str, list[str]] = field(default_factory=dict)  # tool → scopes, if it has any

    def to_json(self) -> Json:
        entry: Json = {"tools": self.tools, "methods": dict(sorted(self.methods.items()))}
        entry["readOnly"] = sorted(self.read_only)
        if self.scopes:
            entry["scopes"] = dict(sorted(self.scopes.items()))
        entry["files"] = self.files.to_json()
        return entry

    @classmethod
    def from_json(cls, e: Json) -> ShardEntry:
        files = ShardFiles.from_json(e["files"])
        return cls(
            tools=list(e["tools"]),
            files=files,
            methods={str(k): str(v) for k, v in e.get("methods", {}).items()},
            read_only=list(e.get("readOnly", [])),
            scopes={str(k): list(v) for k, v in e.get("scopes", {}).items()},
        )


@dataclass(slots=True)
class ToolsetEntry:
    """A toolset of the config (`[tool.mcpgen.toolsets]`): its patterns and what they chose."""

    patterns: list[str]
    tools: list[str]  # sorted


@dataclass(slots=True)
class DescriptorEntry:
    file: str
    imports: list[str]  # descriptor shards whose files this one's files import


@dataclass(slots=True)
class Inputs:
    """What the build read, as digests: `check` decides from them without rendering."""

    config: str = ""  # digest of the settings that shape the output, and of mcpgen's version
    protos: dict[str, str] = field(default_factory=dict)  # .proto name → digest of its bytes
    snapshots: list[str] = field(default_factory=list)  # digests of descriptor sets, registries
    sources: str = ""  # digest of which files are sources (their services become tools)

    def to_json(self) -> Json:
        return {
            "config": self.config,
            "sources": self.sources,
            "protos": self.protos,
            "snapshots": self.snapshots,
        }


@dataclass(slots=True)
class Index:
    """manifest.json of a version-2 bundle."""

    generator: str
    shards: dict[str, ShardEntry]
    descriptors: dict[str, DescriptorEntry] = field(default_factory=dict)
    digests: dict[str, str] = field(default_factory=dict)  # every other file of the bundle
    inputs: Inputs = field(default_factory=Inputs)
    profile: str | None = None
    toolsets: dict[str, ToolsetEntry] = field(default_factory=dict)  # the config's; packages
    # are toolsets too (`mcpgen.toolsets.all_toolsets`)

    @property
    def tool_count(self) -> int:
        return sum(len(s.tools) for s in self.shards.values())

    @property
    def strict_inputs(self) -> bool:
        return self.profile == STRICT_PROFILE

    def to_json(self) -> bytes:
        head: Json = {"manifestVersion": MANIFEST_VERSION, "generator": self.generator}
        if self.profile is not None:
            head["profile"] = self.profile
        head["tools"] = self.tool_count
        head["shards"] = {name: e.to_json() for name, e in sorted(self.shards.items())}
        head["toolsets"] = {
            name: {"patterns": e.patterns, "tools": e.tools}
            for name, e in sorted(self.toolsets.items())
        }
        head["descriptors"] = {
            name: {"file": e.file, "imports": e.imports}
            for name, e in sorted(self.descriptors.items())
        }
        head["digests"] = dict(sorted(self.digests.items()))
        head["inputs"] = self.inputs.to_json()
        return to_json(head)

    @classmethod
    def from_json(cls, document: Json, where: str) -> Index:
        try:
            shards = {name: ShardEntry.from_json(e) for name, e in document["shards"].items()}
            toolsets = {
                str(name): ToolsetEntry(list(e["patterns"]), list(e["tools"]))
                for name, e in document.get("toolsets", {}).items()
            }
            descriptors = {
                name: DescriptorEntry(e["file"], list(e["imports"]))
                for name, e in document.get("descriptors", {}).items()
            }
            raw_inputs = document.get("inputs", {})
            inputs = Inputs(
                config=raw_inputs.get("config", ""),
                protos=dict(raw_inputs.get("protos", {})),
                snapshots=list(raw_inputs.get("snapshots", [])),
                sources=raw_inputs.get("sources", ""),
            )
            return cls(
                generator=str(document["generator"]),
                shards=shards,
                descriptors=descriptors,
                digests=dict(document.get("digests", {})),
                inputs=inputs,
                profile=document.get("profile"),
                toolsets=toolsets,
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise UserError(
                f"{where} is not a readable mcpgen index ({exc!r} missing or wrong)",
                hint=REBUILD,
            ) from None


#: Field names a search document keeps of one tool (its inputs, outermost first).
SEARCH_FIELDS = 64


def search_entry(tool: Json, method: str) -> Json:
    """One tool in a search shard (`search/<shard>.json`): what `--discovery` ranks it by."""
    return {
        "name": tool["name"],
        "title": tool.get("title", ""),
        "method": method,
        "description": tool.get("description", ""),
        "fields": field_names(tool.get("inputSchema", {})),
    }


def field_names(schema: Json) -> list[str]:
    """Property names of a schema, breadth first, each once, at most SEARCH_FIELDS."""
    names: dict[str, None] = {}
    todo: list[Any] = [schema]
    while todo and len(names) < SEARCH_FIELDS:
        node = todo.pop(0)
        if isinstance(node, dict):
            for key, value in (node.get("properties") or {}).items():
                names.setdefault(key)
                todo.append(value)
            todo += [v for k, v in node.items() if k in ("items", "additionalProperties")]
            todo += [v for k in ("anyOf", "oneOf", "allOf") for v in node.get(k, [])]
            todo += list((node.get("$defs") or {}).values())
    return list(names)[:SEARCH_FIELDS]


def shard_json(package: str, tools: Iterable[bytes], routes: dict[str, Json]) -> list[bytes]:
    """A tools shard as chunks: tools arrive serialized (`to_json(tool, newline=False)`), so
    large shards are written without copying any tool again."""
    chunks = [b'{\n  "package": ', orjson.dumps(package), b',\n  "tools": [']
    first = True
    for tool in tools:
        chunks.append(b"\n    " if first else b",\n    ")
        chunks.append(tool.replace(b"\n", b"\n    "))
        first = False
    chunks.append(b"]" if first else b"\n  ]")
    body = to_json(routes, newline=False).replace(b"\n", b"\n  ")
    chunks += [b',\n  "routes": ', body, b"\n}\n"]
    return chunks


# ---- reading ---------------------------------------------------------------------------------


class Storage:
    """Where a bundle's files come from: a folder, or a folder in a git revision."""

    label: str

    def read(self, name: str) -> bytes:
        raise NotImplementedError

    def path(self, name: str) -> Path | None:
        """The file on disk, when there is one."""
        return None


@dataclass(slots=True)
class FolderStorage(Storage):
    folder: Path
    label: str = ""

    def __post_init__(self) -> None:
        self.label = self.label or self.folder.as_posix()

    def read(self, name: str) -> bytes:
        try:
            return (self.folder / name).read_bytes()
        except FileNotFoundError:
            raise UserError(f"{self.label}/{name} does not exist", hint=REBUILD) from None
        except OSError as exc:
            raise UserError(f"cannot read {self.label}/{name}: {exc.strerror}") from None

    def path(self, name: str) -> Path | None:
        return self.folder / name


@dataclass(slots=True)
class GitStorage(Storage):
    """`REV:PATH` of the repository around the working directory."""

    rev: str
    inner: str
    label: str = ""

    def __post_init__(self) -> None:
        self.label = self.label or f"{self.rev}:{self.inner}"

    def read(self, name: str) -> bytes:
        inner = self.inner.rstrip("/")
        spec = f"{self.rev}:{inner}/{name}" if inner else f"{self.rev}:{name}"
        return git("cat-file", "blob", spec, failure=_not_in_git(spec))


def _not_in_git(name: str) -> UserError:
    return UserError(
        f"{name} does not exist in git",
        hint="paths after `REV:` are relative to the repository root (or start with ./)",
    )


def git(*args: str, failure: UserError) -> bytes:
    """Run git in the current directory; `failure` is the error when it refuses."""
    try:
        done = subprocess.run(["git", *args], capture_output=True, check=False)
    except FileNotFoundError as exc:
        raise UserError("git is not installed", hint="install git to compare revisions") from exc
    if done.returncode == 0:
        return done.stdout
    if b"not a git repository" in done.stderr:
        raise UserError(
            f"{Path.cwd()} is not in a git repository",
            hint="run mcpgen inside the repository, or pass bundle folders",
        )
    raise failure


class BundleChanged(UserError):
    """A file is not what the index read earlier recorded: the bundle was replaced (or is
    being written) since. The server reloads; a one-off reader rereads."""

    def __init__(self, label: str, name: str) -> None:
        super().__init__(
            f"{label}/{name} is not the file its index lists: the bundle changed while in use",
            hint="the server reloads the bundle; otherwise rerun the command",
        )
        self.name = name


@dataclass(slots=True)
class Shard:
    package: str
    tools: list[Json]
    routes: dict[str, Route]


class BundleView:
    """A bundle as its readers see it: the index, and the tools shard by shard.

    `version` is 1 for an old single-manifest bundle (its one shard is named `""` and holds
    everything); readers that need version 2 call `require_current`.
    """

    def __init__(self, storage: Storage, document: Json) -> None:
        self.storage = storage
        #: check every file read against the index's digest (the server does: a bundle can
        #: be replaced under it, and a shard must never be mixed with another index)
        self.verify = False
        self.version: int = document["manifestVersion"]
        self._v1: Json | None = None
        if self.version == 1:
            self._v1 = document
            names = [t["name"] for t in document["tools"]]
            self.index = Index(
                generator=str(document.get("generator", "")),
                shards={"": ShardEntry(names, ShardFiles(INDEX, CATALOG, None))},
                profile=document.get("profile"),
            )
        else:
            self.index = Index.from_json(document, f"{storage.label}/{INDEX}")

    @property
    def label(self) -> str:
        return self.storage.label

    def require_current(self, doing: str) -> None:
        """Refuse a version-1 bundle with what to do about it."""
        if self.version != MANIFEST_VERSION:
            raise UserError(
                f"{self.label} is a version-{self.version} bundle (one manifest.json); "
                f"this mcpgen {doing} version-{MANIFEST_VERSION} bundles (an index plus shards "
                "per package)",
                hint=REBUILD + "; see docs/bundle.md, 'Migrating from version 1'",
            )

    def shard(self, name: str) -> Shard:
        if self._v1 is not None:
            routes = self._v1.get("routes", {})
            parsed = {n: route_from_json(r, f"route of {n}") for n, r in routes.items()}
            return Shard("", list(self._v1["tools"]), parsed)
        entry = self.index.shards[name]
        where = f"{self.label}/{entry.files.tools}"
        try:
            document = orjson.loads(self.read(entry.files.tools))
            tools, raw_routes = document["tools"], document["routes"]
            names = [t["name"] for t in tools]
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise UserError(f"{where} is not a tools shard: {exc}", hint=REBUILD) from None
        if names != entry.tools:
            raise UserError(f"{where} does not hold the tools the index lists", hint=REBUILD)
        routes = {n: route_from_json(raw_routes.get(n), f"{where}: route of {n}") for n in names}
        return Shard(str(document.get("package", name)), tools, routes)

    def read(self, name: str) -> bytes:
        """A file of the bundle; with `verify`, only the bytes the index recorded."""
        try:
            data = self.storage.read(name)
        except UserError:
            if self.verify:
                raise BundleChanged(self.label, name) from None
            raise
        if self.verify:
            wanted = self.index.digests.get(name)
            if wanted is not None and digest(data) != wanted:
                raise BundleChanged(self.label, name)
        return data

    def entry(self, name: str) -> ShardEntry:
        """A shard's index entry with its tools' facts (methods, read-only, scopes). An index
        written before the facts were recorded (mcpgen 0.2.0) has them read from the shard."""
        entry = self.index.shards[name]
        if entry.tools and not entry.methods:
            shard = self.shard(name)
            entry.methods = {n: r.full_method for n, r in shard.routes.items()}
            hints = {t["name"]: t.get("annotations", {}) for t in shard.tools}
            entry.read_only = sorted(n for n, a in hints.items() if a.get("readOnlyHint"))
            entry.scopes = {n: list(r.scopes) for n, r in shard.routes.items() if r.scopes}
        return entry

    def shards(self) -> Iterator[Shard]:
        """Every shard in index order, one at a time (bundles get large)."""
        for name in sorted(self.index.shards):
            yield self.shard(name)

    def tools(self) -> Iterator[tuple[Json, Route]]:
        for shard in self.shards():
            for tool in shard.tools:
                yield tool, shard.routes[tool["name"]]

    def descriptor_files(self) -> list[Any]:
        """Every file of the descriptor shards, each after the files it imports (the order a
        descriptor pool takes them in)."""
        from google.protobuf import descriptor_pb2
        from google.protobuf.message import DecodeError

        files: dict[str, Any] = {}
        for entry in sorted(self.index.descriptors.values(), key=lambda e: e.file):
            try:
                fds = descriptor_pb2.FileDescriptorSet.FromString(self.read(entry.file))
            except DecodeError as exc:
                raise UserError(
                    f"{self.label}/{entry.file} is not a valid descriptor set: {exc}", hint=REBUILD
                ) from None
            for f in fds.file:
                files.setdefault(f.name, f)
        ordered: list[Any] = []
        done: set[str] = set()
        for name in sorted(files):
            stack = [name]
            while stack:
                current = stack[-1]
                if current in done:
                    stack.pop()
                    continue
                todo = [d for d in files[current].dependency if d in files and d not in done]
                if todo:
                    stack.append(todo[0])
                    continue
                stack.pop()
                done.add(current)
                ordered.append(files[current])
        return ordered


def open_bundle(spec: str | Path, git_revisions: bool = False) -> BundleView:
    """The bundle of a folder, of its manifest.json, or (with `git_revisions`) of `REV:PATH`;
    a path on disk wins over a revision."""
    path = Path(spec)
    storage: Storage
    if path.is_dir():
        if not (path / INDEX).is_file():
            raise UserError(f"{spec} holds no {INDEX}", hint="run `mcpgen build` first")
        storage = FolderStorage(path, str(spec).rstrip("/") or ".")
    elif path.is_file():
        storage = FolderStorage(path.parent, path.parent.as_posix())
        if path.name != INDEX:
            return _view(storage, _parse(path.read_bytes(), str(spec)))
    elif git_revisions and ":" in str(spec) and not str(spec).startswith("-"):
        rev, _, inner = str(spec).partition(":")
        unknown = UserError(
            f"unknown git revision {rev!r}", hint="check the name with `git log --oneline`"
        )
        git("rev-parse", "--verify", "--quiet", f"{rev}^{{tree}}", failure=unknown)
        name = f"{rev}:{inner}"
        kind = git("cat-file", "-t", name, failure=_not_in_git(name)).strip()
        if kind != b"tree":
            inner = inner.rpartition("/")[0] if "/" in inner else ""
        storage = GitStorage(rev, inner, str(spec))
    else:
        raise UserError(
            f"no bundle at {spec}",
            hint="run `mcpgen build` first, or give a bundle folder"
            + (" or a git revision and path (main:mcp_bundle)" if git_revisions else ""),
        )
    return _view(storage, _parse(storage.read(INDEX), f"{storage.label}/{INDEX}"))


def _parse(data: bytes, where: str) -> Json:
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise UserError(f"{where} is not JSON: {exc}", hint=REBUILD) from None
    if not isinstance(document, dict) or "manifestVersion" not in document:
        raise UserError(
            f"{where} is not an mcpgen manifest (no manifestVersion)",
            hint="pass the folder that `mcpgen build` writes, or its manifest.json",
        )
    version = document["manifestVersion"]
    if version not in (1, MANIFEST_VERSION):
        raise UserError(
            f"{where} has manifestVersion {version!r}; this mcpgen reads 1 and {MANIFEST_VERSION}",
            hint="use the mcpgen version that wrote it, or rebuild the bundle",
        )
    if version == 1 and not (
        isinstance(document.get("tools"), list)
        and all(isinstance(t, dict) and isinstance(t.get("name"), str) for t in document["tools"])
        and isinstance(document.get("routes", {}), dict)
    ):
        raise UserError(f"{where} is not an mcpgen manifest: `tools` is not a list of named tools")
    return document


def _view(storage: Storage, document: Json) -> BundleView:
    return BundleView(storage, document)


# ---- writing ---------------------------------------------------------------------------------


class BundleWriter:
    """Writes a bundle into a temporary folder beside OUT and swaps it in whole, so a build
    that fails at any point leaves an existing bundle untouched."""

    def __init__(self, out: Path) -> None:
        check_target(out)
        self.out = out
        out.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.new-", dir=out.parent))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(self.tmp, 0o777 & ~umask)
        self.digests: dict[str, str] = {}

    def write(self, name: str, chunks: Iterable[bytes]) -> str:
        """Write one file (relative name) and return its digest."""
        self.digests[name] = write_file(self.tmp, name, chunks)
        return self.digests[name]

    def commit(self, index: Index) -> None:
        index.digests = {**index.digests, **self.digests}
        (self.tmp / INDEX).write_bytes(index.to_json())
        if self.out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.old-", dir=self.out.parent))
            os.rename(self.out, old / "bundle")
            try:
                os.rename(self.tmp, self.out)
            except OSError:
                os.rename(old / "bundle", self.out)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(self.tmp, self.out)

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def write_file(folder: Path, name: str, chunks: Iterable[bytes]) -> str:
    """Write `folder/name` from chunks; its digest."""
    target = folder / name
    target.parent.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    with target.open("wb") as stream:
        for chunk in chunks:
            h.update(chunk)
            stream.write(chunk)
    return DIGEST_PREFIX + h.hexdigest()


def check_target(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"output {out} exists and is not a folder", hint="choose another -o")
    if out.is_dir() and any(out.iterdir()) and not (out / INDEX).is_file():
        raise UserError(
            f"output folder {out} is not empty and holds no {INDEX}",
            hint="mcpgen replaces its output folder whole; point -o at a new or bundle folder",
        )


def file_digest(path: Path) -> str | None:
    """Digest of a file on disk, read in blocks; None when it cannot be read."""
    h = hashlib.sha256()
    try:
        with path.open("rb") as stream:
            while block := stream.read(1 << 20):
                h.update(block)
    except OSError:
        return None
    return DIGEST_PREFIX + h.hexdigest()


def bundle_files(folder: Path) -> set[str]:
    """Every file under a bundle folder, relative and `/`-separated."""
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
