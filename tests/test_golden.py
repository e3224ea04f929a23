"""Golden tools of the fixtures: any change to generated tools shows up as a reviewed diff.

The golden file is the bundle's tools and routes as `mcpgen tools OUT --json` gives them (the
layout-independent view), pretty-printed. Regenerate after an intended change with
`MCPGEN_UPDATE_GOLDEN=1 pytest tests/test_golden.py` and review the diff of tests/golden/ like
code.
"""

from __future__ import annotations

import os

import pytest

from mcpgen.build import build
from mcpgen.config import Config
from mcpgen.contract import to_json
from tests.conftest import ROOT, read_tools

GOLDEN = ROOT / "tests" / "golden"


@pytest.mark.parametrize("profile", ["portable", "full"])
def test_fixture_tools_match_golden(profile, monkeypatch, tmp_path):
    monkeypatch.chdir(ROOT)
    out = tmp_path / "bundle"
    build(Config(sources=["fixtures/protos"], schema_profile=profile, out=str(out), models=False))
    produced = to_json(read_tools(out))
    golden = GOLDEN / f"fixtures.{profile}.tools.json"
    if os.environ.get("MCPGEN_UPDATE_GOLDEN"):
        golden.write_bytes(produced)
    assert golden.exists(), "run with MCPGEN_UPDATE_GOLDEN=1 once to create the golden file"
    assert produced == golden.read_bytes(), (
        f"{golden.name} differs from the build; if the change is intended, rerun with "
        "MCPGEN_UPDATE_GOLDEN=1 and review the diff"
    )
