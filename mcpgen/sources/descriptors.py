"""FileDescriptorSet → Catalog.

Reads descriptor protos directly (not a DescriptorPool) because the comments live in
`source_code_info`, which pools drop. Only the types reachable from the exposed services are
converted, so a corpus of thousands of files costs time in proportion to what is exposed.
"""

from __future__ import annotations

import gc
import gzip
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2, unknown_fields
from google.protobuf.message import DecodeError

from mcpgen.errors import UserError, Warnings, display_path
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


def clean_comment(text: str) -> str:
    """Comment text as a description: markers and `buf:lint:`/`(-- --)` internals removed."""
    if not text:
        return ""
    plain = not (  # no _COMMENT_MARKERS, spelled out: a generator costs more than the search
        "(--" in text
        or "buf:lint:" in text
        or "@exclude" in text
        or "\r" in text
        or "\x0b" in text
        or "\x0c" in text
        or "\x1c" in text
        or "\x1d" in text
        or "\x1e" in text
    ) and (text.isascii() or not _UNICODE_BREAKS.search(text))
    if plain:  # the common case: the same result as line by line, in C
        # `re.sub("^ ", "", text, flags=re.M)`, in one pass: `strip` takes a leading space
        return text.replace("\n ", "\n").strip()
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


class _File:
    """One input file with what every message of it asks for, read from the proto once."""

    __slots__ = ("comments", "name", "proto", "proto2")

    def __init__(self, proto: descriptor_pb2.FileDescriptorProto) -> None:
        self.proto = proto
        self.name = proto.name
        self.proto2 = (proto.syntax or "proto2") == "proto2"
        #: source_code_info path -> (leading, trailing) comments, built on first use
        self.comments: dict[tuple[int, ...], tuple[str, str]] | None = None


@dataclass(slots=True)
class _Located:
    """A descriptor proto with the file it lives in and its source_code_info path."""

    proto: descriptor_pb2.DescriptorProto | descriptor_pb2.EnumDescriptorProto
    file: _File
    path: tuple[int, ...]


def _comment_table(file: descriptor_pb2.FileDescriptorProto) -> dict[tuple[int, ...], Any]:
    """The commented locations of a file; their text is kept to be read once, not twice."""
    table = {}
    for loc in file.source_code_info.location:
        lead = loc.leading_comments
        trail = loc.trailing_comments
        if lead or trail:
            table[tuple(loc.path)] = (lead, trail)
    return table


class _Reader:
    def __init__(self, files: list[descriptor_pb2.FileDescriptorProto], warnings: Warnings):
        self.files = {f.name: f for f in files}
        self.warnings = warnings
        self.messages: dict[str, _Located] = {}
        self.enums: dict[str, _Located] = {}
        self.rule_decoder = options.RuleDecoder(self.files)
        #: serialized FieldOptions -> (parsed table, field behaviors, has rule extensions);
        #: fields repeat the same few options (`(google.api.field_behavior) = REQUIRED`)
        self._field_options: dict[bytes, tuple[options.OptionFields, frozenset, bool]] = {}
        self._type_refs: dict[str, TypeRef] = {}
        self.inputs = [_File(proto) for proto in files]  # in the order of `files`
        for f in self.inputs:
            proto = f.proto
            package = proto.package
            prefix = f".{package}" if package else ""
            for i, m in enumerate(proto.message_type):
                self._index_message(m, f, f"{prefix}.{m.name}", (_MESSAGE, i))
            for i, e in enumerate(proto.enum_type):
                self.enums[f"{prefix}.{e.name}"] = _Located(e, f, (_ENUM, i))

    def _index_message(self, m, f: _File, full: str, path: tuple[int, ...]) -> None:
        self.messages[full] = _Located(m, f, path)
        for i, nested in enumerate(m.nested_type):
            self._index_message(nested, f, f"{full}.{nested.name}", (*path, _NESTED, i))
        for i, e in enumerate(m.enum_type):
            self.enums[f"{full}.{e.name}"] = _Located(e, f, (*path, _NESTED_ENUM, i))

    def comment(self, file: _File, path: tuple[int, ...]) -> str:
        table = file.comments
        if table is None:
            table = file.comments = _comment_table(file.proto)
        found = table.get(path)
        if found is None:
            return ""
        lead, trail = found  # joined as "\n\n".join(t.strip("\n") for t in (lead, trail) if t)
        if lead and trail:
            return clean_comment(lead.strip("\n") + "\n\n" + trail.strip("\n"))
        return clean_comment((lead or trail).strip("\n"))

    def field_options(self, raw: bytes) -> tuple[options.OptionFields, frozenset, bool]:
        """Parsed options, behaviors and whether rules may be present; the table is read-only."""
        known = self._field_options.get(raw)
        if known is None:
            table = options.option_fields(raw)
            behaviors = options.field_behaviors(table) if table else frozenset()
            rules = options.BUF_VALIDATE in table or options.PGV in table
            known = self._field_options[raw] = (table, behaviors, rules)
        return known

    def type_ref(self, kind: str, name: str) -> TypeRef:
        """One TypeRef per enum or message (frozen, so sharing it is safe)."""
        key = kind + name
        ref = self._type_refs.get(key)
        if ref is None:
            ref = TypeRef(enum=name) if kind == "e" else TypeRef(message=name)
            self._type_refs[key] = ref
        return ref


_SCALAR_REFS = {number: TypeRef(scalar=scalar) for number, scalar in _SCALARS.items()}
_LABEL_REPEATED = FDP.LABEL_REPEATED
_LABEL_REQUIRED = FDP.LABEL_REQUIRED
_TYPE_ENUM = FDP.TYPE_ENUM
_LEGACY_REQUIRED = descriptor_pb2.FeatureSet.LEGACY_REQUIRED


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while the catalog is built.

    Building it allocates hundreds of thousands of objects and no reference cycles, and every
    allocation burst makes the collector walk the whole heap again, descriptors included: on
    googleapis that was a third of this stage. Cycles made meanwhile wait for the next run.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def catalog_from_files(
    files: list[descriptor_pb2.FileDescriptorProto],
    exposed: set[str],
    warnings: Warnings,
) -> Catalog:
    """Build the catalog: services of the `exposed` files and every type they reach."""
    with _collector_paused():
        return _catalog(files, exposed, warnings)


def _catalog(
    files: list[descriptor_pb2.FileDescriptorProto],
    exposed: set[str],
    warnings: Warnings,
) -> Catalog:
    reader = _Reader(files, warnings)
    catalog = Catalog(files=sorted(f.name for f in files), descriptor_files=files)

    pending: list[str] = []
    for f in reader.inputs:
        if f.name not in exposed:
            continue
        proto = f.proto
        for si, s in enumerate(proto.service):
            full = f"{proto.package}.{s.name}" if proto.package else s.name
            service = Service(
                full_name=full,
                package=proto.package,
                doc=reader.comment(f, (_SERVICE, si)),
                deprecated=s.options.deprecated,
                file=f.name,
            )
            for mi, m in enumerate(s.method):
                method = _method(reader, f, m, (_SERVICE, si, _METHOD, mi))
                service.methods.append(method)
                pending += [method.input_type, method.output_type]
            catalog.services.append(service)

    messages = catalog.messages
    seen_enums: set[str] = set()
    while pending:
        name = pending.pop()
        if name in messages:
            continue
        located = reader.messages.get("." + name)
        if located is None:
            raise UserError(f"type {name} is referenced but not defined in the inputs")
        message = _message(reader, name, located)
        messages[name] = message
        for fld in message.fields:
            ref = fld.type
            if ref.message and ref.message not in messages:
                pending.append(ref.message)
            if ref.enum and ref.enum not in seen_enums:
                seen_enums.add(ref.enum)
                catalog.enums[ref.enum] = _enum(reader, ref.enum)
    if reader.rule_decoder.missing:
        for missing in sorted(reader.rule_decoder.missing):
            warnings.add(
                f"validation rules are present but {missing} is not among the inputs; "
                "the rules were ignored (add it to the inputs or the import paths)"
            )
    catalog.services.sort(key=lambda s: s.full_name)
    return catalog


def _method(reader: _Reader, f: _File, m, path: tuple[int, ...]) -> Method:
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
    # each field read once: upb builds a new wrapper object on every access
    fields = [(fp, fp.HasField("oneof_index")) for fp in proto.field]
    synthetic: set[int] = set()
    for fp, in_oneof in fields:
        if in_oneof and fp.proto3_optional:
            synthetic.add(fp.oneof_index)
    oneof_required: dict[str, bool] = {}
    oneof_names: list[str] = []
    for i, oneof in enumerate(proto.oneof_decl):
        oneof_names.append(oneof.name)
        if i not in synthetic:
            message.oneofs[oneof.name] = []
            if oneof.HasField("options"):
                opts = options.option_fields(oneof.options.SerializeToString())
                oneof_required[oneof.name] = reader.rule_decoder.oneof_required(opts)
    out = message.fields
    for fi, (fp, in_oneof) in enumerate(fields):
        fld = _field(reader, f, fp, (*path, _FIELD, fi))
        if in_oneof:
            index = fp.oneof_index
            if index not in synthetic:
                oneof_name = oneof_names[index]
                fld.oneof = oneof_name
                message.oneofs[oneof_name].append(fld.name)
        out.append(fld)
    message.oneofs = {k: v for k, v in message.oneofs.items() if v}
    message.required_oneofs = sorted(
        k for k, v in oneof_required.items() if v and k in message.oneofs
    )
    return message


def _field(reader: _Reader, f: _File, fp, path: tuple[int, ...]) -> Field:
    type_ref, map_key = _type_of(reader, fp)
    label = fp.label
    name = fp.name
    if fp.HasField("options"):
        fo = fp.options
        opts, behaviors, has_rules = reader.field_options(fo.SerializeToString())
        deprecated = fo.deprecated
        legacy_required = fo.HasField("features") and fo.features.field_presence == _LEGACY_REQUIRED
    else:
        opts, behaviors, has_rules = {}, frozenset(), False
        deprecated = legacy_required = False
    return Field(
        name=name,
        json_name=fp.json_name or _json_name(name),
        number=fp.number,
        type=type_ref,
        repeated=label == _LABEL_REPEATED and map_key is None,
        map_key=map_key,
        proto3_optional=fp.proto3_optional,
        proto2_required=label == _LABEL_REQUIRED or legacy_required,
        behaviors=behaviors,
        deprecated=deprecated,
        doc=reader.comment(f, path),
        # without a rules extension field_rules finds no payload and returns None
        rules=reader.rule_decoder.field_rules(opts) if has_rules else None,
    )


def _type_of(reader: _Reader, fp) -> tuple[TypeRef, Scalar | None]:
    kind = fp.type
    scalar = _SCALAR_REFS.get(kind)
    if scalar is not None:
        return scalar, None
    type_name = fp.type_name
    if kind == _TYPE_ENUM:
        if type_name not in reader.enums:
            raise UserError(f"enum {type_name.lstrip('.')} is referenced but not defined")
        return reader.type_ref("e", type_name.lstrip(".")), None
    located = reader.messages.get(type_name)
    if located is None:
        raise UserError(f"message {type_name.lstrip('.')} is referenced but not defined")
    entry = located.proto
    if fp.label == _LABEL_REPEATED and entry.options.map_entry:
        key, value = entry.field[0], entry.field[1]
        value_ref, _ = _type_of(reader, value)
        return value_ref, _SCALARS[key.type]
    return reader.type_ref("m", type_name.lstrip(".")), None


def _enum(reader: _Reader, full_name: str) -> Enum:
    located = reader.enums["." + full_name]
    proto, f, path = located.proto, located.file, located.path
    closed = f.proto2
    if proto.options.HasField("features") and proto.options.features.HasField("enum_type"):
        closed = proto.options.features.enum_type == descriptor_pb2.FeatureSet.CLOSED
    else:
        fopts = f.proto.options
        if fopts.HasField("features") and fopts.features.HasField("enum_type"):
            closed = fopts.features.enum_type == descriptor_pb2.FeatureSet.CLOSED
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
