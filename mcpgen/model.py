"""The one intermediate representation (IR) of the pipeline.

Every source (.proto files, descriptor sets, reflection snapshots, registry snapshots) produces a
`Catalog`; every later stage (schema, tools, emit) reads only the `Catalog`. Nothing after this
module knows which source a service came from, except through its `Binding` (how the backend is
reached).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from google.protobuf import descriptor_pb2


class Scalar(StrEnum):
    """Protobuf scalar types, named as in .proto files."""

    DOUBLE = "double"
    FLOAT = "float"
    INT32 = "int32"
    INT64 = "int64"
    UINT32 = "uint32"
    UINT64 = "uint64"
    SINT32 = "sint32"
    SINT64 = "sint64"
    FIXED32 = "fixed32"
    FIXED64 = "fixed64"
    SFIXED32 = "sfixed32"
    SFIXED64 = "sfixed64"
    BOOL = "bool"
    STRING = "string"
    BYTES = "bytes"


class Streaming(StrEnum):
    UNARY = "unary"
    SERVER = "server"
    CLIENT = "client"
    BIDI = "bidi"


class Idempotency(StrEnum):
    UNKNOWN = "IDEMPOTENCY_UNKNOWN"
    NO_SIDE_EFFECTS = "NO_SIDE_EFFECTS"
    IDEMPOTENT = "IDEMPOTENT"


class FieldBehavior(StrEnum):
    """The `google.api.field_behavior` values mcpgen acts on."""

    OPTIONAL = "OPTIONAL"
    REQUIRED = "REQUIRED"
    OUTPUT_ONLY = "OUTPUT_ONLY"
    INPUT_ONLY = "INPUT_ONLY"
    IMMUTABLE = "IMMUTABLE"
    UNORDERED_LIST = "UNORDERED_LIST"
    NON_EMPTY_DEFAULT = "NON_EMPTY_DEFAULT"
    IDENTIFIER = "IDENTIFIER"


@dataclass(frozen=True, slots=True)
class TypeRef:
    """The type of a value: a scalar, or the full name (no leading dot) of an enum or message."""

    scalar: Scalar | None = None
    enum: str | None = None
    message: str | None = None


@dataclass(slots=True)
class Rules:
    """Validation rules of one field, normalized from `buf.validate` or protoc-gen-validate.

    Keys of `schema` are JSON Schema keywords that apply to the value (or, for repeated and map
    fields, to the container); `items`, `keys` and `values` hold the rules of the elements.
    `notes` are rules that JSON Schema cannot express; they end up in the description.
    """

    required: bool = False
    schema: dict[str, Any] = field(default_factory=dict)
    items: Rules | None = None
    keys: Rules | None = None
    values: Rules | None = None
    enum_allowed: list[int] | None = None  # enum numbers a value must be one of
    enum_excluded: list[int] = field(default_factory=list)
    enum_defined_only: bool = False
    notes: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Field:
    name: str
    json_name: str
    number: int
    type: TypeRef
    repeated: bool = False
    map_key: Scalar | None = None  # set for map fields; `type` is then the value type
    oneof: str | None = None  # name of the real (non-synthetic) oneof holding the field
    proto3_optional: bool = False
    proto2_required: bool = False
    behaviors: frozenset[FieldBehavior] = frozenset()
    deprecated: bool = False
    doc: str = ""
    rules: Rules | None = None

    @property
    def is_map(self) -> bool:
        return self.map_key is not None

    @property
    def required(self) -> bool:
        """Required as mcpgen defines it: field_behavior REQUIRED, proto2 required, or a rule."""
        return (
            FieldBehavior.REQUIRED in self.behaviors
            or self.proto2_required
            or (self.rules is not None and self.rules.required)
        )


@dataclass(slots=True)
class Message:
    full_name: str
    fields: list[Field] = field(default_factory=list)
    oneofs: dict[str, list[str]] = field(default_factory=dict)  # oneof name -> field names
    required_oneofs: list[str] = field(default_factory=list)  # oneofs a rule says must be set
    extendable: bool = False  # declares extension ranges (proto2)
    doc: str = ""
    deprecated: bool = False
    file: str = ""


@dataclass(slots=True)
class EnumValue:
    name: str
    number: int
    doc: str = ""
    deprecated: bool = False


@dataclass(slots=True)
class Enum:
    full_name: str
    values: list[EnumValue] = field(default_factory=list)
    closed: bool = False  # proto2 enums reject unknown numbers
    doc: str = ""
    deprecated: bool = False
    file: str = ""


@dataclass(frozen=True, slots=True)
class HttpBinding:
    """A `google.api.http` rule: the HTTP verb (lower case) and path template."""

    verb: str
    path: str
    body: str = ""


@dataclass(frozen=True, slots=True)
class ValueTree:
    """A type as a go-micro registry describes it: reflection over a Go struct.

    `type` is the Go type name (`string`, `int64`, `[]string`, `""` for a map, `User`, ...);
    a struct has one child per exported field, named by its json tag; a struct deeper than
    go-micro's depth limit has its type name and no children, as have enums and named scalars.
    """

    name: str
    type: str
    values: tuple[ValueTree, ...] | None = None


@dataclass(slots=True)
class Method:
    name: str
    input_type: str  # full message name; "" when only `input_tree` describes the input
    output_type: str
    streaming: Streaming = Streaming.UNARY
    idempotency: Idempotency = Idempotency.UNKNOWN
    http: HttpBinding | None = None
    deprecated: bool = False
    doc: str = ""
    # what a go-micro registry adds
    endpoint: str = ""  # go-micro endpoint name, `Handler.Method`
    input_tree: ValueTree | None = None  # registry-only methods: their request and response
    output_tree: ValueTree | None = None
    examples: list[Any] = field(default_factory=list)  # example arguments (parsed JSON)
    scopes: tuple[str, ...] = ()  # any one of them grants access (the policy layer's input)


@dataclass(frozen=True, slots=True)
class GrpcBinding:
    """The service is reached over gRPC; its messages are described by the catalog's files."""

    kind: str = "grpc"


@dataclass(frozen=True, slots=True)
class GoMicroBinding:
    """The service is a go-micro service, reached over mucp (HTTP) at its registered nodes,
    or over gRPC when its nodes run go-micro's gRPC server (`server: grpc`)."""

    service: str  # the registry name, e.g. "users"
    version: str = "latest"
    nodes: tuple[str, ...] = ()  # host:port, in node-id order
    server: str = "mucp"
    kind: str = "go-micro"


@dataclass(slots=True)
class Service:
    full_name: str
    package: str
    methods: list[Method] = field(default_factory=list)
    doc: str = ""
    deprecated: bool = False
    file: str = ""
    binding: GrpcBinding | GoMicroBinding = field(default_factory=GrpcBinding)

    @property
    def name(self) -> str:
        return self.full_name.rpartition(".")[2]

    def method_full_name(self, method: Method) -> str:
        return f"{self.full_name}.{method.name}"


@dataclass(slots=True)
class Catalog:
    """Everything the sources know: services to expose and every type they reference.

    `descriptor_files` are all proto files (sources and their imports, dependencies first) when
    the services come from protobuf; the generated server forwards with them.
    """

    services: list[Service] = field(default_factory=list)
    messages: dict[str, Message] = field(default_factory=dict)
    enums: dict[str, Enum] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    descriptor_files: list[descriptor_pb2.FileDescriptorProto] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # what a source found but cannot serve
