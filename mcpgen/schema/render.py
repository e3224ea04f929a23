"""Messages → JSON Schema 2020-12, in the precise and the portable rendering.

Precise is sound for protobuf's JSON printer (outputs) and as strict as its parser (inputs):
message types are inlined except those on a reference cycle, which live in `$defs`. Portable is
what every major LLM client accepts: everything inlined, recursion cut at a depth limit, and
what it cannot express (oneof exclusivity, recursion) said in descriptions instead.
"""

from __future__ import annotations

from typing import Any

from mcpgen.model import Catalog, Enum, Field, FieldBehavior, Message, Rules, Scalar, TypeRef
from mcpgen.schema.scalars import (
    DIGITS,
    INT32,
    NULL_VALUE,
    OBJECT_WELL_KNOWN,
    ROOT_VALUE_KEY,
    SIGNED_DIGITS,
    WELL_KNOWN,
    WRAPPERS,
    scalar_schema,
    well_known_schema,
)
from mcpgen.schema.sizing import (
    LONG_TEXT,
    PORTABLE_MAX_NODES,
    recursive_types,
    shared_types,
)

Schema = dict[str, Any]
EXTENSION_KEY = r"^\[[A-Za-z_][A-Za-z0-9_.]*\]$"
UNLIMITED = 1000  # a nesting depth that stands for "no limit"
MAX_CUT_DEPTH = 12  # deepest nesting tried when a portable schema must be cut to size
#: The depth a portable rendering needs when it was cut for depth somewhere (none is enough).
_CUT = 1 << 40
#: A portable rendering: its schema, its size in schema objects, the depth it needs to be cut
#: nowhere for depth (0 for values that are no message, `_CUT` or more where it was cut), and
#: whether it met a recursive type (then it depends on how many more may be opened).
_Portable = tuple[Schema, int, int, bool]
_INTEGER_KEYS = {
    Scalar.INT32: SIGNED_DIGITS, Scalar.SINT32: SIGNED_DIGITS, Scalar.SFIXED32: SIGNED_DIGITS,
    Scalar.INT64: SIGNED_DIGITS, Scalar.SINT64: SIGNED_DIGITS, Scalar.SFIXED64: SIGNED_DIGITS,
    Scalar.UINT32: DIGITS, Scalar.FIXED32: DIGITS, Scalar.UINT64: DIGITS, Scalar.FIXED64: DIGITS,
}  # fmt: skip
_BEHAVIOR_NOTES = {
    FieldBehavior.OUTPUT_ONLY: "Output only.",
    FieldBehavior.INPUT_ONLY: "Input only.",
    FieldBehavior.IMMUTABLE: "Immutable once set.",
    FieldBehavior.IDENTIFIER: "Identifier of the resource.",
}
# Rule keywords that constrain a value of the given JSON type.
_STRING_KEYWORDS = {"minLength", "maxLength", "pattern", "format", "enum"}
_NUMBER_KEYWORDS = {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "enum"}
_ARRAY_KEYWORDS = {"minItems", "maxItems", "uniqueItems"}
_OBJECT_KEYWORDS = {"minProperties", "maxProperties"}


def join_text(*parts: str | None) -> str:
    texts = [text for p in parts if p and (text := p.strip())]
    return texts[0] if len(texts) == 1 else "\n\n".join(texts)


class SchemaRenderer:
    """Renders the messages of one catalog. Caches per message, so shared types cost once."""

    def __init__(
        self,
        catalog: Catalog,
        recursion_depth: int = 3,
        portable_max_nodes: int = PORTABLE_MAX_NODES,
    ) -> None:
        self.catalog = catalog
        self.recursion_depth = recursion_depth
        self.portable_max_nodes = portable_max_nodes
        self.recursive = recursive_types(catalog)
        self.shared = shared_types(catalog, self.recursive)
        self._precise: dict[tuple[str, bool], tuple[Schema, frozenset[str]]] = {}
        #: (message, output) -> its body and its sorted `$defs` (None without any)
        self._roots: dict[tuple[str, bool], tuple[Schema, dict[str, Schema] | None]] = {}
        self._portable: dict[tuple[str, int, int], _Portable] = {}
        #: (message, recursion, or None where it met no recursive type) -> a rendering nothing
        #: cut for depth: the one at every depth at least the one it needs (`_portable_message`)
        self._uncut: dict[tuple[str, int | None], _Portable] = {}
        self._enums: dict[tuple[str, bool, bool], Schema] = {}
        #: portable fields whose value is no message (so no depth or recursion in it), by id
        self._flat_fields: dict[int, _Portable] = {}
        #: (message, output) -> the description and deprecation of its object schema
        self._object_heads: dict[tuple[str, bool], tuple[str, bool]] = {}

    # ---- public API -------------------------------------------------------------------------

    def precise(self, message: str, *, output: bool) -> Schema:
        """Precise schema with an object root; `$defs` holds the types on reference cycles."""
        if message in WELL_KNOWN:
            return self._well_known_root(message, precise=True, output=output)
        key = (message, output)
        root = self._roots.get(key)
        if root is None:
            root = self._roots[key] = self._precise_root(message, output)
        body, defs = root
        if defs is None:
            return body
        return {**body, "$defs": dict(defs)}  # a new root and table: callers may pop `$defs`

    def _precise_root(self, message: str, output: bool) -> tuple[Schema, dict[str, Schema] | None]:
        """A message's body and the definitions it reaches, sorted; the same for every tool."""
        body, refs = self._precise_body(message, output)
        defs: dict[str, Schema] = {}
        todo = sorted(refs)
        while todo:
            name = todo.pop()
            if name in defs:
                continue
            if name in self.catalog.enums:
                defs[name] = self._enum(name, None, precise=True)
                continue
            defs[name], more = self._precise_body(name, output)
            todo += sorted(more - defs.keys())
        if not defs:
            return body, None
        return body, dict(sorted(defs.items()))

    def portable(self, message: str) -> Schema:
        """Portable input schema: plain objects only, no references or combinators."""
        if message in WELL_KNOWN:
            return self._well_known_root(message, precise=False, output=False)
        recursion = self.recursion_depth - (message in self.recursive)
        for depth in (UNLIMITED, *range(MAX_CUT_DEPTH, 0, -1)):
            schema, size, _, _ = self._portable_message(message, depth, recursion)
            if size <= self.portable_max_nodes:
                break
        return schema

    @staticmethod
    def _well_known_root(message: str, precise: bool, output: bool) -> Schema:
        """A well-known type as a tool's root: JSON objects as they are, others under `value`."""
        schema = well_known_schema(message, precise=precise, output=output)
        if message in OBJECT_WELL_KNOWN:
            return {"type": "object", "properties": {}, **schema}
        root: Schema = {"type": "object", "properties": {ROOT_VALUE_KEY: schema}}
        if precise:
            root["additionalProperties"] = False
        if not output:
            root["required"] = [ROOT_VALUE_KEY]
        return root

    # ---- precise ----------------------------------------------------------------------------

    def _precise_body(self, name: str, output: bool) -> tuple[Schema, frozenset[str]]:
        key = (name, output)
        cached = self._precise.get(key)
        if cached is not None:
            return cached
        message = self.catalog.messages[name]
        properties: Schema = {}
        refs: set[str] = set()
        for fld in message.fields:
            schema, field_refs = self._precise_field(fld, output)
            properties[fld.json_name] = schema
            refs |= field_refs
        schema = self._object(message, properties, output, precise=True)
        if message.extendable and output:  # set extensions print as "[pkg.extension]" keys
            schema["patternProperties"] = {EXTENSION_KEY: {}}
        if not output:
            required = [f.json_name for f in message.fields if f.required]
            if required:
                schema["required"] = required
        exclusive = self._oneof_exclusion(message)
        if exclusive:
            schema["dependentSchemas"] = exclusive
        result = (schema, frozenset(refs))
        self._precise[key] = result
        return result

    def _precise_field(self, fld: Field, output: bool) -> tuple[Schema, frozenset[str]]:
        rules = None if output else fld.rules
        value, refs = self._precise_value(fld.type, _element_rules(fld, rules), output)
        single = not (fld.repeated or fld.is_map)
        if single and fld.type.message in WRAPPERS:  # null clears a single wrapper field
            value = {**value, "type": [*_types(value), "null"]}
        elif not single and not output and fld.type.enum == NULL_VALUE:
            value = {"enum": ["NULL_VALUE", 0]}  # the parser takes no null inside lists and maps
        if fld.is_map:
            value = self._map(fld, value, rules, precise=True)
        elif fld.repeated:
            value = {"type": "array", "items": value}
            if rules:
                _apply(value, rules.schema, _ARRAY_KEYWORDS)
        return self._decorate(fld, value, rules, precise=True), refs

    def _precise_value(
        self, ref: TypeRef, rules: Rules | None, output: bool
    ) -> tuple[Schema, frozenset[str]]:
        if ref.scalar is not None:
            return self._scalar(ref.scalar, rules, precise=True, output=output), frozenset()
        if ref.enum is not None:
            if rules is None and ref.enum in self.shared:
                return {"$ref": f"#/$defs/{ref.enum}"}, frozenset({ref.enum})
            return self._enum(ref.enum, rules, precise=True), frozenset()
        name = ref.message
        assert name is not None
        if name in WELL_KNOWN:
            return well_known_schema(name, precise=True, output=output), frozenset()
        if name in self.recursive or name in self.shared:
            return {"$ref": f"#/$defs/{name}"}, frozenset({name})
        return self._precise_body(name, output)

    # ---- portable ---------------------------------------------------------------------------

    def _portable_message(self, name: str, depth: int, recursion: int) -> _Portable:
        """The object schema of `name` nested at most `depth` deep, and what `_Portable` says.

        `recursion` is how many more levels of recursive types may be opened on this path. The
        rendering depends only on these three values, so it is cached and shared by them, and
        its size is known without walking it. It depends on depth only where depth cut it, and
        on `recursion` only where a recursive type is: a rendering nothing cut for depth is the
        one at every depth at least the one it needs, and one that met no recursive type is
        the one at every `recursion` too, so they are shared by all those (portable() tries
        many depths per root, and the types below a recursive one see many `recursion`s).
        """
        key = (name, depth, recursion)
        cached = self._portable.get(key)
        if cached is not None:
            return cached
        for general in (self._uncut.get((name, None)), self._uncut.get((name, recursion))):
            if general is not None and depth >= general[2]:
                self._portable[key] = general
                return general
        message = self.catalog.messages[name]
        properties: Schema = {}
        required: list[str] = []
        size = 1
        deepest = 0  # the largest depth a field needs
        by_recursion = False
        for fld in message.fields:
            if FieldBehavior.OUTPUT_ONLY in fld.behaviors:
                continue  # servers ignore output-only fields in requests; don't ask the model
            schema, field_size, need, met = self._portable_field(fld, depth - 1, recursion)
            properties[fld.json_name] = schema
            size += field_size
            if need > deepest:
                deepest = need
            by_recursion = by_recursion or met
            if fld.required:
                required.append(fld.json_name)
        schema = self._object(message, properties, output=False, precise=False)
        if required:
            schema["required"] = required
        result = (schema, size, deepest + 1, by_recursion)
        self._portable[key] = result
        if deepest < _CUT:
            self._uncut[name, None if not by_recursion else recursion] = result
        return result

    def _portable_field(self, fld: Field, depth: int, recursion: int) -> _Portable:
        message = fld.type.message
        if message is None or message in WELL_KNOWN:  # the same at every depth and recursion
            flat = self._flat_fields.get(id(fld))  # the catalog holds the field: ids stay unique
            if flat is None:
                flat = self._flat_fields[id(fld)] = self._portable_field_of(fld, 0, 0)
            return flat
        return self._portable_field_of(fld, depth, recursion)

    def _portable_field_of(self, fld: Field, depth: int, recursion: int) -> _Portable:
        rules = fld.rules
        value, size, need, met = self._portable_value(
            fld.type, _element_rules(fld, rules), depth, recursion
        )
        if fld.is_map:
            value = self._map(fld, value, rules, precise=False)
            size += 1
        elif fld.repeated:
            value = {"type": "array", "items": value}
            size += 1
            if rules:
                _apply(value, rules.schema, _ARRAY_KEYWORDS)
        return self._decorate(fld, value, rules, precise=False), size, need, met

    def _portable_value(
        self, ref: TypeRef, rules: Rules | None, depth: int, recursion: int
    ) -> _Portable:
        if ref.scalar is not None:
            return self._scalar(ref.scalar, rules, precise=False), 1, 0, False
        if ref.enum is not None:
            schema = self._enum(ref.enum, rules, precise=False)
            return schema, 1 + len(schema.get("enum", ())) // 8, 0, False
        name = ref.message
        assert name is not None
        if name in WELL_KNOWN:
            return well_known_schema(name, precise=False, output=False), 1, 0, False
        recursive = name in self.recursive
        if recursive:
            if recursion <= 0:
                cut: Schema = {
                    "type": "object",
                    "description": f"{name} message (recursive: nesting is cut here after "
                    f"{self.recursion_depth} levels; send its fields as JSON)",
                }
                return cut, 1, 0, True
            recursion -= 1
        if depth <= 0:
            cut = {
                "type": "object",
                "description": f"{name} message (nested too deep for this schema; send its "
                "fields as JSON with lowerCamelCase names; the server checks them)",
            }
            return cut, 1, _CUT, recursive
        schema, size, need, met = self._portable_message(name, depth, recursion)
        return schema, size, need, met or recursive

    # ---- shared pieces ----------------------------------------------------------------------

    def _object(self, message: Message, properties: Schema, output: bool, precise: bool) -> Schema:
        key = (message.full_name, output)
        head = self._object_heads.get(key)
        if head is None:
            head = self._object_heads[key] = self._object_head(message, output)
        description, deprecated = head
        schema: Schema = {"type": "object"}
        if description:
            schema["description"] = description
        if deprecated:
            schema["deprecated"] = True
        schema["properties"] = properties
        if precise:
            schema["additionalProperties"] = False
        return schema

    @staticmethod
    def _object_head(message: Message, output: bool) -> tuple[str, bool]:
        """Description (doc and oneof notes) and deprecation of a message's object schema."""
        notes = [
            f"Set at most one of: {', '.join(_json_names(message, members))}."
            for members in message.oneofs.values()
            if len(members) > 1
        ]
        if not output:
            notes += [
                f"Exactly one of {', '.join(_json_names(message, message.oneofs[o]))} must be set."
                for o in message.required_oneofs
            ]
        return join_text(message.doc, *notes), message.deprecated

    def _oneof_exclusion(self, message: Message) -> Schema:
        """Each oneof member, when present, forbids the others (no combinator at the root)."""
        result: Schema = {}
        for members in message.oneofs.values():
            if len(members) < 2:
                continue
            names = _json_names(message, members)
            for name in names:
                result[name] = {"properties": {other: False for other in names if other != name}}
        return result

    def _decorate(self, fld: Field, schema: Schema, rules: Rules | None, precise: bool) -> Schema:
        """Field-level description, flags and rule notes, without mutating shared schemas."""
        behaviors = fld.behaviors
        notes = list(_behavior_notes(behaviors)) if behaviors else []
        if fld.oneof:
            notes.append(f"Member of oneof `{fld.oneof}`.")
        map_key = fld.map_key
        if map_key is not None and map_key != Scalar.STRING:
            notes.append(f"Keys are {map_key} values written as strings.")
        if rules:
            notes += rules.notes
        text = schema.get("description")
        if notes or text:
            description = join_text(fld.doc, text, *notes)
        else:  # join_text of the doc alone
            description = fld.doc.strip() if fld.doc else ""
        out = {"$ref": schema["$ref"]} if "$ref" in schema else dict(schema)
        if description:
            out["description"] = description
        if fld.deprecated:
            out["deprecated"] = True
        if precise and FieldBehavior.OUTPUT_ONLY in behaviors:
            out["readOnly"] = True
        if FieldBehavior.INPUT_ONLY in behaviors:
            out["writeOnly"] = True
        return _ordered(out)

    def _scalar(
        self, kind: Scalar, rules: Rules | None, precise: bool, output: bool = False
    ) -> Schema:
        schema = scalar_schema(kind, precise, output)
        if rules and rules.schema:
            schema = dict(schema)
            json_type = schema["type"] if isinstance(schema["type"], str) else "number"
            if kind in (Scalar.INT64, Scalar.SINT64, Scalar.SFIXED64, Scalar.UINT64,
                        Scalar.FIXED64) and not precise:  # fmt: skip
                bounds = {k: v for k, v in rules.schema.items() if k in _NUMBER_KEYWORDS}
                if bounds:
                    schema["description"] = join_text(
                        schema.get("description"),
                        "Constraints: " + ", ".join(f"{k} {v}" for k, v in bounds.items()),
                    )
                return schema
            if json_type == "string":
                _apply(schema, rules.schema, _STRING_KEYWORDS)
            elif json_type in ("integer", "number"):
                _apply(schema, rules.schema, _NUMBER_KEYWORDS)
        return schema

    def _enum(self, name: str, rules: Rules | None, precise: bool) -> Schema:
        if name == NULL_VALUE:
            return {"type": "null"}
        key = (name, precise, rules is not None)
        if rules is None and key in self._enums:
            return self._enums[key]
        enum: Enum = self.catalog.enums[name]
        values = enum.values
        if rules and rules.enum_allowed is not None:
            values = [v for v in values if v.number in rules.enum_allowed]
        if rules and rules.enum_excluded:
            values = [v for v in values if v.number not in rules.enum_excluded]
        names = list(dict.fromkeys(v.name for v in values))
        value_docs = [
            f"- {v.name}: {v.doc}" if v.doc else f"- {v.name}: deprecated"
            for v in values
            if v.doc or v.deprecated
        ]
        listing = "\n".join(value_docs)
        if len(listing) > LONG_TEXT:
            listing = f"({len(values)} values; their meanings are documented in {name})"
        description = join_text(enum.doc, listing)
        if precise:
            open_numbers = not enum.closed and not (rules and rules.enum_defined_only)
            if rules and rules.enum_allowed is not None:
                numbers: Schema = {"type": "integer", "enum": sorted({v.number for v in values})}
            elif open_numbers:
                numbers = {"type": "integer", "minimum": INT32[0], "maximum": INT32[1]}
            else:
                numbers = {"type": "integer", "enum": sorted({v.number for v in values})}
            schema: Schema = {"anyOf": [{"type": "string", "enum": names}, numbers]}
        else:
            schema = {"type": "string", "enum": names}
        if description:
            schema["description"] = description
        if rules is None:
            self._enums[key] = schema
        return schema

    def _map(self, fld: Field, value: Schema, rules: Rules | None, precise: bool) -> Schema:
        schema: Schema = {"type": "object", "additionalProperties": value}
        if precise:
            names: Schema = {}
            if fld.map_key in _INTEGER_KEYS:
                names["pattern"] = _INTEGER_KEYS[fld.map_key]
                names["format"] = scalar_schema(fld.map_key, precise=True)["format"]
            elif fld.map_key is Scalar.BOOL:
                names["pattern"] = "^(true|false)$"
            if rules and rules.keys:
                _apply(names, rules.keys.schema, _STRING_KEYWORDS - {"pattern"})
            if names:
                schema["propertyNames"] = names
        if rules:
            _apply(schema, rules.schema, _OBJECT_KEYWORDS)
        return schema


def _types(schema: Schema) -> list[str]:
    kind = schema.get("type", [])
    return list(kind) if isinstance(kind, list) else [kind]


def _element_rules(fld: Field, rules: Rules | None) -> Rules | None:
    """The rules of one value: of the items of a list, of the values of a map."""
    if rules is None:
        return None
    if fld.is_map:
        return rules.values
    if fld.repeated:
        return rules.items
    return rules


def _json_names(message: Message, field_names: list[str]) -> list[str]:
    by_name = {f.name: f.json_name for f in message.fields}
    return [by_name[n] for n in field_names]


def _apply(schema: Schema, keywords: dict[str, Any], allowed: set[str]) -> None:
    for key, value in keywords.items():
        if key in allowed:
            schema[key] = value


class _Rank(dict[str, int]):
    """Reading-order rank of a keyword; unknown keywords go last, in their current order."""

    def __missing__(self, key: str) -> int:
        return len(self)


_ORDER = _Rank({k: i for i, k in enumerate(
    ["$ref", "type", "title", "description", "deprecated", "readOnly", "writeOnly", "format",
     "contentEncoding", "enum", "anyOf", "minimum", "maximum", "exclusiveMinimum",
     "exclusiveMaximum", "minLength", "maxLength", "pattern", "items", "minItems", "maxItems",
     "uniqueItems", "properties", "patternProperties", "additionalProperties", "propertyNames",
     "minProperties", "maxProperties", "required", "dependentSchemas"]
)})  # fmt: skip


#: keywords of a schema as they are -> in reading order (None: they are in order already)
_ORDERINGS: dict[tuple[str, ...], tuple[str, ...] | None] = {}
_BEHAVIOR_TEXTS: dict[frozenset[FieldBehavior], tuple[str, ...]] = {}


def _ordered(schema: Schema) -> Schema:
    """Keywords in one reading order everywhere, so manifests diff cleanly.

    Takes a schema nobody else holds: one already in order is returned as it is.
    """
    keys = tuple(schema)
    if keys in _ORDERINGS:
        order = _ORDERINGS[keys]
    else:
        ranked = tuple(sorted(keys, key=_ORDER.__getitem__))
        order = _ORDERINGS[keys] = None if ranked == keys else ranked
    if order is None:
        return schema
    return {key: schema[key] for key in order}


def _behavior_notes(behaviors: frozenset[FieldBehavior]) -> tuple[str, ...]:
    """The notes of a field's behaviors, in the order of their names."""
    notes = _BEHAVIOR_TEXTS.get(behaviors)
    if notes is None:
        notes = tuple(_BEHAVIOR_NOTES[b] for b in sorted(behaviors) if b in _BEHAVIOR_NOTES)
        _BEHAVIOR_TEXTS[behaviors] = notes
    return notes
