"""Toolsets: named groups of a bundle's tools, which a server can be told to serve alone.

Every shard is a toolset named after it (a proto package, or a go-micro registry service);
`[tool.mcpgen.toolsets]` names more, as glob patterns (`fnmatch`, case-sensitive) over tool
names and full method names (`acme.library.v1.Library.GetBook`; go-micro's own names such as
`users.Users.Get`). The build resolves the config's patterns and records the tools each chose,
so a server selects from the index alone. Shared by the build, `mcpgen tools` and the runtime.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from mcpgen.contract import Index, ShardEntry, ToolsetEntry
from mcpgen.errors import UserError

#: A configured toolset's name: what a command line and an environment variable carry well.
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def matches(patterns: Iterable[str], tool: str, method: str) -> bool:
    """Whether any pattern matches the tool's name or its full method name."""
    return any(fnmatch.fnmatchcase(tool, p) or fnmatch.fnmatchcase(method, p) for p in patterns)


def resolve_configured(
    configured: Mapping[str, list[str]],
    methods: Mapping[str, str],
    packages: Iterable[str],
    file: str | None = None,
) -> dict[str, ToolsetEntry]:
    """The config's toolsets with the tools each chooses (`methods`: tool → full method name).

    A toolset that chooses nothing, or is named like a package (which is a toolset already),
    is an error: either is a typo that would otherwise serve nothing, or the wrong thing."""
    taken = set(packages)
    out: dict[str, ToolsetEntry] = {}
    for name, patterns in sorted(configured.items()):
        if not NAME.match(name):
            raise UserError(
                f"toolset name {name!r} must be letters, digits, '_', '.' or '-'", file=file
            )
        if name in taken:
            raise UserError(
                f"toolset {name!r} has the name of a package, which is a toolset already",
                file=file,
                hint="give the configured toolset another name",
            )
        chosen = sorted(t for t, m in methods.items() if matches(patterns, t, m))
        if not chosen:
            raise UserError(
                f"toolset {name!r} chooses no tool: {', '.join(patterns) or 'no patterns'}",
                file=file,
                hint="patterns match tool names and full method names "
                "(e.g. acme.library.v1.Library.* or Library_Get*); `mcpgen tools` lists both",
            )
        out[name] = ToolsetEntry(list(patterns), chosen)
    return out


@dataclass(frozen=True, slots=True)
class Toolset:
    name: str
    kind: str  # "package" (a shard) or "config"
    tools: tuple[str, ...]


def all_toolsets(index: Index, entries: Mapping[str, ShardEntry] | None = None) -> list[Toolset]:
    """Every toolset of a bundle: its packages' and its config's, by name."""
    found = [
        Toolset(name, "package", tuple(entry.tools))
        for name, entry in (entries or index.shards).items()
        if entry.tools
    ]
    found += [Toolset(n, "config", tuple(e.tools)) for n, e in index.toolsets.items()]
    return sorted(found, key=lambda t: t.name)


def unknown_toolset(name: str, known: Iterable[str]) -> UserError:
    names = sorted(known)
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    return UserError(
        f"no toolset is named {name!r}",
        hint=(f"did you mean {', '.join(close)}? " if close else "")
        + "`mcpgen tools BUNDLE --toolsets` lists them",
    )


@dataclass(frozen=True, slots=True)
class Selection:
    """The tools a server serves: `--toolset NAME` and `--tools GLOB` (each repeatable; none
    of either: all of the bundle's), then `--read-only` keeps those whose readOnlyHint is true.
    What is not selected is neither listed nor callable, on every transport."""

    toolsets: tuple[str, ...] = ()
    tools: tuple[str, ...] = ()
    read_only: bool = False

    def choose(self, index: Index, entries: Mapping[str, ShardEntry]) -> dict[str, str]:
        """Tool → its shard, for the selected tools, sorted by tool name. `entries` are the
        index's shard entries with their facts (`BundleView.entry`)."""
        shard_of = {tool: name for name, e in entries.items() for tool in e.tools}
        chosen: set[str] = set()
        if not self.toolsets and not self.tools:
            chosen = set(shard_of)
        known = {t.name: t for t in all_toolsets(index, entries)}
        for name in self.toolsets:
            toolset = known.get(name)
            if toolset is None:
                raise unknown_toolset(name, known)
            chosen.update(toolset.tools)
        methods = {tool: m for e in entries.values() for tool, m in e.methods.items()}
        for pattern in self.tools:
            found = {t for t, m in methods.items() if matches((pattern,), t, m)}
            if not found:
                raise UserError(
                    f"--tools {pattern!r} matches no tool of the bundle",
                    hint="patterns match tool names and full method names "
                    "(pkg.Service.Method); `mcpgen tools BUNDLE` lists both",
                )
            chosen |= found
        if self.read_only:
            chosen &= {t for e in entries.values() for t in e.read_only}
            if not chosen:
                raise UserError(
                    "--read-only leaves no tool: none of the selected tools is read-only",
                    hint="readOnlyHint comes from GET bindings, NO_SIDE_EFFECTS methods and "
                    "[tool.mcpgen.annotations]",
                )
        return {tool: shard_of[tool] for tool in sorted(chosen)}
