"""Shared test helpers: paths, a CLI runner, and a protoc wrapper to make descriptor sets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from mcpgen.cli import main
from mcpgen.sources.protofiles import builtin_import_paths

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
PROTOS = FIXTURES / "protos"


def run_cli(*args: str, cwd: Path | None = None) -> Result:
    """Run `mcpgen ARGS` in-process, from `cwd` when given."""
    runner = CliRunner()
    if cwd is None:
        return runner.invoke(main, list(args), catch_exceptions=False)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(cwd)
        return runner.invoke(main, list(args), catch_exceptions=False)


def run_mcpgen(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run `mcpgen ARGS` as a real process (to see exit codes and stderr as a user does)."""
    return subprocess.run(
        [sys.executable, "-m", "mcpgen", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
    )


def protoc_descriptor_set(out: Path, files: list[str], roots: list[Path]) -> Path:
    """Write a FileDescriptorSet with imports, as `protoc --include_imports` does."""
    args = [sys.executable, "-m", "grpc_tools.protoc", "--include_imports"]
    args += [f"--descriptor_set_out={out}"]
    args += [f"--proto_path={r}" for r in roots]
    args += [f"--proto_path={p}" for p in builtin_import_paths()]
    subprocess.run([*args, *files], check=True, capture_output=True)
    return out
