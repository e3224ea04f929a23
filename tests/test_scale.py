"""Limits and scale-out: request body limit, graceful shutdown on SIGTERM, `--workers`, and the
Dockerfile and Kubernetes manifests checked against the server's real flags.

Docker and kubectl are not needed: the Dockerfile's instructions and the manifests are parsed,
and every flag or MCPGEN_* variable they use must be one that `mcpgen serve` knows.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.parse
from pathlib import Path
from typing import Any

import click
import click.testing
import httpx
import pytest
import yaml
from mcp import Client

from mcpgen.runtime.cli import server_options
from mcpgen.runtime.limits import BodyLimit
from tests.conftest import ROOT, HttpGateway, run_cli

pytestmark = pytest.mark.anyio
MCP_HEADERS = {"accept": "application/json, text/event-stream"}
PING = {"jsonrpc": "2.0", "id": 1, "method": "ping"}


@pytest.fixture
def anyio_backend():
    return "asyncio"


def _server_params() -> list[click.Parameter]:
    return click.command()(server_options(lambda **_: None)).params


def _parsed_flags(args: list[str], env: dict[str, str]) -> dict[str, Any]:
    """The flags `mcpgen serve` would get from `args` and the environment `env`."""
    seen: dict[str, Any] = {}
    command = click.command()(server_options(lambda **flags: seen.update(flags)))
    result = click.testing.CliRunner().invoke(command, args, env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return seen


# ---- request body limit ----------------------------------------------------------------------


async def test_body_limit_reads_no_more_than_the_limit_of_a_chunked_body():
    """An endless chunked upload is refused after limit + one chunk, never read to the end."""
    reads = 0

    async def receive() -> dict[str, Any]:
        nonlocal reads
        reads += 1
        return {"type": "http.request", "body": b"x" * 1000, "more_body": True}

    async def app(scope, receive, send):  # pragma: no cover - must not be reached
        raise AssertionError("the app saw an oversized body")

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "path": "/mcp/call", "headers": [(b"transfer-encoding", b"chunked")]}
    await BodyLimit(app, max_body=10_000)(scope, receive, send)
    assert reads == 11
    assert sent[0]["status"] == 413
    assert json.loads(sent[1]["body"])["code"] == "PAYLOAD_TOO_LARGE"


def test_body_limit_over_http(library_bundle, library_backend):
    gateway = HttpGateway(library_bundle, "--backend", library_backend.target, "--max-body", "4096")
    call = {"tool": "Library_CreateBook", "input": {"parent": "shelves/1", "book": {"title": "E"}}}
    big = {**call, "input": {**call["input"], "book": {"title": "x" * 5000}}}

    def chunks(data: bytes):
        for i in range(0, len(data), 1000):
            yield data[i : i + 1000]

    try:
        with httpx.Client(timeout=10) as http:
            rest_big = http.post(f"{gateway.base}/mcp/call", json=big)
            rest_chunked_big = http.post(
                f"{gateway.base}/mcp/call", content=chunks(json.dumps(big).encode())
            )
            rest_chunked_ok = http.post(
                f"{gateway.base}/mcp/call", content=chunks(json.dumps(call).encode())
            )
            mcp_big = http.post(gateway.url, json={**PING, "x": "y" * 5000}, headers=MCP_HEADERS)
            health = http.get(f"{gateway.base}/health")
    finally:
        gateway.stop()
    for refused in (rest_big, rest_chunked_big):
        assert refused.status_code == 413
        assert refused.json() == {
            "error": "the request body exceeds the limit of 4,096 bytes",
            "code": "PAYLOAD_TOO_LARGE",
        }
    assert rest_chunked_ok.status_code == 200
    assert rest_chunked_ok.json()["result"]["title"] == "E"
    assert mcp_big.status_code == 413
    error = mcp_big.json()
    assert error["jsonrpc"] == "2.0" and error["id"] is None
    assert error["error"]["code"] == -32600 and "4,096 bytes" in error["error"]["message"]
    assert health.status_code == 200


# ---- graceful shutdown -----------------------------------------------------------------------


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


async def test_sigterm_lets_in_flight_calls_finish(library_bundle, library_backend):
    slow = library_backend.Book(name="shelves/1/slow", title="Slow")  # GetBook sleeps 5 s
    library_backend.books[slow.name] = slow
    gateway = HttpGateway(
        library_bundle, "--backend", library_backend.target, "--shutdown-grace", "20"
    )
    rest: dict[str, Any] = {}

    def rest_call() -> None:
        body = {"tool": "Library_GetBook", "input": {"name": slow.name}}
        rest["response"] = httpx.post(f"{gateway.base}/mcp/call", json=body, timeout=30)

    try:
        thread = threading.Thread(target=rest_call)
        thread.start()
        async with Client(gateway.url, mode="2026-07-28") as client:
            await client.list_tools()  # the client checks results against the output schemas
            mcp_call = asyncio.create_task(client.call_tool("Library_GetBook", {"name": slow.name}))
            while len(library_backend.calls("GetBook")) < 2:  # both calls reached the backend
                await asyncio.sleep(0.05)
            gateway.process.send_signal(signal.SIGTERM)
            refused = False  # a new connection refused while the calls are still in flight
            while not refused and not mcp_call.done():
                refused = await asyncio.to_thread(_refused, gateway.port)
            result = await mcp_call
        thread.join(timeout=30)
        code = await asyncio.to_thread(gateway.process.wait, 30)
    finally:
        gateway.stop()
    assert refused, "a new connection was accepted after SIGTERM"
    assert not result.is_error and result.structured_content["title"] == "Slow"
    assert rest["response"].status_code == 200
    assert rest["response"].json()["result"]["title"] == "Slow"
    assert code == 0


# ---- --workers -------------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if (
                entry.name.isdigit()
                and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid
            ):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def _connections_by_process(pids: list[int], port: int) -> dict[int, int]:
    """How many established TCP connections to `port` each process holds (from /proc)."""
    established = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == "01":
            established.add(fields[9])
    counts = {}
    for pid in pids:
        inodes = set()
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
        counts[pid] = len(inodes & established)
    return counts


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads /proc (Linux)")
async def test_workers_serve_rest_and_mcp_from_several_processes(library_bundle, library_backend):
    """Each kept-alive connection is served by the worker that accepted it, so the workers that
    hold established connections of successful calls are the workers that served them."""
    gateway = HttpGateway(library_bundle, "--backend", library_backend.target, "--workers", "2")
    calls = 0

    async def rest_client(http: httpx.AsyncClient, i: int) -> None:
        nonlocal calls
        body = {
            "tool": "Library_CreateBook",
            "input": {"parent": f"shelves/r{i}", "book": {"title": "R"}},
        }
        for _ in range(5):
            response = await http.post(f"{gateway.base}/mcp/call", json=body)
            assert response.status_code == 200, response.text
            assert response.json()["result"]["name"].startswith(f"shelves/r{i}/books/")
            calls += 1

    async def mcp_client(client: Client, i: int) -> None:
        nonlocal calls
        for _ in range(5):
            result = await client.call_tool(
                "Library_CreateBook", {"parent": f"shelves/m{i}", "book": {"title": "W"}}
            )
            assert not result.is_error, result.content
            assert result.structured_content["name"].startswith(f"shelves/m{i}/books/")
            calls += 1

    try:
        workers = [p for p in _children(gateway.process.pid) if "spawn_main" in
                   Path(f"/proc/{p}/cmdline").read_text()]  # fmt: skip
        assert len(workers) == 2
        serving: dict[int, int] = {}
        async with contextlib.AsyncExitStack() as stack:
            for round_ in range(8):  # which worker accepts a connection is the kernel's choice
                tasks = []
                for i in range(4):
                    n = round_ * 4 + i
                    http = await stack.enter_async_context(httpx.AsyncClient(timeout=30))
                    client = await stack.enter_async_context(Client(gateway.url, mode="2026-07-28"))
                    tasks += [rest_client(http, n), mcp_client(client, n)]
                await asyncio.gather(*tasks)
                serving = _connections_by_process(workers, gateway.port)
                if all(serving.values()):
                    break
        tools = httpx.get(f"{gateway.base}/mcp/tools", timeout=10).json()["tools"]
    finally:
        stderr = gateway.stop()
    assert all(serving.values()), f"connections per worker: {serving}"
    assert calls >= 40 and len(tools) == 21
    assert "implies --stateless" in stderr


def test_workers_need_http(library_bundle):
    run = subprocess.run(
        [sys.executable, str(library_bundle / "server.py"), "--workers", "2"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 1
    assert "--workers serves HTTP" in run.stderr and "Traceback" not in run.stderr


# ---- Dockerfile and Kubernetes manifests -----------------------------------------------------


def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, with continuation lines joined."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def _exec_form(arguments: str) -> list[str]:
    value = json.loads(arguments)
    assert isinstance(value, list), f"not exec form: {arguments}"
    return value


def _image_command() -> list[str]:
    return _exec_form([rest for keyword, rest in _dockerfile() if keyword == "CMD"][-1])


def _check_flags(args: list[str]) -> None:
    """Every --flag in `args` is a server flag that `mcpgen serve --help` shows."""
    help_text = run_cli("serve", "--help").output
    known = {opt for p in _server_params() for opt in p.opts}
    for arg in args:
        if arg.startswith("--"):
            flag = arg.split("=")[0]
            assert flag in known and flag in help_text, f"{flag} is not a server flag"


def test_dockerfile_serves_the_bundle_with_real_flags():
    instructions = _dockerfile()
    by_name: dict[str, list[str]] = {}
    for keyword, rest in instructions:
        by_name.setdefault(keyword, []).append(rest)
    assert by_name["FROM"][-1].startswith("python:3.12-slim")
    assert _exec_form(by_name["ENTRYPOINT"][-1]) == ["mcpgen", "serve"]
    command = _image_command()
    assert command[0] == "/bundle"
    _check_flags(command)
    flags = _parsed_flags(command[1:], env={})
    assert (flags["transport"], flags["host"], flags["port"]) == ("http", "0.0.0.0", 3000)
    assert by_name["EXPOSE"] == ["3000"]
    user = by_name["USER"][-1]
    assert user not in ("root", "0") and user.split(":")[0].isdigit()  # runAsNonRoot can check
    healthcheck = by_name["HEALTHCHECK"][-1]
    assert "http://127.0.0.1:3000/health" in healthcheck
    assert any("pip install" in run for run in by_name["RUN"])
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored


def _manifests() -> dict[tuple[str, str], dict[str, Any]]:
    """The resources of deploy/, by kind and name."""
    docs = {}
    for path in sorted((ROOT / "deploy").glob("*.yaml")):
        if path.stem == "kustomization":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            docs[doc["kind"], doc["metadata"]["name"]] = doc
    return docs


def test_kubernetes_manifests_validate_against_the_api_schemas():
    """Offline, strict (no unknown fields), against the newest Kubernetes version that
    kubernetes-validate ships the OpenAPI schemas of."""
    import kubernetes_validate

    version = kubernetes_validate.latest_version()
    docs = _manifests()
    assert len(docs) == 5, sorted(docs)
    for (kind, name), doc in docs.items():
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{kind} {name} is not a valid {version} resource: {exc.message}")
    broken = json.loads(json.dumps(docs["Deployment", "mcpgen-gateway"]))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["port"] = []
    with pytest.raises(kubernetes_validate.ValidationError):  # the validator does look
        kubernetes_validate.validate(broken, version, strict=True)


def test_kubernetes_manifests_match_the_container():
    docs = _manifests()
    name = "mcpgen-gateway"
    deployment, service = docs["Deployment", name], docs["Service", name]
    hpa = docs["HorizontalPodAutoscaler", name]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 3000}
    for probe in ("readinessProbe", "livenessProbe"):
        get = container[probe]["httpGet"]
        assert get["path"] == "/health" and get["port"] in ("http", 3000)
    # env: only real MCPGEN_* variables, and they parse to what a stateless replica needs
    envvars = {p.envvar for p in _server_params() if p.envvar}
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    for name in [e["name"] for e in container["env"]]:
        assert not name.startswith("MCPGEN_") or name in envvars, f"{name} is not a server option"
    command = container.get("args", _image_command())  # args replace the image's CMD
    _check_flags(command)
    flags = _parsed_flags(command[1:], env=env)
    assert flags["port"] == ports["http"] and flags["host"] == "0.0.0.0"
    assert flags["stateless"] and flags["workers"] == 1  # replicas scale; one process each
    assert flags["backends"], "no backend configured"
    assert pod["terminationGracePeriodSeconds"] > flags["shutdown_grace"]
    # the replicas share one rate limit through the Redis Service of redis.yaml
    assert flags["rate_limit"] and flags["rate_limit_store_fallback"] == "local"
    store = urllib.parse.urlsplit(flags["rate_limit_store"])
    redis = docs["Service", "mcpgen-redis"]
    assert (store.scheme, store.hostname) == ("redis", redis["metadata"]["name"])
    assert store.port == redis["spec"]["ports"][0]["port"]
    redis_pod = docs["Deployment", "mcpgen-redis"]["spec"]["template"]
    assert redis["spec"]["selector"].items() <= redis_pod["metadata"]["labels"].items()
    security = {**pod.get("securityContext", {}), **container["securityContext"]}
    assert security["runAsNonRoot"] and security["readOnlyRootFilesystem"]
    assert not security["allowPrivilegeEscalation"]
    assert container["resources"]["requests"]["cpu"]  # the HPA's utilization is of requests
    # the Service reaches the container port; the HPA scales this Deployment on CPU
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (service_port,) = service["spec"]["ports"]
    assert service_port["targetPort"] in ("http", 3000)
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    kustomization = yaml.safe_load((ROOT / "deploy" / "kustomization.yaml").read_text())
    listed = sorted(kustomization["resources"])
    assert listed == sorted(
        p.name for p in (ROOT / "deploy").glob("*.yaml") if p.stem != "kustomization"
    )


# ---- what the container installs -------------------------------------------------------------

#: mcpgen's dependencies that only building needs (protoc, templates, models, snapshots).
BUILD_ONLY = {"grpcio-tools", "jinja2", "datamodel-code-generator", "ruff", "grpcio-reflection"}


def _requirements(lines: list[str]) -> dict[str, str]:
    from packaging.requirements import Requirement

    found = {}
    for line in lines:
        text = line.split("#", 1)[0].strip()
        if text:
            requirement = Requirement(text)
            found[requirement.name.lower()] = str(requirement)
    return found


def test_serve_requirements_are_the_dependencies_without_the_build():
    import tomllib

    declared = _requirements(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
                             ["dependencies"])  # fmt: skip
    serving = _requirements((ROOT / "deploy" / "serve-requirements.txt").read_text().splitlines())
    assert serving == {k: v for k, v in declared.items() if k not in BUILD_ONLY}
    assert set(declared) >= BUILD_ONLY
    assert "serve-requirements.txt" in (ROOT / "Dockerfile").read_text()


async def test_a_server_with_only_the_serving_dependencies(
    tmp_path, library_bundle, library_backend
):
    """A virtualenv with nothing but deploy/serve-requirements.txt and mcpgen (--no-deps), as
    the container has: the server starts, lists and calls."""
    from mcp import StdioServerParameters

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [
        str(venv / "bin" / "python"),
        "-m",
        "pip",
        "install",
        "-q",
        "--disable-pip-version-check",
    ]
    requirements = str(ROOT / "deploy" / "serve-requirements.txt")
    subprocess.run([*pip, "-r", requirements], check=True, capture_output=True, timeout=900)
    subprocess.run([*pip, "--no-deps", str(ROOT)], check=True, capture_output=True, timeout=900)
    installed = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "list", "--format=json"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    names = {p["name"].lower() for p in json.loads(installed)}
    assert not names & BUILD_ONLY
    params = StdioServerParameters(
        command=str(venv / "bin" / "python"),
        args=[str(library_bundle / "server.py"), "--backend", library_backend.target],
        cwd=str(tmp_path),  # not the checkout: the installed mcpgen serves
    )
    async with Client(params, mode="legacy") as client:
        tools = (await client.list_tools()).tools
        result = await client.call_tool("Library_ListBooks", {"parent": "shelves/1"})
    assert len(tools) == 21 and not result.is_error
