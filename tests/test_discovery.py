"""Progressive discovery (`--discovery`): the meta-tools end to end with the SDK client, over
stdio and both eras of Streamable HTTP, and the search ranking itself.

search → describe → call goes through the same pipeline as a direct call (validation, errors);
search → enable → `notifications/tools/list_changed` → list → direct call; the server's
selection bounds what search finds and what call_tool reaches.
"""

from __future__ import annotations

import sys

import anyio
import mcp_types as types
import pytest
from mcp import Client, StdioServerParameters

from mcpgen.errors import UserError
from mcpgen.runtime.bundle import Bundle
from mcpgen.runtime.discovery import META_TOOLS, Discovery, Entry, SearchIndex, index_of, words
from mcpgen.toolsets import Selection
from tests.conftest import HttpGateway

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


def stdio(bundle, backend, *flags):
    return StdioServerParameters(
        command=sys.executable,
        args=[str(bundle / "server.py"), "--backend", backend.target, "--discovery", *flags],
    )


def test_words_split_names_and_fold_plurals():
    assert words("Library_ListBooks") == ["library", "list", "book"]
    assert words("acme.library.v1.Library.GetBook") == [
        "acme", "library", "v", "1", "library", "get", "book"
    ]  # fmt: skip
    assert words("The policies of an HTTPServer") == ["policy", "http", "server"]
    assert words("address status") == ["address", "status"]


def test_search_ranks_by_bm25_over_the_fields():
    def doc(name, title, description="", fields=()):
        entry = Entry(name, title, "t", description)
        parts = {"name": name, "title": title, "description": description, "fields": list(fields)}
        return entry, parts

    index = SearchIndex([
        doc("Shelf_Create", "Create Shelf", "Creates a shelf."),
        doc("Book_Create", "Create Book", "Creates a book on a shelf.", ["title", "author"]),
        doc("Book_Get", "Get Book", "Returns a book."),
        doc("User_Get", "Get User", "Mentions a book once, in passing, among many other words."),
    ])  # fmt: skip
    assert [h.entry.name for h in index.search("create book")][:2] == [
        "Book_Create",
        "Shelf_Create",
    ]
    assert index.search("get book")[0].entry.name == "Book_Get"
    assert index.search("author")[0].entry.name == "Book_Create"  # a field name
    assert index.search("nothing matches this") == []
    hits = index.search("book", limit=2, allowed=lambda n: n != "Book_Get")
    assert [h.entry.name for h in hits] == ["Book_Create", "User_Get"]
    scores = [h.score for h in index.search("book")]
    assert scores == sorted(scores, reverse=True)


def test_the_index_covers_only_what_is_served(library_bundle):
    everything = index_of(Bundle(library_bundle))
    assert len(everything) == 21
    assert everything.search("create book")[0].entry.name == "Library_CreateBook"
    users = index_of(Bundle(library_bundle, Selection(toolsets=("acme.users.v1",))))
    assert [h.entry.name for h in users.search("user get book create")] == ["v1_Users_GetUser"]


def test_a_bundle_tool_named_like_a_meta_tool_is_refused(library_bundle):
    bundle = Bundle(library_bundle)
    bundle.all_names = bundle.all_names | {"search_tools"}
    with pytest.raises(UserError, match="needs the tool names search_tools"):
        Discovery(bundle)


async def test_search_describe_call_over_stdio(library_bundle, library_backend):
    async with Client(stdio(library_bundle, library_backend), mode="legacy") as client:
        listed = (await client.list_tools()).tools
        found = await client.call_tool("search_tools", {"query": "create a book", "limit": 3})
        described = await client.call_tool("describe_tool", {"name": "Library_CreateBook"})
        arguments = {"parent": "shelves/7", "book": {"title": "Emma"}}
        called = await client.call_tool(
            "call_tool", {"name": "Library_CreateBook", "arguments": arguments}
        )
        bad = await client.call_tool(
            "call_tool", {"name": "Library_CreateBook", "arguments": {"parent": 3}}
        )
        direct_bad = await client.call_tool("Library_CreateBook", {"parent": 3})
        unknown = await client.call_tool("call_tool", {"name": "Nope", "arguments": {}})
        missing = await client.call_tool("describe_tool", {"name": "Nope"})
    assert [t.name for t in listed] == list(META_TOOLS)
    assert all(t.output_schema and t.description for t in listed)
    results = found.structured_content["results"]
    assert results[0]["name"] == "Library_CreateBook"
    assert results[0]["toolset"] == "acme.library.v1" and results[0]["title"] == "Create Book"
    assert len(results) == 3
    assert described.structured_content["name"] == "Library_CreateBook"
    assert "parent" in described.structured_content["inputSchema"]["properties"]
    assert not called.is_error and called.structured_content["title"] == "Emma"
    assert library_backend.calls("CreateBook")[0].request.parent == "shelves/7"
    assert bad.is_error and bad.content[0].text == direct_bad.content[0].text
    assert "at /parent: expected a string" in bad.content[0].text
    assert unknown.is_error and "Unknown tool: Nope" in unknown.content[0].text
    assert missing.is_error


async def test_enable_toolset_tells_the_session_and_lists_its_tools(
    library_bundle, library_backend
):
    changed = anyio.Event()

    async def on_message(message):
        if isinstance(message, types.ToolListChangedNotification):
            changed.set()

    params = stdio(library_bundle, library_backend, "--read-only")
    async with Client(params, mode="legacy", message_handler=on_message) as client:
        enabled = await client.call_tool("enable_toolset", {"name": "acme.library.v1"})
        with anyio.fail_after(10):
            await changed.wait()
        listed = [t.name for t in (await client.list_tools()).tools]
        direct = await client.call_tool("Library_ListBooks", {"parent": "shelves/1"})
        wrong = await client.call_tool("enable_toolset", {"name": "acme.nothing"})
        write = await client.call_tool(
            "call_tool", {"name": "Library_CreateBook", "arguments": {"parent": "shelves/1"}}
        )
        searched = await client.call_tool("search_tools", {"query": "create book", "limit": 50})
    assert enabled.structured_content == {
        "toolset": "acme.library.v1",
        "tools": ["Library_GetBook", "Library_ListBooks"],  # --read-only holds here too
        "listed": True,
    }
    assert listed == [*META_TOOLS, "Library_GetBook", "Library_ListBooks"]
    assert not direct.is_error
    assert wrong.is_error and "Unknown toolset: acme.nothing" in wrong.content[0].text
    assert write.is_error and "Unknown tool: Library_CreateBook" in write.content[0].text
    names = [r["name"] for r in searched.structured_content["results"]]
    assert "Library_CreateBook" not in names and "Library_GetBook" in names
    assert library_backend.calls("CreateBook") == []


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_discovery_over_http(mode, library_bundle, library_backend):
    gateway = HttpGateway(library_bundle, "--backend", library_backend.target, "--discovery")
    try:
        async with Client(gateway.url, mode=mode) as client:
            listed = [t.name for t in (await client.list_tools()).tools]
            found = await client.call_tool("search_tools", {"query": "list books"})
            called = await client.call_tool(
                "call_tool", {"name": "Library_ListBooks", "arguments": {"parent": "shelves/1"}}
            )
            enabled = await client.call_tool("enable_toolset", {"name": "acme.users.v1"})
            after = [t.name for t in (await client.list_tools()).tools]
    finally:
        gateway.stop()
    assert listed == list(META_TOOLS)
    assert found.structured_content["results"][0]["name"] == "Library_ListBooks"
    assert not called.is_error
    assert enabled.structured_content["tools"] == ["v1_Users_GetUser"]
    if mode == "legacy":  # a session: the toolset is listed from now on
        assert enabled.structured_content["listed"] is True
        assert after == [*META_TOOLS, "v1_Users_GetUser"]
    else:  # no session outlives a request: call them through call_tool
        assert enabled.structured_content["listed"] is False
        assert after == list(META_TOOLS)
