"""README.md and docs/: every relative link resolves, and the text stays a reader's text.

Pure Python, no network. For README.md and every docs/**/*.md:

- every relative Markdown link ``[text](path)`` or ``[text](path#anchor)`` (images
  included) names an existing file, and its anchor a heading of the target, slugged as
  GitHub slugs headings; absolute http(s) and mailto links are skipped;
- every docs page is linked from README.md;
- README.md has at most 300 lines;
- no commit-like hex token, no "issue 8" / "issue #8" and no dated diary entry
  ("on 2026-11-24 ...") appears in the text; link targets (result file names) are exempt.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
README_MAX_LINES = 300


def doc_files() -> list[Path]:
    return [README, *sorted(DOCS.rglob("*.md"))]


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


FENCE = re.compile(r"^ {0,3}(```|~~~)")
INLINE_CODE = re.compile(r"(`+)(.+?)\1")
# [text](target) or [text](target "title"); images (![alt](target)) match too.
LINK = re.compile(r"\[(?P<text>[^\]]*)\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(?P<text>.*?)\s*#*\s*$")
COMMIT_LIKE = re.compile(r"\b[0-9a-f]{7,40}\b")
# A ReplicaSet's pod name, as kubectl prints it: <deployment>-<pod-template-hash>-<5 chars>.
POD_NAME_HASH = re.compile(r"(?<=-)[0-9a-f]{7,10}(?=-[a-z0-9]{5}\b)")
ISSUE_REF = re.compile(r"\bissues?\s*#?\s*\d+\b(?![.,]\d)", re.IGNORECASE)
DATED = re.compile(r"\b20\d\d-[01]\d-[0-3]\d\b")


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks."""
    out: list[tuple[int, str]] = []
    in_fence = False
    for number, line in enumerate(text.splitlines(), start=1):
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        if not in_fence:
            out.append((number, line))
    return out


def links(path: Path) -> list[tuple[int, str]]:
    """(line number, target) of every Markdown link outside code."""
    found: list[tuple[int, str]] = []
    for number, line in prose_lines(path.read_text(encoding="utf-8")):
        for match in LINK.finditer(INLINE_CODE.sub("", line)):
            found.append((number, match.group("target")))
    return found


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: its text lowercased, punctuation other than
    '-' and '_' dropped, each space a '-'."""
    text = INLINE_CODE.sub(lambda m: m.group(2), heading)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link's text only
    text = text.lower()
    text = "".join(ch for ch in text if ch.isalnum() or ch in " -_")
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    result: set[str] = set()
    for _, line in prose_lines(path.read_text(encoding="utf-8")):
        match = HEADING.match(line)
        if not match:
            continue
        slug = github_slug(match.group("text"))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        result.add(slug if count == 0 else f"{slug}-{count}")
    return result


def is_external(target: str) -> bool:
    return re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE) is not None


def broken_links(path: Path) -> list[str]:
    problems: list[str] = []
    for number, target in links(path):
        if is_external(target):
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        where = f"{rel(path)}:{number}: {target}"
        if file_part.startswith("/"):
            problems.append(f"{where}: absolute path; use a relative one")
            continue
        if not dest.exists():
            problems.append(f"{where}: no such file")
            continue
        if anchor:
            if dest.suffix != ".md" or not dest.is_file():
                problems.append(f"{where}: anchor into a file that is not Markdown")
            elif anchor not in anchors(dest):
                problems.append(f"{where}: no heading with anchor #{anchor} in {rel(dest)}")
    return problems


def text_without_link_targets(path: Path) -> list[tuple[int, str]]:
    """Every line (code blocks included), with link targets blanked: result files may
    carry a commit or a date in their names."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [
        (number, LINK.sub(lambda m: f"[{m.group('text')}]()", line))
        for number, line in enumerate(lines, start=1)
    ]


def commit_like_tokens(line: str) -> list[str]:
    line = POD_NAME_HASH.sub("", line)
    return [
        token
        for token in COMMIT_LIKE.findall(line)
        if re.search(r"[0-9]", token) and re.search(r"[a-f]", token)
    ]


# The checker itself.


def test_github_slug() -> None:
    assert github_slug("`lite` fidelity and what it does not reproduce") == (
        "lite-fidelity-and-what-it-does-not-reproduce"
    )
    assert github_slug("Node identity, and what the kubelet does when things fail") == (
        "node-identity-and-what-the-kubelet-does-when-things-fail"
    )
    assert github_slug("The kubelet's own API: `kubectl logs`, the node proxy") == (
        "the-kubelets-own-api-kubectl-logs-the-node-proxy"
    )
    assert github_slug("Transport and encoding: HTTP/2 and protobuf (the defaults)") == (
        "transport-and-encoding-http2-and-protobuf-the-defaults"
    )
    assert github_slug("snake_case and dash-ed") == "snake_case-and-dash-ed"


def test_link_extraction_skips_code(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n[a](b.md) and `[c](d.md)` and ![e](f.svg#x)\n```\n[g](h.md)\n```\n",
        encoding="utf-8",
    )
    assert links(page) == [(2, "b.md"), (2, "f.svg#x")]
    assert anchors(page) == {"title"}


def test_commit_like_tokens() -> None:
    assert commit_like_tokens("fixed in `af11908` and 1828b8c") == ["af11908", "1828b8c"]
    assert commit_like_tokens("60 000 pods, 20261123, deadbeef, cafe") == []
    assert commit_like_tokens("demo-684b6cfb7d-25bc9   1/1   Running") == []


def test_issue_refs() -> None:
    assert ISSUE_REF.search("the tenth issue 8 asks for")
    assert ISSUE_REF.search("see Issue #11")
    assert not ISSUE_REF.search("a known issue with 429s")
    assert not ISSUE_REF.search("the kubelets issue 5.4 GETs per pod")


# The documents.


@pytest.mark.parametrize("path", doc_files(), ids=rel)
def test_relative_links_resolve(path: Path) -> None:
    assert broken_links(path) == []


def test_every_docs_page_is_linked_from_the_readme() -> None:
    linked = {
        (README.parent / target.partition("#")[0]).resolve()
        for _, target in links(README)
        if not is_external(target)
    }
    unlinked = [rel(page) for page in sorted(DOCS.rglob("*.md")) if page.resolve() not in linked]
    assert unlinked == []


def test_readme_is_short() -> None:
    lines = len(README.read_text(encoding="utf-8").splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines"


@pytest.mark.parametrize("path", doc_files(), ids=rel)
def test_no_commit_hashes(path: Path) -> None:
    found = [
        f"{rel(path)}:{number}: {token}"
        for number, line in text_without_link_targets(path)
        for token in commit_like_tokens(line)
    ]
    assert found == []


@pytest.mark.parametrize("path", doc_files(), ids=rel)
def test_no_issue_numbers(path: Path) -> None:
    found = [
        f"{rel(path)}:{number}: {match.group(0)}"
        for number, line in text_without_link_targets(path)
        for match in ISSUE_REF.finditer(line)
    ]
    assert found == []


@pytest.mark.parametrize("path", doc_files(), ids=rel)
def test_no_dated_diary_entries(path: Path) -> None:
    found = [
        f"{rel(path)}:{number}: {match.group(0)}"
        for number, line in text_without_link_targets(path)
        for match in DATED.finditer(line)
    ]
    assert found == []
