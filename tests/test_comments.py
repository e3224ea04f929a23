"""Comment cleaning: the fast path agrees with the line-by-line one, and markers are removed."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mcpgen.sources.descriptors import clean_comment, clean_comment_by_line

_PIECES = st.sampled_from(
    [" ", "\n", "\r\n", "\u2028", "text", "  indented", "(--", "--)", "buf:lint:ignore X",
     "@exclude", "{{ x }}", "\"'", "\t"]
)  # fmt: skip


@given(st.lists(st.one_of(_PIECES, st.text(max_size=8)), max_size=12).map("".join))
def test_fast_path_agrees_with_line_by_line(text):
    assert clean_comment(text) == clean_comment_by_line(text)


def test_markers_and_internal_blocks_are_removed():
    text = " Gets a book.\n buf:lint:ignore RPC_NAME\n (-- api-linter: ok --)\n Second line.\n"
    assert clean_comment(text) == "Gets a book.\n\nSecond line."


def test_leading_space_of_each_line_is_dropped_once():
    assert clean_comment("  two\n one\nnone\n") == "two\none\nnone"
