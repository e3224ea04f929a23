"""`mcpgen snapshot etcd://HOST:PORT[,HOST:PORT]`: go-micro's etcd registry → a registry snapshot.

go-micro's etcd registry keeps one key per node, `<prefix><service>/<node-id>`, whose value is
the service JSON holding that one node. This reads every key under the prefix at one revision,
merges the entries of each (name, version) back into one service, and writes the array of
services `mcpgen build` reads (`mcpgen.sources.gomicro`), in a canonical form: the same registry
content gives a byte-identical file, whatever order the nodes registered in.
"""

from __future__ import annotations

import base64
import json
import ssl
from dataclasses import dataclass, field
from typing import Any

import httpx

from mcpgen.errors import Problem, UserError, Warnings
from mcpgen.snapshot import SnapshotOptions, SnapshotResult, counted, write_atomic
from mcpgen.sources.gomicro import MAX_TREE_DEPTH

#: Keys asked for per range request; the revision is pinned, so pages agree with each other.
PAGE_SIZE = 500


class _NotAService(Exception):
    """A value under the prefix that is not a go-micro service (the message says why)."""


@dataclass(slots=True)
class _Entry:
    """One key's value: a service with the node(s) it registered."""

    key: str
    name: str
    version: str
    metadata: dict[str, str] | None
    endpoints: list[dict[str, Any]]
    nodes: list[dict[str, Any]]

    @property
    def node_id(self) -> str:
        return max((n["id"] for n in self.nodes), default="")


@dataclass(slots=True)
class _Service:
    name: str
    version: str
    metadata: dict[str, str] | None = None
    endpoints: dict[str, dict[str, Any]] = field(default_factory=dict)
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)


def snapshot_etcd(endpoints: str, options: SnapshotOptions, warnings: Warnings) -> SnapshotResult:
    """Snapshot go-micro's services under `options.prefix` from the first endpoint answering."""
    prefix = options.prefix if options.prefix.endswith("/") else options.prefix + "/"
    addresses = _endpoints(endpoints)
    with httpx.Client(verify=_verify(options), timeout=options.timeout) as client:
        address, kvs = _list_keys(client, addresses, prefix.encode(), options.tls)
    if not kvs:
        raise UserError(
            f"no keys under the prefix {prefix!r} at {address}",
            hint="go-micro's etcd registry uses /micro/registry/ unless configured otherwise; "
            "pass --prefix with the prefix your services register under",
        )
    entries = []
    for key, value in kvs:
        try:
            entries.append(_entry(key, value))
        except _NotAService as exc:
            warnings.add(f"etcd key {key!r} is not a go-micro service ({exc}); skipped")
    if not entries:
        raise UserError(
            f"none of the {len(kvs)} keys under {prefix!r} at {address} holds a go-micro service",
            hint="pass --prefix with the prefix of go-micro's registry (default /micro/registry/)",
        )
    services = _merge(entries, warnings)
    document = [_service_json(s) for s in services]
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    write_atomic(options.out, text.encode("utf-8"))
    counts = [
        counted(len(services), "service"),
        counted(sum(len(s.nodes) for s in services), "node"),
        counted(sum(len(s.endpoints) for s in services), "endpoint"),
    ]
    return SnapshotResult(out=options.out, summary=", ".join(counts))


# ---- talking to etcd -------------------------------------------------------------------------
# etcd's v3 JSON gateway: no extra dependency, etcd >= 3.4 serves it, `etcd3` (PyPI) is unmaintained


class _EndpointFailed(Exception):
    """This endpoint did not give a usable answer (the message says what happened)."""


def _list_keys(
    client: httpx.Client, addresses: list[str], prefix: bytes, tls: bool
) -> tuple[str, list[tuple[str, bytes]]]:
    """The keys under `prefix` from the first address that answers, and that address."""
    failures = []
    for address in addresses:
        base = f"{'https' if tls else 'http'}://{address}"
        try:
            first = _range(client, base, prefix, None, None)
        except _EndpointFailed as exc:
            failures.append(Problem(f"{address}: {exc}"))
            continue
        return address, _read_all(client, base, prefix, first)
    raise UserError(
        "no etcd endpoint answered"
        if len(addresses) == 1
        else f"none of the {len(addresses)} etcd endpoints answered",
        problems=failures,
        hint="check that etcd runs and serves clients at "
        + ("this address" if len(addresses) == 1 else "these addresses")
        + (" over TLS, and that --ca holds its root" if tls else " (without TLS; else --tls)"),
    )


def _endpoints(text: str) -> list[str]:
    addresses = [a.strip() for a in text.split(",")]
    for address in addresses:
        host, sep, port = address.rpartition(":")
        if not sep or not host or not port.isdigit() or "/" in address:
            raise UserError(
                f"{address!r} in etcd://{text} is not HOST:PORT",
                hint="use etcd://HOST:PORT or etcd://HOST:PORT,HOST:PORT (e.g. 127.0.0.1:2379)",
            )
    return addresses


def _verify(options: SnapshotOptions) -> ssl.SSLContext | bool:
    if options.ca is None:
        return True
    try:
        return ssl.create_default_context(cafile=str(options.ca))
    except (OSError, ssl.SSLError) as exc:
        raise UserError(f"cannot use --ca {options.ca}: {exc}") from None


def _prefix_end(prefix: bytes) -> bytes:
    """The end of etcd's range of keys starting with `prefix` (as `clientv3.WithPrefix`)."""
    for i in range(len(prefix) - 1, -1, -1):
        if prefix[i] < 0xFF:
            return prefix[:i] + bytes([prefix[i] + 1])
    return b"\0"  # every key from `prefix` on


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _range(
    client: httpx.Client, base: str, prefix: bytes, start: bytes | None, revision: int | None
) -> dict[str, Any]:
    """One page of keys under `prefix` from `start` on, sorted by key."""
    request: dict[str, Any] = {
        "key": _b64(start if start is not None else prefix),
        "range_end": _b64(_prefix_end(prefix)),
        "limit": PAGE_SIZE,
        "sort_order": "ASCEND",
        "sort_target": "KEY",
    }
    if revision is not None:
        request["revision"] = revision
    try:
        response = client.post(f"{base}/v3/kv/range", json=request)
    except httpx.HTTPError as exc:
        raise _EndpointFailed(f"{type(exc).__name__}: {exc}" if str(exc) else repr(exc)) from None
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if response.status_code != 200:
        detail = ""
        if isinstance(answer, dict):
            detail = str(answer.get("message") or answer.get("error") or "")
        raise _EndpointFailed(
            f"HTTP {response.status_code} from /v3/kv/range"
            + (f": {detail}" if detail else " (not etcd >= 3.4's JSON gateway?)")
        )
    if not isinstance(answer, dict) or not isinstance(answer.get("header"), dict):
        raise _EndpointFailed("the answer to /v3/kv/range is not etcd's JSON (no `header`)")
    return answer


def _read_all(
    client: httpx.Client, base: str, prefix: bytes, first: dict[str, Any]
) -> list[tuple[str, bytes]]:
    """Every (key, value) under `prefix`, paging at the revision of the first page."""
    try:
        revision = int(first["header"]["revision"])
    except (KeyError, TypeError, ValueError):
        raise UserError(f"{base}: etcd's answer has no revision in its header") from None
    kvs: list[tuple[str, bytes]] = []
    page = first
    while True:
        raw = page.get("kvs") or []
        if not isinstance(raw, list):
            raise UserError(f"{base}: etcd's answer has `kvs` that is not a list")
        last = b""
        for item in raw:
            try:
                last = base64.b64decode(item["key"], validate=True)
                value = base64.b64decode(item.get("value") or "", validate=True)
            except (KeyError, TypeError, ValueError):
                raise UserError(f"{base}: etcd sent a key or value not in base64") from None
            kvs.append((last.decode("utf-8", errors="replace"), value))
        if not page.get("more"):
            return kvs
        if not raw:
            raise UserError(f"{base}: etcd says there are more keys but sent none")
        try:
            page = _range(client, base, prefix, last + b"\0", revision)
        except _EndpointFailed as exc:
            raise UserError(
                f"{base} failed while listing {prefix.decode(errors='replace')!r}: {exc}",
                hint="run the snapshot again (a compacted revision means the registry changed "
                "under a very long listing)",
            ) from None


# ---- values → services -----------------------------------------------------------------------


def _entry(key: str, value: bytes) -> _Entry:
    try:
        item = json.loads(value.decode("utf-8"))
    except UnicodeDecodeError:
        raise _NotAService("not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise _NotAService(f"not JSON: {exc.msg}") from None
    if not isinstance(item, dict):
        raise _NotAService("not a JSON object")
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise _NotAService("no string `name`")
    version = item.get("version")
    if version is not None and not isinstance(version, str):
        raise _NotAService("`version` is not a string")
    nodes = item.get("nodes")
    if not isinstance(nodes, list):
        raise _NotAService("`nodes` is not a list")
    return _Entry(
        key=key,
        name=name,
        version=version or "",
        metadata=_string_map(item.get("metadata"), "service metadata"),
        endpoints=[
            _endpoint(e, i) for i, e in enumerate(_list(item.get("endpoints"), "endpoints"))
        ],
        nodes=[_node(n, i) for i, n in enumerate(nodes)],
    )


def _list(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _NotAService(f"`{what}` is not a list")
    return value


def _string_map(value: Any, what: str) -> dict[str, str] | None:
    """A metadata map with keys sorted as Go writes maps; null when empty."""
    if value is None:
        return None
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise _NotAService(f"{what} is not an object of strings")
    return dict(sorted(value.items())) or None


def _node(value: Any, index: int) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _NotAService(f"node #{index} is not an object")
    node_id, address = value.get("id"), value.get("address")
    if not isinstance(node_id, str) or not node_id:
        raise _NotAService(f"node #{index} has no string `id`")
    if not isinstance(address, str) or not address:
        raise _NotAService(f"node {node_id!r} has no string `address`")
    metadata = _string_map(value.get("metadata"), f"node {node_id!r} metadata")
    return {"metadata": metadata, "id": node_id, "address": address}


def _endpoint(value: Any, index: int) -> dict[str, Any]:
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        raise _NotAService(f"endpoint #{index} has no string `name`")
    name = value["name"]
    return {
        "request": _value(value.get("request"), f"endpoint {name!r} request", 0),
        "response": _value(value.get("response"), f"endpoint {name!r} response", 0),
        "metadata": _string_map(value.get("metadata"), f"endpoint {name!r} metadata"),
        "name": name,
    }


def _value(value: Any, what: str, depth: int) -> dict[str, Any] | None:
    """A Value tree in Go's key order (`name`, `type`, `values`)."""
    if value is None:
        return None
    if depth > MAX_TREE_DEPTH:
        raise _NotAService(f"{what} nests deeper than {MAX_TREE_DEPTH} levels")
    if not isinstance(value, dict):
        raise _NotAService(f"{what} is not a Value object")
    name, kind = value.get("name") or "", value.get("type") or ""
    if not isinstance(name, str) or not isinstance(kind, str):
        raise _NotAService(f"{what} has a `name` or `type` that is not a string")
    children = [
        _value(c, f"{what}.values[{i}]", depth + 1)
        for i, c in enumerate(_list(value.get("values"), f"{what}.values"))
    ]
    return {"name": name, "type": kind, "values": children or None}


def _merge(entries: list[_Entry], warnings: Warnings) -> list[_Service]:
    """One service per (name, version): nodes united by id, endpoints by name.

    Entries are applied in order of their node id, so where nodes disagree (an endpoint, the
    service metadata) the node with the greatest id wins, whatever order they registered in.
    """
    groups: dict[tuple[str, str], list[_Entry]] = {}
    for entry in entries:
        groups.setdefault((entry.name, entry.version), []).append(entry)
    services = []
    for (name, version), group in sorted(groups.items()):
        service = _Service(name=name, version=version)
        shown = f"service {name!r}" + (f" {version}" if version else "")
        disagreements: set[str] = set()
        endpoint_nodes: dict[str, str] = {}  # endpoint name → the node id it was taken from
        for entry in sorted(group, key=lambda e: (e.node_id, e.key)):
            for node in entry.nodes:
                kept = service.nodes.setdefault(node["id"], node)
                if kept != node:
                    warnings.add(
                        f"{shown}: node {node['id']!r} is registered twice with different "
                        f"details (etcd key {entry.key!r}); kept the first"
                    )
            for endpoint in entry.endpoints:
                previous = service.endpoints.get(endpoint["name"])
                if previous is not None and previous != endpoint:
                    disagreements.add(endpoint["name"])
                service.endpoints[endpoint["name"]] = endpoint
                endpoint_nodes[endpoint["name"]] = entry.node_id
            service.metadata = entry.metadata
        for endpoint_name in sorted(disagreements):
            warnings.add(
                f"{shown}: nodes disagree on endpoint {endpoint_name!r}; kept the one of node "
                f"{endpoint_nodes[endpoint_name]!r} (the greatest node id)"
            )
        services.append(service)
    return services


def _service_json(service: _Service) -> dict[str, Any]:
    """A service as go-micro writes it: Go's key order, null for empty lists and maps."""
    endpoints = [service.endpoints[n] for n in sorted(service.endpoints)]
    nodes = [service.nodes[i] for i in sorted(service.nodes)]
    return {
        "name": service.name,
        "version": service.version,
        "metadata": service.metadata,
        "endpoints": endpoints or None,
        "nodes": nodes or None,
    }
