"""A bundle as the server sees it: the selected tools, their routes, and the protobuf types.

Only the index is read at start: which tools there are, which toolset each belongs to, and
what selection and policy need of them (`contract.ShardEntry`). A tools shard is read when one
of its tools is first listed or called, and kept in a small LRU cache (a large bundle's shards
do not all fit in memory at once; routes, which are small, stay). A package's descriptor shard
(and those it imports) enters the descriptor pool, with dynamic message classes (no generated
`_pb2` modules), when one of its tools is first called. The precise input schema of each tool,
which the server validates arguments against, is rendered on first use from those descriptors
by the same renderer the compiler uses, so the server checks exactly what the build promised.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import Descriptor, MethodDescriptor
from google.protobuf.message import DecodeError, Message

from mcpgen.contract import (
    INDEX,
    REBUILD,
    GoMicroRoute,
    GrpcRoute,
    Route,
    open_bundle,
)
from mcpgen.errors import UserError, Warnings
from mcpgen.model import Catalog
from mcpgen.runtime.validation import SchemaValidator, validator_for
from mcpgen.schema import SchemaRenderer
from mcpgen.sources.descriptors import catalog_from_files
from mcpgen.toolsets import Selection, all_toolsets

#: Tools shards kept parsed at once; others are read again when next needed.
SHARD_CACHE = 16


@dataclass(frozen=True, slots=True)
class Method:
    """How to forward one tool, whatever its backend: its route, and the dynamic message
    classes of its request and response (None for a go-micro endpoint only its registry
    describes: its arguments go as they are)."""

    route: Route
    input_class: type[Message] | None
    output_class: type[Message] | None

    @property
    def streaming(self) -> bool:
        """A server stream, whose messages the gateway gathers."""
        return isinstance(self.route, GrpcRoute) and self.route.streaming == "server"

    @property
    def input_descriptor(self) -> Descriptor:
        assert self.input_class is not None
        return self.input_class.DESCRIPTOR


class Bundle:
    """The selected tools of a bundle folder, sorted by name, read through `mcpgen.contract`
    as they are needed."""

    def __init__(
        self, folder: Path, selection: Selection | None = None, shard_cache: int = SHARD_CACHE
    ) -> None:
        self.folder = folder
        if not (folder / INDEX).is_file():
            raise UserError(
                f"{folder / INDEX} does not exist",
                hint="point the server at a folder written by `mcpgen build`",
            )
        self.view = view = open_bundle(folder)
        view.require_current("serves")
        view.verify = True  # a shard read later must belong to this index
        self.index = view.index
        #: the client profile the inputSchemas were built for (`mcpgen build --profile`)
        self.profile: str | None = view.index.profile
        entries = {name: view.entry(name) for name in view.index.shards}
        self._shard_of = (selection or Selection()).choose(view.index, entries)
        #: the selected tools' names, sorted
        self.names: list[str] = list(self._shard_of)
        chosen = self._shard_of
        #: the scopes each selected tool's route declares (the policy starts from these)
        self.declared_scopes: dict[str, tuple[str, ...]] = {
            t: tuple(entries[s].scopes.get(t, ())) for t, s in chosen.items()
        }
        read_only = {t for e in entries.values() for t in e.read_only}
        self.read_only = frozenset(t for t in chosen if t in read_only)
        #: every tool of the bundle, selected or not (flags may name any of them)
        self.all_names = frozenset(t for e in entries.values() for t in e.tools)
        #: every toolset with a served tool → its served tools, sorted
        self.toolsets: dict[str, list[str]] = {}
        for toolset in all_toolsets(view.index, entries):
            served = [t for t in toolset.tools if t in chosen]
            if served:
                self.toolsets[toolset.name] = sorted(served)
        self._shard_cache = shard_cache
        self._shards: OrderedDict[str, dict[str, dict[str, Any]]] = OrderedDict()
        self._routes: dict[str, Route] = {}
        self.routes: Mapping[str, Route] = _Lookup(self.names, self.route)
        self.by_name: Mapping[str, dict[str, Any]] = _Lookup(self.names, self.tool)
        self._pool = descriptor_pool.DescriptorPool()
        self._files: dict[str, descriptor_pb2.FileDescriptorProto] = {}
        self._loaded: set[str] = set()  # descriptor shards (packages) in the pool
        self._package_files: dict[str, list[str]] = {}  # descriptor shard → its files
        self._renderers: dict[str, SchemaRenderer] = {}
        self._methods: dict[str, Method] = {}
        self._input_schemas: dict[str, dict[str, Any]] = {}
        self._validators: dict[str, SchemaValidator] = {}
        self._strict_validators: dict[str, SchemaValidator] = {}
        self._aliases: dict[str, str] | None = None

    @property
    def shard_of(self) -> Mapping[str, str]:
        """Each served tool's shard."""
        return self._shard_of

    # ---- tools and routes, shard by shard

    def _shard(self, name: str) -> dict[str, dict[str, Any]]:
        """A tools shard's Tool objects by name (read on first use, kept in the LRU)."""
        tools = self._shards.get(name)
        if tools is None:
            shard = self.view.shard(name)
            self._routes |= {t: r for t, r in shard.routes.items() if t in self._shard_of}
            tools = self._shards[name] = {t["name"]: t for t in shard.tools}
            while len(self._shards) > self._shard_cache:
                self._shards.popitem(last=False)
        else:
            self._shards.move_to_end(name)
        return tools

    def tool(self, name: str) -> dict[str, Any] | None:
        """The MCP Tool object of a selected tool (None for any other name)."""
        shard = self._shard_of.get(name)
        return None if shard is None else self._shard(shard)[name]

    def route(self, name: str) -> Route | None:
        found = self._routes.get(name)
        if found is None and name in self._shard_of:
            self._shard(self._shard_of[name])
            found = self._routes[name]
        return found

    def tools_named(self, names: list[str]) -> list[dict[str, Any]]:
        """The Tool objects of these selected tools, in this order, reading each shard once."""
        by_shard: dict[str, list[str]] = {}
        for name in names:
            by_shard.setdefault(self._shard_of[name], []).append(name)
        found: dict[str, dict[str, Any]] = {}
        for shard, wanted in by_shard.items():
            tools = self._shard(shard)
            found |= {n: tools[n] for n in wanted}
        return [found[n] for n in names]

    @property
    def tools(self) -> list[dict[str, Any]]:
        """Every selected tool's Tool object, sorted by name (reads every shard)."""
        return self.tools_named(self.names)

    @property
    def aliases(self) -> dict[str, str]:
        """go-micro gateway tool names (`users.Users.Get`, `users_Users_Get`) → tool names,
        worked out on first use (it reads the routes of every shard)."""
        if self._aliases is None:
            self._aliases = go_micro_aliases({n: r for n in self.names if (r := self.route(n))})
        return self._aliases

    def resolve(self, name: str) -> str:
        """A selected tool's name, or the tool a go-micro name stands for, or `name`."""
        if name in self._shard_of:
            return name
        return self.aliases.get(name, name)

    def prepare(self, name: str) -> Route | None:
        """Everything a call of `name` reads from the bundle, read now (its route, descriptors
        and validators), so that nothing is read once the call is under way; None for a name
        that is not served. Raises `BundleChanged` when a file no longer matches the index."""
        route = self.route(name)
        if route is not None:
            self.method(name)
            self.input_validator(name)
        if route is not None and self.strict_inputs:
            self.strict_validator(name)
        return route

    # ---- descriptors, loaded per package

    def _package_of(self, full_name: str) -> str | None:
        """The descriptor shard (proto package) that defines a service or message type: the
        longest package that prefixes the name."""
        parts = full_name.split(".")
        for cut in range(len(parts) - 1, 0, -1):
            package = ".".join(parts[:cut])
            if package in self.index.descriptors:
                return package
        return "" if "" in self.index.descriptors else None

    def _load_package(self, package: str) -> None:
        """A descriptor shard into the pool, after the shards its files import."""
        order: list[str] = []
        stack, seen = [package], set(self._loaded)
        while stack:
            current = stack[-1]
            if current in seen:
                stack.pop()
                continue
            todo = [
                i for i in self.index.descriptors[current].imports
                if i not in seen and i in self.index.descriptors
            ]  # fmt: skip
            if todo:
                stack.append(todo[0])
                continue
            stack.pop()
            seen.add(current)
            order.append(current)
        for name in order:
            entry = self.index.descriptors[name]
            try:
                data = self.view.read(entry.file)
                fds = descriptor_pb2.FileDescriptorSet.FromString(data)
            except DecodeError as exc:
                raise UserError(
                    f"{self.folder}/{entry.file} is not a valid descriptor set: {exc}",
                    hint=REBUILD,
                ) from None
            self._package_files[name] = [f.name for f in fds.file]
            for f in fds.file:  # dependencies first within the shard
                if f.name in self._files:
                    continue
                try:
                    self._pool.Add(f)
                except (TypeError, ValueError) as exc:
                    raise UserError(
                        f"{self.folder}: the descriptors of {f.name} do not load: {exc}",
                        hint=REBUILD,
                    ) from None
                self._files[f.name] = f
            self._loaded.add(name)

    def _types_of(self, full_name: str) -> str:
        """Load what defines `full_name`; returns the package whose renderer serves it (""
        stands for all of the bundle's descriptors when no package is found)."""
        package = self._package_of(full_name)
        if package is None:  # not named after a package (a go-micro gRPC server's service)
            for name in self.index.descriptors:
                self._load_package(name)
            return "*"
        self._load_package(package)
        return package

    def _renderer(self, package: str) -> SchemaRenderer:
        renderer = self._renderers.get(package)
        if renderer is None:
            files = self._closure(package)
            with_services = {f.name for f in files if f.service}
            catalog: Catalog = catalog_from_files(files, with_services, Warnings())
            renderer = self._renderers[package] = SchemaRenderer(catalog)
        return renderer

    def _closure(self, package: str) -> list[descriptor_pb2.FileDescriptorProto]:
        """The loaded files of a package and everything they import, dependencies first."""
        if package == "*":
            return list(self._files.values())
        reached = _reached(package, self.index.descriptors)
        wanted = {f for name in reached for f in self._package_files.get(name, ())}
        return [f for name, f in self._files.items() if name in wanted]

    def method(self, tool: str) -> Method:
        found = self._methods.get(tool)
        if found is None:
            route = self.route(tool)
            if isinstance(route, GrpcRoute):
                self._types_of(route.service)
                method: MethodDescriptor = self._pool.FindMethodByName(route.full_method)
                found = Method(
                    route,
                    message_factory.GetMessageClass(method.input_type),
                    message_factory.GetMessageClass(method.output_type),
                )
            else:
                assert isinstance(route, GoMicroRoute)
                found = Method(
                    route,
                    None if route.request is None else self.message_class(route.request),
                    None if route.response is None else self.message_class(route.response),
                )
            self._methods[tool] = found
        return found

    def message_class(self, full_name: str) -> type[Message]:
        """The dynamic message class of a type the descriptors define."""
        self._types_of(full_name)
        return message_factory.GetMessageClass(self._pool.FindMessageTypeByName(full_name))

    def input_schema(self, tool: str) -> dict[str, Any]:
        """The precise input schema of a tool: what its backend accepts, exactly (for a
        go-micro endpoint only its registry describes, the manifest's schema)."""
        schema = self._input_schemas.get(tool)
        if schema is None:
            route = self.route(tool)
            if isinstance(route, GrpcRoute):
                name = self.method(tool).input_descriptor.full_name
                schema = self._renderer(self._types_of(route.service)).precise(name, output=False)
            elif isinstance(route, GoMicroRoute) and route.request is not None:
                renderer = self._renderer(self._types_of(route.request))
                schema = renderer.precise(route.request, output=False)
            else:
                schema = self.by_name[tool]["inputSchema"]
            self._input_schemas[tool] = schema
        return schema

    def input_validator(self, tool: str) -> SchemaValidator:
        validator = self._validators.get(tool)
        if validator is None:
            validator = self._validators[tool] = validator_for(self.input_schema(tool))
        return validator

    @property
    def strict_inputs(self) -> bool:
        """Built for OpenAI strict mode: arguments must match the manifest's inputSchema first
        (see `arguments.strict_arguments`)."""
        return self.index.strict_inputs

    def strict_validator(self, tool: str) -> SchemaValidator:
        """The validator of a tool's inputSchema as the manifest has it (for strict bundles)."""
        validator = self._strict_validators.get(tool)
        if validator is None:
            schema = self.by_name[tool]["inputSchema"]
            validator = self._strict_validators[tool] = validator_for(schema)
        return validator


class _Lookup(Mapping[str, Any]):
    """A read-only mapping over the selected tools whose values are fetched on access."""

    def __init__(self, names: list[str], fetch: Any) -> None:
        self._names = names
        self._known = frozenset(names)
        self._fetch = fetch

    def __getitem__(self, name: str) -> Any:
        if name not in self._known:
            raise KeyError(name)
        return self._fetch(name)

    def __contains__(self, name: object) -> bool:
        return name in self._known

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


def _reached(package: str, descriptors: Mapping[str, Any]) -> set[str]:
    """A descriptor shard and every shard it imports, transitively."""
    seen, todo = set(), [package]
    while todo:
        current = todo.pop()
        if current in seen or current not in descriptors:
            continue
        seen.add(current)
        todo += descriptors[current].imports
    return seen


def go_micro_aliases(routes: dict[str, Route]) -> dict[str, str]:
    """go-micro gateway tool names (`users.Users.Get`, `users_Users_Get`) → tool names."""
    aliases: dict[str, str] = {}
    for tool, route in sorted(routes.items()):
        if isinstance(route, GoMicroRoute):
            dotted = f"{route.service}.{route.endpoint}"
            for alias in (dotted, dotted.replace(".", "_")):
                if alias not in routes:
                    aliases.setdefault(alias, tool)
    return aliases
