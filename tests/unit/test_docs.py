"""The docs cannot rot: every relative link in README.md and docs/*.md resolves (a #anchor to a
heading of the page it names), and every `harness ...` command they show parses with the current
command line. Fast, no Docker."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from harness import cli
from harness.errors import UsageError

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
IDS = [str(p.relative_to(ROOT)) for p in PAGES]

FENCE = re.compile(r"^ {0,3}(```|~~~)[^\n]*\n.*?^ {0,3}\1[ \t]*$", re.M | re.S)
SPAN = re.compile(r"(`+)(.+?)(?<!`)\1(?!`)", re.S)
MD_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^()\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HTML_LINK = re.compile(r"""\b(?:src|href)\s*=\s*["']([^"']+)["']""")
HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*$", re.M)
SKIP = re.compile(r"^(?:https?://|mailto:)", re.I)
SEPARATORS = re.compile(r"&&|\|\||;|\|")
CUT = re.compile(r"\s*(?:2>|>|(?:^|\s)#).*$", re.S)
PROSE = ("...", "…", "[", "<", "{")  # usage syntax, not a command to run
PLACEHOLDER = re.compile(r"\b[A-Z][A-Z_]{2,}\b")  # SPEC, RUN_DIR, NAME, PERIOD,PHASE ...


def blank(match: re.Match[str]) -> str:
    """Text of the same length and lines, with nothing in it: positions (line numbers) stay."""
    return re.sub(r"[^\n]", " ", match.group(0))


def prose(text: str) -> str:
    """The page without its code blocks and code spans, which hold no links or headings."""
    return SPAN.sub(blank, FENCE.sub(blank, text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase; letters (any script), digits, spaces, - and _
    kept; spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading).lower()
    return "".join(c for c in text if c.isalnum() or c in " -_").replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The page's heading anchors; a repeated one gets -1, -2 ... as on GitHub."""
    counts: dict[str, int] = {}
    out = set()
    for heading in HEADING.findall(SPAN.sub(lambda m: m.group(2), FENCE.sub(blank, page.read_text()))):
        s = slug(heading)
        n = counts[s] = counts.get(s, -1) + 1
        out.add(f"{s}-{n}" if n else s)
    return out


def line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


@pytest.mark.parametrize("page", PAGES, ids=IDS)
def test_relative_links_resolve(page: Path) -> None:
    text = prose(page.read_text())
    bad = []
    for m in [*MD_LINK.finditer(text), *HTML_LINK.finditer(text)]:
        target = m.group(1)
        if SKIP.match(target):
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        where = f"{page.relative_to(ROOT)}:{line_of(text, m.start())}: {target}"
        if not dest.exists():
            bad.append(f"{where}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            bad.append(f"{where}: {dest.name} has no heading with the anchor #{anchor}")
    assert not bad, "\n".join(bad)


def commands(page: Path) -> list[tuple[int, str]]:
    """(line, command) for each `harness ...` command in the page's code blocks and code spans."""
    text = page.read_text()
    found: list[tuple[int, str]] = []  # (line, a code block's line or a code span)
    for block in FENCE.finditer(text):
        first = line_of(text, block.start())
        found += [(first + i, line) for i, line in enumerate(block.group(0).split("\n")[1:-1], 1)]
    for span in SPAN.finditer(FENCE.sub(blank, text)):
        found.append((line_of(text, span.start()), span.group(2).replace("\\|", "|").replace("\n", " ")))
    out = []
    for line, chunk in found:
        for part in SEPARATORS.split(chunk):
            part = part.strip().removeprefix("$ ").strip()
            if part.startswith("harness "):
                out.append((line, CUT.sub("", part).strip()))
    return out


@pytest.mark.parametrize("page", PAGES, ids=IDS)
def test_harness_commands_parse(page: Path) -> None:
    bad = []
    for line, command in commands(page):
        if any(p in command for p in PROSE):
            continue
        try:
            argv = shlex.split(command)[1:]
            if all(w.isidentifier() or w == "kernel-lab" for w in argv):  # `harness run` named in prose
                argv.append("--help")  # checks that the subcommand exists, not its arguments
            with contextlib.redirect_stdout(io.StringIO()):
                cli.parser().parse_args(argv)
        except SystemExit:  # --help, --version
            pass
        except (UsageError, ValueError) as exc:
            if not PLACEHOLDER.search(command):
                bad.append(f"{page.relative_to(ROOT)}:{line}: {command}: {exc}")
    assert not bad, "\n".join(bad)


def test_readme_shows_commands() -> None:
    assert len(commands(ROOT / "README.md")) >= 5
