"""The build cache: content-addressed entries that a rebuild reuses instead of recomputing.

An entry is stored under the digest of everything that determines it (the key), so a key can
only ever name one content; nothing is invalidated, old entries just stop being asked for.
Each entry file carries its own key and the digest of its payload: an entry that was cut short,
damaged or written by something else is detected, ignored, deleted and rewritten, never
trusted. Entries are written to a temporary name and renamed, so concurrent builds sharing a
folder (CI jobs restoring one cache) see whole entries or none.

Bundle files are kept as blobs named by their own digest, hard-linked to the file the build
just wrote where the cache shares its file system (a cold build then writes each byte once,
not twice) and copied otherwise. A blob is hashed again before every use, so one changed
through a link (a bundle file edited in place) is found, deleted and stored anew, never used.

    <dir>/v1/<kind>/<key[:2]>/<key>
    <dir>/v1/blob/<sha256[:2]>/<sha256>
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import struct
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from mcpgen import __version__
from mcpgen.contract import file_digest

MAGIC = b"MCPGENC1"
LAYOUT = "v1"
ENV = "MCPGEN_CACHE_DIR"
_HEADER = struct.Struct(">32s32sQ")  # key, sha256 of the payload, payload length
BLOB = "blob"


def default_dir() -> Path:
    """`$MCPGEN_CACHE_DIR`, else `$XDG_CACHE_HOME/mcpgen`, else `~/.cache/mcpgen`."""
    if os.environ.get(ENV):
        return Path(os.environ[ENV])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mcpgen"


@functools.cache
def code_identity() -> str:
    """mcpgen's own code and templates, and the versions of the libraries whose output lands in
    a bundle: a development checkout with edited code never reuses what older code made."""
    h = hashlib.sha256(__version__.encode())
    package = Path(__file__).resolve().parent
    from mcpgen.templating import templates_dir

    for root in (package, templates_dir()):
        for path in sorted(root.rglob("*")):
            if path.is_file() and path.suffix in (".py", ".j2", ".toml"):
                h.update(path.relative_to(root).as_posix().encode())
                h.update(path.read_bytes())
    for library in ("protobuf", "grpcio-tools", "datamodel-code-generator", "pydantic"):
        try:
            h.update(f"{library}=={metadata.version(library)}".encode())
        except metadata.PackageNotFoundError:
            h.update(f"{library} missing".encode())
    return h.hexdigest()


def key_of(*parts: bytes | str) -> str:
    """The key of an entry: a digest of its parts, each length-prefixed so parts cannot run
    into each other; mcpgen's code (`code_identity`) is always one of them."""
    h = hashlib.sha256()
    for part in (code_identity(), *parts):
        data = part.encode() if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return h.hexdigest()


@dataclass(slots=True)
class Stats:
    hits: int = 0
    misses: int = 0
    rejected: int = 0  # entries found damaged or foreign (then rewritten)


class Cache:
    """A cache folder; `Cache.disabled()` answers every lookup with a miss and stores nothing."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder / LAYOUT if folder is not None else None
        self.stats: dict[str, Stats] = {}
        self._usable = folder is not None
        self._held: list[tuple[str, str, bytes]] | None = None

    def hold(self) -> None:
        """Keep what `put` is given in memory until `flush`: a build stores the entries of its
        serial part while its workers render, off the path everyone waits on."""
        self._held = []

    def forget_held(self) -> None:
        """In a forked worker: what the parent held is the parent's to store."""
        self._held = None

    def flush(self) -> None:
        """Store what was held, and store at once from now on."""
        held, self._held = self._held or [], None
        for kind, key, payload in held:
            self.put(kind, key, payload)

    @classmethod
    def disabled(cls) -> Cache:
        return cls(None)

    @property
    def enabled(self) -> bool:
        return self._usable

    def _path(self, kind: str, key: str) -> Path:
        assert self.folder is not None
        return self.folder / kind / key[:2] / key

    def _stats(self, kind: str) -> Stats:
        return self.stats.setdefault(kind, Stats())

    def get(self, kind: str, key: str) -> bytes | None:
        if not self._usable:
            return None
        path = self._path(kind, key)
        try:
            data = path.read_bytes()
        except OSError:
            self._stats(kind).misses += 1
            return None
        payload = _payload(data, key)
        if payload is None:  # damaged or foreign: never trusted, replaced by the next put
            self._stats(kind).rejected += 1
            self._stats(kind).misses += 1
            path.unlink(missing_ok=True)
            return None
        self._stats(kind).hits += 1
        return payload

    def put(self, kind: str, key: str, payload: bytes) -> None:
        if not self._usable:
            return
        if self._held is not None:
            self._held.append((kind, key, payload))
            return
        path = self._path(kind, key)
        header = MAGIC + _HEADER.pack(
            bytes.fromhex(key), hashlib.sha256(payload).digest(), len(payload)
        )
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
            with os.fdopen(fd, "wb") as stream:
                stream.write(header)
                stream.write(payload)
            os.replace(tmp, path)
        except OSError:  # a read-only or full cache folder slows builds down, never fails them
            self._usable = False

    def put_file(self, path: Path, digest: str) -> None:
        """Keep the file at `path`, whose digest (`sha256:<hex>`) is `digest`, as a blob."""
        if not self._usable:
            return
        blob = self._path(BLOB, digest.removeprefix("sha256:"))
        try:
            blob.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(path, blob)
            except FileExistsError:  # the same bytes, or damage the next use will find
                return
            except OSError:  # another file system, or no links there: a copy
                fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=blob.parent)
                with os.fdopen(fd, "wb") as stream, path.open("rb") as source:
                    shutil.copyfileobj(source, stream)
                os.replace(tmp, blob)
        except OSError:
            self._usable = False

    def link_file(self, digest: str, target: Path) -> bool:
        """Put the blob of `digest` at `target` (a hard link, else a copy) when it still
        hashes to `digest`; False when there is none or it has changed (then it is deleted)."""
        if not self._usable:
            return False
        blob = self._path(BLOB, digest.removeprefix("sha256:"))
        stats = self._stats(BLOB)
        found = file_digest(blob)
        if found is None:
            stats.misses += 1
            return False
        if found != digest:
            stats.rejected += 1
            stats.misses += 1
            blob.unlink(missing_ok=True)
            return False
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(blob, target)
        except OSError:
            shutil.copyfile(blob, target)
        stats.hits += 1
        return True


def _payload(data: bytes, key: str) -> bytes | None:
    """The payload of an entry file, or None when it is not a whole entry stored for `key`."""
    start = len(MAGIC) + _HEADER.size
    if len(data) < start or not data.startswith(MAGIC):
        return None
    stored_key, sha, length = _HEADER.unpack_from(data, len(MAGIC))
    payload = data[start:]
    if stored_key.hex() != key or length != len(payload):
        return None
    if hashlib.sha256(payload).digest() != sha:
        return None
    return payload
