"""The documentation holds together: the README stays short, every relative link in README.md
and docs/*.md reaches a file (and, with `#anchor`, a heading of it, by GitHub's slug rules),
and every docs page is listed in docs/README.md."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

from tests.conftest import ROOT

README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
README_MAX_LINES = 200

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
CODE_SPAN = re.compile(r"(`+)(?!`).*?(?<!`)\1(?!`)")
INLINE_LINK = re.compile(
    r"""!?\[ (?:[^\[\]] | \[[^\[\]]*\])* \]   # [text], one level of nested brackets
        \( \s* (<[^>]*> | [^\s()]* (?:\([^\s()]*\)[^\s()]*)* )  # (target, balanced parentheses""",
    re.X,
)
REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)", re.M)
HTML_ANCHOR = re.compile(r"""<[a-zA-Z][^>]*\s(?:id|name)=["']([^"']+)["']""")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def prose_lines(text: str) -> list[str]:
    """The lines of a Markdown file outside fenced code blocks."""
    lines, fence = [], ""
    for line in text.splitlines():
        match = FENCE.match(line)
        if fence:
            if match and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence):
                fence = ""
            continue
        if match:
            fence = match.group(1)
            continue
        lines.append(line)
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: the text as rendered (link targets, code and emphasis
    markers gone), lower case, punctuation except `-` and `_` dropped, spaces → `-`."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # [text](url) → text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())  # also drops ` and * markers
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every `#anchor` a link into `path` may use: heading slugs (repeats numbered -1, -2, ...
    as GitHub numbers them) and explicit HTML ids."""
    text = path.read_text(encoding="utf-8")
    found: set[str] = set()
    seen: dict[str, int] = {}
    for line in prose_lines(text):
        match = HEADING.match(line)
        if match:
            base = slug(match.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
        found.update(HTML_ANCHOR.findall(line))
    return found


def links(path: Path) -> list[str]:
    """Link targets of a Markdown file: inline links and images, and reference definitions;
    none from code blocks or code spans."""
    prose = "\n".join(CODE_SPAN.sub("", line) for line in prose_lines(path.read_text("utf-8")))
    targets = [m.group(1) for m in INLINE_LINK.finditer(prose)]
    targets += [m.group(1) for m in REFERENCE.finditer(prose)]
    return [t[1:-1] if t.startswith("<") and t.endswith(">") else t for t in targets]


def is_relative(target: str) -> bool:
    return bool(target) and not SCHEME.match(target) and not target.startswith("//")


def resolve(source: Path, target: str) -> tuple[Path, str]:
    """The file a relative link points at, and its anchor ('' for none)."""
    file_part, _, anchor = target.partition("#")
    file_part, anchor = unquote(file_part.split("?", 1)[0]), unquote(anchor)
    if not file_part:
        return source, anchor
    if file_part.startswith("/"):  # GitHub resolves root-relative links from the repository
        return (ROOT / file_part.lstrip("/")).resolve(), anchor
    return (source.parent / file_part).resolve(), anchor


def problem(page: Path, target: str) -> str | None:
    """What is wrong with one link of `page`, or None; URLs (https:, mailto:) are not checked."""
    if not is_relative(target):
        return None
    path, anchor = resolve(page, target)
    if not path.is_relative_to(ROOT):
        return "points outside the repository"
    if not path.exists():
        return f"no file {path.relative_to(ROOT).as_posix()}"
    if anchor and path.is_file() and path.suffix == ".md" and anchor not in anchors(path):
        return f"no heading #{anchor} in {path.relative_to(ROOT).as_posix()}"
    return None


def test_readme_is_short():
    count = len(README.read_text(encoding="utf-8").splitlines())
    assert count <= README_MAX_LINES, f"README.md has {count} lines; move reference to docs/"


def test_docs_exist():
    names = {p.name for p in PAGES}
    assert "README.md" in names and len(names) > 1


@pytest.mark.parametrize("page", [README, *PAGES], ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(page: Path):
    broken = [f"{target}: {why}" for target in links(page) if (why := problem(page, target))]
    assert not broken, f"broken links in {page.relative_to(ROOT)}:\n  " + "\n  ".join(broken)


def test_every_docs_page_is_in_the_index():
    index = DOCS / "README.md"
    linked = {resolve(index, t)[0] for t in links(index) if is_relative(t)}
    missing = [p.name for p in PAGES if p != index and p.resolve() not in linked]
    assert not missing, f"docs/README.md does not link to: {', '.join(missing)}"


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        ("What `--profile` changes", "what---profile-changes"),
        ("Policy: one pipeline for every transport", "policy-one-pipeline-for-every-transport"),
        ("Authentication (HTTP)", "authentication-http"),
        ("The index: `manifest.json`", "the-index-manifestjson"),
        (
            "`TOOLS.md` and `docs/`: the catalog for review",
            "toolsmd-and-docs-the-catalog-for-review",
        ),
        ("snake_case and [a link](x.md)", "snake_case-and-a-link"),
        ("**Bold** words", "bold-words"),
    ],
)
def test_slugs_follow_github(heading: str, anchor: str):
    assert slug(heading) == anchor
