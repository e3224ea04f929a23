"""The smallest MCP server on the SDK mcpgen uses: one tool, stdio. `serve.py` starts it the
way it starts a bundle's server, so that the start time the SDK itself costs is measured in
the same run (the floor under any server built on it)."""

from __future__ import annotations

import anyio
import mcp_types as types
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server

TOOL = types.Tool(name="echo", input_schema={"type": "object"})


async def list_tools(ctx, params):  # type: ignore[no-untyped-def]
    return types.ListToolsResult(tools=[TOOL])


async def call_tool(ctx, params):  # type: ignore[no-untyped-def]
    return types.CallToolResult(content=[types.TextContent(type="text", text="{}")])


async def main() -> None:
    server: Server = Server("minimal", on_list_tools=list_tools, on_call_tool=call_tool)
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


if __name__ == "__main__":
    anyio.run(main)
