"""Authentication over HTTP, with real server.py subprocesses: a tokens file (plain and sha256
entries), JWTs against a JWKS file and a JWKS URL, an auth hook, the OAuth protected-resource
metadata (RFC 9728) and the 401 challenges that point to it; what a token's scopes let a caller
see and call over REST and Streamable HTTP (SDK client); stdio stays trusted."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import httpx2
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from mcpgen.errors import UserError
from mcpgen.runtime.auth import AuthError, AuthHook, BearerAuth, JwtVerifier, TokenFile, from_flags
from mcpgen.runtime.settings import ServerSettings
from tests.conftest import HttpGateway, free_port, read_tools

pytestmark = pytest.mark.anyio

READ_TOOLS = {"Library_GetBook", "Library_ListBooks"}  # books:read; every other tool: books:write
CREATE = "Library_CreateBook"
ISSUER = "https://issuer.example"
AUDIENCE = "https://mcp.example/mcp"
READER, WRITER = "reader-secret-3f9a1c", "writer-secret-77be02"  # WRITER is stored hashed
METADATA = "/.well-known/oauth-protected-resource"


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(scope="module")
def scope_flags(library_bundle: Path) -> list[str]:
    """Every tool needs a scope, so a caller with one scope sees only that scope's tools."""
    tools = [t["name"] for t in read_tools(library_bundle)["tools"]]
    flags = []
    for name in tools:
        flags += ["--scope", f"{name}={'books:read' if name in READ_TOOLS else 'books:write'}"]
    return flags


@pytest.fixture
def tokens_file(tmp_path: Path) -> Path:
    path = tmp_path / "tokens.json"
    hashed = "sha256:" + hashlib.sha256(WRITER.encode()).hexdigest()
    entries = {
        READER: {"account": "reader", "scopes": ["books:read"]},
        hashed: {"account": "writer", "scopes": ["books:write"]},
    }
    path.write_text(json.dumps(entries))
    return path


class Keys:
    """An RSA and an EC signing key, published in a JWKS, and a key nobody published."""

    def __init__(self) -> None:
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        self.stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        rsa_jwk = RSAAlgorithm.to_jwk(self.rsa.public_key(), as_dict=True)
        ec_jwk = ECAlgorithm.to_jwk(self.ec.public_key(), as_dict=True)  # no alg: ES256 by crv
        self.jwks = {
            "keys": [
                {**rsa_jwk, "kid": "rsa-1", "alg": "RS256", "use": "sig"},
                {**ec_jwk, "kid": "ec-1"},
            ]
        }

    def token(self, key=None, kid="rsa-1", alg="RS256", **claims) -> str:
        now = int(time.time())
        body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "jwt-user", "iat": now, "exp": now + 600}
        body = {k: v for k, v in {**body, **claims}.items() if v is not None}
        return jwt.encode(body, key or self.rsa, algorithm=alg, headers={"kid": kid})


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys()


@pytest.fixture
def jwks_file(tmp_path: Path, keys: Keys) -> Path:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(keys.jwks))
    return path


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def names(response: httpx.Response) -> set[str]:
    assert response.status_code == 200, response.text
    return {t["name"] for t in response.json()["tools"]}


def rest_call(http: httpx.Client, gateway: HttpGateway, tool: str, token: str | None, **args):
    headers = bearer(token) if token else {}
    return http.post(
        f"{gateway.base}/mcp/call", json={"tool": tool, "input": args}, headers=headers
    )


INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "test", "version": "1"},
    },
}
MCP_HEADERS = {"accept": "application/json, text/event-stream"}


@pytest.fixture
def gateway(library_bundle, library_backend, tokens_file, jwks_file, scope_flags):
    """Tokens file and JWT (file) together, as a production server might be configured."""
    server = HttpGateway(
        library_bundle, "--backend", library_backend.target, "--tokens", str(tokens_file),
        "--jwt-jwks", str(jwks_file), "--jwt-issuer", ISSUER, "--jwt-audience", AUDIENCE,
        *scope_flags,
    )  # fmt: skip
    yield server
    server.stop()


def challenge_params(header: str) -> dict[str, str]:
    scheme, _, rest = header.partition(" ")
    assert scheme == "Bearer"
    params = {}
    for part in rest.split('", '):
        key, _, value = part.partition("=")
        params[key.strip()] = value.strip('"')
    return params


def test_without_a_valid_token_nothing_is_listed_or_called(gateway, library_backend):
    metadata_url = f"{gateway.base}{METADATA}/mcp"
    with httpx.Client(timeout=10) as http:
        missing = [
            http.get(f"{gateway.base}/mcp/tools"),
            rest_call(http, gateway, CREATE, None, parent="shelves/1", book={"title": "X"}),
            http.post(gateway.url, json=INITIALIZE, headers=MCP_HEADERS),
        ]
        unknown = rest_call(http, gateway, CREATE, "guess", parent="shelves/1", book={})
        basic = http.get(f"{gateway.base}/mcp/tools", headers={"authorization": "Basic eDp5"})
        health = http.get(f"{gateway.base}/health")
    for response in missing:
        assert response.status_code == 401
        assert response.json()["code"] == "UNAUTHENTICATED"
        params = challenge_params(response.headers["www-authenticate"])
        assert params["resource_metadata"] == metadata_url
        assert "error" not in params  # RFC 6750 §3.1: no error code when no token was sent
    assert unknown.status_code == 401
    params = challenge_params(unknown.headers["www-authenticate"])
    assert params["error"] == "invalid_token"
    assert params["resource_metadata"] == metadata_url
    assert basic.status_code == 401
    assert challenge_params(basic.headers["www-authenticate"])["error"] == "invalid_request"
    assert health.status_code == 200
    assert library_backend.received == []


async def test_one_scope_sees_and_calls_only_its_tools(gateway, library_backend):
    with httpx.Client(timeout=10) as http:
        listed = names(http.get(f"{gateway.base}/mcp/tools", headers=bearer(READER)))
        denied = rest_call(http, gateway, CREATE, READER, parent="shelves/1", book={"title": "X"})
        allowed = rest_call(http, gateway, "Library_ListBooks", READER, parent="shelves/1")
        writer = names(http.get(f"{gateway.base}/mcp/tools", headers=bearer(WRITER)))
    assert listed == READ_TOOLS
    assert denied.status_code == 403 and denied.json()["code"] == "PERMISSION_DENIED"
    assert "`books:write`" in denied.json()["error"] and "account reader" in denied.json()["error"]
    assert allowed.status_code == 200
    assert CREATE in writer and not writer & READ_TOOLS  # the sha256: entry's scopes

    for mode in ("legacy", "2026-07-28"):
        async with (
            httpx2.AsyncClient(headers=bearer(READER), timeout=30) as http2,
            Client(streamable_http_client(gateway.url, http_client=http2), mode=mode) as client,
        ):
            tools = {t.name for t in (await client.list_tools()).tools}
            refused = await client.call_tool(CREATE, {"parent": "shelves/1", "book": {}})
            got = await client.call_tool("Library_ListBooks", {"parent": "shelves/1"})
        assert tools == READ_TOOLS, mode
        assert refused.is_error and "PERMISSION_DENIED" in refused.content[0].text
        assert "`books:write`" in refused.content[0].text
        assert not got.is_error
    assert library_backend.calls("CreateBook") == []
    assert len(library_backend.calls("ListBooks")) == 3


def test_sha256_token_calls_its_tools(gateway, library_backend):
    with httpx.Client(timeout=10) as http:
        created = rest_call(http, gateway, CREATE, WRITER, parent="shelves/1", book={"title": "Y"})
        hashed = "sha256:" + hashlib.sha256(WRITER.encode()).hexdigest()
        as_stored = rest_call(http, gateway, CREATE, hashed, parent="shelves/1", book={})
    assert created.status_code == 200, created.text
    assert as_stored.status_code == 401  # the stored form is not itself a token
    assert len(library_backend.calls("CreateBook")) == 1


def hmac_signed(header: dict, claims: dict, secret: bytes) -> str:
    """A JWT signed by hand (PyJWT refuses to use a public key as an HMAC secret)."""

    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = f"{part(json.dumps(header).encode())}.{part(json.dumps(claims).encode())}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{part(signature)}"


def test_jwts_from_a_jwks_file(gateway, keys, library_backend):
    now = int(time.time())
    public_pem = keys.rsa.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )  # the classic confusion: HMAC with the public key as the secret
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": now + 60}
    bad = {
        "wrong issuer": keys.token(iss="https://other.example"),
        "wrong audience": keys.token(aud="https://other.example/mcp"),
        "expired": keys.token(exp=now - 3600),
        "not yet valid": keys.token(nbf=now + 3600),
        "no exp": keys.token(exp=None),
        "bad signature": keys.token(key=keys.stranger),
        "unknown kid": keys.token(kid="rsa-2"),
        "alg none": jwt.encode({"sub": "x", "exp": now + 60}, None, algorithm="none"),
        "HS256 with a public key": hmac_signed(
            {"alg": "HS256", "kid": "rsa-1"}, claims, public_pem
        ),
        "HMAC under an RS256 header": hmac_signed(
            {"alg": "RS256", "kid": "rsa-1"}, claims, public_pem
        ),
    }
    with httpx.Client(timeout=10) as http:
        url = f"{gateway.base}/mcp/tools"
        scope = names(http.get(url, headers=bearer(keys.token(scope="books:read openid"))))
        scp = keys.token(
            key=keys.ec, kid="ec-1", alg="ES256", scp=["books:write"], sub=None, client_id="svc"
        )
        created = rest_call(http, gateway, CREATE, scp, parent="shelves/1", book={"title": "Z"})
        refused = {what: http.get(url, headers=bearer(token)) for what, token in bad.items()}
    assert scope == READ_TOOLS
    assert created.status_code == 200, created.text
    for what, response in refused.items():
        assert response.status_code == 401, what
        assert challenge_params(response.headers["www-authenticate"])["error"] == "invalid_token"
    descriptions = {
        what: challenge_params(r.headers["www-authenticate"])["error_description"]
        for what, r in refused.items()
    }
    assert "expired" in descriptions["expired"]
    assert "(aud)" in descriptions["wrong audience"]
    assert "(iss)" in descriptions["wrong issuer"]
    assert "`exp`" in descriptions["no exp"]
    assert "public-key" in descriptions["alg none"]
    assert "public-key" in descriptions["HS256 with a public key"]
    assert "signature" in descriptions["HMAC under an RS256 header"]
    assert len(library_backend.calls("CreateBook")) == 1


class JwksServer:
    """A tiny issuer: serves a JWKS over HTTP and counts how often it was fetched."""

    def __init__(self, jwks: dict) -> None:
        body = json.dumps(jwks).encode()
        fetches = self.fetches = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fetches.append(self.path)
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_jwts_from_a_jwks_url_and_the_metadata(library_bundle, library_backend, keys, scope_flags):
    issuer = JwksServer(keys.jwks)
    server = HttpGateway(
        library_bundle, "--backend", library_backend.target, "--jwt-jwks", issuer.url,
        "--jwt-issuer", ISSUER, "--authorization-server", "https://login.example",
        "--authorization-server", ISSUER, *scope_flags,
    )  # fmt: skip
    try:
        with httpx.Client(timeout=10) as http:
            token = keys.token(aud="https://elsewhere.example", scope="books:read")
            first = names(http.get(f"{server.base}/mcp/tools", headers=bearer(token)))
            again = names(http.get(f"{server.base}/mcp/tools", headers=bearer(token)))
            forged = http.get(
                f"{server.base}/mcp/tools", headers=bearer(keys.token(key=keys.stranger))
            )
            documents = [http.get(f"{server.base}{METADATA}{s}") for s in ("", "/mcp")]
            post = http.post(f"{server.base}{METADATA}")
    finally:
        err = server.stop()
        issuer.close()
    assert first == again == READ_TOOLS  # without --jwt-audience any audience passes...
    assert "without --jwt-audience" in err  # ... and the server said so at start
    assert forged.status_code == 401
    assert issuer.fetches == ["/jwks.json"]  # fetched once, then cached
    for document in documents:
        assert document.status_code == 200
        assert document.headers["access-control-allow-origin"] == "*"
        assert document.json() == {
            "resource": f"{server.base}/mcp",
            "authorization_servers": ["https://login.example", ISSUER],
            "bearer_methods_supported": ["header"],
            "scopes_supported": ["books:read", "books:write"],
        }
    assert post.status_code == 405


def test_resource_url_and_issuer_shape_the_metadata(library_bundle, library_backend, tokens_file):
    server = HttpGateway(
        library_bundle, "--backend", library_backend.target, "--tokens", str(tokens_file),
        "--resource-url", "https://tools.example/api/mcp",
    )  # fmt: skip
    try:
        with httpx.Client(timeout=10) as http:
            refused = http.get(f"{server.base}/mcp/tools")
            document = http.get(f"{server.base}{METADATA}/api/mcp").json()
            listed = names(http.get(f"{server.base}/mcp/tools", headers=bearer(READER)))
    finally:
        server.stop()
    params = challenge_params(refused.headers["www-authenticate"])
    assert params["resource_metadata"] == f"https://tools.example{METADATA}/api/mcp"
    # no --authorization-server or --jwt-issuer: none named; the bundle names no scopes
    assert document == {
        "resource": "https://tools.example/api/mcp",
        "bearer_methods_supported": ["header"],
    }
    assert CREATE in listed  # tools without scopes: any authenticated caller


HOOK = """
from mcpgen.runtime.auth import AuthError
from mcpgen.runtime.policy import Caller


def check(token, headers):
    if headers.get("x-api-key") == "hook-key-1":
        return {"account": "hooked", "scopes": ["books:read"]}
    if token == "hook-token":
        return Caller("hook-writer", frozenset({"books:write"}))
    if token == "crash":
        raise KeyError(token)
    if token == "banned":
        raise AuthError("this token was revoked")
    return None
"""


def test_auth_hook_beside_a_tokens_file(
    library_bundle, library_backend, tokens_file, scope_flags, tmp_path, monkeypatch
):
    (tmp_path / "myhooks.py").write_text(HOOK)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    server = HttpGateway(
        library_bundle, "--backend", library_backend.target, "--tokens", str(tokens_file),
        "--auth-hook", "myhooks:check", *scope_flags,
    )  # fmt: skip
    url = f"{server.base}/mcp/tools"
    try:
        with httpx.Client(timeout=10) as http:
            by_header = names(http.get(url, headers={"x-api-key": "hook-key-1"}))
            by_token = names(http.get(url, headers=bearer("hook-token")))
            from_file = names(http.get(url, headers=bearer(READER)))  # the file comes first
            missing = http.get(url)
            refused = {t: http.get(url, headers=bearer(t)) for t in ("nope", "crash", "banned")}
    finally:
        err = server.stop()
    assert by_header == from_file == READ_TOOLS
    assert CREATE in by_token and not by_token & READ_TOOLS
    assert missing.status_code == 401
    assert "error" not in challenge_params(missing.headers["www-authenticate"])
    assert {r.status_code for r in refused.values()} == {401}
    assert "revoked" in refused["banned"].headers["www-authenticate"]
    assert "raised KeyError" in err and "crash" not in err  # logged by type: no token


def test_bad_configuration_stops_the_server_with_a_clear_message(library_bundle, tmp_path):
    entries = {"t1": {"account": "a", "scopes": []}, "secret-two": {"scopes": ["x"]}}
    (tmp_path / "tokens.json").write_text(json.dumps(entries))
    cases = {
        ("--tokens", str(tmp_path / "tokens.json")): "entry 2: has no `account`",
        ("--tokens", str(tmp_path / "absent.json")): "cannot read it",
        ("--auth-hook", "no_such_module:check"): "cannot import no_such_module",
        ("--jwt-issuer", ISSUER): "need --jwt-jwks",
    }
    for flags, message in cases.items():
        command = [sys.executable, str(library_bundle / "server.py"), "--transport", "http"]
        command += ["--port", str(free_port()), *flags]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert done.returncode != 0, flags
        assert message in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
        assert "secret-two" not in done.stderr  # errors name entries, never their tokens


def test_token_file_checks(tmp_path):
    def load(content: str) -> TokenFile:
        path = tmp_path / "t.json"
        path.write_text(content)
        return TokenFile(path)

    hashed = "sha256:" + hashlib.sha256(b"tok").hexdigest().upper()
    tokens = load(json.dumps({hashed: {"account": "h", "scopes": "a b"}, "p": {"account": "p"}}))
    assert tokens.find("tok").account == "h" and tokens.find("tok").scopes == {"a", "b"}
    assert tokens.find("p").scopes == frozenset()
    assert tokens.find(hashed) is None and tokens.find("nope") is None
    assert all(len(digest) == 32 for digest, _ in tokens.entries)  # digests only, no plaintext
    bad = {
        '{"a": {"account": "x"},\n "b": }': "t.json:2: not JSON",
        '["a"]': "expected an object of tokens",
        "{}": "lists no tokens",
        '{"a": ["x"]}': "entry 1: expected an object",
        '{"a": {"account": ""}}': "entry 1: has no `account`",
        '{"a": {"account": "x", "scope": ["s"]}}': "unknown keys scope",
        '{"a": {"account": "x", "scopes": [1]}}': "`scopes` must be a list of strings",
        '{"sha256:abc": {"account": "x"}}': "64 hex digits",
        '{" a": {"account": "x"}}': "spaces around it",
        json.dumps({"tok": {"account": "x"}, hashed: {"account": "y"}}): "entry 2 repeats",
    }
    for content, message in bad.items():
        with pytest.raises(UserError) as error:
            load(content)
        assert message in error.value.render(), content


async def test_hooks_may_be_async_and_keys_unreachable_is_503(tmp_path, monkeypatch, keys):
    (tmp_path / "ahooks.py").write_text(
        "async def check(token, headers):\n"
        "    return {'account': 'async', 'scopes': ['s']} if token == 'ok' else None\n"
        "def broken(token, headers):\n    return 42\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    hook = AuthHook("ahooks:check")
    assert (await hook.authenticate("ok", {})).scopes == {"s"}
    with pytest.raises(AuthError) as refused:
        await hook.authenticate(None, {})
    assert refused.value.error == "missing"
    with pytest.raises(AuthError):
        await AuthHook("ahooks:broken").authenticate("ok", {})
    with pytest.raises(UserError, match="has no function nothing"):
        AuthHook("ahooks:nothing")
    closed = f"http://127.0.0.1:{free_port()}/jwks.json"
    unreachable = BearerAuth(verifier=JwtVerifier(closed, audience=AUDIENCE))
    with pytest.raises(AuthError) as down:
        await unreachable.authenticate(keys.token(), {})
    assert down.value.status == 503
    with pytest.raises(AuthError) as opaque:  # not JWT-shaped: nobody takes it
        await unreachable.authenticate("opaque", {})
    assert opaque.value.status == 401 and opaque.value.message == "the token is not known"


def test_flags_warn_and_refuse(caplog, tmp_path, keys):
    flags = ServerSettings(host="0.0.0.0")
    with caplog.at_level(logging.WARNING, "mcpgen.runtime.auth"):
        from_flags(flags)
    assert "serving HTTP on 0.0.0.0 without authentication" in caplog.text
    with pytest.raises(UserError, match="describe an authenticated server"):
        from_flags(flags.replace(resource_url="https://x.example/mcp"))
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "h"}]}))
    with pytest.raises(UserError, match="only public-key algorithms"):
        from_flags(flags.replace(jwt_jwks=str(jwks)))
    with pytest.raises(UserError, match="not an http"):
        from_flags(flags.replace(auth_hook="json:loads", resource_url="ftp://x.example"))


async def test_stdio_is_trusted_without_tokens(library_bundle, library_backend, scope_flags):
    params = StdioServerParameters(
        command=sys.executable,
        args=[str(library_bundle / "server.py"), "--backend", library_backend.target, *scope_flags],
    )
    async with Client(params, mode="legacy") as client:
        tools = {t.name for t in (await client.list_tools()).tools}
        created = await client.call_tool(CREATE, {"parent": "shelves/4", "book": {"title": "E"}})
    assert READ_TOOLS | {CREATE} <= tools
    assert not created.is_error


def test_no_token_reaches_the_log(library_bundle, library_backend, tokens_file, jwks_file, keys):
    server = HttpGateway(
        library_bundle, "--backend", library_backend.target, "--tokens", str(tokens_file),
        "--jwt-jwks", str(jwks_file), "--jwt-audience", AUDIENCE, "--log-level", "debug",
    )  # fmt: skip
    secrets = [READER, WRITER, keys.token(), keys.token(key=keys.stranger), "guessed-secret-9"]
    try:
        with httpx.Client(timeout=10) as http:
            for secret in secrets:
                http.get(f"{server.base}/mcp/tools", headers=bearer(secret))
                rest_call(http, server, "Library_ListBooks", secret, parent="shelves/1")
                http.post(server.url, json=INITIALIZE, headers={**MCP_HEADERS, **bearer(secret)})
    finally:
        err = server.stop()
    assert "DEBUG" in err and "refused GET /mcp/tools" in err  # debug logging was on
    for secret in secrets:
        for part in secret.split("."):  # no JWT segment either
            assert part not in err
