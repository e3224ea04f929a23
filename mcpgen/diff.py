"""`mcpgen diff OLD NEW`: classify every tool change as breaking or compatible for an AI client.

A change is *breaking* when a client built against OLD (a prompt, an agent, a program reading
results) can fail against NEW. Inputs and outputs point in opposite directions: what the server
accepts may widen but not narrow, what it returns may narrow but not widen (clients validate
`structuredContent` against the schema they know).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote

import click

from mcpgen.contract import BundleView, open_bundle
from mcpgen.errors import guarded

Kind = Literal["breaking", "compatible"]
Side = Literal["input", "output"]

EXIT_BREAKING = 1
FORMATS = ("text", "json", "markdown")
#: Sections of markdown longer than this fold into `<details>`.
MARKDOWN_FOLD = 10

#: hint -> (the MCP default, the value that widens side effects)
_HINTS: dict[str, tuple[bool, bool]] = {
    "readOnlyHint": (False, False),
    "destructiveHint": (True, True),
    "idempotentHint": (False, False),
    "openWorldHint": (True, True),
}
_HINT_WORDS: dict[str, tuple[str, str]] = {  # hint -> (said when true, said when false)
    "readOnlyHint": ("now read-only", "no longer read-only: it may modify its environment"),
    "destructiveHint": ("may now be destructive", "no longer destructive"),
    "idempotentHint": ("now idempotent", "no longer idempotent: a retry may repeat effects"),
    "openWorldHint": ("now reaches an open world", "no longer reaches an open world"),
}
#: Keywords that only describe: a change never affects which values are valid.
_TEXT_KEYWORDS = {
    "title",
    "description",
    "examples",
    "default",
    "deprecated",
    "readOnly",
    "writeOnly",
    "$comment",
}
_LOWER_BOUNDS = {"minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties"}
_UPPER_BOUNDS = {"maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties"}
#: Keywords compared by their own rules (everything else is compared as an opaque constraint).
_DEFS = ("$defs", "definitions")
_STRUCTURAL = {
    "$ref",
    *_DEFS,
    "type",
    "properties",
    "required",
    "items",
    "additionalProperties",
    "enum",
    "anyOf",
    "oneOf",
    "uniqueItems",
}
_TOOL_KEYS = {"name", "title", "description", "inputSchema", "outputSchema", "annotations"}


@dataclass(frozen=True, slots=True, order=True)
class Change:
    """One difference a client may notice, located by a JSON path inside the tool."""

    tool: str
    path: str  # e.g. inputSchema.properties.book.properties.title; "" for the whole tool
    message: str
    kind: Kind

    def as_json(self) -> dict[str, str]:
        return {"tool": self.tool, "path": self.path, "message": self.message}


# ---- loading ---------------------------------------------------------------------------------


def load_manifest(spec: str) -> dict[str, Any]:
    """The tools and routes of a bundle folder, its manifest.json, the output of `mcpgen tools
    OUT --json` saved to a file, or `REV:PATH` from git (a path on disk wins), as one document;
    version-1 bundles are read too, so that the first pull request after upgrading mcpgen
    still gets a diff against the committed bundle."""
    document = _saved_document(spec)
    return document if document is not None else manifest_of(open_bundle(spec, git_revisions=True))


def _saved_document(spec: str) -> dict[str, Any] | None:
    path = Path(spec)
    return _tools_document(path) if path.is_file() and path.name != "manifest.json" else None


def load_pair(old: str, new: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Both sides as `load_manifest` gives them, but of two version-2 bundles only the shards
    whose tools file differs (by the digests their indexes record) are read: a shard the same
    on both sides holds no change, and a pull request touching one package of thousands reads
    that package, not the whole bundle twice."""
    saved = _saved_document(old), _saved_document(new)
    if saved != (None, None):
        return saved[0] or load_manifest(old), saved[1] or load_manifest(new)
    views = open_bundle(old, git_revisions=True), open_bundle(new, git_revisions=True)
    if any(v.version != 2 for v in views):
        return manifest_of(views[0]), manifest_of(views[1])
    names = views[0].index.shards.keys() | views[1].index.shards.keys()
    differ = {name for name in names if _tools_digest(views[0], name) is None
              or _tools_digest(views[0], name) != _tools_digest(views[1], name)}  # fmt: skip
    return tuple(  # type: ignore[return-value]
        manifest_of(v, [n for n in differ if n in v.index.shards]) for v in views
    )


def _tools_digest(view: BundleView, shard: str) -> str | None:
    entry = view.index.shards.get(shard)
    return None if entry is None else view.index.digests.get(entry.files.tools)


def _tools_document(path: Path) -> dict[str, Any] | None:
    """What `mcpgen tools OUT --json` printed, saved to a file, when `path` holds that."""
    try:
        document = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    if (
        isinstance(document, dict)
        and "manifestVersion" not in document
        and isinstance(document.get("tools"), list)
        and isinstance(document.get("routes"), dict)
        and all(isinstance(t, dict) and isinstance(t.get("name"), str) for t in document["tools"])
    ):
        return document
    return None


def manifest_of(view: BundleView, shards: Iterable[str] | None = None) -> dict[str, Any]:
    """`{"tools": [...], "routes": {...}}` of a bundle (or of some of its shards)."""
    tools: list[dict[str, Any]] = []
    routes: dict[str, Any] = {}
    names = sorted(view.index.shards if shards is None else shards)
    for name in names:
        shard = view.shard(name)
        tools += shard.tools
        routes |= {n: r.to_json() for n, r in shard.routes.items()}
    return {"tools": tools, "routes": routes}


# ---- comparing -------------------------------------------------------------------------------


def changed_tools(
    old_manifest: dict[str, Any], new_manifest: dict[str, Any]
) -> tuple[list[str], list[str], list[str]]:
    """Names of the tools added, removed, and changed (tool object or route), each sorted."""
    old_tools, new_tools = _tools_by_name(old_manifest), _tools_by_name(new_manifest)
    old_routes, new_routes = old_manifest.get("routes", {}), new_manifest.get("routes", {})
    added = sorted(new_tools.keys() - old_tools.keys())
    removed = sorted(old_tools.keys() - new_tools.keys())
    changed = sorted(
        name
        for name in old_tools.keys() & new_tools.keys()
        if old_tools[name] != new_tools[name] or old_routes.get(name) != new_routes.get(name)
    )
    return added, removed, changed


def diff_manifests(old: dict[str, Any], new: dict[str, Any]) -> list[Change]:
    """Every change from OLD to NEW, sorted by tool, then path."""
    old_tools, new_tools = _tools_by_name(old), _tools_by_name(new)
    old_routes, new_routes = old.get("routes", {}), new.get("routes", {})
    added, removed, _ = changed_tools(old, new)
    changes: list[Change] = []
    for old_name in removed:
        route = old_routes.get(old_name)
        new_name = next((n for n in added if route and new_routes.get(n) == route), None)
        if new_name is None:
            changes.append(Change(old_name, "", "tool removed", "breaking"))
            continue
        added.remove(new_name)
        changes.append(
            Change(new_name, "name", f"renamed from {old_name} to {new_name}", "breaking")
        )
        changes += _ToolDiff(new_name).compare(
            old_tools[old_name], new_tools[new_name], route, route
        )
    changes += [Change(name, "", "new tool", "compatible") for name in added]
    for name in sorted(old_tools.keys() & new_tools.keys()):
        changes += _ToolDiff(name).compare(
            old_tools[name], new_tools[name], old_routes.get(name), new_routes.get(name)
        )
    return sorted(changes)


def _tools_by_name(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {tool["name"]: tool for tool in manifest.get("tools", [])}


@dataclass(slots=True)
class _ToolDiff:
    """The changes of one tool: text, schemas, annotations, route."""

    tool: str
    changes: list[Change] = field(default_factory=list)

    def add(self, path: str, message: str, kind: Kind) -> None:
        self.changes.append(Change(self.tool, path, message, kind))

    def compare(
        self, old: dict[str, Any], new: dict[str, Any], old_route: Any, new_route: Any
    ) -> list[Change]:
        for key in ("title", "description"):
            self._text(key, old.get(key), new.get(key), key)
        _SchemaDiff(self, "input", old.get("inputSchema", {}), new.get("inputSchema", {})).run()
        self._output(old.get("outputSchema"), new.get("outputSchema"))
        self._annotations(old.get("annotations") or {}, new.get("annotations") or {})
        for key in sorted((old.keys() | new.keys()) - _TOOL_KEYS):
            if old.get(key) != new.get(key):
                self.add(key, f"{key} changed", "compatible")
        if old_route != new_route:
            self.add("route", f"route changed: {_route_delta(old_route, new_route)}", "compatible")
        return self.changes

    def _text(self, path: str, old: Any, new: Any, what: str) -> None:
        if old == new:
            return
        verb = "added" if old is None else "removed" if new is None else "changed"
        self.add(path, f"{what} {verb}", "compatible")

    def _output(self, old: Any, new: Any) -> None:
        if old is None and new is None:
            return
        if old is None:
            self.add("outputSchema", "output schema added: results are structured", "compatible")
        elif new is None:
            self.add("outputSchema", "output schema removed: results are unstructured", "breaking")
        else:
            _SchemaDiff(self, "output", old, new).run()

    def _annotations(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        for key in sorted(old.keys() | new.keys()):
            path = f"annotations.{key}"
            if key in _HINTS:
                default, widening = _HINTS[key]
                before, after = old.get(key, default), new.get(key, default)
                if before != after:
                    said = _HINT_WORDS[key][0 if after else 1]
                    message = f"{said} ({key} {_js(before)} → {_js(after)})"
                    self.add(path, message, "breaking" if after == widening else "compatible")
            elif key == "title":
                self._text(path, old.get(key), new.get(key), "annotation title")
            elif old.get(key) != new.get(key):
                self.add(path, f"annotation {key} changed", "compatible")


def _route_delta(old: Any, new: Any) -> str:
    if not isinstance(old, dict) or not isinstance(new, dict):
        return f"{_js(old)} → {_js(new)}"
    keys = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    return "; ".join(f"{k} {_js(old.get(k))} → {_js(new.get(k))}" for k in keys)


class _SchemaDiff:
    """Compares one schema pair structurally; `side` says which direction narrows."""

    def __init__(self, owner: _ToolDiff, side: Side, old_root: Any, new_root: Any) -> None:
        self.owner = owner
        self.side = side
        self.root = f"{side}Schema"
        self.old_root = old_root
        self.new_root = new_root
        self.seen: set[tuple[object, object]] = set()  # ref pairs already compared
        # With equal $defs, equal text is an equal schema; otherwise a ref inside may differ.
        self.same_defs = all(_get(old_root, k) == _get(new_root, k) for k in _DEFS)

    def run(self) -> None:
        self.compare(self.old_root, self.new_root, [])

    # what a change means depends on the side
    def narrowed(self, at: list[str], message: str) -> None:
        self._add(at, message, "breaking" if self.side == "input" else "compatible")

    def widened(self, at: list[str], message: str) -> None:
        self._add(at, message, "compatible" if self.side == "input" else "breaking")

    def broke(self, at: list[str], message: str) -> None:
        self._add(at, message, "breaking")

    def _add(self, at: list[str], message: str, kind: Kind) -> None:
        self.owner.add(".".join([self.root, *at]), message, kind)

    def compare(self, old: Any, new: Any, at: list[str]) -> None:
        old, new = ({} if s is True else s for s in (old, new))  # `true` accepts what `{}` does
        old_target, old_key = self._resolve(old, self.old_root)
        new_target, new_key = self._resolve(new, self.new_root)
        if old_target is None or new_target is None:
            if old != new:
                ref = new_key if new_target is None else old_key
                self.broke([*at, "$ref"], f"$ref {_js(ref)} does not resolve")
            return
        old, new = old_target, new_target
        if old_key is not None or new_key is not None:
            pair = (old_key or id(old), new_key or id(new))
            if pair in self.seen:
                return
            self.seen.add(pair)
        if self.same(old, new):
            return
        if not _both_dicts(old, new):
            self._opaque(old, new, at)
            return
        if not self._types(old, new, at):
            return  # a different kind of value: its parts are not comparable
        self._properties(old, new, at)
        for key in ("items", "additionalProperties"):
            self._subschema(key, old.get(key, True), new.get(key, True), at)
        self._enum(old.get("enum"), new.get("enum"), at)
        for key in ("anyOf", "oneOf"):
            self._alternatives(key, old.get(key), new.get(key), at)
        self._flag("uniqueItems", bool(old.get("uniqueItems")), bool(new.get("uniqueItems")), at)
        for key in sorted((old.keys() | new.keys()) - _STRUCTURAL):
            self._keyword(key, old.get(key), new.get(key), at)

    def same(self, old: Any, new: Any) -> bool:
        """Equal text that means an equal schema (a ref inside may point at a changed def)."""
        return old == new and (self.same_defs or not _has_ref(old))

    def _resolve(self, node: Any, root: Any) -> tuple[Any, str | None]:
        """Follow `$ref`s within the same schema (siblings of a `$ref` apply on top).

        Returns the target (None when a ref dangles, leaves the schema or loops) and the last
        ref followed.
        """
        ref = None
        for _ in range(32):  # a chain of refs longer than this is a cycle of refs
            if not isinstance(node, dict) or not isinstance(node.get("$ref"), str):
                return node, ref
            ref = node["$ref"]
            target = _pointer(root, ref)
            if target is None:
                return None, ref
            siblings = {k: v for k, v in node.items() if k != "$ref"}
            node = {**target, **siblings} if siblings and isinstance(target, dict) else target
        return None, ref

    def _types(self, old: dict[str, Any], new: dict[str, Any], at: list[str]) -> bool:
        """Report a type change; True when the rest of the node still compares.

        Most keywords apply to one type (`pattern` to strings, `minimum` to numbers), so after a
        type change only containers (objects, arrays) on both sides are compared further: one
        retyped field is one change.
        """
        before, after = _type_set(old.get("type")), _type_set(new.get("type"))
        if before == after:
            return True
        here = [*at, "type"]
        said = f"type {_type_text(before)} → {_type_text(after)}"
        if self.side == "output":
            self.broke(here, f"output {said}")
        elif _covers(after, before):
            self.widened(here, f"{said} (widened)")
        elif _covers(before, after):
            self.narrowed(here, f"{said} (narrowed)")
        else:
            self.broke(here, said)
        return bool(before & after & {"object", "array"})

    def _properties(self, old: dict[str, Any], new: dict[str, Any], at: list[str]) -> None:
        before, after = old.get("properties", {}), new.get("properties", {})
        if not _both_dicts(before, after):
            self._keyword("properties", before, after, at)
            return
        required_before, required_after = _names(old.get("required")), _names(new.get("required"))
        inputs = self.side == "input"
        for name in sorted(before.keys() | after.keys() | required_before | required_after):
            here, shown = [*at, "properties", name], _quoted(name)
            if name in before and name not in after:
                self.broke(here, f"{self.side} property {shown} removed")
            elif name in after and name not in before:
                if inputs and name in required_after:
                    self.broke(here, f"new required input {shown}")
                else:
                    what = "optional input" if inputs else "output property"
                    self._add(here, f"new {what} {shown}", "compatible")
            else:
                if name in before:
                    self.compare(before[name], after[name], here)
                if name in required_after - required_before:
                    said = "is now required" if inputs else "is now always present"
                    self.narrowed(here, f"{self.side} {shown} {said}")
                elif name in required_before - required_after:
                    said = "is now optional" if inputs else "may now be absent"
                    self.widened(here, f"{self.side} {shown} {said}")

    def _subschema(self, key: str, old: Any, new: Any, at: list[str]) -> None:
        here = [*at, key]
        what = "additional properties" if key == "additionalProperties" else "array items"
        if old is False and new is not False:
            self.widened(here, f"{what} now allowed")
        elif new is False and old is not False:
            self.narrowed(here, f"{what} no longer allowed")
        else:
            self.compare(old, new, here)

    def _enum(self, old: Any, new: Any, at: list[str]) -> None:
        here = [*at, "enum"]
        if old == new:
            return
        if not isinstance(old, list) or not isinstance(new, list):
            self._keyword("enum", old, new, at)
            return
        before, after = {_js(v) for v in old}, {_js(v) for v in new}
        if gone := sorted(before - after):
            self.narrowed(here, f"enum value{_s(gone)} removed: {', '.join(gone)}")
        if came := sorted(after - before):
            self.widened(here, f"enum value{_s(came)} added: {', '.join(came)}")

    def _alternatives(self, key: str, old: Any, new: Any, at: list[str]) -> None:
        """Pair identical alternatives, then the rest in order; an extra one widens."""
        if self.same(old, new):
            return
        if not isinstance(old, list) or not isinstance(new, list):
            self._keyword(key, old, new, at)
            return
        rest_new = list(enumerate(new))
        rest_old = []
        for item in old:
            twin = next((i for i, (_, n) in enumerate(rest_new) if self.same(n, item)), None)
            if twin is None:
                rest_old.append(item)
            else:
                del rest_new[twin]
        for item, (index, other) in zip(rest_old, rest_new, strict=False):
            self.compare(item, other, [*at, key, str(index)])
        for index, _ in rest_new[len(rest_old) :]:
            self.widened([*at, key, str(index)], f"{key} alternative added")
        if len(rest_old) > len(rest_new):
            self.narrowed(
                [*at, key], f"{len(rest_old) - len(rest_new)} {key} alternative(s) removed"
            )

    def _flag(self, key: str, old: bool, new: bool, at: list[str]) -> None:
        if old != new:
            (self.narrowed if new else self.widened)([*at, key], f"{key} {_js(old)} → {_js(new)}")

    def _keyword(self, key: str, old: Any, new: Any, at: list[str]) -> None:
        if old == new:
            return
        here = [*at, key]
        if key in _TEXT_KEYWORDS:
            verb = "added" if old is None else "removed" if new is None else "changed"
            self._add(here, f"{key} {verb}", "compatible")
        elif key in _LOWER_BOUNDS | _UPPER_BOUNDS and _numbers(old, new):
            self._bound(key, old, new, here)
        elif old is None:
            self.narrowed(here, f"{key} {_js(new)} added")
        elif new is None:
            self.widened(here, f"{key} {_js(old)} removed")
        else:
            self.broke(here, f"{key} {_js(old)} → {_js(new)}")

    def _bound(self, key: str, old: Any, new: Any, here: list[str]) -> None:
        if old is None:
            self.narrowed(here, f"{key} {_js(new)} added")
        elif new is None:
            self.widened(here, f"{key} {_js(old)} removed")
        elif (new > old) == (key in _LOWER_BOUNDS):
            self.narrowed(here, f"{key} {_js(old)} → {_js(new)} (narrowed)")
        else:
            self.widened(here, f"{key} {_js(old)} → {_js(new)} (widened)")

    def _opaque(self, old: Any, new: Any, at: list[str]) -> None:
        """A `false` schema on one side, or a value that is not a schema."""
        if new is False:
            self.narrowed(at, "now accepts no value")
        elif old is False:
            self.widened(at, "now accepts values")
        else:
            self.broke(at, f"schema {_js(old)} → {_js(new)}")


def _pointer(root: Any, ref: str) -> Any:
    """The target of a `#/...` JSON pointer within root, or None."""
    if not ref.startswith("#"):
        return None
    node = root
    for part in unquote(ref[1:]).split("/")[1:]:
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


_ALL_TYPES = frozenset({"null", "boolean", "object", "array", "number", "string", "integer"})


def _type_set(value: Any) -> frozenset[str]:
    if isinstance(value, str):
        return frozenset({value})
    if isinstance(value, list):
        return frozenset(v for v in value if isinstance(v, str))
    return _ALL_TYPES


def _covers(wide: frozenset[str], narrow: frozenset[str]) -> bool:
    return all(t in wide or (t == "integer" and "number" in wide) for t in narrow)


def _type_text(types: frozenset[str]) -> str:
    if types == _ALL_TYPES:
        return "any"
    return " | ".join(sorted(types)) if types else "none"


def _get(schema: Any, key: str) -> Any:
    return schema.get(key) if isinstance(schema, dict) else None


def _has_ref(node: Any) -> bool:
    if isinstance(node, dict):
        return "$ref" in node or any(_has_ref(v) for v in node.values())
    return isinstance(node, list) and any(_has_ref(v) for v in node)


def _names(required: Any) -> set[str]:
    return {n for n in required if isinstance(n, str)} if isinstance(required, list) else set()


def _quoted(name: str) -> str:
    """A name as a code span in messages (markdown renders it; a backtick would end it)."""
    return "`" + name.replace("`", "'") + "`"


def _both_dicts(old: Any, new: Any) -> bool:
    return isinstance(old, dict) and isinstance(new, dict)


def _numbers(*values: Any) -> bool:
    return all(
        v is None or (isinstance(v, int | float) and not isinstance(v, bool)) for v in values
    )


def _js(value: Any) -> str:
    """A value as short JSON, for messages."""
    text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


def _s(items: list[str]) -> str:
    return "" if len(items) == 1 else "s"


# ---- rendering -------------------------------------------------------------------------------


def summary_line(changes: list[Change]) -> str:
    breaking = sum(c.kind == "breaking" for c in changes)
    compatible = len(changes) - breaking
    return f"{breaking} breaking, {compatible} compatible changes"


def _of_kind(changes: list[Change], kind: Kind) -> list[Change]:
    return [c for c in changes if c.kind == kind]


def render_text(changes: list[Change]) -> str:
    lines = [summary_line(changes)]
    for kind in ("breaking", "compatible"):
        group = _of_kind(changes, kind)
        if group:
            lines += ["", f"{kind}:"]
        tool = None
        for change in group:
            if change.tool != tool:
                tool = change.tool
                lines.append(f"  {tool}")
            where = f"{change.path}: " if change.path else ""
            lines.append(f"    {where}{change.message}")
    return "\n".join(lines) + "\n"


def render_json(changes: list[Change], old: dict[str, Any], new: dict[str, Any]) -> str:
    added, removed, changed = changed_tools(old, new)
    document = {
        "breaking": [c.as_json() for c in _of_kind(changes, "breaking")],
        "compatible": [c.as_json() for c in _of_kind(changes, "compatible")],
        "summary": {
            "breaking": len(_of_kind(changes, "breaking")),
            "compatible": len(_of_kind(changes, "compatible")),
            "tools": {"added": added, "removed": removed, "changed": changed},
        },
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def render_markdown(changes: list[Change], old_label: str, new_label: str) -> str:
    lines = [
        f"## MCP tool changes: {summary_line(changes)}",
        "",
        f"{_code(old_label)} → {_code(new_label)}",
    ]
    for kind, heading in (("breaking", "Breaking changes"), ("compatible", "Compatible changes")):
        group = _of_kind(changes, kind)
        if not group:
            continue
        lines += ["", f"### {heading}", ""]
        table = ["| tool | where | change |", "|---|---|---|"]
        table += [
            f"| {_code(c.tool)} | {_code(c.path) if c.path else ''} | {_message(c.message)} |"
            for c in group
        ]
        if len(group) > MARKDOWN_FOLD:
            opened = " open" if kind == "breaking" else ""
            summary = f"{len(group)} {kind} changes"
            lines += [
                f"<details{opened}><summary>{summary}</summary>",
                "",
                *table,
                "",
                "</details>",
            ]
        else:
            lines += table
    if not changes:
        lines += ["", "No tool changes."]
    elif not _of_kind(changes, "breaking"):
        lines += ["", "No breaking changes."]
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    """Text of a table cell: names in a manifest must not become HTML or break the table."""
    for raw, safe in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ("|", "\\|")):
        text = text.replace(raw, safe)
    return re.sub(r"\s+", " ", text)


def _message(text: str) -> str:
    """A message in a table cell: its `code spans` stay code, the rest is escaped text."""
    parts = text.split("`")
    return "".join(_code(p) if i % 2 else _cell(p) for i, p in enumerate(parts))


def _code(text: str) -> str:
    """A code span in a table cell (HTML is not read inside one; a backtick would end it)."""
    return "`" + re.sub(r"\s+", " ", text.replace("`", "'").replace("|", "\\|")) + "`"


# ---- the command -----------------------------------------------------------------------------


@click.command("diff")
@click.argument("old")
@click.argument("new")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(FORMATS),
    default="text",
    show_default=True,
    help="text for a terminal, json for scripts, markdown for a pull-request comment.",
)
@click.option("--allow-breaking", is_flag=True, help="Exit 0 even when a change is breaking.")
@guarded
def command(old: str, new: str, output_format: str, allow_breaking: bool) -> None:
    """Classify tool changes from OLD to NEW (manifest.json, bundle folder, or REV:PATH).

    Exits 1 when a change is breaking for AI clients, unless --allow-breaking.
    """
    old_manifest, new_manifest = load_pair(old, new)
    changes = diff_manifests(old_manifest, new_manifest)
    if output_format == "json":
        report = render_json(changes, old_manifest, new_manifest)
    elif output_format == "markdown":
        report = render_markdown(changes, old, new)
    else:
        report = render_text(changes)
    click.echo(report, nl=False)
    breaking = len(_of_kind(changes, "breaking"))
    if breaking and not allow_breaking:
        click.echo(
            f"mcpgen diff: {breaking} breaking change{'' if breaking == 1 else 's'} "
            "(pass --allow-breaking to accept)",
            err=True,
        )
        sys.exit(EXIT_BREAKING)
