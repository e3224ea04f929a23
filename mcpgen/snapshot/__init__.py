"""`mcpgen snapshot`: capture what a live system knows, as a file `mcpgen build` takes.

- `grpc://HOST:PORT` → a FileDescriptorSet (`.binpb`) through gRPC server reflection
  (`reflection.py`);
- `etcd://HOST:PORT[,HOST:PORT]` → a go-micro registry snapshot (`.json`) from go-micro's etcd
  registry (`etcd.py`).

Each writes its file atomically and deterministically (same system → byte-identical file).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mcpgen.errors import UserError, Warnings


@dataclass(slots=True)
class SnapshotOptions:
    out: Path
    tls: bool = False  # grpc: TLS to the server (system roots unless `ca`)
    ca: Path | None = None  # grpc: PEM roots for TLS (implies tls)
    services: list[str] = field(default_factory=list)  # grpc: only these (full names)
    headers: list[tuple[str, str]] = field(default_factory=list)  # grpc: metadata, e.g. auth
    prefix: str = "/micro/registry/"  # etcd: where go-micro keeps its registry
    timeout: float = 10.0  # seconds: grpc, the whole capture; etcd, each request


@dataclass(slots=True)
class SnapshotResult:
    out: Path
    summary: str  # one line for the CLI, e.g. "3 services, 12 files"


def take(source: str, options: SnapshotOptions, warnings: Warnings) -> SnapshotResult:
    """Capture `source` into `options.out`."""
    scheme, sep, rest = source.partition("://")
    if not sep or not rest:
        raise UserError(
            f"{source!r} is not a snapshot source",
            hint="use grpc://HOST:PORT (server reflection) or etcd://HOST:PORT (go-micro registry)",
        )
    if scheme in ("grpc", "etcd"):
        if scheme == "grpc":
            from mcpgen.snapshot.reflection import snapshot_reflection as capture
        else:
            from mcpgen.snapshot.etcd import snapshot_etcd as capture
        return capture(rest, options, warnings)
    raise UserError(
        f"unknown snapshot scheme {scheme!r} in {source!r}",
        hint="use grpc://HOST:PORT or etcd://HOST:PORT[,HOST:PORT]",
    )


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file, so a failure never leaves half a file."""
    import os
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def counted(n: int, noun: str) -> str:
    """`1 service`, `3 services`: the figures of a snapshot's summary line."""
    return f"{n} {noun}{'' if n == 1 else 's'}"
