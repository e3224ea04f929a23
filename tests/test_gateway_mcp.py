"""The generated gateway driven by the official MCP SDK client, in both protocol eras.

Real parts: the fixture bundle, a real gRPC Library server on a socket, the SDK's own `Client`
(which also validates every `structuredContent` against the tool's `outputSchema`).
"""

from __future__ import annotations

from pathlib import Path

import anyio
import mcp_types as types
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from mcpgen.runtime.bundle import Bundle
from mcpgen.runtime.gateway import Gateway, GatewayOptions
from mcpgen.runtime.grpc_backend import BackendConfig, GrpcBackends
from mcpgen.runtime.server import McpFrontend
from tests.conftest import free_port

pytestmark = pytest.mark.anyio
ERAS = ["legacy", "2026-07-28"]


@pytest.fixture
def anyio_backend():
    return "asyncio"


def frontend(bundle: Path, target: str, page_size: int = 100, **options) -> McpFrontend:
    gateway = Gateway(
        Bundle(bundle), GrpcBackends(BackendConfig.parse([target])), GatewayOptions(**options)
    )
    return McpFrontend(gateway, "library", "1.2.3", page_size=page_size)


async def _all_tools(client: Client) -> list[types.Tool]:
    tools, cursor = [], None
    while True:
        page = await client.list_tools(cursor=cursor)
        tools += page.tools
        cursor = page.next_cursor
        if cursor is None:
            return tools


@pytest.mark.parametrize("mode", ERAS)
async def test_lists_every_tool_in_stable_pages(mode, library_bundle, library_backend):
    server = frontend(library_bundle, library_backend.target, page_size=4)
    manifest_names = [t["name"] for t in Bundle(library_bundle).tools]
    async with Client(server.server, mode=mode) as client:
        first = [t.name for t in await _all_tools(client)]
        again = [t.name for t in await _all_tools(client)]
        with pytest.raises(MCPError) as bad:
            await client.list_tools(cursor="not-a-cursor")
    assert first == again == manifest_names
    assert bad.value.code == types.INVALID_PARAMS


async def test_server_info_names_the_bundle(library_bundle, library_backend):
    server = frontend(library_bundle, library_backend.target)
    async with Client(server.server, mode="legacy") as client:
        assert client.server_info.name == "library"
        assert client.server_info.version == "1.2.3"


@pytest.mark.parametrize("mode", ERAS)
async def test_call_forwards_and_returns_protojson(mode, library_bundle, library_backend):
    server = frontend(library_bundle, library_backend.target)
    async with Client(server.server, mode=mode) as client:
        await _all_tools(client)  # the client validates structured results of listed tools
        created = await client.call_tool(
            "Library_CreateBook",
            # original field names and an int64 as a number are what protobuf's parser takes
            {"parent": "shelves/1", "book": {"title": "Dune", "page_count": 412,
                                              "copies_sold": 12, "genre": "GENRE_FICTION"}},
        )  # fmt: skip
        assert not created.is_error, created.content
        book = created.structured_content
        assert book["pageCount"] == 412 and book["copiesSold"] == "12"
        assert book["genre"] == "GENRE_FICTION" and book["createTime"].endswith("Z")
        assert created.content[0].text.startswith("{")
        got = await client.call_tool("Library_GetBook", {"name": book["name"]})
    assert got.structured_content == book
    sent = library_backend.calls("CreateBook")[0].request
    assert sent.book.page_count == 412 and sent.book.copies_sold == 12


@pytest.mark.parametrize("mode", ERAS)
async def test_bad_arguments_list_every_problem_and_reach_no_backend(
    mode, library_bundle, library_backend
):
    server = frontend(library_bundle, library_backend.target)
    async with Client(server.server, mode=mode) as client:
        bad = await client.call_tool(
            "Library_CreateBook",
            {"book": {"title": 7, "isbn": "12", "pageCount": "many", "bogus": 1,
                      "ebookUrl": "https://x.example/b", "shelfPosition": 2}},
        )  # fmt: skip
        good = await client.call_tool("Library_ListBooks", {"parent": "shelves/1"})
    text = bad.content[0].text
    assert bad.is_error
    assert "missing required property `parent`" in text
    assert "at /book/title: expected a string, got an integer" in text
    assert "at /book/isbn:" in text and "^[0-9]{13}$" in text
    assert "at /book/pageCount: expected a 32-bit integer" in text
    assert "unknown property `bogus`" in text
    assert "`ebookUrl`, `shelfPosition` belong to one oneof" in text
    assert library_backend.calls("CreateBook") == []
    assert not good.is_error  # a bad call never disturbs the next one


@pytest.mark.parametrize("mode", ERAS)
async def test_unknown_tool_is_a_protocol_error(mode, library_bundle, library_backend):
    server = frontend(library_bundle, library_backend.target)
    async with Client(server.server, mode=mode) as client:
        with pytest.raises(MCPError) as error:
            await client.call_tool("No_Such_Tool", {})
    assert error.value.code == types.INVALID_PARAMS


async def test_grpc_status_and_details_become_readable_errors(library_bundle, library_backend):
    server = frontend(library_bundle, library_backend.target)
    async with Client(server.server, mode="legacy") as client:
        missing = await client.call_tool("Library_GetBook", {"name": "shelves/1/books/404"})
        refused = await client.call_tool(
            "Library_CreateBook", {"parent": "shelves/1", "book": {"title": "forbidden"}}
        )
    assert missing.is_error
    assert missing.content[0].text.splitlines() == [
        "NOT_FOUND: book shelves/1/books/404 not found",
        "- resource acme.library.v1.Book shelves/1/books/404: no book has this name",
    ]
    assert refused.content[0].text.splitlines() == [
        "INVALID_ARGUMENT: the book is invalid",
        "- field `book.title`: this title is not allowed",
        "- retry after 2s",
    ]


async def test_backend_down_is_unavailable_within_the_deadline(library_bundle):
    server = frontend(library_bundle, f"127.0.0.1:{free_port()}", timeout=5)
    async with Client(server.server, mode="legacy") as client:
        result = await client.call_tool("Library_ListBooks", {"parent": "shelves/1"})
    assert result.is_error and result.content[0].text.startswith("UNAVAILABLE")  # no deadline


async def test_deadline_per_tool(library_bundle, library_backend):
    server = frontend(
        library_bundle, library_backend.target, timeout=30, tool_timeouts={"Library_GetBook": 0.3}
    )
    async with Client(server.server, mode="legacy") as client:
        slow = await client.call_tool("Library_GetBook", {"name": "shelves/1/books/slow"})
        fine = await client.call_tool("Library_ListBooks", {"parent": "shelves/1"})
    assert slow.is_error and slow.content[0].text.startswith("DEADLINE_EXCEEDED")  # not 5 s
    assert not fine.is_error


async def test_backend_restart_recovers(library_bundle, library_backend):
    server = frontend(library_bundle, library_backend.target, timeout=3)
    port = library_backend.port
    async with Client(server.server, mode="legacy") as client:
        assert not (await client.call_tool("Library_ListBooks", {"parent": "s/1"})).is_error
        library_backend.stop()
        down = await client.call_tool("Library_ListBooks", {"parent": "s/1"})
        library_backend.start(port)
        for _ in range(50):  # the channel reconnects with backoff
            up = await client.call_tool("Library_ListBooks", {"parent": "s/1"})
            if not up.is_error:
                break
            await anyio.sleep(0.2)
    assert down.is_error and down.content[0].text.startswith("UNAVAILABLE")
    assert not up.is_error


@pytest.mark.parametrize("mode", ERAS)
async def test_server_stream_sends_progress_and_aggregates(mode, library_bundle, library_backend):
    server = frontend(library_bundle, library_backend.target)
    progress: list[tuple[float, str | None]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, message))

    async with Client(server.server, mode=mode) as client:
        await _all_tools(client)
        for title in ("A", "B", "C"):
            await client.call_tool(
                "Library_CreateBook", {"parent": "shelves/9", "book": {"title": title}}
            )
        result = await client.call_tool(
            "Library_WatchBooks", {"parent": "shelves/9"}, progress_callback=on_progress
        )
    titles = [m["book"]["title"] for m in result.structured_content["messages"]]
    assert titles == ["A", "B", "C"] and result.structured_content["truncated"] is False
    assert [value for value, _ in progress] == [1.0, 2.0, 3.0]
    assert '"title":"A"' in progress[0][1]


async def test_server_stream_is_bounded(library_bundle, library_backend):
    server = frontend(library_bundle, library_backend.target, max_stream_messages=5)
    async with Client(server.server, mode="legacy") as client:
        result = await client.call_tool("Library_WatchBooks", {"parent": "shelves/endless"})
    assert len(result.structured_content["messages"]) == 5
    assert result.structured_content["truncated"] is True


async def test_cancellation_cancels_the_rpc(library_bundle, library_backend):
    server = frontend(library_bundle, library_backend.target, max_stream_messages=100_000)

    def streamed() -> int:
        return library_backend.streamed

    async with Client(server.server, mode="legacy") as client:
        with anyio.move_on_after(0.5):
            await client.call_tool("Library_WatchBooks", {"parent": "shelves/endless"})
        with anyio.fail_after(30):  # the cancel reaches the backend: its count stops rising
            after_cancel = -1
            while streamed() != after_cancel:
                after_cancel = streamed()
                await anyio.sleep(0.5)
        await anyio.sleep(0.5)
        assert streamed() - after_cancel <= 1  # and stays stopped
        assert not (await client.call_tool("Library_ListBooks", {"parent": "s"})).is_error
    assert after_cancel > 0
