"""`TOOLS.md` of a bundle: the tools as a reviewer reads them in a pull request.

Rendered from the manifest's tools and routes (`templates/TOOLS.md.j2`). All text from the
inputs (descriptions, names, registry strings) is escaped here so that it renders literally:
Markdown and HTML in a description show as typed, and a `|` cannot end a table cell.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from mcpgen import __version__
from mcpgen.templating import render

if TYPE_CHECKING:  # emit imports this module
    from mcpgen.emit import ToolJson

Schema = dict[str, Any]
#: Nesting shown in an inputs table: `a`, `a.b`, `a.b.c`; deeper fields are in the manifest.
INPUT_DEPTH = 3
#: Enum values named in a type before the rest are counted only.
ENUM_SHOWN = 8
#: MCP's defaults for absent annotations (ToolAnnotations in the MCP specification).
ANNOTATION_DEFAULTS = {
    "readOnlyHint": False,
    "destructiveHint": True,
    "idempotentHint": False,
    "openWorldHint": True,
}
_INLINE_SPECIALS = re.compile(r"([\\`*\[\]<>&|~$]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9]))")
_BLOCK_START = re.compile(r"^(?:[#>+=-]|\d+[.)])")


def escape(text: str) -> str:
    """One line of text as Markdown that renders literally (CommonMark backslash escapes;
    `$` for GitHub's math, `|` for tables, `<` and `&` for HTML and entities; `_` inside a
    word, as in `GENRE_FICTION`, is no emphasis and stays as it is)."""
    return _INLINE_SPECIALS.sub(r"\\\1", text)


def paragraphs(text: str) -> str:
    """Multi-line text as literal Markdown: each line on its own line (hard breaks), blank
    lines kept, nothing a line starts with read as a heading, list or quote."""
    lines = []
    for raw in text.strip().splitlines():
        line = escape(raw.strip())
        if _BLOCK_START.match(line):
            digits = len(line) - len(line.lstrip("0123456789"))
            line = line[:digits] + "\\" + line[digits:]
        lines.append(line)
    out = []
    for i, line in enumerate(lines):
        follows = i + 1 < len(lines) and lines[i + 1] and line
        out.append(line + ("\\" if follows else ""))
    return "\n".join(out)


_LINE_BREAK = re.compile("[\n\r\v\f\x1c-\x1e\x85\u2028\u2029]")  # what splitlines splits at


def cell(text: str) -> str:
    """Text for one table cell: escaped, newlines as `<br>`."""
    if not _LINE_BREAK.search(text):  # most cells: one line (or empty)
        return escape(text.strip())
    return "<br>".join(escape(line.strip()) for line in text.strip().splitlines())


def code(text: str, in_table: bool = False) -> str:
    """A name as a code span, whatever backticks or pipes it holds."""
    text = " ".join(text.splitlines())
    if not text:
        return "*(empty)*"
    fence = "`" * (max((len(r) for r in re.findall("`+", text)), default=0) + 1)
    pad = " " if text[0] in "` " or text[-1] in "` " else ""
    span = f"{fence}{pad}{text}{pad}{fence}"
    return span.replace("|", "\\|") if in_table else span


@dataclass(frozen=True, slots=True)
class InputRow:
    path: str
    type: str
    required: bool
    description: str


@dataclass(frozen=True, slots=True)
class ToolEntry:
    """What the template shows of one tool: names and texts raw (the template escapes them),
    input and output rows already escaped (`_escaped`)."""

    name: str
    anchor: str
    tool: dict[str, Any]
    route: dict[str, Any]
    annotations: list[tuple[str, bool, bool]]  # (hint, value, is MCP's default)
    inputs: list[InputRow]
    outputs: list[InputRow]


def tools_markdown(tools: list[ToolJson]) -> bytes:
    anchors = _Anchors(["Tools", "Contents"])
    entries = []
    for tool_json in tools:
        tool = orjson.loads(tool_json.json)
        hints = tool.get("annotations", {})
        entries.append(
            ToolEntry(
                name=tool_json.name,
                anchor=anchors.add(tool_json.name),
                tool=tool,
                route=tool_json.route,
                annotations=[
                    (hint, hints.get(hint, default), hint not in hints)
                    for hint, default in ANNOTATION_DEFAULTS.items()
                ],
                inputs=_escaped(schema_rows(tool["inputSchema"], INPUT_DEPTH)),
                outputs=_escaped(schema_rows(tool.get("outputSchema", {}), 1)),
            )
        )
    text = render(
        "TOOLS.md.j2",
        tools=entries,
        generator=__version__,
        paragraphs=paragraphs,
        cell=cell,
        code=code,
    )
    return text.encode()


def _escaped(rows: list[InputRow]) -> list[InputRow]:
    """Rows with their cells escaped here rather than in the template: tens of thousands of
    rows render several times faster without a template function call per cell."""
    return [
        InputRow(code(r.path, in_table=True), cell(r.type), r.required, cell(r.description))
        for r in rows
    ]


class _Anchors:
    """GitHub's heading ids: lower case, punctuation but `-` and `_` dropped, spaces to `-`,
    repeats numbered; tracked over the headings in document order."""

    def __init__(self, headings: list[str]) -> None:
        self.seen: dict[str, int] = {}
        for heading in headings:
            self.add(heading)

    def add(self, heading: str) -> str:
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        count = self.seen.get(slug, 0)
        self.seen[slug] = count + 1
        return slug if count == 0 else f"{slug}-{count}"


def schema_rows(schema: Schema, depth: int) -> list[InputRow]:
    """The fields of an object schema and of the objects in it, `depth` levels deep."""
    rows: list[InputRow] = []
    defs = schema.get("$defs", {})

    def walk(node: Schema, prefix: str, level: int, seen: frozenset[str]) -> None:
        node, seen = _resolve(node, defs, seen)
        required = set(node.get("required", ()))
        for name, field in node.get("properties", {}).items():
            path = f"{prefix}{name}"
            rows.append(
                InputRow(path, type_of(field), name in required, field.get("description", ""))
            )
            if level < depth:
                target, inner_seen = _resolve(_element(field, defs), defs, seen)
                if "properties" in target and target is not node:
                    suffix = "[]." if _is_array(field, defs) else "."
                    walk(target, path + suffix, level + 1, inner_seen)

    walk(schema, "", 1, frozenset())
    return rows


def _resolve(node: Schema, defs: Schema, seen: frozenset[str]) -> tuple[Schema, frozenset[str]]:
    """A schema with its `$ref` followed (once per path: recursion stops the walk)."""
    ref = node.get("$ref", "")
    if ref.startswith("#/$defs/"):
        name = ref[len("#/$defs/") :]
        if name in seen or name not in defs:
            return {}, seen
        return defs[name], seen | {name}
    return node, seen


def _element(field: Schema, defs: Schema) -> Schema:
    """The object a field holds: itself, or its list's items."""
    resolved, _ = _resolve(field, defs, frozenset())
    if _is_array(field, defs):
        return resolved.get("items", {})
    return field


def _is_array(field: Schema, defs: Schema) -> bool:
    resolved, _ = _resolve(field, defs, frozenset())
    return resolved.get("type") == "array" and isinstance(resolved.get("items"), dict)


def type_of(schema: Any) -> str:
    """A short type for a table: `string`, `integer or string`, `array of Book`,
    `map of string`, `enum: A, B, …`."""
    if not isinstance(schema, dict):
        return "any" if schema is True else "nothing"
    if "$ref" in schema:
        return schema["$ref"].rpartition("/")[2].rpartition(".")[2]
    if "enum" in schema:
        values = [str(v) for v in schema["enum"]]
        shown = ", ".join(values[:ENUM_SHOWN])
        more = f", … ({len(values)} values)" if len(values) > ENUM_SHOWN else ""
        return f"enum: {shown}{more}"
    if "anyOf" in schema:
        names, *numbers = schema["anyOf"]
        if "enum" in names and [n.get("type") for n in numbers] == ["integer"]:
            return f"{type_of(names)} (or a number)"  # a precise enum: names or numbers
        return " or ".join(dict.fromkeys(type_of(s) for s in schema["anyOf"]))
    kinds = schema.get("type")
    kinds = kinds if isinstance(kinds, list) else [kinds] if kinds else []
    if kinds == ["array"]:
        return f"array of {type_of(schema.get('items', True))}"
    if kinds == ["object"] and "properties" not in schema:
        values = schema.get("additionalProperties")
        if isinstance(values, dict):
            return f"map of {type_of(values)}"
    text = " or ".join(kinds) or "any"
    if isinstance(schema.get("format"), str):
        text += f" ({schema['format']})"
    return text
