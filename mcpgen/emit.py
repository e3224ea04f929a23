"""Bundle files from rendered tools: shards of one package, descriptor shards, the server.

Same inputs give byte-identical files: tools sorted by name, no timestamps, no absolute paths.
Which files exist and what the index says of them is `mcpgen.contract`'s; this module only
turns a package's tools into the bytes of its files.
"""

from __future__ import annotations

from collections.abc import Iterable

from google.protobuf import descriptor_pb2

from mcpgen import __version__
from mcpgen.catalog_md import index_markdown, package_markdown
from mcpgen.contract import ShardFiles, search_entry, shard_json, to_json
from mcpgen.model import Catalog
from mcpgen.templating import render
from mcpgen.tools import ToolSpec


def shard_files(
    package: str, specs: list[ToolSpec], files: ShardFiles, catalog: Catalog
) -> list[tuple[str, list[bytes]]]:
    """Every file of one package's shard, by bundle path, as the chunks to write."""
    tools = (to_json(spec.tool, newline=False) for spec in specs)
    out = [
        (files.tools, shard_json(package, tools, {s.name: s.route for s in specs})),
        (files.docs, [package_markdown(package, specs)]),
    ]
    if files.search is not None:
        out.append((files.search, [search_shard(package, specs)]))
    if files.models is not None:
        from mcpgen.pymodels import models_module  # datamodel-code-generator: only when asked

        out.append((files.models, [models_module(specs, catalog)]))
    return out


def search_shard(package: str, specs: list[ToolSpec]) -> bytes:
    """What a server's `search_tools` ranks one package's tools by (`contract.search_entry`):
    a small file read at start instead of every tools shard (`mcpgen.runtime.discovery`)."""
    entries = [search_entry(spec.tool, spec.method) for spec in specs]
    return to_json({"package": package, "tools": entries})


def descriptor_shard(files: Iterable[descriptor_pb2.FileDescriptorProto]) -> bytes:
    """A FileDescriptorSet of one package's files as the server forwards with them: in the
    order given (dependencies first), without source info (the text already lives in the
    tools)."""
    out = descriptor_pb2.FileDescriptorSet()
    for f in files:
        copy = out.file.add()
        copy.CopyFrom(f)
        copy.ClearField("source_code_info")
    return out.SerializeToString(deterministic=True)


def server_module(name: str, version: str | None) -> bytes:
    """The generated server: a few lines that hand the bundle folder to `mcpgen.runtime`.

    Without a configured version the server names its bundle by a digest of the index at
    run time, so that server.py does not change with every change to the tools."""
    return render("server.py.j2", server_name=name, version=version, generator=__version__).encode()


#: The MCP Registry's server.json schema this file follows.
SERVER_SCHEMA = "https://static.modelcontextprotocol.io/schemas/2025-12-11/server.schema.json"
#: What a client sets to run the server from its package (server.json `environmentVariables`).
SERVER_VARIABLES = (
    ("MCPGEN_BACKEND", "Where the services live: TARGET, or SERVICE=TARGET per service "
     "(whitespace-separated)", False),
    ("MCPGEN_TOOLSET", "Serve only these toolsets (whitespace-separated)", False),
    ("MCPGEN_READ_ONLY", "Set to 1 to serve only read-only tools", False),
    ("MCPGEN_DISCOVERY", "Set to 1 to list search and call meta-tools instead of every tool",
     False),
)  # fmt: skip


def server_json(
    name: str,
    version: str,
    description: str,
    title: str | None = None,
    website_url: str | None = None,
    remote_url: str | None = None,
    package: dict[str, str] | None = None,
) -> bytes:
    """server.json in the MCP Registry's format: who the server is, the package that runs it
    over stdio with its environment variables, and its Streamable HTTP remote."""
    document: dict = {"$schema": SERVER_SCHEMA, "name": name}
    if title:
        document["title"] = title
    document |= {"description": description, "version": version}
    if website_url:
        document["websiteUrl"] = website_url
    if package:
        entry: dict = {
            "registryType": package["registry"],
            "identifier": package["identifier"],
            "version": package["version"],
        }
        if package.get("runtime_hint"):
            entry["runtimeHint"] = package["runtime_hint"]
        entry["transport"] = {"type": "stdio"}
        entry["environmentVariables"] = [
            {"name": n, "description": d, "isRequired": r, "isSecret": False}
            for n, d, r in SERVER_VARIABLES
        ]
        document["packages"] = [entry]
    if remote_url:
        document["remotes"] = [{"type": "streamable-http", "url": remote_url}]
    return to_json(document)


def catalog_index(entries: list[tuple[str, str, int]]) -> bytes:
    """TOOLS.md: a line per package, linking to its catalog."""
    return index_markdown(entries, f"mcpgen {__version__}")
