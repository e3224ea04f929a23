"""The pipeline, start to end: config → sources → tools planned → shards rendered → bundle.

A build is cut into shards, one per proto package (go-micro: per registry service). The parent
process reads the sources (compiling only what the cache lacks), chooses and names every tool
from an outline of the services (names are decided for all tools at once, since collisions
qualify them), then renders each shard: its catalog, schemas, checks, tools JSON, docs and
models, from only the files that shard's services reach. Shards are independent, so large
builds render them in worker processes (one per core, forked: they share the parent's
descriptors), each writing its files straight into the new bundle folder; nothing holds the
whole bundle in memory. A shard whose inputs are unchanged is copied from the build cache.
"""

from __future__ import annotations

import dataclasses
import gc
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from google.protobuf import descriptor_pb2

from mcpgen import __version__
from mcpgen.cache import Cache, key_of
from mcpgen.config import Config
from mcpgen.contract import (
    CATALOG,
    INDEX,
    MANIFEST_VERSION,
    SERVER,
    SERVER_JSON,
    BundleWriter,
    DescriptorEntry,
    Index,
    Inputs,
    ShardEntry,
    ShardFiles,
    descriptor_file,
    digest,
    file_digest,
    module_name,
    shard_stems,
    write_file,
)
from mcpgen.emit import (
    catalog_index,
    descriptor_shard,
    server_json,
    server_module,
    shard_files,
)
from mcpgen.errors import UserError, Warnings
from mcpgen.model import Catalog, GoMicroBinding, Service
from mcpgen.progress import Progress
from mcpgen.schema import SchemaRenderer
from mcpgen.sources.descriptors import catalog_from_files
from mcpgen.sources.gomicro import registry_catalog
from mcpgen.sources.inputs import (
    classify_sources,
    dependencies_first,
    load_files,
    outline_catalog,
    registry_services,
)
from mcpgen.tools import PlannedTool, plan_tools, render_tool
from mcpgen.toolsets import resolve_configured
from mcpgen.validate import validate_tools

#: Below this many tools a build renders in its own process: forking costs more than it saves.
PARALLEL_TOOLS = 1500


@dataclass(slots=True)
class BuildResult:
    out: Path
    tools: list[str]  # tool names, by shard
    services: int
    skipped: int  # RPCs and endpoints found but made no tool of (each named in a warning)
    shards: int
    shards_cached: int
    files_compiled: int  # .proto files protoc compiled; the others came from the cache
    files_total: int
    seconds: float = 0.0
    warnings: Warnings = field(default_factory=Warnings)

    def summary(self, shown_out: str) -> str:
        reused = ""
        if self.shards_cached or self.files_total > self.files_compiled:
            reused = (
                f", from the cache: {self.shards_cached} of {self.shards} packages and "
                f"{self.files_total - self.files_compiled} of {self.files_total} .proto files"
            )
        return (
            f"mcpgen: {len(self.tools)} tools from {self.services} services → {shown_out}/ "
            f"({self.skipped} skipped{reused}, {self.seconds:.2f} s)"
        )


@dataclass(slots=True)
class ShardJob:
    """One shard to render: its tools (already named) and the files its services reach."""

    name: str
    files: ShardFiles
    tools: list[tuple[str, str, str]]  # (tool name, service full name, method name)
    closure: list[str]  # proto files the tools reach, dependencies first
    exposed: list[str]  # of those, the files declaring the shard's services
    key: str | None  # cache key; None: not cached


@dataclass(slots=True)
class ShardOutcome:
    name: str
    digests: dict[str, str]
    warnings: list[str]
    services: list[str]
    cached: bool
    read_only: list[str] = field(default_factory=list)  # tools whose readOnlyHint is true
    scopes: dict[str, list[str]] = field(default_factory=dict)  # tool → scopes, if any


@dataclass(slots=True)
class _State:
    """What every shard render needs; set before workers fork, so they inherit it."""

    config: Config
    files: dict[str, descriptor_pb2.FileDescriptorProto]
    folder: Path
    cache: Cache
    catalog: Catalog | None = None  # the whole catalog, for builds with registries
    previous: dict[str, str] = field(default_factory=dict)  # the replaced bundle's digests


_STATE: _State | None = None


def config_digest(config: Config) -> str:
    """What of the config shapes the output (not where sources or the bundle are)."""
    settings = dataclasses.asdict(config)
    for where in ("sources", "import_paths", "out", "file"):
        settings.pop(where)
    settings["mcpgen"] = __version__  # recorded in the bundle: the release, not the code's hash
    return digest(orjson.dumps(settings, option=orjson.OPT_SORT_KEYS))


def build(
    config: Config,
    warnings: Warnings | None = None,
    progress: Progress | None = None,
    cache: Cache | None = None,
    workers: int | None = None,
) -> BuildResult:
    """Build the bundle of `config` into `config.out`, replacing it only when all went well."""
    cache = cache or Cache.disabled()
    cache.hold()  # protoc's entries are stored beside the render (`beside_the_render`)
    try:
        return _build(config, warnings, progress, cache, workers)
    finally:
        cache.flush()  # what a failed build compiled is kept too


def _build(
    config: Config,
    warnings: Warnings | None,
    progress: Progress | None,
    cache: Cache,
    workers: int | None,
) -> BuildResult:
    global _STATE
    started = time.perf_counter()
    warnings = warnings if warnings is not None else Warnings()
    progress = progress or Progress.silent()
    progress.stage(f"reading {len(config.sources)} source(s)")
    found = classify_sources(config.sources, config.import_paths)
    registry = registry_services(found)
    progress.stage(f"compiling {len(found.protos.names):,} .proto file(s)")
    loaded = load_files(found, cache, warnings)
    by_name = {f.name: f for f in loaded.files}
    full: Catalog | None = None
    if registry:  # registries are small and bind to proto services: one catalog for all
        full = catalog_from_files(loaded.files, loaded.exposed, warnings)
        outline = full = registry_catalog(registry, full, warnings)
    else:
        outline = outline_catalog(loaded.files, loaded.exposed)
    progress.stage(f"{len(loaded.files):,} files read; planning tools")
    planned = plan_tools(outline, config, warnings)
    jobs = _jobs(planned, full, by_name, loaded.digests, config)
    writer = BundleWriter(Path(config.out))

    def beside_the_render() -> dict[str, DescriptorEntry]:
        cache.flush()  # what compiling held back
        return _write_descriptors(jobs, loaded.files, by_name, loaded.digests, writer, cache)

    descriptors = _Alongside(beside_the_render)
    try:
        _STATE = _State(config, by_name, writer.tmp, cache, full, _previous_digests(config))
        outcomes = list(_render_all(jobs, progress, workers, descriptors))
        progress.stage("writing descriptors and the index")
        descriptors.result()  # written alongside the render (or now), errors raised here
        for outcome in outcomes:
            writer.digests |= outcome.digests
            for warning in outcome.warnings:
                if warning not in warnings.items:
                    warnings.add(warning)
        _warn_large_files(writer, warnings)
        entries = [(j.name, j.files.docs, len(j.tools)) for j in jobs]
        writer.write(CATALOG, [catalog_index(entries)])
        writer.write(SERVER, [server_module(config.server_name, config.server_version)])
        described = config.server_description or _description(jobs)
        writer.write(
            SERVER_JSON,
            [
                server_json(
                    config.server_name,
                    config.server_version or __version__,
                    described,
                    config.server_title,
                    config.website_url,
                    config.remote_url,
                    config.package,
                )
            ],
        )
        shards = {j.name: _shard_entry(j, o) for j, o in zip(jobs, outcomes, strict=True)}
        methods = {tool: m for e in shards.values() for tool, m in e.methods.items()}
        index = Index(
            generator=f"mcpgen {__version__}",
            shards=shards,
            toolsets=resolve_configured(config.toolsets, methods, shards, config.file),
            descriptors=descriptors.result(),
            inputs=Inputs(
                config=config_digest(config),
                protos=loaded.proto_contents,
                snapshots=loaded.snapshot_digests,
                sources=sources_digest(loaded.exposed),
            ),
            profile=config.profile,
        )
        writer.commit(index)
    except BaseException:
        descriptors.join()  # nothing writes into the folder being removed
        writer.abort()
        raise
    finally:
        _STATE = None
    progress.clear()
    total = sum(len(s.methods) for s in outline.services)
    return BuildResult(
        out=Path(config.out),
        tools=[t[0] for j in jobs for t in j.tools],
        services=len({s for o in outcomes for s in o.services}),
        skipped=total - len(planned) + len(outline.skipped),
        shards=len(jobs),
        shards_cached=sum(o.cached for o in outcomes),
        files_compiled=loaded.compiled,
        files_total=len(loaded.proto_contents),
        seconds=time.perf_counter() - started,
        warnings=warnings,
    )


def _description(jobs: list[ShardJob]) -> str:
    """server.json's description when the config gives none (the registry allows 100 chars)."""
    tools = sum(len(j.tools) for j in jobs)
    return f"{tools} tools of {len(jobs)} package(s), forwarded to their gRPC and go-micro services"


def _shard_entry(job: ShardJob, outcome: ShardOutcome) -> ShardEntry:
    """What the index says of a shard: its tools and their facts (`contract.ShardEntry`)."""
    return ShardEntry(
        tools=sorted(t[0] for t in job.tools),
        files=job.files,
        methods={name: f"{service}.{method}" for name, service, method in job.tools},
        read_only=sorted(outcome.read_only),
        scopes=outcome.scopes,
    )


#: Git hosts warn about files above 50 MB (GitHub refuses 100 MB).
LARGE_FILE = 50 * 1000 * 1000


def _warn_large_files(writer: BundleWriter, warnings: Warnings) -> None:
    for name in sorted(writer.digests):
        size = (writer.tmp / name).stat().st_size
        if size > LARGE_FILE:
            warnings.add(
                f"{name} is {size / 1e6:.0f} MB: git hosts warn above 50 MB and refuse 100 MB; "
                "split the package, or leave models out (--no-models) if the models are the file"
            )


def _previous_digests(config: Config) -> dict[str, str]:
    """The digests the bundle being replaced recorded (none when it is not a current one)."""
    try:
        document = orjson.loads((Path(config.out) / INDEX).read_bytes())
        if document.get("manifestVersion") != MANIFEST_VERSION:
            return {}
        return {str(k): str(v) for k, v in document.get("digests", {}).items()}
    except (OSError, orjson.JSONDecodeError, AttributeError):
        return {}


def sources_digest(exposed: set[str]) -> str:
    """Which files are sources (their services become tools), as one digest."""
    return digest("\n".join(sorted(exposed)).encode())


def _shard_of(planned: PlannedTool) -> str:
    binding = planned.service.binding
    if isinstance(binding, GoMicroBinding):
        return binding.service
    return planned.service.package


def _jobs(
    planned: list[PlannedTool],
    full: Catalog | None,
    files: dict[str, descriptor_pb2.FileDescriptorProto],
    digests: dict[str, str],
    config: Config,
) -> list[ShardJob]:
    """The shards of a build, in name order, with their file names and cache keys."""
    groups: dict[str, list[PlannedTool]] = {}
    for p in planned:
        groups.setdefault(_shard_of(p), []).append(p)
    package_of = {f.name: f.package for f in files.values()}
    stems = shard_stems([*groups, *package_of.values()])
    modules: dict[str, str] = {}
    settings = config_digest(config)
    jobs = []
    for name in sorted(groups):
        tools = groups[name]
        roots = sorted({_reached_file(p.service, full) for p in tools} - {""})
        roots += sorted(_message_files(tools, full) - set(roots))
        closure = dependencies_first(roots, files)
        stem = stems[name]
        module = module_name(stem)
        if module in modules.values():  # `a.b` and `a_b` would share a module name
            module = f"{module}_{digest(name.encode())[7:15]}"
        modules[name] = module
        shard_files = ShardFiles.of(stem, module if config.models else None)
        plan = [(p.name, p.service.full_name, p.method.name) for p in tools]
        key = None
        if full is None:
            key = key_of(
                "shard", settings, name, orjson.dumps(shard_files.to_json()),
                orjson.dumps(plan), *(f"{n}={digests.get(n, '')}" for n in closure),
            )  # fmt: skip
        exposed = sorted({p.service.file for p in tools})
        jobs.append(ShardJob(name, shard_files, plan, closure, exposed, key))
    return jobs


def _reached_file(service: Service, full: Catalog | None) -> str:
    return service.file


def _message_files(tools: list[PlannedTool], full: Catalog | None) -> set[str]:
    """Files defining the proto types of go-micro endpoints that the protos describe."""
    if full is None:
        return set()
    found = set()
    for p in tools:
        if isinstance(p.service.binding, GoMicroBinding) and p.method.input_type:
            for name in (p.method.input_type, p.method.output_type):
                message = full.messages.get(name)
                if message is not None:
                    found.add(message.file)
    return found


class _Alongside:
    """Work for the parent while worker processes render: the parent only waits on them, and
    a thread started once they are forked (never before: a fork copies no other thread, but
    would copy the locks it holds) uses that time. Run here when nothing else does."""

    def __init__(self, func: Callable[..., Any], *args: Any) -> None:
        self._call = lambda: func(*args)
        self._thread: threading.Thread | None = None
        self._outcome: tuple[bool, Any] | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="mcpgen-alongside", daemon=True)
        self._thread.start()

    def run(self) -> None:
        if self._outcome is None:
            try:
                self._outcome = (True, self._call())
            except BaseException as exc:  # re-raised by result(), in the build's thread
                self._outcome = (False, exc)

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join()

    def result(self) -> Any:
        self.join()
        self.run()
        assert self._outcome is not None
        done, value = self._outcome
        if not done:
            raise value
        return value


def _render_all(
    jobs: list[ShardJob], progress: Progress, workers: int | None, alongside: _Alongside
) -> Iterator[ShardOutcome]:
    """Every shard's outcome, in job order: copied from the cache here, rendered in worker
    processes when enough is left to render for that to pay (`alongside` then runs in a thread
    of this process meanwhile)."""
    assert _STATE is not None
    total_tools = sum(len(j.tools) for j in jobs)
    done_tools = 0
    results: dict[str, ShardOutcome] = {}
    for job in jobs:
        cached = _from_cache(job, _STATE) if job.key is not None else None
        if cached is not None:
            results[job.name] = cached
            done_tools += len(job.tools)
            progress.count("tools rendered", done_tools, total_tools)
    todo = [j for j in jobs if j.name not in results]
    count = workers if workers is not None else (os.cpu_count() or 1)
    count = min(count, len(todo))
    if count <= 1 or total_tools - done_tools < PARALLEL_TOOLS or _STATE.catalog is not None:
        for job in todo:
            results[job.name] = render_shard(job, cached=False)
            done_tools += len(job.tools)
            progress.count("tools rendered", done_tools, total_tools)
        for job in jobs:
            yield results[job.name]
        return
    gc.collect()
    gc.freeze()  # the inherited objects stay put: copy-on-write pages stay shared
    context = multiprocessing.get_context("fork")
    biggest_first = sorted(todo, key=lambda j: -len(j.tools))
    with ProcessPoolExecutor(max_workers=count, mp_context=context) as pool:
        pending: dict[Future[ShardOutcome | BaseException], ShardJob] = {
            pool.submit(_render_in_worker, job): job for job in biggest_first
        }
        alongside.start()  # every worker is forked by now: submit starts them all
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                job = pending.pop(future)
                outcome = future.result()
                if isinstance(outcome, BaseException):
                    for other in pending:
                        other.cancel()
                    raise outcome
                results[job.name] = outcome
                done_tools += len(job.tools)
                progress.count("tools rendered", done_tools, total_tools)
    gc.unfreeze()
    for job in jobs:
        yield results[job.name]


def _render_in_worker(job: ShardJob) -> ShardOutcome | BaseException:
    """A worker's render: errors come back as values (a UserError keeps its message)."""
    assert _STATE is not None
    _STATE.cache.forget_held()  # the parent's to store; a worker stores its own at once
    try:
        return render_shard(job, cached=False)
    except UserError as exc:
        return exc
    except Exception as exc:  # a bug: the parent reports it as an internal error
        return RuntimeError(f"rendering {job.name or '(no package)'} failed: {exc!r}")


def render_shard(job: ShardJob, cached: bool = True) -> ShardOutcome:
    """Render one shard into the bundle folder (or, unless told it is not there, copy it from
    the cache)."""
    state = _STATE
    assert state is not None
    if cached and job.key is not None:
        cached = _from_cache(job, state)
        if cached is not None:
            return cached
    warnings = Warnings()
    catalog = state.catalog
    if catalog is None:
        files = [state.files[n] for n in job.closure]
        catalog = catalog_from_files(files, set(job.exposed), warnings)
    methods = {(s.full_name, m.name): (s, m) for s in catalog.services for m in s.methods}
    planned = [PlannedTool(*methods[svc, method], name) for name, svc, method in job.tools]
    renderer = SchemaRenderer(
        catalog,
        recursion_depth=state.config.recursion_depth,
        portable_max_nodes=state.config.portable_max_nodes,
    )
    specs = [render_tool(p, state.config, renderer) for p in planned]
    validate_tools(
        specs,
        portable_inputs=state.config.schema_profile == "portable",
        profile=state.config.profile,
        server_name=state.config.server_name,
    )
    specs.sort(key=lambda s: s.name)
    digests: dict[str, str] = {}
    for name, chunks in shard_files(job.name, specs, job.files, catalog):
        digests[name] = write_file(state.folder, name, chunks)
        if job.key is not None:
            state.cache.put_file(state.folder / name, digests[name])
    services = sorted({s.route["service"] for s in specs})
    read_only = [s.name for s in specs if s.tool.get("annotations", {}).get("readOnlyHint")]
    scopes = {s.name: list(s.route["scopes"]) for s in specs if s.route.get("scopes")}
    if job.key is not None:
        meta = {"files": digests, "warnings": warnings.items, "services": services,
                "readOnly": read_only, "scopes": scopes}  # fmt: skip
        state.cache.put("shard-meta", job.key, orjson.dumps(meta))
    return ShardOutcome(job.name, digests, warnings.items, services, False, read_only, scopes)


def _from_cache(job: ShardJob, state: _State) -> ShardOutcome | None:
    """A shard from the cache: its files linked from the bundle being replaced where that
    holds them unchanged, else from the cache's blobs (both checked against their digests)."""
    meta = _shard_meta(state.cache.get("shard-meta", job.key or ""))
    if meta is None or set(meta["files"]) != set(job.files.names()):
        return None
    wanted: dict[str, str] = meta["files"]
    placed: list[Path] = []
    for name, want in wanted.items():
        if not _reuse(name, want, state) and not state.cache.link_file(want, state.folder / name):
            for path in placed:  # links: rendering must not write through them
                path.unlink()
            return None
        placed.append(state.folder / name)
    return ShardOutcome(job.name, dict(wanted), meta["warnings"], meta["services"], True,
                        meta["readOnly"], meta["scopes"])  # fmt: skip


def _shard_meta(payload: bytes | None) -> dict[str, Any] | None:
    if payload is None:
        return None
    try:
        meta = orjson.loads(payload)
        files = {str(k): str(v) for k, v in meta["files"].items()}
        return {"files": files, "warnings": list(meta["warnings"]),
                "services": list(meta["services"]), "readOnly": list(meta["readOnly"]),
                "scopes": {str(k): list(v) for k, v in meta["scopes"].items()}}  # fmt: skip
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        return None


def _reuse(name: str, wanted: str, state: _State) -> bool:
    """Hard-link `name` from the bundle being replaced when its bytes are `wanted` (checked:
    the old index says so and the file still hashes to it)."""
    if state.previous.get(name) != wanted:
        return False
    source = Path(state.config.out) / name
    if file_digest(source) != wanted:
        return False
    target = state.folder / name
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:  # another file system, or links not allowed: copy instead
        return False
    return True


def _write_descriptors(
    jobs: list[ShardJob],
    ordered: list[descriptor_pb2.FileDescriptorProto],
    files: dict[str, descriptor_pb2.FileDescriptorProto],
    digests: dict[str, str],
    writer: BundleWriter,
    cache: Cache,
) -> dict[str, DescriptorEntry]:
    """One FileDescriptorSet per proto package of the files the tools reach."""
    needed = {n for j in jobs for n in j.closure}
    if not needed:
        return {}
    groups: dict[str, list[descriptor_pb2.FileDescriptorProto]] = {}
    for f in ordered:  # dependencies first
        if f.name in needed:
            groups.setdefault(f.package, []).append(f)
    package_of = {f.name: f.package for f in files.values()}
    stems = shard_stems([*(j.name for j in jobs), *package_of.values()])
    entries: dict[str, DescriptorEntry] = {}
    for package, members in sorted(groups.items()):
        name = descriptor_file(stems[package])
        key = key_of("descriptors", *(f"{f.name}={digests.get(f.name, '')}" for f in members))
        data = cache.get("descriptors", key) if all(f.name in digests for f in members) else None
        if data is None:
            data = descriptor_shard(members)
            cache.put("descriptors", key, data)
        writer.write(name, [data])
        imports = {package_of[d] for f in members for d in f.dependency if d in package_of}
        entries[package] = DescriptorEntry(name, sorted(imports - {package}))
    return entries
