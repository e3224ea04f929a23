"""Golden manifests of the fixtures: any change to generated tools shows up as a reviewed diff.

Regenerate after an intended change with `MCPGEN_UPDATE_GOLDEN=1 pytest tests/test_golden.py`
and review the diff of tests/golden/ like code.
"""

from __future__ import annotations

import os

import pytest

from mcpgen.build import compile_bundle
from mcpgen.config import Config
from tests.conftest import ROOT

GOLDEN = ROOT / "tests" / "golden"


@pytest.mark.parametrize("profile", ["portable", "full"])
def test_fixture_manifest_matches_golden(profile, monkeypatch):
    monkeypatch.chdir(ROOT)
    config = Config(sources=["fixtures/protos"], schema_profile=profile)
    produced = compile_bundle(config).content("manifest.json")
    golden = GOLDEN / f"fixtures.{profile}.manifest.json"
    if os.environ.get("MCPGEN_UPDATE_GOLDEN"):
        golden.write_bytes(produced)
    assert golden.exists(), "run with MCPGEN_UPDATE_GOLDEN=1 once to create the golden file"
    assert produced == golden.read_bytes(), (
        f"{golden.name} differs from the build; if the change is intended, rerun with "
        "MCPGEN_UPDATE_GOLDEN=1 and review the diff"
    )
