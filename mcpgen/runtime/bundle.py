"""A bundle as the server sees it: the tools to list, their routes, and the protobuf types.

The manifest is read once. The FileDescriptorSet becomes a descriptor pool with dynamic message
classes (no generated `_pb2` modules). The precise input schema of each tool, which the
server validates arguments against, is rendered on first use from the same descriptors by the
same renderer the compiler uses, so the server checks exactly what the build promised.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import Descriptor, MethodDescriptor
from google.protobuf.message import DecodeError, Message

from mcpgen.errors import UserError, Warnings
from mcpgen.model import Catalog
from mcpgen.runtime.validation import SchemaValidator, validator_for
from mcpgen.schema import SchemaRenderer
from mcpgen.sources.descriptors import catalog_from_files

MANIFEST = "manifest.json"
DESCRIPTORS = "descriptors.binpb"


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
    """The tools of a bundle folder, in manifest order (sorted by name)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        manifest_path = folder / MANIFEST
        try:
            manifest = json.loads(manifest_path.read_bytes())
        except FileNotFoundError:
            raise UserError(
                f"{manifest_path} does not exist",
                hint="point the server at a folder written by `mcpgen build`",
            ) from None
        except (OSError, ValueError) as exc:
            raise UserError(
                f"{manifest_path} is not a readable manifest: {exc}",
                hint="rebuild the bundle with `mcpgen build`",
            ) from None
        if not isinstance(manifest, dict) or manifest.get("manifestVersion") != 1:
            raise UserError(
                f"{manifest_path} is not an mcpgen manifest of version 1",
                hint="rebuild the bundle with this version of mcpgen",
            )
        self.tools: list[dict[str, Any]] = manifest["tools"]
        self.routes: dict[str, dict[str, Any]] = manifest["routes"]
        #: the client profile the inputSchemas were built for (`mcpgen build --profile`)
        self.profile: str | None = manifest.get("profile")
        self.by_name = {tool["name"]: tool for tool in self.tools}
        self.aliases = go_micro_aliases(self.routes)
        self._files: list[descriptor_pb2.FileDescriptorProto] = []
        self._pool = descriptor_pool.DescriptorPool()
        if any(r["kind"] == "grpc" or "request" in r for r in self.routes.values()):
            self._load_descriptors(folder / DESCRIPTORS)
        self._methods: dict[str, GrpcMethod] = {}
        self._input_schemas: dict[str, dict[str, Any]] = {}
        self._validators: dict[str, SchemaValidator] = {}
        self._strict_validators: dict[str, SchemaValidator] = {}

    def _load_descriptors(self, path: Path) -> None:
        try:
            fds = descriptor_pb2.FileDescriptorSet.FromString(path.read_bytes())
            for f in fds.file:  # dependencies first, as the build writes them
                self._pool.Add(f)
        except FileNotFoundError:
            raise UserError(
                f"{path} does not exist; the bundle's gRPC tools need it",
                hint="rebuild the bundle with `mcpgen build`",
            ) from None
        except (DecodeError, TypeError, ValueError) as exc:
            raise UserError(f"{path} is not a valid descriptor set: {exc}") from None
        self._files = list(fds.file)

    def grpc_method(self, tool: str) -> GrpcMethod:
        found = self._methods.get(tool)
        if found is None:
            route = self.routes[tool]
            method: MethodDescriptor = self._pool.FindMethodByName(
                f"{route['service']}.{route['method']}"
            )
            found = GrpcMethod(
                path=route["path"],
                streaming=route["streaming"],
                service=route["service"],
                input_class=message_factory.GetMessageClass(method.input_type),
                output_class=message_factory.GetMessageClass(method.output_type),
                nodes=tuple(route.get("nodes", ())),
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
            if route["kind"] == "grpc":
                method = self.grpc_method(tool)
                schema = self._renderer.precise(method.input_descriptor.full_name, output=False)
            elif "request" in route:
                schema = self._renderer.precise(route["request"], output=False)
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
        return self.profile == "openai-strict"

    def strict_validator(self, tool: str) -> SchemaValidator:
        """The validator of a tool's inputSchema as the manifest has it (for strict bundles)."""
        validator = self._strict_validators.get(tool)
        if validator is None:
            schema = self.by_name[tool]["inputSchema"]
            validator = self._strict_validators[tool] = validator_for(schema)
        return validator


def go_micro_aliases(routes: dict[str, dict[str, Any]]) -> dict[str, str]:
    """go-micro gateway tool names (`users.Users.Get`, `users_Users_Get`) → tool names."""
    aliases: dict[str, str] = {}
    for tool, route in sorted(routes.items()):
        if route["kind"] == "go-micro":
            dotted = f"{route['service']}.{route['endpoint']}"
            for alias in (dotted, dotted.replace(".", "_")):
                if alias not in routes:
                    aliases.setdefault(alias, tool)
    return aliases
