"""The Markdown catalog of a bundle: its tools as a reviewer reads them in a pull request.

`TOOLS.md` is the index (`index_markdown`, `templates/TOOLS.index.md.j2`); each package's tools
have a page of their own (`package_markdown`, `templates/TOOLS.md.j2`). All text from the inputs
(descriptions, names, registry strings) is escaped here so that it renders literally: Markdown
and HTML in a description show as typed, and a `|` cannot end a table cell.

A page is built as strings in Python rather than by the template: googleapis has 13,000 tools
and 230,000 table rows, and a template call per value cost more than everything else. Escaped
cells are memoized, since field descriptions repeat across every tool sharing a message type.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from mcpgen import __version__
from mcpgen.templating import render

if TYPE_CHECKING:
    from mcpgen.tools import ToolSpec

Schema = dict[str, Any]
#: Nesting shown in an inputs table: `a`, `a.b`, `a.b.c`; deeper fields are in the tools shard.
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
#: Escaped wherever they are; the backslash first, so that the escapes added later stay single.
_ALWAYS_ESCAPED = "\\`*[]<>&|~$"
_EDGE_UNDERSCORE = re.compile(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")
_BLOCK_START = re.compile(r"^(?:[#>+=-]|\d+[.)])")
_LINE_BREAK = re.compile("[\n\r\v\f\x1c-\x1e\x85\u2028\u2029]")  # what splitlines splits at
#: Distinct cell texts remembered: all of googleapis' field descriptions (~50,000) fit.
_CELL_CACHE = 1 << 16


def escape(text: str) -> str:
    """One line of text as Markdown that renders literally (CommonMark backslash escapes;
    `$` for GitHub's math, `|` for tables, `<` and `&` for HTML and entities; `_` inside a
    word, as in `GENRE_FICTION`, is no emphasis and stays as it is)."""
    # str.replace per character: ~3x faster than one regex substitution with a template
    for char in _ALWAYS_ESCAPED:
        if char in text:
            text = text.replace(char, "\\" + char)
    if "_" in text:  # the escapes added above are no letters or digits: same neighbours
        text = _EDGE_UNDERSCORE.sub(r"\\_", text)
    return text


def paragraphs(text: str) -> str:
    """Multi-line text as literal Markdown: each line on its own line (hard breaks), blank
    lines kept, nothing a line starts with read as a heading, list or quote."""
    lines = []
    for raw in escape(text.strip()).splitlines():  # escaping adds no line breaks or spaces
        line = raw.strip()
        if _BLOCK_START.match(line):
            digits = len(line) - len(line.lstrip("0123456789"))
            line = line[:digits] + "\\" + line[digits:]
        lines.append(line)
    out = []
    for i, line in enumerate(lines):
        follows = i + 1 < len(lines) and lines[i + 1] and line
        out.append(line + ("\\" if follows else ""))
    return "\n".join(out)


@lru_cache(maxsize=_CELL_CACHE)
def cell(text: str) -> str:
    """Text for one table cell: escaped, newlines as `<br>`."""
    text = escape(text.strip())
    if not _LINE_BREAK.search(text):  # most cells: one line (or empty)
        return text
    return "<br>".join(line.strip() for line in text.splitlines())


def code(text: str, in_table: bool = False) -> str:
    """A name as a code span, whatever backticks or pipes it holds."""
    if text.isprintable() and "`" not in text:  # most names: one line, no backticks
        if not text:
            return "*(empty)*"
        pad = " " if text[0] == " " or text[-1] == " " else ""
        span = f"`{pad}{text}{pad}`"
    else:
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


def package_markdown(package: str, tools: Sequence[ToolSpec]) -> bytes:
    """The catalog of one package's tools (a bundle's `docs/<package>.md`); `package` is a
    go-micro registry service for registry bundles, empty for protos without a package."""
    return _catalog(f"Tools of {_package(package)}", tools).encode()


def index_markdown(entries: Sequence[tuple[str, str, int]], generator: str) -> bytes:
    """A bundle's `TOOLS.md`: how many tools, and a link to each package's catalog.

    `entries` are `(package, link, tools)` in the order shown, `link` a relative path (it is
    percent-encoded here); `generator` is the manifest's, e.g. `mcpgen 0.1.0`.
    """
    rows = [
        f"| [{_package(package, in_table=True)}]({_link(link)}) | {count} |"
        for package, link, count in entries
    ]
    text = render(
        "TOOLS.index.md.j2",
        tools=sum(count for _, _, count in entries),
        rows=rows,
        generator=cell(generator),
    )
    return text.encode()


def _package(package: str, in_table: bool = False) -> str:
    """A package as a code span; registry service names may hold anything, or be empty."""
    return code(package, in_table) if package else "*(no package)*"


def _link(path: str) -> str:
    """A relative path as a link destination: percent-encoded, so that no `|`, space,
    parenthesis or `<` of a package name ends the link or the table cell."""
    return quote(path, safe="/")


def _catalog(heading: str, tools: Sequence[ToolSpec]) -> str:
    """A page: heading, contents linking each tool's section, the sections (one string each,
    so that the template is called once per page, not once per value)."""
    anchors = _Anchors([heading, "Contents"])
    contents = []
    sections = []
    for spec in tools:
        title = cell(spec.tool.get("title", ""))
        contents.append(f"- [{code(spec.name)}](#{anchors.add(spec.name)}): {title}\n")
        sections.append(_section(spec, title))
    return render(
        "TOOLS.md.j2",
        heading=heading,
        tools=len(tools),
        generator=__version__,
        contents="".join(contents),
        sections="".join(sections),
    )


def _section(spec: ToolSpec, title: str) -> str:
    """One tool, from its heading to its route; every value from the inputs escaped."""
    tool, route = spec.tool, spec.route
    out = [
        f"\n## {code(spec.name)}\n\n**Title:** {title or '*(none)*'}\n\n",
        paragraphs(tool.get("description", "")) or "*(no description)*",
        "\n\n**Annotations**\n\n| hint | value |\n|---|---|\n",
    ]
    hints = tool.get("annotations", {})
    for hint, default in ANNOTATION_DEFAULTS.items():
        value = "true" if hints.get(hint, default) else "false"
        out.append(f"| `{hint}` | {value}{'' if hint in hints else ' (default)'} |\n")
    out.append("\n**Inputs**\n\n")
    inputs = _fields(tool["inputSchema"], INPUT_DEPTH)
    if inputs:
        out.append("| name | type | required | description |\n|---|---|---|---|\n")
        for path, field, required in inputs:
            out.append(
                f"| {_path(path)} | {cell(type_of(field))} | {'yes' if required else ''}"
                f" | {cell(field.get('description', ''))} |\n"
            )
    else:
        out.append("*No inputs.*\n")
    out.append("\n**Output**\n\n")
    outputs = _fields(tool.get("outputSchema", {}), 1)
    if outputs:
        out.append("| field | type | description |\n|---|---|---|\n")
        for path, field, _ in outputs:
            out.append(
                f"| {_path(path)} | {cell(type_of(field))}"
                f" | {cell(field.get('description', ''))} |\n"
            )
    else:
        out.append("*An object without fields.*\n")
    out.append("\n**Route**\n\n")
    out += _route(route)
    return "".join(out)


@lru_cache(maxsize=_CELL_CACHE)
def _path(path: str) -> str:
    """A field's path for a table cell (memoized: `name`, `parent`, `pageSize` are everywhere)."""
    return code(path, in_table=True)


def _route(route: dict[str, Any]) -> list[str]:
    """The lines saying how the server reaches the tool's backend."""
    if route["kind"] == "go-micro":
        lines = [
            f"- go-micro service {code(route['service'])}, "
            f"endpoint {code(route['endpoint'])} (mucp)\n"
        ]
        if route.get("request"):
            lines.append(
                f"- request {code(route['request'])}, response {code(route['response'])}"
                " (checked against the protos)\n"
            )
    else:
        streaming = route["streaming"]
        kind = "unary" if streaming == "unary" else f"{streaming} streaming"
        lines = [f"- gRPC {code(route['path'])} ({kind})\n"]
    if "nodes" in route:
        nodes = ", ".join(code(node) for node in route["nodes"]) or "*(none registered)*"
        lines.append(f"- nodes: {nodes}\n")
    if route.get("scopes"):
        scopes = ", ".join(code(scope) for scope in route["scopes"])
        lines.append(f"- scopes (any one grants access): {scopes}\n")
    return lines


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
    return [
        InputRow(path, type_of(field), required, field.get("description", ""))
        for path, field, required in _fields(schema, depth)
    ]


def _fields(schema: Schema, depth: int) -> list[tuple[str, Schema, bool]]:
    """`(path, field schema, required)` of what `schema_rows` lists, in its order (tuples: a
    frozen dataclass per row costs more than escaping it)."""
    rows: list[tuple[str, Schema, bool]] = []
    defs = schema.get("$defs", {})
    empty: frozenset[str] = frozenset()

    def walk(node: Schema, prefix: str, level: int, seen: frozenset[str]) -> None:
        if "$ref" in node:
            node, seen = _resolve(node, defs, seen)
        required = node.get("required") or ()
        deeper = level < depth
        for name, field in node.get("properties", {}).items():
            path = prefix + name
            rows.append((path, field, name in required))
            if not deeper or not ("properties" in field or "items" in field or "$ref" in field):
                continue  # a scalar, or the last level shown
            resolved = _resolve(field, defs, empty)[0] if "$ref" in field else field
            items = resolved.get("items")
            array = resolved.get("type") == "array" and isinstance(items, dict)
            element = items if array else field
            target, inner_seen = (
                _resolve(element, defs, seen) if "$ref" in element else (element, seen)
            )
            if "properties" in target and target is not node:
                walk(target, path + ("[]." if array else "."), level + 1, inner_seen)

    walk(schema, "", 1, empty)
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
    if not isinstance(kinds, str):  # a list of types, or none (one type, the usual, is as is)
        kinds = " or ".join(kinds if isinstance(kinds, list) else [kinds] if kinds else [])
    if kinds == "array":
        return f"array of {type_of(schema.get('items', True))}"
    if kinds == "object" and "properties" not in schema:
        values = schema.get("additionalProperties")
        if isinstance(values, dict):
            return f"map of {type_of(values)}"
    fmt = schema.get("format")
    return f"{kinds or 'any'} ({fmt})" if isinstance(fmt, str) else kinds or "any"
