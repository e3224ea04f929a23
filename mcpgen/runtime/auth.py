"""Who is calling over HTTP: bearer tokens checked before any MCP or REST request is served.

`AuthGuard` (ASGI middleware) asks the configured `Authenticator` about the request's bearer
token and puts the `Caller` it found into the request's scope under `CALLER_KEY`, where the
MCP and REST frontends read it; the policy (`policy.py`) then decides what that caller may see
and call. Without a token, or with a bad one, the request ends in `401` with a
`WWW-Authenticate` header pointing at the server's OAuth protected-resource metadata (RFC 9728),
which `AuthGuard` serves itself. With no authenticator configured, HTTP is open (`OpenAccess`),
as it is bound to loopback by default. `/health` stays open for probes.

The flags configure up to three authenticators, and each token goes to the one that can judge
it (`BearerAuth`): a token listed in `--tokens` is that entry's caller; any other token shaped
like a JWT is judged by `--jwt-jwks` alone; everything else — other tokens, and requests
without one — goes to `--auth-hook`. A token none of them takes is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib
import inspect
import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol
from urllib.parse import urlsplit

import anyio.to_thread
import click
import jwt
from starlette.responses import JSONResponse, Response

from mcpgen.errors import UserError
from mcpgen.runtime.policy import ANY_SCOPE, Caller

log = logging.getLogger(__name__)

CALLER_KEY = "mcpgen.caller"  # the ASGI scope entry holding the request's Caller
GUARDED = ("/mcp",)  # MCP at /mcp, REST at /mcp/tools and /mcp/call
METADATA_PATH = "/.well-known/oauth-protected-resource"  # RFC 9728; also with a path suffix
LOOPBACK = ("127.0.0.1", "localhost", "::1")
#: Signature algorithms a JWT may use: public-key ones only, so a public key can never be
#: used as an HMAC secret and `none` is never accepted.
ASYMMETRIC = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
    | {"ES256", "ES256K", "ES384", "ES512", "EdDSA"}
)
JWT_LEEWAY = 30.0  # seconds of clock skew allowed on `exp` and `nbf`
#: What a refused JWT is told: PyJWT's own messages could quote the token's claims.
JWT_ERRORS: tuple[tuple[type[Exception], str], ...] = (
    (jwt.ExpiredSignatureError, "the token has expired"),
    (jwt.ImmatureSignatureError, "the token is not valid yet (nbf/iat)"),
    (jwt.InvalidAudienceError, "the token is not for this server (aud)"),
    (jwt.InvalidIssuerError, "the token comes from another issuer (iss)"),
    (jwt.InvalidSignatureError, "the token's signature does not verify"),
    (jwt.InvalidAlgorithmError, "the token's algorithm does not match its key"),
)
_HOST = re.compile(r"[A-Za-z0-9.\-:\[\]]+")  # a Host header fit to go into a URL


class AuthError(Exception):
    """A token that is missing, malformed, unknown, expired or not for this server.

    `message` reaches the client: it never quotes the token or other text the client sent.
    """

    def __init__(self, message: str, error: str = "invalid_token", status: int = 401) -> None:
        super().__init__(message)
        self.message = message
        self.error = error  # RFC 6750 error code for WWW-Authenticate; "missing": none
        self.status = status  # 503 when the token could not be checked (keys unreachable)


class Authenticator(Protocol):
    """Turns a request's credentials into a Caller, or raises AuthError."""

    async def authenticate(self, token: str | None, headers: Mapping[str, str]) -> Caller: ...


class OpenAccess:
    """No authentication configured: every HTTP caller may call every tool."""

    CALLER = Caller(account="anonymous", scopes=frozenset({ANY_SCOPE}))

    async def authenticate(self, token: str | None, headers: Mapping[str, str]) -> Caller:
        return self.CALLER


def bearer_token(headers: Mapping[str, str]) -> str | None:
    value = headers.get("authorization")
    if value is None:
        return None
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("the Authorization header is not `Bearer <token>`", "invalid_request")
    return token.strip()


def _scope_list(value: Any, where: str) -> frozenset[str]:
    """Scopes given as a list of strings or as one space-separated string."""
    if isinstance(value, str):
        return frozenset(value.split())
    if isinstance(value, list | tuple | set | frozenset) and all(isinstance(s, str) for s in value):
        return frozenset(value)
    raise ValueError(f"{where} must be a list of strings or a space-separated string")


# ---- --tokens FILE ---------------------------------------------------------------------------


class TokenFile:
    """Static bearer tokens: `{"<token>": {"account": "...", "scopes": [...]}}`, read once.

    A token may be stored as `sha256:<hex>`, so the file need not hold it. Only SHA-256 digests
    are kept in memory, for plain entries too; a presented token is hashed and compared with
    every entry in constant time.
    """

    HINT = 'e.g. {"sha256:<hex of the token>": {"account": "ci", "scopes": ["books:read"]}}'

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: list[tuple[bytes, Caller]] = []
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeError) as exc:
            raise UserError(
                f"--tokens {path}: cannot read it: {getattr(exc, 'strerror', None) or exc}"
            ) from None
        try:
            pairs = json.loads(text, object_pairs_hook=list)
        except json.JSONDecodeError as exc:
            raise UserError(f"not JSON: {exc.msg}", file=str(path), line=exc.lineno) from None
        # object_pairs_hook turns objects into lists of pairs: an array is a list of others
        if not isinstance(pairs, list) or not all(isinstance(p, tuple) for p in pairs):
            raise UserError("expected an object of tokens", file=str(path), hint=TokenFile.HINT)
        seen: set[bytes] = set()
        for number, (token, entry) in enumerate(pairs, 1):
            digest, caller = self._entry(number, token, entry)
            if digest in seen:
                raise UserError(
                    f"entry {number} repeats a token of an earlier entry", file=str(path)
                )
            seen.add(digest)
            self.entries.append((digest, caller))
        if not self.entries:
            raise UserError("lists no tokens", file=str(path), hint=TokenFile.HINT)

    def _entry(self, number: int, token: str, entry: Any) -> tuple[bytes, Caller]:
        """One entry's digest and caller; errors name the entry, never its token."""

        def fail(problem: str) -> UserError:
            return UserError(f"entry {number}: {problem}", file=str(self.path), hint=self.HINT)

        if not (isinstance(entry, list) and all(isinstance(p, tuple) for p in entry)):
            raise fail("expected an object with `account` and `scopes`")
        fields = dict(entry)  # object_pairs_hook made the object a list of pairs
        account = fields.get("account")
        if not isinstance(account, str) or not account.strip():
            raise fail("has no `account` (a non-empty string)")
        where = f"entry {number} (account {account!r})"
        unknown = sorted(set(fields) - {"account", "scopes"})
        if unknown:
            raise fail(f"unknown keys {', '.join(unknown)} (only `account` and `scopes`)")
        try:
            scopes = _scope_list(fields.get("scopes", []), "`scopes`")
        except ValueError as exc:
            raise fail(str(exc)) from None
        if token.startswith("sha256:"):
            hexdigest = token.removeprefix("sha256:").lower()
            if not re.fullmatch(r"[0-9a-f]{64}", hexdigest):
                raise UserError(
                    f"{where}: `sha256:` must be followed by 64 hex digits",
                    file=str(self.path),
                    hint="make it with: printf %s TOKEN | sha256sum",
                )
            digest = bytes.fromhex(hexdigest)
        elif token.strip() != token or not token:
            raise UserError(
                f"{where}: the token is empty or has spaces around it", file=str(self.path)
            )
        else:
            digest = hashlib.sha256(token.encode()).digest()
        return digest, Caller(account=account, scopes=scopes)

    def find(self, token: str) -> Caller | None:
        digest = hashlib.sha256(token.encode()).digest()
        found = None
        for stored, caller in self.entries:  # no early exit: the time says nothing
            if hmac.compare_digest(stored, digest):
                found = caller
        return found


# ---- --jwt-jwks URL|FILE ---------------------------------------------------------------------


def looks_like_jwt(token: str) -> bool:
    """Three dot-separated parts whose first is a JOSE header: the JWT verifier's to judge."""
    if token.count(".") != 2:
        return False
    try:
        return isinstance(jwt.get_unverified_header(token).get("alg"), str)
    except jwt.PyJWTError:
        return False


class JwtVerifier:
    """JWT access tokens signed by keys of a JWKS (a URL fetched and cached, or a file).

    The algorithm comes from the key (its `alg`, else its type and curve) and must be a
    public-key one (`ASYMMETRIC`). `exp` is required; `iss` and `aud` are checked when
    configured. The account is `sub` (or `client_id`); scopes come from `scope` (a
    space-separated string) and `scp` (a list or a string).
    """

    def __init__(self, jwks: str, issuer: str | None = None, audience: str | None = None) -> None:
        self.issuer = issuer
        self.audience = audience
        self.client: jwt.PyJWKClient | None = None
        self.keys: list[jwt.PyJWK] = []
        if urlsplit(jwks).scheme in ("http", "https"):
            # the key set is cached for 5 minutes; an unknown kid refetches it (at most every
            # 30 s); no per-kid cache, so a key the issuer withdrew stops verifying
            self.client = jwt.PyJWKClient(jwks, cache_keys=False, lifespan=300, timeout=10)
        else:
            self.keys = self._load(Path(jwks))
        if audience is None:
            log.warning(
                "--jwt-jwks without --jwt-audience: tokens the issuer made for other services "
                "are accepted too; set --jwt-audience to this server's resource URL (RFC 8707)"
            )

    @staticmethod
    def _load(path: Path) -> list[jwt.PyJWK]:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise UserError(f"--jwt-jwks {path}: cannot read it: {exc.strerror}") from None
        except (UnicodeError, ValueError) as exc:
            raise UserError(f"--jwt-jwks {path}: not JSON: {exc}") from None
        if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
            raise UserError(f'--jwt-jwks {path}: expected a JWKS, {{"keys": [...]}}')
        keys = []
        for number, entry in enumerate(data["keys"], 1):
            try:
                key = jwt.PyJWK(entry)
            except (jwt.PyJWTError, AttributeError) as exc:
                raise UserError(f"--jwt-jwks {path}: key {number} is not usable: {exc}") from None
            if key.algorithm_name not in ASYMMETRIC:
                raise UserError(
                    f"--jwt-jwks {path}: key {number} is for {key.algorithm_name}; "
                    "only public-key algorithms (RS*, PS*, ES*, EdDSA) are accepted"
                )
            if key.public_key_use in (None, "sig"):
                keys.append(key)
        if not keys:
            raise UserError(f"--jwt-jwks {path}: holds no signing keys")
        return keys

    async def _key(self, kid: str | None) -> jwt.PyJWK:
        if self.client is None:
            keys = self.keys
        else:
            client = self.client
            try:  # urllib under the hood: never on the event loop
                if kid is None:
                    keys = await anyio.to_thread.run_sync(client.get_signing_keys)
                else:
                    keys = [await anyio.to_thread.run_sync(client.get_signing_key, kid)]
            except jwt.PyJWKClientConnectionError as exc:
                log.warning("cannot fetch the JWKS %s: %s", client.uri, exc)
                raise AuthError(
                    "the issuer's signing keys cannot be fetched; retry later",
                    "temporarily_unavailable",
                    503,
                ) from None
            except jwt.PyJWTError:
                raise AuthError("no signing key of the issuer has the token's kid") from None
        matching = keys if kid is None else [k for k in keys if k.key_id == kid]
        if len(matching) != 1:
            raise AuthError(
                "no signing key of the issuer has the token's kid"
                if kid is not None or not matching
                else "the token has no kid and the issuer has several keys"
            )
        key = matching[0]
        if key.algorithm_name not in ASYMMETRIC:
            raise AuthError("the token's key is not a public key")
        return key

    async def verify(self, token: str) -> Caller:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthError("the token is not a well-formed JWT") from None
        if header.get("alg") not in ASYMMETRIC:
            raise AuthError("the token's algorithm is not accepted (public-key ones only)")
        kid = header.get("kid")
        key = await self._key(kid if isinstance(kid, str) else None)
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[key.algorithm_name],
                audience=self.audience,
                issuer=self.issuer,
                leeway=JWT_LEEWAY,
                options={"require": ["exp"], "verify_aud": self.audience is not None},
            )
        except jwt.MissingRequiredClaimError as exc:
            raise AuthError(f"the token has no `{exc.claim}` claim") from None
        except jwt.PyJWTError as exc:
            message = next(
                (text for kind, text in JWT_ERRORS if isinstance(exc, kind)),
                "the token is not a valid JWT",
            )
            raise AuthError(message) from None
        account = claims.get("sub") or claims.get("client_id")
        if not isinstance(account, str):
            raise AuthError("the token names no account (sub or client_id)")
        scopes: frozenset[str] = frozenset()
        try:
            for claim in ("scope", "scp"):
                if claim in claims:
                    scopes |= _scope_list(claims[claim], f"the `{claim}` claim")
        except ValueError as exc:
            raise AuthError(str(exc)) from None
        return Caller(account=account, scopes=scopes)


# ---- --auth-hook module:function -------------------------------------------------------------


class AuthHook:
    """A custom scheme: `function(token, headers)` → a Caller, `{"account", "scopes"}`, or
    None to refuse; sync (run in a worker thread) or async. It may raise `AuthError` to refuse
    with its own message; any other exception refuses too, and is logged by type only (its
    message could hold the token)."""

    def __init__(self, spec: str) -> None:
        self.spec = spec
        module_name, sep, name = spec.partition(":")
        hint = "give MODULE:FUNCTION, with MODULE's folder on PYTHONPATH"
        if not sep or not module_name or not name:
            raise UserError(f"--auth-hook {spec!r} is not MODULE:FUNCTION", hint=hint)
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:  # the hook's own import errors too: any of them stops start-up
            raise UserError(
                f"--auth-hook {spec}: cannot import {module_name}: {type(exc).__name__}: {exc}",
                hint=hint,
            ) from None
        function = getattr(module, name, None)
        if not callable(function):
            raise UserError(f"--auth-hook {spec}: {module_name} has no function {name}", hint=hint)
        self.function: Callable[..., Any] = function

    async def authenticate(self, token: str | None, headers: Mapping[str, str]) -> Caller:
        view = MappingProxyType(dict(headers))
        try:
            if inspect.iscoroutinefunction(self.function):
                result = await self.function(token, view)
            else:  # a blocking lookup must not stall the event loop
                result = await anyio.to_thread.run_sync(self.function, token, view)
                if inspect.isawaitable(result):
                    result = await result
        except AuthError:
            raise
        except Exception as exc:
            log.error(
                "--auth-hook %s raised %s; the request is refused", self.spec, type(exc).__name__
            )
            raise AuthError("the credentials could not be checked") from None
        if result is None:
            raise AuthError(
                "a bearer token is required" if token is None else "the token is not accepted",
                "missing" if token is None else "invalid_token",
            )
        if isinstance(result, Caller):
            return result
        if isinstance(result, Mapping) and isinstance(result.get("account"), str):
            try:
                return Caller(result["account"], _scope_list(result.get("scopes", []), "scopes"))
            except ValueError:
                pass
        log.error("--auth-hook %s returned neither a Caller, a dict nor None", self.spec)
        raise AuthError("the credentials could not be checked")


# ---- the flags together ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProtectedResource:
    """What the RFC 9728 metadata says of this server."""

    url: str | None = None  # --resource-url; None: the request's scheme and host + /mcp
    authorization_servers: tuple[str, ...] = ()


class BearerAuth:
    """The authenticators the flags configure; each token goes to the one that can judge it."""

    def __init__(
        self,
        tokens: TokenFile | None = None,
        verifier: JwtVerifier | None = None,
        hook: AuthHook | None = None,
        resource: ProtectedResource | None = None,
    ) -> None:
        self.tokens = tokens
        self.verifier = verifier
        self.hook = hook
        self.resource = resource or ProtectedResource()

    async def authenticate(self, token: str | None, headers: Mapping[str, str]) -> Caller:
        if token is not None:
            caller = self.tokens.find(token) if self.tokens is not None else None
            if caller is not None:
                return caller
            if self.verifier is not None and looks_like_jwt(token):
                return await self.verifier.verify(token)
        if self.hook is not None:
            return await self.hook.authenticate(token, headers)
        if token is None:
            raise AuthError("a bearer token is required", "missing")
        raise AuthError("the token is not known")


class AuthGuard:
    """ASGI middleware: authenticate every request to the guarded paths, and serve the
    protected-resource metadata (RFC 9728) that a 401 points clients to."""

    def __init__(
        self,
        app: Any,
        authenticator: Authenticator,
        realm: str = "mcpgen",
        scopes: Iterable[str] = (),
    ) -> None:
        self.app = app
        self.authenticator = authenticator
        self.realm = realm
        self.scopes = sorted(set(scopes) - {ANY_SCOPE})  # scopes_supported: the bundle's
        self.resource: ProtectedResource | None = (
            None
            if isinstance(authenticator, OpenAccess)
            else getattr(authenticator, "resource", ProtectedResource())
        )

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not (
            path.startswith(GUARDED) or (self.resource and path.startswith(METADATA_PATH))
        ):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        if not path.startswith(GUARDED):
            await self.metadata(scope, headers)(scope, receive, send)
            return
        try:
            caller = await self.authenticator.authenticate(bearer_token(headers), headers)
        except AuthError as exc:
            log.debug("refused %s %s: %s", scope["method"], path, exc.message)
            await self.refuse(exc, scope, headers)(scope, receive, send)
            return
        scope[CALLER_KEY] = caller
        await self.app(scope, receive, send)

    def resource_url(self, scope: Any, headers: Mapping[str, str]) -> str:
        if self.resource and self.resource.url:
            return self.resource.url
        host = headers.get("host", "")
        if not _HOST.fullmatch(host):
            server_host, port = scope.get("server") or ("127.0.0.1", 80)
            host = f"[{server_host}]:{port}" if ":" in server_host else f"{server_host}:{port}"
        return f"{scope.get('scheme', 'http')}://{host}/mcp"

    def metadata_url(self, scope: Any, headers: Mapping[str, str]) -> str:
        """Where RFC 9728 §3.1 puts the metadata of the resource: the well-known path
        inserted between its host and its path."""
        parts = urlsplit(self.resource_url(scope, headers))
        return f"{parts.scheme}://{parts.netloc}{METADATA_PATH}{parts.path.rstrip('/')}"

    def metadata(self, scope: Any, headers: Mapping[str, str]) -> Response:
        if scope["method"] != "GET":
            return Response(status_code=405, headers={"Allow": "GET"})
        assert self.resource is not None
        document: dict[str, Any] = {"resource": self.resource_url(scope, headers)}
        if self.resource.authorization_servers:
            document["authorization_servers"] = list(self.resource.authorization_servers)
        document["bearer_methods_supported"] = ["header"]
        if self.scopes:
            document["scopes_supported"] = self.scopes
        # public and read by browser-based clients of other origins
        return JSONResponse(document, headers={"Access-Control-Allow-Origin": "*"})

    def challenge(self, exc: AuthError | None, scope: Any, headers: Mapping[str, str]) -> str:
        """The `WWW-Authenticate` value of a 401 (RFC 6750 §3, RFC 9728 §5.1)."""
        parts = [f'Bearer realm="{self.realm}"']
        if self.resource is not None:
            parts.append(f'resource_metadata="{self.metadata_url(scope, headers)}"')
        if exc is not None and exc.error != "missing":
            parts.append(f'error="{exc.error}"')
            parts.append('error_description="' + exc.message.replace('"', "'") + '"')
        return ", ".join(parts)

    def refuse(self, exc: AuthError, scope: Any, headers: Mapping[str, str]) -> Response:
        if exc.status != 401:
            body = {"error": exc.message, "code": "UNAVAILABLE"}
            return JSONResponse(body, status_code=exc.status, headers={"Retry-After": "5"})
        return JSONResponse(
            {"error": exc.message, "code": "UNAUTHENTICATED"},
            status_code=401,
            headers={"WWW-Authenticate": self.challenge(exc, scope, headers)},
        )


def _http_url(option: str, value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.fragment:
        raise UserError(f"{option} {value!r} is not an http(s) URL without a #fragment")
    return value


#: The server flags of authentication (click options), added to `runtime.cli.server_options`.
OPTIONS: list[Callable[..., Any]] = [
    click.option("--tokens", envvar="MCPGEN_TOKENS", metavar="FILE",
                 type=click.Path(dir_okay=False),
                 help='HTTP: bearer tokens, {"<token>": {"account": ..., "scopes": [...]}}; '
                 "a token may be stored as sha256:<hex>."),
    click.option("--jwt-jwks", envvar="MCPGEN_JWT_JWKS", metavar="URL|FILE",
                 help="HTTP: accept JWT bearer tokens signed by a key of this JWKS."),
    click.option("--jwt-issuer", envvar="MCPGEN_JWT_ISSUER", metavar="URL",
                 help="HTTP: the `iss` a JWT must have; also the authorization server the "
                 "metadata names."),
    click.option("--jwt-audience", envvar="MCPGEN_JWT_AUDIENCE", metavar="AUD",
                 help="HTTP: the `aud` a JWT must include, e.g. this server's resource URL "
                 "(recommended: without it, tokens for other services pass)."),
    click.option("--auth-hook", envvar="MCPGEN_AUTH_HOOK", metavar="MODULE:FUNCTION",
                 help="HTTP: a function(token, headers) returning a Caller, "
                 '{"account": ..., "scopes": [...]} or None (refused).'),
    click.option("--resource-url", envvar="MCPGEN_RESOURCE_URL", metavar="URL",
                 help="HTTP: this server's MCP URL in its OAuth metadata (RFC 9728); "
                 "default: the request's scheme and host + /mcp."),
    click.option("--authorization-server", "authorization_servers", multiple=True,
                 envvar="MCPGEN_AUTHORIZATION_SERVER", metavar="URL",
                 help="HTTP: an OAuth authorization server the metadata names (default: "
                 "--jwt-issuer). Repeatable."),
]  # fmt: skip


def from_flags(settings: Any) -> Authenticator:
    """The authenticator the server's settings (`runtime.settings.ServerSettings`) ask for;
    open access when they ask for none."""
    jwks, issuer, audience = settings.jwt_jwks, settings.jwt_issuer, settings.jwt_audience
    if (issuer or audience) and not jwks:
        raise UserError("--jwt-issuer and --jwt-audience need --jwt-jwks (the issuer's keys)")
    tokens = TokenFile(Path(settings.tokens)) if settings.tokens else None
    verifier = JwtVerifier(jwks, issuer, audience) if jwks else None
    hook = AuthHook(settings.auth_hook) if settings.auth_hook else None
    servers = tuple(_http_url("--authorization-server", s) for s in settings.authorization_servers)
    url = _http_url("--resource-url", settings.resource_url) if settings.resource_url else None
    if tokens is None and verifier is None and hook is None:
        if url or servers:
            raise UserError(
                "--resource-url and --authorization-server describe an authenticated server",
                hint="add --tokens, --jwt-jwks or --auth-hook",
            )
        if settings.host not in LOOPBACK:
            log.warning(
                "serving HTTP on %s without authentication: anyone who reaches it may call "
                "every tool; add --tokens, --jwt-jwks or --auth-hook",
                settings.host,
            )
        return OpenAccess()
    if not servers and issuer:
        servers = (issuer,)
    return BearerAuth(tokens, verifier, hook, ProtectedResource(url, servers))
