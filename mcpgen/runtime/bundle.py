"""A bundle as the server sees it: the tools to list, their routes, and the protobuf types.

The index and every shard are read once (through `mcpgen.contract`). The descriptor shards
become a descriptor pool with dynamic message
classes (no generated `_pb2` modules). The precise input schema of each tool, which the
server validates arguments against, is rendered on first use from the same descriptors by the
same renderer the compiler uses, so the server checks exactly what the build promised.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import Descriptor, MethodDescriptor
from google.protobuf.message import Message

from mcpgen.contract import INDEX, BundleView, GoMicroRoute, GrpcRoute, Route, open_bundle
from mcpgen.errors import UserError, Warnings
from mcpgen.model import Catalog
from mcpgen.runtime.validation import SchemaValidator, validator_for
from mcpgen.schema import SchemaRenderer
from mcpgen.sources.descriptors import catalog_from_files


@dataclass(frozen=True, slots=True)
class GrpcMethod:
    """How to forward one tool to gRPC: the method path and its dynamic message classes."""

    path: str
    streaming: str  # "unary" or "server"
    service: str
    input_class: type[Message]
    output_class: type[Message]
    nodes: tuple[str, ...] = ()  # a go-micro gRPC server's registered nodes

    @property
    def input_descriptor(self) -> Descriptor:
        return self.input_class.DESCRIPTOR

    @property
    def output_descriptor(self) -> Descriptor:
        return self.output_class.DESCRIPTOR


class Bundle:
    """The tools of a bundle folder, sorted by name, read through `mcpgen.contract`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        if not (folder / INDEX).is_file():
            raise UserError(
                f"{folder / INDEX} does not exist",
                hint="point the server at a folder written by `mcpgen build`",
            )
        view = open_bundle(folder)
        view.require_current("serves")
        self.index = view.index
        tools: list[dict[str, Any]] = []
        self.routes: dict[str, Route] = {}
        for tool, route in view.tools():
            tools.append(tool)
            self.routes[tool["name"]] = route
        self.tools = sorted(tools, key=lambda t: t["name"])
        #: the client profile the inputSchemas were built for (`mcpgen build --profile`)
        self.profile: str | None = view.index.profile
        self.by_name = {tool["name"]: tool for tool in self.tools}
        self.aliases = go_micro_aliases(self.routes)
        self._files: list[descriptor_pb2.FileDescriptorProto] = []
        self._pool = descriptor_pool.DescriptorPool()
        if view.index.descriptors:
            self._load_descriptors(view)
        self._methods: dict[str, GrpcMethod] = {}
        self._input_schemas: dict[str, dict[str, Any]] = {}
        self._validators: dict[str, SchemaValidator] = {}
        self._strict_validators: dict[str, SchemaValidator] = {}

    def _load_descriptors(self, view: BundleView) -> None:
        """Every descriptor shard's files, added to the pool imports first."""
        for f in view.descriptor_files():
            try:
                self._pool.Add(f)
            except (TypeError, ValueError) as exc:
                raise UserError(
                    f"{self.folder}: the descriptors of {f.name} do not load: {exc}",
                    hint="rebuild the bundle with `mcpgen build`",
                ) from None
            self._files.append(f)

    def grpc_method(self, tool: str) -> GrpcMethod:
        found = self._methods.get(tool)
        if found is None:
            route = self.routes[tool]
            assert isinstance(route, GrpcRoute)
            method: MethodDescriptor = self._pool.FindMethodByName(
                f"{route.service}.{route.method}"
            )
            found = GrpcMethod(
                path=route.path,
                streaming=route.streaming,
                service=route.service,
                input_class=message_factory.GetMessageClass(method.input_type),
                output_class=message_factory.GetMessageClass(method.output_type),
                nodes=route.nodes or (),
            )
            self._methods[tool] = found
        return found

    @cached_property
    def _renderer(self) -> SchemaRenderer:
        with_services = {f.name for f in self._files if f.service}
        catalog: Catalog = catalog_from_files(self._files, with_services, Warnings())
        return SchemaRenderer(catalog)

    def message_class(self, full_name: str) -> type[Message]:
        """The dynamic message class of a type the descriptors define."""
        return message_factory.GetMessageClass(self._pool.FindMessageTypeByName(full_name))

    def input_schema(self, tool: str) -> dict[str, Any]:
        """The precise input schema of a tool: what its backend accepts, exactly (for a
        go-micro endpoint only its registry describes, the manifest's schema)."""
        schema = self._input_schemas.get(tool)
        if schema is None:
            route = self.routes[tool]
            if isinstance(route, GrpcRoute):
                method = self.grpc_method(tool)
                schema = self._renderer.precise(method.input_descriptor.full_name, output=False)
            elif route.request is not None:
                schema = self._renderer.precise(route.request, output=False)
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
