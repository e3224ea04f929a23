"""`mcpgen snapshot etcd://` against a real etcd, written to as go-micro's etcd registry does:
merging nodes, building the snapshot, skipping foreign keys, failing endpoints, determinism."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import mcpgen.snapshot.etcd as etcd_snapshot
from mcpgen.build import build as build_bundle
from mcpgen.config import Config
from mcpgen.errors import Warnings
from tests.conftest import (
    FIXTURES,
    free_port,
    read_tools,
    require_integration,
    run_cli,
    run_mcpgen,
)

EXAMPLE = FIXTURES / "registry" / "gomicro-registry.json"
DEFAULT_PREFIX = "/micro/registry/"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class Etcd:
    """One etcd member on 127.0.0.1, spoken to through its JSON gateway as go-micro would."""

    def __init__(self, data_dir: Path) -> None:
        self.port, peer = free_port(), free_port()
        self.address = f"127.0.0.1:{self.port}"
        client_url, peer_url = f"http://{self.address}", f"http://127.0.0.1:{peer}"
        self.base = client_url
        command = ["etcd", "--name", "mcpgen-test", "--data-dir", str(data_dir)]
        command += ["--listen-client-urls", client_url, "--advertise-client-urls", client_url]
        command += ["--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url]
        command += ["--initial-cluster", f"mcpgen-test={peer_url}"]
        self.log = (data_dir.parent / "etcd.log").open("w")
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while not self._healthy():
            if self.process.poll() is not None:
                raise RuntimeError(f"etcd exited; see {self.log.name}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"etcd did not become healthy in 60 s; see {self.log.name}")
            time.sleep(0.1)
        self.lease = self.call("/v3/lease/grant", {"TTL": 3600})["ID"]

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base}/health", timeout=1) as response:
                return json.load(response).get("health") == "true"
        except (OSError, ValueError):
            return False

    def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(
            self.base + path, data=json.dumps(body).encode(), method="POST"
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)

    def put(self, key: str, value: str | bytes) -> None:
        raw = value.encode() if isinstance(value, str) else value
        body = {"key": _b64(key), "value": base64.b64encode(raw).decode(), "lease": self.lease}
        self.call("/v3/kv/put", body)

    def register(self, prefix: str, service: dict[str, Any], **dumps: Any) -> None:
        """One key per node, as go-micro's etcd registry writes it."""
        for node in service["nodes"]:
            key = prefix + service["name"].replace("/", "-") + "/" + node["id"].replace("/", "-")
            self.put(key, json.dumps({**service, "nodes": [node]}, **dumps))

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()
        self.log.close()


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Etcd]:
    if shutil.which("etcd") is None:
        message = "etcd is not installed (Debian: apt-get install etcd-server)"
        if require_integration():
            pytest.fail(message)
        pytest.skip(message)
    server = Etcd(tmp_path_factory.mktemp("etcd") / "data")
    yield server
    server.stop()


def example() -> list[dict[str, Any]]:
    return json.loads(EXAMPLE.read_text(encoding="utf-8"))


def snapshot(
    etcd: Etcd, out: Path, prefix: str | None = None, endpoints: str | None = None
) -> tuple[list[dict[str, Any]], str]:
    """Snapshot in-process; the services written and the CLI's stderr."""
    args = ["snapshot", f"etcd://{endpoints or etcd.address}", "-o", str(out)]
    if prefix is not None:
        args += ["--prefix", prefix]
    result = run_cli(*args)
    assert result.exit_code == 0, result.stderr
    return json.loads(out.read_text(encoding="utf-8")), result.stderr


def build(path: Path, out: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Build `path` into the folder `out`; the bundle's tools and routes."""
    build_bundle(Config(sources=[str(path)], out=str(out)), Warnings())
    built = read_tools(out)
    return built["tools"], built["routes"]


def canonical(service: dict[str, Any]) -> dict[str, Any]:
    """A fixture service as the snapshot should hold it: endpoints by name, nodes by id."""
    return {
        **service,
        "endpoints": sorted(service["endpoints"], key=lambda e: e["name"]),
        "nodes": sorted(service["nodes"], key=lambda n: n["id"]),
    }


def node(node_id: str, port: int) -> dict[str, Any]:
    return {"metadata": {"server": "mucp"}, "id": node_id, "address": f"127.0.0.1:{port}"}


def endpoint(name: str, description: str) -> dict[str, Any]:
    request = {
        "name": "Req",
        "type": "Req",
        "values": [{"name": "id", "type": "string", "values": None}],
    }
    return {
        "request": request,
        "response": None,
        "metadata": {"description": description},
        "name": name,
    }


# ---- the registry as go-micro writes it -------------------------------------------------------


def test_realistic_registry(etcd, tmp_path):
    users, orders = example()
    users_v2 = {
        **users,
        "version": "2.0.0",
        "endpoints": [endpoint("Users.Rename", "Rename a user.")],
        "nodes": [node("users-9f9f9f9f-0000-4000-8000-000000000002", 45001)],
    }
    for service in (orders, users_v2, users):
        etcd.register(DEFAULT_PREFIX, service)
    services, stderr = snapshot(etcd, tmp_path / "registry.json")
    assert [(s["name"], s["version"]) for s in services] == [
        ("orders", "1.4.0"),
        ("users", "2.0.0"),
        ("users", "latest"),
    ]
    assert services == [canonical(orders), canonical(users_v2), canonical(users)]
    assert len(services[0]["nodes"]) == 2  # two keys, one service
    assert "3 services, 4 nodes, 8 endpoints" in stderr


def test_build_of_the_snapshot_matches_the_registry_file(etcd, tmp_path):
    prefix = "/build/registry/"
    for service in example():
        etcd.register(prefix, service, separators=(",", ":"))
    out = tmp_path / "registry.json"
    snapshot(etcd, out, prefix)
    tools, routes = build(out, tmp_path / "from_snapshot")
    expected_tools, expected_routes = build(EXAMPLE, tmp_path / "from_file")
    assert [t["name"] for t in tools] == [t["name"] for t in expected_tools]
    assert tools == expected_tools
    assert routes == expected_routes
    done = run_mcpgen("build", str(out), "-o", str(tmp_path / "bundle"))
    assert done.returncode == 0, done.stderr


def test_nodes_merge_and_the_greatest_node_id_wins(etcd, tmp_path):
    prefix = "/merge/registry/"
    old = {
        "name": "stock",
        "version": "1",
        "metadata": {"owner": "old"},
        "endpoints": [endpoint("Stock.Check", "old text"), endpoint("Stock.Count", "count")],
        "nodes": [node("stock-b", 1002)],
    }
    new = {
        **old,
        "metadata": {"owner": "new"},
        "endpoints": [endpoint("Stock.Check", "new text"), endpoint("Stock.Add", "add")],
        "nodes": [node("stock-a", 1001), node("stock-c", 1003)],
    }
    etcd.put(prefix + "stock/stock-a", json.dumps(new))  # two nodes in one value; sorts first
    etcd.register(prefix, old)
    etcd.put(prefix + "stale/stock-b", json.dumps(old))  # the same node again: dropped
    [service], stderr = snapshot(etcd, tmp_path / "stock.json", prefix)
    assert [n["id"] for n in service["nodes"]] == ["stock-a", "stock-b", "stock-c"]
    assert [e["name"] for e in service["endpoints"]] == ["Stock.Add", "Stock.Check", "Stock.Count"]
    assert service["endpoints"][1]["metadata"] == {"description": "new text"}
    assert service["metadata"] == {"owner": "new"}
    assert "nodes disagree on endpoint 'Stock.Check'" in stderr
    assert "'stock-c'" in stderr


def test_keys_that_are_not_services_are_skipped(etcd, tmp_path):
    prefix = "/foreign/registry/"
    users, _ = example()
    etcd.register(prefix, users)
    foreign = {
        "notes/plain": "just text",
        "notes/array": "[1, 2]",
        "notes/nameless": json.dumps({"nodes": []}),
        "notes/no-nodes": json.dumps({"name": "x"}),
        "notes/no-address": json.dumps({"name": "x", "nodes": [{"id": "x-1"}]}),
        "notes/binary": b"\xff\xfe",
    }
    for key, value in foreign.items():
        etcd.put(prefix + key, value)
    services, stderr = snapshot(etcd, tmp_path / "users.json", prefix)
    assert services == [canonical(users)]
    for key in foreign:
        assert f"etcd key '{prefix}{key}' is not a go-micro service" in stderr
    assert "node 'x-1' has no string `address`" in stderr


def test_custom_prefix_without_a_trailing_slash(etcd, tmp_path):
    users, orders = example()
    etcd.register("/custom/reg/", users)
    etcd.register("/custom/regular/", orders)  # shares the text, not the folder
    services, _ = snapshot(etcd, tmp_path / "custom.json", "/custom/reg")
    assert [s["name"] for s in services] == ["users"]


def test_pages_are_read_at_the_first_page_revision(etcd, tmp_path, monkeypatch):
    prefix = "/paged/registry/"
    _, orders = example()
    etcd.register(prefix, orders)
    monkeypatch.setattr(etcd_snapshot, "PAGE_SIZE", 1)
    first_range = etcd_snapshot._range
    late = {**orders, "nodes": [node("orders-zzz-late", 49999)]}

    def register_during_listing(*args: Any) -> dict[str, Any]:
        page = first_range(*args)
        etcd.register(prefix, late)  # after the pinned revision: not in this snapshot
        return page

    monkeypatch.setattr(etcd_snapshot, "_range", register_during_listing)
    [service], _ = snapshot(etcd, tmp_path / "paged.json", prefix)
    assert service == canonical(orders)
    monkeypatch.setattr(etcd_snapshot, "_range", first_range)
    [again], _ = snapshot(etcd, tmp_path / "again.json", prefix)
    assert [n["id"] for n in again["nodes"]][-1] == "orders-zzz-late"


def test_deterministic_whatever_the_write_order(etcd, tmp_path):
    services = example()
    services[1]["metadata"] = {"zone": "eu", "owner": "team-orders"}  # Go writes maps sorted
    for service in services:
        etcd.register("/order-a/", service)
    for service in reversed(services):
        reordered = {**service, "nodes": list(reversed(service["nodes"]))}
        reordered["endpoints"] = list(reversed(service["endpoints"]))
        etcd.register("/order-b/", reordered, sort_keys=True, indent=1)
    snapshot(etcd, tmp_path / "a.json", "/order-a/")
    snapshot(etcd, tmp_path / "b.json", "/order-b/")
    text = (tmp_path / "a.json").read_bytes()
    assert text == (tmp_path / "b.json").read_bytes()
    assert text.startswith(b'[\n  {\n    "name": "orders",\n    "version": "1.4.0",\n')
    assert text.endswith(b"]\n")
    # Go's key order, not the writer's sorted one
    assert list(json.loads(text)[0]["endpoints"][0]) == ["request", "response", "metadata", "name"]


def test_hostile_text_survives_verbatim(etcd, tmp_path):
    description = 'Say "hi"\nthen {{ config.secret }} and {% raw %} — ünïcødé ✓ 名前'
    service = {
        "name": "greeter/v1 ✓",
        "version": "",
        "metadata": {"note": '{{ }}\n"quoted"'},
        "endpoints": [endpoint("Greeter.Hello", description)],
        "nodes": [node("greeter/node ✓", 47001)],
    }
    etcd.register("/hostile/", service)
    [written], _ = snapshot(etcd, tmp_path / "hostile.json", "/hostile/")
    assert written == service
    assert "✓ 名前" in (tmp_path / "hostile.json").read_text(encoding="utf-8")


# ---- endpoints and errors ---------------------------------------------------------------------


def test_a_dead_first_endpoint_is_passed_over(etcd, tmp_path):
    users, _ = example()
    etcd.register("/failover/", users)
    endpoints = f"127.0.0.1:{free_port()},{etcd.address}"
    services, _ = snapshot(etcd, tmp_path / "users.json", "/failover/", endpoints)
    assert services == [canonical(users)]


def test_all_endpoints_dead_is_a_clear_error(tmp_path):
    dead = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
    out = tmp_path / "registry.json"
    done = run_mcpgen("snapshot", f"etcd://{','.join(dead)}", "-o", str(out), "--timeout", "5")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "none of the 2 etcd endpoints answered" in done.stderr
    for address in dead:
        assert f"  {address}: " in done.stderr
    assert "hint: check that etcd runs" in done.stderr
    assert not out.exists()


def test_an_empty_prefix_is_a_clear_error_and_keeps_the_old_file(etcd, tmp_path):
    out = tmp_path / "registry.json"
    out.write_text("the previous snapshot\n")
    done = run_mcpgen("snapshot", f"etcd://{etcd.address}", "-o", str(out), "--prefix", "/nobody")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert f"no keys under the prefix '/nobody/' at {etcd.address}" in done.stderr
    assert "--prefix" in done.stderr.split("hint:")[1]
    assert out.read_text() == "the previous snapshot\n"


def test_a_prefix_of_foreign_keys_is_an_error(etcd, tmp_path):
    etcd.put("/only-notes/a", "text")
    result = run_cli("snapshot", f"etcd://{etcd.address}", "-o", str(tmp_path / "x.json"),
                     "--prefix", "/only-notes/")  # fmt: skip
    assert result.exit_code == 1
    assert "none of the 1 keys under '/only-notes/'" in result.stderr
    assert "etcd key '/only-notes/a' is not a go-micro service" in result.stderr


class _NotEtcd(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = b"{}" if self.path == "/v3/kv/range" else b"nope"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_an_answer_that_is_not_etcd_is_a_clear_error(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NotEtcd)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        address = f"127.0.0.1:{server.server_address[1]}"
        result = run_cli("snapshot", f"etcd://{address}", "-o", str(tmp_path / "x.json"))
    finally:
        server.shutdown()
        server.server_close()
    assert result.exit_code == 1
    assert f"{address}: the answer to /v3/kv/range is not etcd's JSON" in result.stderr


@pytest.mark.parametrize("source", ["etcd://localhost", "etcd://a:1,,b:2", "etcd://h:port"])
def test_malformed_endpoints_are_refused(tmp_path, source):
    result = run_cli("snapshot", source, "-o", str(tmp_path / "x.json"))
    assert result.exit_code == 1
    assert "is not HOST:PORT" in result.stderr
