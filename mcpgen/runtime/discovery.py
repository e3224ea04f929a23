"""Progressive discovery (`--discovery`): a handful of meta-tools instead of the catalog.

A client that takes 40 tools cannot list 13,000; with `--discovery` the server lists
`search_tools`, `describe_tool`, `call_tool` and `enable_toolset` (and the tools of the toolsets
a session enabled). Search ranks the served tools by BM25 (Robertson and Zaragoza's Okapi
weighting) over their names, titles, full method names, descriptions and input field names,
each field weighted (a name or title match counts more than one in a description), from the
bundle's search shards (`search/<shard>.json`, written by the build), so no tools shard is read
to answer a search. Calls through `call_tool` take exactly the path of a direct call.
"""

from __future__ import annotations

import math
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from mcpgen.contract import REBUILD, search_entry

if TYPE_CHECKING:
    import numpy as np
from mcpgen.errors import UserError

SEARCH, DESCRIBE, CALL, ENABLE = "search_tools", "describe_tool", "call_tool", "enable_toolset"
META_TOOLS = (SEARCH, DESCRIBE, CALL, ENABLE)
DEFAULT_LIMIT, MAX_LIMIT = 10, 50
SESSIONS = 10_000  # sessions whose enabled toolsets are remembered
#: BM25's saturation and length normalisation (the usual values).
K1, B = 1.2, 0.75
#: How much a word counts in each part of a tool's document.
WEIGHTS = {"name": 3.0, "title": 3.0, "method": 2.0, "toolset": 1.0, "fields": 1.0,
           "description": 1.0}  # fmt: skip
_WORD = re.compile(r"[A-Z]+(?=[A-Z][a-z]|\d|\b|_)|[A-Z]?[a-z]+|[A-Z]+|\d+")
_STOP = frozenset({"a", "an", "and", "the", "of", "to", "in", "for", "on", "by", "or", "is",
                   "be", "with", "as", "at", "it", "this", "that", "from", "are"})  # fmt: skip


def words(text: str) -> list[str]:
    """Lower-case words of a text, split at case changes, digits and punctuation
    (`ListBooks` → list, book; `acme.library.v1` → acme, library, v, 1), plurals folded."""
    out = []
    for raw in _WORD.findall(text):
        word = raw.lower()
        if word in _STOP:
            continue
        out.append(_stem(word))
    return out


def _stem(word: str) -> str:
    """A light plural fold, enough for API vocabulary (books, policies, addresses)."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


@dataclass(frozen=True, slots=True)
class Entry:
    name: str
    title: str
    toolset: str
    summary: str  # the description's first line


@dataclass(frozen=True, slots=True)
class Hit:
    entry: Entry
    score: float

    def to_json(self) -> dict[str, Any]:
        e = self.entry
        return {"name": e.name, "title": e.title, "toolset": e.toolset, "summary": e.summary,
                "score": round(self.score, 3)}  # fmt: skip


class SearchIndex:
    """An inverted index of tool documents, ranked by BM25.

    Each word's postings are two numpy arrays, the documents that hold it and its BM25 term
    weight in each (saturation and length normalisation applied once, here); a query adds
    `idf × weight` into one dense score vector per word, so a search over 13,000 tools costs
    a few array operations, not a Python loop over every posting."""

    def __init__(self, documents: Iterable[tuple[Entry, dict[str, str | list[str]]]]) -> None:
        import numpy as np  # only a server with --discovery pays for it

        self.entries: list[Entry] = []
        counted: list[dict[str, float]] = []
        for entry, parts in documents:
            counts: dict[str, float] = {}
            for part, text in parts.items():
                weight = WEIGHTS[part]
                for word in words(" ".join(text) if isinstance(text, list) else text):
                    counts[word] = counts.get(word, 0.0) + weight
            self.entries.append(entry)
            counted.append(counts)
        lengths = [sum(c.values()) for c in counted]
        average = (sum(lengths) / len(lengths)) if lengths else 1.0
        docs: dict[str, list[int]] = {}
        weights: dict[str, list[float]] = {}
        for doc, counts in enumerate(counted):
            norm = K1 * (1 - B + B * lengths[doc] / average)
            for word, tf in counts.items():
                docs.setdefault(word, []).append(doc)
                weights.setdefault(word, []).append(tf * (K1 + 1) / (tf + norm))
        total = len(self.entries)
        self.postings: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for word, held in docs.items():
            idf = math.log(1 + (total - len(held) + 0.5) / (len(held) + 0.5))
            scaled = np.asarray(weights[word], dtype=np.float64) * idf
            self.postings[word] = (np.asarray(held, dtype=np.int32), scaled)
        #: document order by name, to break ties the same way every time
        order = sorted(range(total), key=lambda d: self.entries[d].name)
        self._rank_of_name = np.empty(total, dtype=np.int64)
        self._rank_of_name[order] = np.arange(total)

    def __len__(self) -> int:
        return len(self.entries)

    def search(
        self, query: str, limit: int = DEFAULT_LIMIT, allowed: Callable[[str], bool] | None = None
    ) -> list[Hit]:
        """The best `limit` tools for `query` that `allowed` admits, best first (ties by
        name)."""
        import numpy as np

        scores = np.zeros(len(self.entries), dtype=np.float64)
        for word in dict.fromkeys(words(query)):
            found = self.postings.get(word)
            if found is not None:
                scores[found[0]] += found[1]  # a word's documents are distinct
        matched = np.flatnonzero(scores > 0)
        if matched.size == 0:
            return []
        # best first, then by name; taken in slices until `limit` pass `allowed`
        order = matched[np.lexsort((self._rank_of_name[matched], -scores[matched]))]
        hits: list[Hit] = []
        for doc in order:
            entry = self.entries[int(doc)]
            if allowed is None or allowed(entry.name):
                hits.append(Hit(entry, float(scores[doc])))
                if len(hits) == limit:
                    break
        return hits


def index_of(bundle: Any) -> SearchIndex:
    """The search index of a bundle's served tools, from its search shards (a shard without
    one, from mcpgen 0.2.0, is read from its tools shard instead)."""
    served = set(bundle.names)
    documents: list[tuple[Entry, dict[str, str | list[str]]]] = []
    for shard_name in sorted(set(bundle.shard_of.values())):
        files = bundle.index.shards[shard_name].files
        for tool in _search_entries(bundle, shard_name, files.search):
            if tool["name"] not in served:
                continue
            description = str(tool.get("description", ""))
            entry = Entry(tool["name"], str(tool.get("title", "")), shard_name,
                          description.strip().split("\n", 1)[0][:200])  # fmt: skip
            parts: dict[str, str | list[str]] = {
                "name": tool["name"], "title": entry.title, "method": tool.get("method", ""),
                "toolset": shard_name, "description": description,
                "fields": list(tool.get("fields", [])),
            }  # fmt: skip
            documents.append((entry, parts))
    return SearchIndex(documents)


def _search_entries(bundle: Any, shard: str, file: str | None) -> list[dict[str, Any]]:
    if file is None:  # a bundle of mcpgen 0.2.0: the same entries, from the tools shard
        methods = bundle.view.entry(shard).methods
        tools = bundle.view.shard(shard).tools
        return [search_entry(t, methods.get(t["name"], "")) for t in tools]
    try:
        return list(orjson.loads(bundle.view.read(file))["tools"])
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        where = f"{bundle.folder}/{file}"
        raise UserError(f"{where} is not a search shard: {exc}", hint=REBUILD) from None


# ---- the meta-tools --------------------------------------------------------------------------

_NAME = {"type": "string", "minLength": 1}


def meta_tools() -> list[dict[str, Any]]:
    """The four meta-tools as MCP Tool objects, with schemas that say what they take and give."""
    hit = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "description": "The tool's name, for describe_tool "
                     "and call_tool."},
            "title": {"type": "string"},
            "toolset": {"type": "string", "description": "The toolset it belongs to, for "
                        "enable_toolset."},
            "summary": {"type": "string", "description": "The first line of its description."},
            "score": {"type": "number", "description": "Relevance; higher is better."},
        },
        "required": ["name", "title", "toolset", "summary", "score"],
    }  # fmt: skip
    return [
        {
            "name": SEARCH,
            "title": "Search tools",
            "description": (
                "Find the tools that can do a task. This server has more tools than it lists; "
                "search them by what you want to do, in a few words (e.g. 'create a book', "
                "'list shelves', 'user email'). Results are ranked best first. Then call "
                f"{DESCRIBE} with a result's name to see its arguments, and {CALL} to run it; "
                f"or {ENABLE} with its toolset to add that toolset's tools to your tool list."
            ),
            "inputSchema": {
                "type": "object",
                "properties": {
                    "query": {
                        "type": "string",
                        "minLength": 1,
                        "description": "Words that "
                        "describe the task, the resource or the field you need.",
                    },
                    "limit": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": MAX_LIMIT,
                        "default": DEFAULT_LIMIT,
                        "description": "How many results.",
                    },
                },
                "required": ["query"],
                "additionalProperties": False,
            },
            "outputSchema": {
                "type": "object",
                "properties": {"results": {"type": "array", "items": hit}},
                "required": ["results"],
            },
            "annotations": {"readOnlyHint": True, "idempotentHint": True},
        },
        {
            "name": DESCRIBE,
            "title": "Describe a tool",
            "description": (
                "The full definition of one tool: its description, the JSON Schema of its "
                f"arguments (inputSchema) and of its result. Use it on a name from {SEARCH} "
                f"before calling the tool with {CALL}."
            ),
            "inputSchema": {
                "type": "object",
                "properties": {"name": {**_NAME, "description": "A tool name from search."}},
                "required": ["name"],
                "additionalProperties": False,
            },
            "outputSchema": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "title": {"type": "string"},
                    "description": {"type": "string"},
                    "inputSchema": {"type": "object"},
                    "outputSchema": {"type": "object"},
                    "annotations": {"type": "object"},
                },
                "required": ["name", "inputSchema"],
            },
            "annotations": {"readOnlyHint": True, "idempotentHint": True},
        },
        {
            "name": CALL,
            "title": "Call a tool",
            "description": (
                "Run one tool by name with its arguments, exactly as if it were listed: the "
                "arguments must match the tool's inputSchema (see "
                f"{DESCRIBE}); the result is the tool's own result, and errors come back the "
                "same way."
            ),
            "inputSchema": {
                "type": "object",
                "properties": {
                    "name": {**_NAME, "description": "The tool to run."},
                    "arguments": {
                        "type": "object",
                        "default": {},
                        "description": "The tool's arguments.",
                    },
                },
                "required": ["name"],
                "additionalProperties": False,
            },
            "outputSchema": {"type": "object", "description": "The called tool's result."},
        },
        {
            "name": ENABLE,
            "title": "Enable a toolset",
            "description": (
                "Add every tool of a toolset (the `toolset` of a search result) to your tool "
                "list, so that you can call them directly. The server then says its tool list "
                "changed; list the tools again to see them."
            ),
            "inputSchema": {
                "type": "object",
                "properties": {"name": {**_NAME, "description": "A toolset name."}},
                "required": ["name"],
                "additionalProperties": False,
            },
            "outputSchema": {
                "type": "object",
                "properties": {
                    "toolset": {"type": "string"},
                    "tools": {"type": "array", "items": {"type": "string"}},
                    "listed": {
                        "type": "boolean",
                        "description": "Whether the tools now appear "
                        "in this session's tool list (false without a session: call "
                        f"them through {CALL}).",
                    },
                },
                "required": ["toolset", "tools", "listed"],
            },
            "annotations": {"readOnlyHint": True, "idempotentHint": True},
        },
    ]


class Discovery:
    """What `--discovery` adds to a server: the meta-tools, the search index (built on the
    first search), and the toolsets each session enabled."""

    def __init__(self, bundle: Any) -> None:
        clash = sorted(set(META_TOOLS) & set(bundle.all_names))
        if clash:
            raise UserError(
                f"--discovery needs the tool names {', '.join(clash)}, which the bundle uses",
                hint="rename those tools with [tool.mcpgen.rename], or serve without --discovery",
            )
        self.bundle = bundle
        self.tools = {t["name"]: t for t in meta_tools()}
        self._index: SearchIndex | None = None
        self._building: threading.Thread | None = None
        self._failure: BaseException | None = None
        #: per session (a legacy-era connection): the tools its enabled toolsets added; the
        #: least recently enabled sessions are forgotten beyond SESSIONS
        self.enabled: OrderedDict[str, set[str]] = OrderedDict()

    def warm(self) -> None:
        """Build the search index in a thread now, so that the first search need not wait
        for it (reading every search shard takes a second or two on a large bundle)."""
        if self._building is None and self._index is None:
            self._building = threading.Thread(target=self._build, name="mcpgen-search", daemon=True)
            self._building.start()

    def _build(self) -> None:
        try:
            self._index = index_of(self.bundle)
        except BaseException as exc:  # raised again by the search that needs the index
            self._failure = exc

    @property
    def index(self) -> SearchIndex:
        if self._building is not None:
            self._building.join()
        if self._index is None:
            if self._failure is not None:
                raise self._failure
            self._index = index_of(self.bundle)
        return self._index

    def moved_to(self, bundle: Any) -> Discovery:
        """The discovery state of a reloaded bundle: a new index (built at once, in a thread),
        each session's enabled tools kept where the new bundle still serves them."""
        moved = Discovery(bundle)
        served = set(bundle.names)
        for session, tools in self.enabled.items():
            if kept := tools & served:
                moved.enabled[session] = kept
        moved.warm()
        return moved

    def listed(self, session: str | None) -> list[str]:
        """The bundle tools a session lists besides the meta-tools, sorted."""
        if session is None:
            return []
        return sorted(self.enabled.get(session, ()))

    def enable(
        self, session: str | None, toolset: str, allowed: Callable[[str], bool]
    ) -> list[str]:
        """The tools a toolset adds for a caller (recorded for `session` when it has one)."""
        tools = [t for t in self.bundle.toolsets.get(toolset, ()) if allowed(t)]
        if not tools:
            raise KeyError(toolset)
        if session is not None:
            self.enabled.setdefault(session, set()).update(tools)
            self.enabled.move_to_end(session)
            while len(self.enabled) > SESSIONS:
                self.enabled.popitem(last=False)
        return tools
