"""go-micro registry snapshots → the IR.

A snapshot is what `micro registry get` prints (an array of services), a single service object,
or `{"services": [...]}`. Each endpoint `Handler.Method` of a service becomes a method of the
service `<registry name>.<Handler>`, bound to go-micro (`GoMicroBinding`) with the snapshot's
nodes. The registry describes types as Value trees (`ValueTree`), which the schema stage renders
loosely (a registry says less than a .proto file). When the build's .proto files define the
handler's service, the proto types and docs win and the registry adds the binding, the
description, examples and scopes (`merge_registry`).

Text from the snapshot is data: names are checked here, and descriptions and examples reach the
manifest only as JSON strings and values.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mcpgen.errors import UserError, Warnings
from mcpgen.model import Catalog, GoMicroBinding, Method, Service, ValueTree

#: Go reflection names of the parts of a streaming handler's signature.
_STREAM_TYPES = {"Context", "Stream"}
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_TREE_DEPTH = 64  # go-micro stops at 3; anything deeper is not a registry's output


@dataclass(slots=True)
class RegistryEndpoint:
    name: str
    request: ValueTree | None
    response: ValueTree | None
    metadata: dict[str, str]


@dataclass(slots=True)
class RegistryService:
    name: str
    version: str
    nodes: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)  # id, address, md
    endpoints: dict[str, RegistryEndpoint] = field(default_factory=dict)
    source: str = ""


# ---- reading ---------------------------------------------------------------------------------


def read_registry(path: Path, shown: str) -> list[RegistryService]:
    """The services of one snapshot file, or a UserError saying what is wrong where."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise UserError(f"{shown} is not UTF-8 text: {exc}") from None
    except json.JSONDecodeError as exc:
        raise UserError(
            f"not valid JSON: {exc.msg}",
            file=shown,
            line=exc.lineno,
            hint="a registry snapshot is what `micro registry get` or `mcpgen snapshot etcd://` "
            "writes",
        ) from None
    if isinstance(document, dict) and "services" in document:
        document = document["services"]
    elif isinstance(document, dict):
        document = [document]
    if not isinstance(document, list):
        raise UserError(
            f"{shown}: expected a JSON array of go-micro services, an object with `services`, "
            "or a single service object"
        )
    return [_service(item, f"{shown}: service #{i}") for i, item in enumerate(document)]


def _service(item: Any, where: str) -> RegistryService:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
        raise UserError(f"{where} is not a go-micro service (an object with a `name`)")
    name = item["name"]
    where = f"{where.rpartition(':')[0]}: service {name!r}"
    service = RegistryService(name=name, version=str(item.get("version") or "latest"), source=where)
    for i, node in enumerate(item.get("nodes") or []):
        if not isinstance(node, dict) or not isinstance(node.get("address"), str):
            raise UserError(f"{where}: node #{i} has no `address`")
        metadata = _string_map(node.get("metadata"), f"{where}: node #{i} metadata")
        service.nodes.append((str(node.get("id") or ""), node["address"], metadata))
    for i, endpoint in enumerate(item.get("endpoints") or []):
        if not isinstance(endpoint, dict) or not isinstance(endpoint.get("name"), str):
            raise UserError(f"{where}: endpoint #{i} has no `name`")
        ename = endpoint["name"]
        service.endpoints[ename] = RegistryEndpoint(
            name=ename,
            request=_tree(endpoint.get("request"), f"{where}: {ename} request", 0),
            response=_tree(endpoint.get("response"), f"{where}: {ename} response", 0),
            metadata=_string_map(endpoint.get("metadata"), f"{where}: {ename} metadata"),
        )
    return service


def _string_map(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise UserError(f"{where} must be an object of strings (or null)")
    return dict(value)


def _tree(value: Any, where: str, depth: int) -> ValueTree | None:
    if value is None:
        return None
    if depth > MAX_TREE_DEPTH:
        raise UserError(f"{where} nests deeper than {MAX_TREE_DEPTH} levels")
    if not isinstance(value, dict) or not isinstance(value.get("type", ""), str):
        raise UserError(f"{where} is not a Value (an object with `name`, `type`, `values`)")
    children = value.get("values")
    if children is not None and not isinstance(children, list):
        raise UserError(f"{where}: `values` must be a list or null")
    return ValueTree(
        name=str(value.get("name") or ""),
        type=value.get("type") or "",
        values=None
        if not children
        else tuple(
            t
            for i, child in enumerate(children)
            if (t := _tree(child, f"{where}.values[{i}]", depth + 1)) is not None
        ),
    )


# ---- one service → the IR --------------------------------------------------------------------


def merge_versions(services: list[RegistryService], warnings: Warnings) -> list[RegistryService]:
    """One entry per service name: go-micro clients pick nodes of any version."""
    by_name: dict[str, list[RegistryService]] = {}
    for s in services:
        by_name.setdefault(s.name, []).append(s)
    merged = []
    for name in sorted(by_name):
        group = sorted(by_name[name], key=lambda s: s.version)
        if len(group) > 1:
            versions = sorted({s.version for s in group})
            if len(versions) > 1:
                warnings.add(
                    f"service {name!r} is registered in versions {', '.join(versions)}: "
                    "their nodes are merged, and an endpoint listed by several versions is "
                    f"taken from the last of them ({versions[-1]})"
                )
        out = RegistryService(name=name, version=group[-1].version, source=group[0].source)
        seen: set[tuple[str, str]] = set()
        for s in group:
            for node in s.nodes:
                if (node[0], node[1]) not in seen:
                    seen.add((node[0], node[1]))
                    out.nodes.append(node)
            out.endpoints.update(s.endpoints)
        out.nodes.sort(key=lambda n: (n[0], n[1]))
        merged.append(out)
    return merged


def _server_kind(service: RegistryService, warnings: Warnings) -> str:
    kinds = {md.get("server") or md.get("protocol") or "mucp" for _, _, md in service.nodes}
    if len(kinds) > 1:
        warnings.add(
            f"service {service.name!r} has nodes of different servers "
            f"({', '.join(sorted(kinds))}); treating it as mucp"
        )
        return "mucp"
    return kinds.pop() if kinds else "mucp"


def _split_endpoint(name: str) -> tuple[str, str] | None:
    handler, dot, method = name.partition(".")
    if not dot or not _IDENTIFIER.match(handler) or not _IDENTIFIER.match(method):
        return None
    return handler, method


def _examples(endpoint: RegistryEndpoint, where: str, warnings: Warnings) -> list[Any]:
    text = endpoint.metadata.get("example")
    if text is None or not text.strip():
        return []
    try:
        return [json.loads(text)]
    except json.JSONDecodeError as exc:
        warnings.add(f"{where}: the `example` metadata is not valid JSON ({exc.msg}); ignored")
        return []


def _scopes(endpoint: RegistryEndpoint) -> tuple[str, ...]:
    raw = endpoint.metadata.get("scopes", "")
    return tuple(sorted({s.strip() for s in raw.split(",") if s.strip()}))


def registry_catalog(
    services: list[RegistryService], proto: Catalog, warnings: Warnings
) -> Catalog:
    """`proto` (possibly empty) with the registry's services added or bound to go-micro."""
    proto_by_handler: dict[str, list[Service]] = {}
    for s in proto.services:
        proto_by_handler.setdefault(s.name, []).append(s)
    bound: set[str] = set()  # proto services now reached through go-micro
    out_services: list[Service] = []
    skipped: list[str] = []
    unreachable: list[str] = []
    for registry in merge_versions(services, warnings):
        server = _server_kind(registry, warnings)
        binding = GoMicroBinding(
            service=registry.name,
            version=registry.version,
            nodes=tuple(address for _, address, _ in registry.nodes),
            server=server,
        )
        if not registry.nodes:
            warnings.add(f"service {registry.name!r} has no nodes; give it --backend at run time")
        handlers: dict[str, list[tuple[str, RegistryEndpoint]]] = {}
        for ename in sorted(registry.endpoints):
            endpoint = registry.endpoints[ename]
            where = f"{registry.name} {ename}"
            if endpoint.metadata.get("subscriber") == "true":
                skipped.append(f"{where} (a message subscriber, not callable)")
                continue
            if endpoint.metadata.get("stream") == "true" or (
                endpoint.request is not None and endpoint.request.type in _STREAM_TYPES
            ):
                skipped.append(f"{where} (a streaming endpoint)")
                continue
            parts = _split_endpoint(ename)
            if parts is None:
                raise UserError(
                    f"{registry.source}: endpoint name {ename!r} is not `Handler.Method` "
                    "(two Go identifiers joined by a dot)",
                    hint="fix the snapshot, or leave the service out of the build",
                )
            handlers.setdefault(parts[0], []).append((parts[1], endpoint))
        if not _IDENTIFIER.match(registry.name.replace(".", "_").replace("-", "_")):
            raise UserError(
                f"{registry.source}: service name {registry.name!r} cannot name tools",
                hint="go-micro service names are letters, digits, dots, dashes and underscores",
            )
        for handler, endpoints in sorted(handlers.items()):
            protos = proto_by_handler.get(handler, [])
            template = _choose_proto(protos, registry.name, handler, warnings)
            methods: list[Method] = []
            for method_name, endpoint in endpoints:
                where = f"{registry.name} {endpoint.name}"
                described = next(
                    (m for m in (template.methods if template else []) if m.name == method_name),
                    None,
                )
                extra = {
                    "endpoint": endpoint.name,
                    "examples": _examples(endpoint, where, warnings),
                    "scopes": _scopes(endpoint),
                }
                description = endpoint.metadata.get("description", "").strip()
                if described is not None:
                    doc = description or described.doc
                    methods.append(replace(described, doc=doc, **extra))
                elif server == "grpc":
                    unreachable.append(where)
                else:
                    methods.append(
                        Method(
                            name=method_name,
                            input_type="",
                            output_type="",
                            doc=description,
                            input_tree=endpoint.request,
                            output_tree=endpoint.response,
                            **extra,
                        )
                    )
            if not methods:
                continue
            if template is not None:
                bound.add(template.full_name)
                out_services.append(replace(template, methods=methods, binding=binding))
            else:
                out_services.append(
                    Service(
                        full_name=f"{registry.name}.{handler}",
                        package=registry.name,
                        methods=methods,
                        file=registry.source,
                        binding=binding,
                    )
                )
    if skipped:
        warnings.add(
            f"skipped {len(skipped)} go-micro endpoint(s) that are not callable as tools: "
            + ", ".join(skipped)
        )
    if unreachable:
        warnings.add(
            f"skipped {len(unreachable)} endpoint(s) on go-micro gRPC servers that the build's "
            ".proto files do not define (their requests are protobuf, which a registry does not "
            "describe): " + ", ".join(unreachable) + "; add the services' .proto files to the build"
        )
    kept = [s for s in proto.services if s.full_name not in bound]
    return replace(
        proto, services=[*kept, *out_services], skipped=[*proto.skipped, *skipped, *unreachable]
    )


def _choose_proto(
    protos: list[Service], registry_name: str, handler: str, warnings: Warnings
) -> Service | None:
    """The proto service a registry handler is, when the build's protos define it."""
    if len(protos) <= 1:
        return protos[0] if protos else None
    by_package = [s for s in protos if registry_name.split(".")[-1] in s.package.split(".")]
    chosen = sorted(by_package or protos, key=lambda s: s.full_name)[0]
    warnings.add(
        f"several .proto services are named {handler} "
        f"({', '.join(sorted(s.full_name for s in protos))}); go-micro service "
        f"{registry_name!r} uses {chosen.full_name}"
    )
    return chosen
