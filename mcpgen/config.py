"""Build configuration: `[tool.mcpgen]` in pyproject.toml, or the top level of mcpgen.toml.

Paths in a config file are relative to the file's folder. Unknown keys and wrong types are
errors that name the file, the line and the key, so a typo never silently changes a build.
"""

from __future__ import annotations

import difflib
import re
import string
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcpgen.contract import CLIENT_PROFILES
from mcpgen.errors import UserError

SCHEMA_PROFILES = ("portable", "full")

NAME_FIELDS = {"service", "method", "package", "full_service"}
ANNOTATION_KEYS = {
    "readOnlyHint": bool,
    "destructiveHint": bool,
    "idempotentHint": bool,
    "openWorldHint": bool,
}


@dataclass(slots=True)
class Config:
    sources: list[str] = field(default_factory=list)
    import_paths: list[str] = field(default_factory=list)
    out: str = "mcp_bundle"
    include: list[str] = field(default_factory=list)  # globs on full method names
    exclude: list[str] = field(default_factory=list)
    name_template: str = "{service}_{method}"
    rename: dict[str, str] = field(default_factory=dict)  # full method name -> tool name
    descriptions: dict[str, str] = field(default_factory=dict)  # full method name -> text
    annotations: dict[str, dict[str, bool]] = field(default_factory=dict)
    scopes: dict[str, list[str]] = field(default_factory=dict)  # full method name -> scopes
    toolsets: dict[str, list[str]] = field(default_factory=dict)  # name -> globs (toolsets.py)
    schema_profile: str = "portable"
    profile: str | None = None  # a client of CLIENT_PROFILES the inputSchemas are made for
    models: bool = True  # write models.py
    recursion_depth: int = 3
    portable_max_nodes: int = 2000
    server_name: str = "mcpgen"  # serverInfo.name of the generated server
    server_version: str | None = None  # default: mcpgen's version + a digest of the manifest
    # server.json (the MCP Registry's format) and serverInfo: what the server says it is
    server_title: str | None = None
    server_description: str | None = None  # at most 100 characters (the registry's limit)
    website_url: str | None = None
    remote_url: str | None = None  # where the server is served over Streamable HTTP
    package: dict[str, str] = field(default_factory=dict)  # registry, identifier, version
    file: str | None = None  # the config file read, for messages


def _string_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _string_table(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())


def _annotation_table(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(v, dict) for v in value.values())


_KEYS: dict[str, tuple[Any, str]] = {
    "sources": (_string_list, "a list of paths"),
    "import_paths": (_string_list, "a list of folders"),
    "out": (lambda v: isinstance(v, str), "a path"),
    "include": (_string_list, "a list of globs on full method names"),
    "exclude": (_string_list, "a list of globs on full method names"),
    "name_template": (lambda v: isinstance(v, str), 'a string such as "{service}_{method}"'),
    "rename": (_string_table, "a table of full method name = tool name"),
    "descriptions": (_string_table, "a table of full method name = description"),
    "annotations": (_annotation_table, "a table of full method name = { readOnlyHint = true }"),
    "scopes": (
        lambda v: isinstance(v, dict) and all(_string_list(s) for s in v.values()),
        'a table of full method name = ["scope", ...]',
    ),
    "toolsets": (
        lambda v: isinstance(v, dict) and all(_string_list(s) and s for s in v.values()),
        'a table of toolset name = ["glob on tool or full method names", ...]',
    ),
    "schema_profile": (lambda v: v in SCHEMA_PROFILES, f"one of {', '.join(SCHEMA_PROFILES)}"),
    "profile": (lambda v: v in CLIENT_PROFILES, f"one of {', '.join(CLIENT_PROFILES)}"),
    "models": (lambda v: isinstance(v, bool), "true or false"),
    "recursion_depth": (
        lambda v: isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 32,
        "an integer from 1 to 32",
    ),
    "portable_max_nodes": (
        lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 50,
        "an integer of at least 50",
    ),
    "server_name": (lambda v: isinstance(v, str) and v.strip() != "", "a non-empty string"),
    "server_version": (lambda v: isinstance(v, str) and v.strip() != "", "a non-empty string"),
    "server_title": (lambda v: isinstance(v, str) and v.strip() != "", "a non-empty string"),
    "server_description": (
        lambda v: isinstance(v, str) and 0 < len(v.strip()) <= 100,
        "a string of 1 to 100 characters (the MCP Registry's limit)",
    ),
    "website_url": (lambda v: isinstance(v, str) and _http_url(v), "an http(s) URL"),
    "remote_url": (lambda v: isinstance(v, str) and _http_url(v), "an http(s) URL"),
    "package": (
        lambda v: (
            isinstance(v, dict)
            and set(v) <= {"registry", "identifier", "version", "runtime_hint"}
            and {"registry", "identifier", "version"} <= set(v)
            and all(isinstance(x, str) and x.strip() for x in v.values())
        ),
        'a table { registry = "pypi" | "oci" | "npm" | ..., identifier = "...", '
        'version = "1.2.0" } (runtime_hint optional)',
    ),
}


def _http_url(value: str) -> bool:
    return value.startswith(("https://", "http://")) and len(value) > len("https://")


def _line_of(text: str, key: str) -> int | None:
    pattern = re.compile(rf"^\s*\"?{re.escape(key)}\"?\s*=", re.MULTILINE)
    match = pattern.search(text)
    return text.count("\n", 0, match.start()) + 1 if match else None


def find_config(explicit: str | None) -> Path | None:
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise UserError(f"config file {explicit!r} does not exist")
        return path
    for candidate in (Path("mcpgen.toml"), Path("pyproject.toml")):
        if candidate.is_file():
            if candidate.name == "pyproject.toml" and "mcpgen" not in _tool_tables(candidate):
                continue
            return candidate
    return None


def _tool_tables(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError):
        return {}
    tool = data.get("tool", {})
    return tool if isinstance(tool, dict) else {}


def load_config(explicit: str | None = None) -> Config:
    path = find_config(explicit)
    if path is None:
        return Config()
    text = path.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = getattr(exc, "lineno", None)
        raise UserError(
            f"invalid TOML: {getattr(exc, 'msg', exc)}", file=str(path), line=line
        ) from exc
    table = data.get("tool", {}).get("mcpgen", {}) if path.name == "pyproject.toml" else data
    if not isinstance(table, dict):
        raise UserError("[tool.mcpgen] must be a table", file=str(path))
    return parse_config(table, path, text)


def parse_config(table: dict[str, Any], path: Path, text: str = "") -> Config:
    config = Config(file=str(path))
    for key, value in table.items():
        if key not in _KEYS:
            close = difflib.get_close_matches(key, list(_KEYS), n=1)
            raise UserError(
                f"unknown config key {key!r}",
                file=str(path),
                line=_line_of(text, key),
                hint=(f"did you mean {close[0]!r}? " if close else "")
                + f"known keys: {', '.join(sorted(_KEYS))}",
            )
        check, expected = _KEYS[key]
        if not check(value):
            raise UserError(
                f"config key {key!r} must be {expected}",
                file=str(path),
                line=_line_of(text, key),
            )
        setattr(config, key, value)
    base = path.parent
    config.sources = [str(base / s) for s in config.sources]
    config.import_paths = [str(base / p) for p in config.import_paths]
    if "out" in table:
        config.out = str(base / config.out)
    check_name_template(config.name_template, file=str(path), line=_line_of(text, "name_template"))
    for method, hints in config.annotations.items():
        for hint, value in hints.items():
            if hint not in ANNOTATION_KEYS or not isinstance(value, bool):
                raise UserError(
                    f"annotation {hint!r} for {method} must be one of "
                    f"{', '.join(ANNOTATION_KEYS)} with a true/false value",
                    file=str(path),
                    line=_line_of(text, hint),
                )
    return config


def check_name_template(template: str, file: str | None = None, line: int | None = None) -> None:
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as exc:
        raise UserError(
            f"name_template {template!r} is malformed: {exc}", file=file, line=line
        ) from exc
    unknown = fields - NAME_FIELDS
    if unknown or "method" not in fields:
        raise UserError(
            f"name_template {template!r} must use {{method}} and only "
            f"{', '.join('{' + f + '}' for f in sorted(NAME_FIELDS))}",
            file=file,
            line=line,
        )
