"""Comments and the collector while the catalog is built: fast paths that change nothing."""

from __future__ import annotations

import gc

import pytest

from mcpgen.errors import Warnings
from mcpgen.sources import descriptors
from mcpgen.sources.descriptors import _COMMENT_MARKERS, clean_comment
from mcpgen.sources.inputs import load_catalog
from tests.conftest import PROTOS


@pytest.mark.parametrize("marker", _COMMENT_MARKERS)
def test_every_comment_marker_takes_the_line_by_line_path(monkeypatch, marker):
    seen = []
    monkeypatch.setattr(descriptors, "clean_comment_by_line", lambda t: seen.append(t) or "")
    clean_comment(f" one{marker}\n two")
    assert seen, marker
    seen.clear()
    assert clean_comment(" one\n two") == "one\ntwo" and not seen


def test_leading_and_trailing_comments_join_as_before():
    catalog = load_catalog([str(PROTOS)], [], Warnings())
    docs = [m.doc for m in catalog.messages.values()] + [
        f.doc for m in catalog.messages.values() for f in m.fields
    ]
    assert any(docs) and all(d == d.strip() for d in docs)


@pytest.mark.parametrize("enabled", [True, False])
def test_the_collector_is_left_as_it_was_found(enabled):
    was = gc.isenabled()
    try:
        if not enabled:
            gc.disable()
        load_catalog([str(PROTOS)], [], Warnings())
        assert gc.isenabled() is enabled
        with pytest.raises(RuntimeError), descriptors._collector_paused():
            assert not gc.isenabled()
            raise RuntimeError
        assert gc.isenabled() is enabled
    finally:
        if was:
            gc.enable()
