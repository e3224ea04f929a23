"""The CI loop as docs/ci.md documents it: the GitHub Actions workflow's mcpgen steps, run in a
real git repository on a pull request that changes the tools, and the pre-commit hooks."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

PROTO = """syntax = "proto3";
package shop.v1;
import "google/api/field_behavior.proto";

service Shop {
  // Reads an item.
  rpc GetItem(GetItemRequest) returns (Item);
}

message GetItemRequest { string id = 1 [(google.api.field_behavior) = REQUIRED]; }
message Item { string id = 1; string title = 2; }
"""


CI_DOC = ROOT / "docs" / "ci.md"


def documented_workflow() -> dict:
    text = CI_DOC.read_text(encoding="utf-8")
    match = re.search(r"`\.github/workflows/mcp-bundle\.yml`:\n\n```yaml\n(.*?)```", text, re.S)
    assert match, "the workflow block of docs/ci.md is missing"
    return yaml.safe_load(match.group(1))


def documented_pre_commit_config() -> dict:
    text = CI_DOC.read_text(encoding="utf-8")
    match = re.search(r"```yaml\n(# \.pre-commit-config\.yaml\n.*?)```", text, re.S)
    assert match, "the .pre-commit-config.yaml block of docs/ci.md is missing"
    return yaml.safe_load(match.group(1))


@pytest.fixture(autouse=True)
def private_build_cache(tmp_path, monkeypatch):
    """The workflow caches ~/.cache/mcpgen; these runs keep their cache to themselves."""
    monkeypatch.setenv("MCPGEN_CACHE_DIR", str(tmp_path / "cache"))


def mcpgen_commands(workflow: dict) -> list[tuple[str, list[str]]]:
    """(step name, argv) of every `mcpgen ...` command the workflow's steps run."""
    commands = []
    for step in workflow["jobs"]["bundle"]["steps"]:
        script = step.get("run", "").replace("\\\n", " ")
        for line in script.splitlines():
            line = line.split(" || ")[0].split(" > ")[0].strip()
            if line.startswith("mcpgen "):
                commands.append((step.get("name", ""), shlex.split(line)))
    return commands


def run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    if argv[0] == "mcpgen":
        argv = [sys.executable, "-m", "mcpgen", *argv[1:]]
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True)


def git(cwd: Path, *args: str) -> None:
    done = subprocess.run(
        ["git", "-c", "user.name=ci", "-c", "user.email=ci@example.com", *args],
        cwd=cwd, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_the_documented_workflow_runs_on_a_pull_request(tmp_path):
    workflow = documented_workflow()
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert set(triggers) == {"pull_request", "push"}
    commands = mcpgen_commands(workflow)
    assert [argv[1] for _, argv in commands] == ["build", "check", "lint", "diff"]

    repo = tmp_path / "repo"
    (repo / "protos").mkdir(parents=True)
    (repo / "protos" / "shop.proto").write_text(PROTO)
    (repo / "mcpgen.toml").write_text('sources = ["protos"]\nserver_name = "shop"\n')
    assert run(["mcpgen", "build"], repo).returncode == 0
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "bundle")
    git(repo, "update-ref", "refs/remotes/origin/main", "HEAD")  # what checkout's fetch gives
    git(repo, "checkout", "-q", "-b", "feature")
    # the pull request: a new required input (breaking) and a new optional output field
    changed = PROTO.replace(
        "string id = 1 [(google.api.field_behavior) = REQUIRED]; }",
        "string id = 1 [(google.api.field_behavior) = REQUIRED];\n"
        "  string shop = 2 [(google.api.field_behavior) = REQUIRED]; }",
    ).replace("string title = 2; }", "string title = 2; int32 stock = 3; }")
    (repo / "protos" / "shop.proto").write_text(changed)

    env = {"$RUNNER_TEMP": str(tmp_path / "runner"), '"$BASE': '"origin/main'}

    def step(argv: list[str]) -> subprocess.CompletedProcess[str]:
        expanded = []
        for arg in argv:
            for name, value in env.items():
                arg = arg.replace(name.strip('"'), value.strip('"'))
            expanded.append(arg)
        return run(expanded, repo)

    by_command = {argv[1]: argv for _, argv in commands}
    assert step(by_command["build"]).returncode == 0
    assert (tmp_path / "runner" / "mcp_bundle" / "manifest.json").is_file()
    stale = step(by_command["check"])
    assert stale.returncode == 1 and "tools changed (1): Shop_GetItem" in stale.stderr
    assert run(["mcpgen", "build"], repo).returncode == 0  # the author rebuilds and commits
    assert step(by_command["check"]).returncode == 0
    lint = step(by_command["lint"])
    assert lint.returncode == 0, lint.stdout + lint.stderr
    diff = step(by_command["diff"])
    assert diff.returncode == 1  # the new required input breaks clients
    assert "shop" in diff.stdout and "stock" in diff.stdout
    assert diff.stdout.lstrip().startswith("#")  # a Markdown comment for the pull request


def test_pre_commit_hooks_run_mcpgen(tmp_path):
    hooks = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    assert {hook["id"] for hook in hooks} == {"mcpgen-check", "mcpgen-build"}
    documented = documented_pre_commit_config()["repos"][0]["hooks"]
    assert {hook["id"] for hook in documented} <= {hook["id"] for hook in hooks}
    (tmp_path / "protos").mkdir()
    (tmp_path / "protos" / "shop.proto").write_text(PROTO)
    (tmp_path / "mcpgen.toml").write_text('sources = ["protos"]\n')
    entries = {hook["id"]: shlex.split(hook["entry"]) for hook in hooks}
    assert all(not hook["pass_filenames"] for hook in hooks)
    assert re.search(hooks[0]["files"], "protos/shop.proto")
    assert run(entries["mcpgen-check"], tmp_path).returncode == 1  # no bundle yet
    built = run(entries["mcpgen-build"], tmp_path)
    assert built.returncode == 0 and built.stderr == ""
    assert run(entries["mcpgen-check"], tmp_path).returncode == 0
