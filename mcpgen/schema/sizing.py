"""Shape of the type graph, decided once per catalog: which types recur, which are shared.

Precise schemas inline message types, except those on a reference cycle (which would be
infinite) and large types used from several fields (which would make schemas grow
exponentially in the depth of nesting); both live in `$defs` instead. Portable schemas cannot
reference; they are cut at a nesting depth that keeps them under PORTABLE_MAX_NODES.
"""

from __future__ import annotations

from mcpgen.model import Catalog
from mcpgen.schema.scalars import WELL_KNOWN

#: A message type referenced from several fields whose inlined schema would exceed this many
#: schema objects is written once in `$defs` (precise rendering), keeping schemas linear in size.
INLINE_LIMIT = 40
#: Enums this long are written once in `$defs` too, and list their values' docs only up to
#: LONG_TEXT characters (an LLM gains nothing from pages of enum documentation per field).
LARGE_ENUM_VALUES = 32
LONG_TEXT = 2000
#: Portable schemas estimated larger than this many schema objects nest less deeply: an LLM
#: cannot use a multi-megabyte schema, and the precise schema still checks every call.
PORTABLE_MAX_NODES = 2000


def recursive_types(catalog: Catalog) -> set[str]:
    """Message types on a reference cycle (Tarjan's SCC, iterative: corpora can be deep)."""
    graph: dict[str, list[str]] = {
        name: sorted(
            {
                f.type.message
                for f in m.fields
                if f.type.message and f.type.message in catalog.messages
            }
        )
        for name, m in catalog.messages.items()
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    result: set[str] = set()
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(graph[start]))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(graph[child])))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in graph[node]:
                    result.update(component)
    return result


def shared_types(catalog: Catalog, recursive: set[str]) -> set[str]:
    """Non-recursive types that precise schemas reference instead of inlining."""
    uses: dict[str, int] = {}
    for message in catalog.messages.values():
        for name in {f.type.message for f in message.fields if f.type.message}:
            uses[name] = uses.get(name, 0) + 1
    size: dict[str, int] = {}
    shared: set[str] = set()

    def inline_size(name: str) -> int:
        """Schema objects of `name` inlined, children decided first (the types form a DAG)."""
        if name in size:
            return size[name]
        total = 1
        for fld in catalog.messages[name].fields:
            child = fld.type.message
            if child is None or child in WELL_KNOWN or child in recursive:
                total += 1
                continue
            child_size = inline_size(child)
            if uses.get(child, 0) > 1 and child_size > INLINE_LIMIT:
                shared.add(child)
                total += 1
            else:
                total += child_size
        size[name] = total
        return total

    for name in sorted(catalog.messages):
        if name not in recursive and name not in WELL_KNOWN:
            inline_size(name)
    enum_uses: dict[str, int] = {}
    for message in catalog.messages.values():
        for fld in message.fields:
            if fld.type.enum:
                enum_uses[fld.type.enum] = enum_uses.get(fld.type.enum, 0) + 1
    for name, count in enum_uses.items():
        enum = catalog.enums[name]
        text = len(enum.doc) + sum(len(v.doc) + len(v.name) for v in enum.values)
        if count > 1 and (len(enum.values) > LARGE_ENUM_VALUES or text > LONG_TEXT):
            shared.add(name)
    return shared
