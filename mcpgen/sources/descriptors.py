"""FileDescriptorSet → Catalog.

Reads descriptor protos directly (not a DescriptorPool) because the comments live in
`source_code_info`, which pools drop. Only the types reachable from the exposed services are
converted, so a corpus of thousands of files costs time in proportion to what is exposed.
"""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2, unknown_fields
from google.protobuf.message import DecodeError

from mcpgen.errors import UserError, Warnings
from mcpgen.model import (
    Catalog,
    Enum,
    EnumValue,
    Field,
    Idempotency,
    Message,
    Method,
    Scalar,
    Service,
    Streaming,
    TypeRef,
)
from mcpgen.sources import options
from mcpgen.sources.protofiles import display_path

FDP = descriptor_pb2.FieldDescriptorProto
_SCALARS = {
    FDP.TYPE_DOUBLE: Scalar.DOUBLE,
    FDP.TYPE_FLOAT: Scalar.FLOAT,
    FDP.TYPE_INT64: Scalar.INT64,
    FDP.TYPE_UINT64: Scalar.UINT64,
    FDP.TYPE_INT32: Scalar.INT32,
    FDP.TYPE_FIXED64: Scalar.FIXED64,
    FDP.TYPE_FIXED32: Scalar.FIXED32,
    FDP.TYPE_BOOL: Scalar.BOOL,
    FDP.TYPE_STRING: Scalar.STRING,
    FDP.TYPE_BYTES: Scalar.BYTES,
    FDP.TYPE_UINT32: Scalar.UINT32,
    FDP.TYPE_SFIXED32: Scalar.SFIXED32,
    FDP.TYPE_SFIXED64: Scalar.SFIXED64,
    FDP.TYPE_SINT32: Scalar.SINT32,
    FDP.TYPE_SINT64: Scalar.SINT64,
}
_IDEMPOTENCY = {
    descriptor_pb2.MethodOptions.NO_SIDE_EFFECTS: Idempotency.NO_SIDE_EFFECTS,
    descriptor_pb2.MethodOptions.IDEMPOTENT: Idempotency.IDEMPOTENT,
}
# FileDescriptorProto paths of source_code_info (descriptor.proto field numbers)
_MESSAGE, _ENUM, _SERVICE = 4, 5, 6
_FIELD, _NESTED, _NESTED_ENUM, _ONEOF = 2, 3, 4, 8
_ENUM_VALUE, _METHOD = 2, 2
_BUF_IMAGE_FILE_EXTENSION = 8042  # buf.alpha.image.v1.ImageFile.buf_extension


def read_descriptor_set(path: Path) -> tuple[descriptor_pb2.FileDescriptorSet, set[str]]:
    """Read a FileDescriptorSet or buf image; return it and the names of its import-only files."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(
            f"cannot read descriptor set: {exc.strerror}", file=display_path(path)
        ) from exc
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise UserError("corrupt gzip data", file=display_path(path)) from exc
    hint = (
        "produce it with `protoc --include_imports --descriptor_set_out=FILE` "
        "or `buf build -o FILE`"
    )
    try:
        fds = descriptor_pb2.FileDescriptorSet.FromString(data)
    except DecodeError as exc:
        raise UserError(
            "not a FileDescriptorSet (the file is corrupt or in another format)",
            file=display_path(path),
            hint=hint,
        ) from exc
    if not fds.file or any(not f.name.endswith(".proto") for f in fds.file):
        raise UserError(
            "not a FileDescriptorSet (it holds no .proto file descriptors)",
            file=display_path(path),
            hint=hint,
        )
    imports = set()
    for f in fds.file:
        for unknown in unknown_fields.UnknownFieldSet(f):
            if unknown.field_number != _BUF_IMAGE_FILE_EXTENSION:
                continue
            if isinstance(unknown.data, bytes) and _is_import(unknown.data):
                imports.add(f.name)
    return fds, imports


def _is_import(image_file_extension: bytes) -> bool:
    """buf.alpha.image.v1.ImageFileExtension.is_import (field 1) is true."""
    return any(n == 1 and v == 1 for n, _, v in options.wire_fields(image_file_extension))


_COMMENT_BLOCK = re.compile(r"\(--.*?--\)", re.DOTALL)
# what makes a comment need the line-by-line path: markers, and line breaks other than \n
_COMMENT_MARKERS = ("(--", "buf:lint:", "@exclude", "\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e")
_UNICODE_BREAKS = re.compile("[\x85\u2028\u2029]")
_LEADING_SPACE = re.compile(r"^ ", re.MULTILINE)


def clean_comment(text: str) -> str:
    """Comment text as a description: markers and `buf:lint:`/`(-- --)` internals removed."""
    if not text:
        return ""
    plain = not any(m in text for m in _COMMENT_MARKERS) and (
        text.isascii() or not _UNICODE_BREAKS.search(text)
    )
    if plain:  # the common case: the same result as line by line, in C
        return _LEADING_SPACE.sub("", text).strip()
    return clean_comment_by_line(text)


def clean_comment_by_line(text: str) -> str:
    """`clean_comment` for any text, one line at a time."""
    text = _COMMENT_BLOCK.sub("", text)
    lines = []
    for line in text.splitlines():
        if line.strip().startswith(("buf:lint:", "@exclude")):
            continue
        lines.append(line[1:] if line.startswith(" ") else line)
    return "\n".join(lines).strip()


def _json_name(name: str) -> str:
    """protoc's ToJsonName, for descriptors written without json_name."""
    out, upper = [], False
    for ch in name:
        if ch == "_":
            upper = True
        elif upper:
            out.append(ch.upper())
            upper = False
        else:
            out.append(ch)
    return "".join(out)


@dataclass(slots=True)
class _Located:
    """A descriptor proto with the file it lives in and its source_code_info path."""

    proto: descriptor_pb2.DescriptorProto | descriptor_pb2.EnumDescriptorProto
    file: descriptor_pb2.FileDescriptorProto
    path: tuple[int, ...]


class _Reader:
    def __init__(self, files: list[descriptor_pb2.FileDescriptorProto], warnings: Warnings):
        self.files = {f.name: f for f in files}
        self.warnings = warnings
        self.messages: dict[str, _Located] = {}
        self.enums: dict[str, _Located] = {}
        self._comments: dict[str, dict[tuple[int, ...], Any]] = {}
        self.rule_decoder = options.RuleDecoder(self.files)
        for f in files:
            prefix = f".{f.package}" if f.package else ""
            for i, m in enumerate(f.message_type):
                self._index_message(m, f, f"{prefix}.{m.name}", (_MESSAGE, i))
            for i, e in enumerate(f.enum_type):
                self.enums[f"{prefix}.{e.name}"] = _Located(e, f, (_ENUM, i))

    def _index_message(self, m, f, full: str, path: tuple[int, ...]) -> None:
        self.messages[full] = _Located(m, f, path)
        for i, nested in enumerate(m.nested_type):
            self._index_message(nested, f, f"{full}.{nested.name}", (*path, _NESTED, i))
        for i, e in enumerate(m.enum_type):
            self.enums[f"{full}.{e.name}"] = _Located(e, f, (*path, _NESTED_ENUM, i))

    def comment(self, file: descriptor_pb2.FileDescriptorProto, path: tuple[int, ...]) -> str:
        table = self._comments.get(file.name)
        if table is None:
            table = {
                tuple(loc.path): loc
                for loc in file.source_code_info.location
                if loc.leading_comments or loc.trailing_comments
            }
            self._comments[file.name] = table
        loc = table.get(path)
        if loc is None:
            return ""
        parts = (loc.leading_comments, loc.trailing_comments)
        return clean_comment("\n\n".join(t.strip("\n") for t in parts if t))


def _syntax(file: descriptor_pb2.FileDescriptorProto) -> str:
    return file.syntax or "proto2"


def catalog_from_files(
    files: list[descriptor_pb2.FileDescriptorProto],
    exposed: set[str],
    warnings: Warnings,
) -> Catalog:
    """Build the catalog: services of the `exposed` files and every type they reach."""
    reader = _Reader(files, warnings)
    catalog = Catalog(files=sorted(f.name for f in files), descriptor_files=files)

    pending: list[str] = []
    for f in files:
        if f.name not in exposed:
            continue
        for si, s in enumerate(f.service):
            full = f"{f.package}.{s.name}" if f.package else s.name
            service = Service(
                full_name=full,
                package=f.package,
                doc=reader.comment(f, (_SERVICE, si)),
                deprecated=s.options.deprecated,
                file=f.name,
            )
            for mi, m in enumerate(s.method):
                method = _method(reader, f, m, (_SERVICE, si, _METHOD, mi))
                service.methods.append(method)
                pending += [method.input_type, method.output_type]
            catalog.services.append(service)

    seen_enums: set[str] = set()
    while pending:
        name = pending.pop()
        if name in catalog.messages:
            continue
        located = reader.messages.get("." + name)
        if located is None:
            raise UserError(f"type {name} is referenced but not defined in the inputs")
        message = _message(reader, name, located)
        catalog.messages[name] = message
        for fld in message.fields:
            if fld.type.message and fld.type.message not in catalog.messages:
                pending.append(fld.type.message)
            if fld.type.enum and fld.type.enum not in seen_enums:
                seen_enums.add(fld.type.enum)
                catalog.enums[fld.type.enum] = _enum(reader, fld.type.enum)
    if reader.rule_decoder.missing:
        for missing in sorted(reader.rule_decoder.missing):
            warnings.add(
                f"validation rules are present but {missing} is not among the inputs; "
                "the rules were ignored (add it to the inputs or the import paths)"
            )
    catalog.services.sort(key=lambda s: s.full_name)
    return catalog


def _method(reader: _Reader, f, m, path: tuple[int, ...]) -> Method:
    if m.client_streaming and m.server_streaming:
        streaming = Streaming.BIDI
    elif m.client_streaming:
        streaming = Streaming.CLIENT
    elif m.server_streaming:
        streaming = Streaming.SERVER
    else:
        streaming = Streaming.UNARY
    opts = options.option_fields(m.options.SerializeToString()) if m.HasField("options") else {}
    return Method(
        name=m.name,
        input_type=m.input_type.lstrip("."),
        output_type=m.output_type.lstrip("."),
        streaming=streaming,
        idempotency=_IDEMPOTENCY.get(m.options.idempotency_level, Idempotency.UNKNOWN),
        http=options.http_binding(opts) if opts else None,
        deprecated=m.options.deprecated,
        doc=reader.comment(f, path),
    )


def _message(reader: _Reader, full_name: str, located: _Located) -> Message:
    proto, f, path = located.proto, located.file, located.path
    message = Message(
        full_name=full_name,
        doc=reader.comment(f, path),
        deprecated=proto.options.deprecated,
        file=f.name,
        extendable=len(proto.extension_range) > 0,
    )
    proto2 = _syntax(f) == "proto2"
    synthetic: set[int] = set()
    for fp in proto.field:
        if fp.proto3_optional and fp.HasField("oneof_index"):
            synthetic.add(fp.oneof_index)
    oneof_required: dict[str, bool] = {}
    for i, oneof in enumerate(proto.oneof_decl):
        if i not in synthetic:
            message.oneofs[oneof.name] = []
            if oneof.HasField("options"):
                opts = options.option_fields(oneof.options.SerializeToString())
                oneof_required[oneof.name] = reader.rule_decoder.oneof_required(opts)
    for fi, fp in enumerate(proto.field):
        fld = _field(reader, f, fp, (*path, _FIELD, fi), proto2)
        if fp.HasField("oneof_index") and fp.oneof_index not in synthetic:
            oneof_name = proto.oneof_decl[fp.oneof_index].name
            fld.oneof = oneof_name
            message.oneofs[oneof_name].append(fld.name)
        message.fields.append(fld)
    message.oneofs = {k: v for k, v in message.oneofs.items() if v}
    message.required_oneofs = sorted(
        k for k, v in oneof_required.items() if v and k in message.oneofs
    )
    return message


def _field(reader: _Reader, f, fp, path: tuple[int, ...], proto2: bool) -> Field:
    type_ref, map_key = _type_of(reader, fp)
    opts = options.option_fields(fp.options.SerializeToString()) if fp.HasField("options") else {}
    required = fp.label == FDP.LABEL_REQUIRED or (
        fp.options.HasField("features")
        and fp.options.features.field_presence == descriptor_pb2.FeatureSet.LEGACY_REQUIRED
    )
    return Field(
        name=fp.name,
        json_name=fp.json_name or _json_name(fp.name),
        number=fp.number,
        type=type_ref,
        repeated=fp.label == FDP.LABEL_REPEATED and map_key is None,
        map_key=map_key,
        proto3_optional=fp.proto3_optional,
        proto2_required=required,
        behaviors=options.field_behaviors(opts) if opts else frozenset(),
        deprecated=fp.options.deprecated,
        doc=reader.comment(f, path),
        rules=reader.rule_decoder.field_rules(opts) if opts else None,
    )


def _type_of(reader: _Reader, fp) -> tuple[TypeRef, Scalar | None]:
    if fp.type in _SCALARS:
        return TypeRef(scalar=_SCALARS[fp.type]), None
    if fp.type == FDP.TYPE_ENUM:
        if fp.type_name not in reader.enums:
            raise UserError(f"enum {fp.type_name.lstrip('.')} is referenced but not defined")
        return TypeRef(enum=fp.type_name.lstrip(".")), None
    located = reader.messages.get(fp.type_name)
    if located is None:
        raise UserError(f"message {fp.type_name.lstrip('.')} is referenced but not defined")
    entry = located.proto
    if fp.label == FDP.LABEL_REPEATED and entry.options.map_entry:
        key, value = entry.field[0], entry.field[1]
        value_ref, _ = _type_of(reader, value)
        return value_ref, _SCALARS[key.type]
    return TypeRef(message=fp.type_name.lstrip(".")), None


def _enum(reader: _Reader, full_name: str) -> Enum:
    located = reader.enums["." + full_name]
    proto, f, path = located.proto, located.file, located.path
    closed = _syntax(f) == "proto2"
    if proto.options.HasField("features") and proto.options.features.HasField("enum_type"):
        closed = proto.options.features.enum_type == descriptor_pb2.FeatureSet.CLOSED
    elif f.options.HasField("features") and f.options.features.HasField("enum_type"):
        closed = f.options.features.enum_type == descriptor_pb2.FeatureSet.CLOSED
    return Enum(
        full_name=full_name,
        values=[
            EnumValue(
                name=v.name,
                number=v.number,
                doc=reader.comment(f, (*path, _ENUM_VALUE, i)),
                deprecated=v.options.deprecated,
            )
            for i, v in enumerate(proto.value)
        ],
        closed=closed,
        doc=reader.comment(f, path),
        deprecated=proto.options.deprecated,
        file=f.name,
    )
