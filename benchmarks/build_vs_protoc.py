"""Time `mcpgen build` against protoc alone on the same files, side by side in one run.

protoc alone is `python -m grpc_tools.protoc --include_imports --include_source_info` over the
same files with the same import roots: the work mcpgen must do before it can start. Rounds are
interleaved (protoc, mcpgen, protoc, mcpgen, ...) so that load on a shared machine hits both.
Reports medians, the ratio mcpgen/protoc, and each process's peak RSS.

    python benchmarks/build_vs_protoc.py                         # generated + installed googleapis
    python benchmarks/build_vs_protoc.py --googleapis ~/src/googleapis --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from corpus import generate  # noqa: E402

from mcpgen.sources.protofiles import builtin_import_paths  # noqa: E402


@dataclass
class Corpus:
    name: str
    sources: list[Path]  # folders
    root: Path  # the -I root the folders are inside

    def files(self) -> list[str]:
        names = set()
        for folder in self.sources:
            for path in folder.rglob("*.proto"):
                names.add(path.relative_to(self.root).as_posix())
        return sorted(names)


def measure(cmd: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (MB) of one child process."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(cmd[:6])} ...\n{stderr[-3000:]}")
    return elapsed, usage.ru_maxrss // 1024


def run_corpus(corpus: Corpus, rounds: int, work: Path, models: bool) -> dict[str, object]:
    files = corpus.files()
    argfile = work / f"{corpus.name}.args"
    out_set = work / f"{corpus.name}.binpb"
    args = ["--include_imports", "--include_source_info", f"--descriptor_set_out={out_set}"]
    args += [f"--proto_path={corpus.root}"]
    args += [f"--proto_path={p}" for p in builtin_import_paths()]
    argfile.write_text("\n".join(args + files) + "\n")
    protoc = [sys.executable, "-m", "grpc_tools.protoc", f"@{argfile}"]
    bundle = work / f"{corpus.name}-bundle"
    mcpgen = [sys.executable, "-m", "mcpgen", "build", *map(str, corpus.sources),
              "-I", str(corpus.root), "-o", str(bundle), "--quiet"]  # fmt: skip
    if not models:  # models.py is datamodel-code-generator's time, not the compiler's
        mcpgen.append("--no-models")
    protoc_times, mcpgen_times, protoc_rss, mcpgen_rss = [], [], [], []
    for _ in range(rounds):
        seconds, rss = measure(protoc)
        protoc_times.append(seconds)
        protoc_rss.append(rss)
        seconds, rss = measure(mcpgen)
        mcpgen_times.append(seconds)
        mcpgen_rss.append(rss)
    from google.protobuf import descriptor_pb2

    fds = descriptor_pb2.FileDescriptorSet.FromString(out_set.read_bytes())
    named = set(files)
    rpcs = sum(len(s.method) for f in fds.file if f.name in named for s in f.service)
    manifest = json.loads((bundle / "manifest.json").read_bytes())
    protoc_median = statistics.median(protoc_times)
    mcpgen_median = statistics.median(mcpgen_times)
    return {
        "corpus": corpus.name,
        "files": len(files),
        "rpcs": rpcs,
        "tools": len(manifest["tools"]),
        "protoc_s": round(protoc_median, 2),
        "mcpgen_s": round(mcpgen_median, 2),
        "ratio": round(mcpgen_median / protoc_median, 2),
        "protoc_rss_mb": max(protoc_rss),
        "mcpgen_rss_mb": max(mcpgen_rss),
        "manifest_mb": round((bundle / "manifest.json").stat().st_size / 1e6, 1),
    }


def corpora(args: argparse.Namespace) -> list[Corpus]:
    found = []
    generated = HERE / ".corpus" / f"generated-{args.rpcs}"
    if not generated.exists():
        generate(generated, args.rpcs)
    found.append(Corpus(f"generated-{args.rpcs}", [generated / "acme"], generated))
    import google.api

    site = Path(next(iter(google.api.__path__))).parent.parent
    packages = [
        site / "google" / p for p in ("api", "rpc", "type") if (site / "google" / p).is_dir()
    ]
    found.append(Corpus("googleapis-common-protos", packages, site))
    if args.googleapis:
        root = Path(args.googleapis).resolve()
        folders = [root / "google", *([root / "grafeas"] if (root / "grafeas").is_dir() else [])]
        found.append(Corpus("googleapis", folders, root))
    if args.only:
        found = [c for c in found if c.name.startswith(args.only)]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rpcs", type=int, default=5000, help="size of the generated corpus")
    parser.add_argument("--googleapis", help="a checkout of github.com/googleapis/googleapis")
    parser.add_argument("--only", help="run the corpora whose name starts with this")
    parser.add_argument(
        "--models", action="store_true", help="include models.py (left out by default)"
    )
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="mcpgen-bench-") as tmp:
        for corpus in corpora(args):
            rows.append(run_corpus(corpus, args.rounds, Path(tmp), args.models))
            print(json.dumps(rows[-1]), file=sys.stderr)
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for row in rows:
        print("  ".join(str(row[c]).ljust(widths[c]) for c in columns))
    print(f"\n{os.cpu_count()} cores; medians of {args.rounds} interleaved rounds; "
          "ratio = mcpgen / protoc alone (target <= 1.5); RSS = peak of one process")  # fmt: skip


if __name__ == "__main__":
    main()
