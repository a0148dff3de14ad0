"""The docs stand alone and agree with each other and with the Makefile.

- Every file a doc names exists in the repository (no notes kept elsewhere, no `../` paths).
- No doc cites an issue number or a commit: a reader of the repository cannot look them up.
- Every rows-per-second figure a doc quotes is one `docs/benchmarks.md` measured.
- The README and `make help` list the same commands.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
BENCHMARKS = ROOT / "docs" / "benchmarks.md"

# A path-like token: a name with a known extension, or a folder ending in `/`.
# Not a piece of a URL (`host:5432/db`), nor the start of a templated or longer name
# (`bench-<RECORDS>.json`, `svc/webserver`, `*.tpl`), nor a quoted value (`"n/a"`).
_PATH = re.compile(
    r"(?<![\w/.<$~:\"-])((?:\.\./|\./)?[\w.-]+(?:/[\w.-]+)*"
    r"(?:\.(?:py|md|ya?ml|toml|txt|ini|json|lock|cfg|sh|mako)\b|/(?![\w<*-])))"
)
_LINK = re.compile(r"\]\(([^)#\s]+)")
_ISSUE = re.compile(r"\b(?:issues?|PR|pull request)\s*#?\d+\b|\bissues?/\d+|(?<![\w&])#\d{1,5}\b", re.IGNORECASE)
_COMMIT = re.compile(r"\bcommit\s+(?:\"|'|[0-9a-f]{7,40}\b)|\bcommits?/[0-9a-f]{7,40}", re.IGNORECASE)
_NUMBER = r"\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?"
_RATE = re.compile(
    rf"({_NUMBER})(?:\s*(?:to|-|–)\s*({_NUMBER}))?\s*(?:rows/s\b|rows (?:a|per) second|rows a sec\b)",
    re.IGNORECASE,
)


def tracked_files() -> list[str]:
    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [line for line in listed.splitlines() if line]


def prose(path: Path) -> str:
    """The doc without its URLs (other sites' paths are not the repository's)."""
    return re.sub(r"https?://\S+", "", path.read_text())


def missing_files(doc: Path, files: list[str]) -> list[str]:
    folders = {str(Path(f).parent) + "/" for f in files} | {
        "/".join(f.split("/")[: i + 1]) + "/" for f in files for i in range(f.count("/"))
    }
    text = prose(doc)
    code = " ".join(re.findall(r"`([^`\n]+)`", text))
    # Files anywhere in the text; folders (a trailing `/`) only inside code spans, where a
    # doc names them (elsewhere `host:5432/db` or `3/4` would look like one).
    names = {name for name in _PATH.findall(text) if not name.endswith("/")} | set(_PATH.findall(code))
    names |= {link for link in _LINK.findall(text) if not link.startswith(("http", "mailto:"))}
    missing = []
    for name in sorted(names):
        if name.startswith("../") or "/../" in name:
            missing.append(name)  # outside the repository
            continue
        name = name.removeprefix("./")
        if name.startswith((".local/", ".venv/")) or "<" in name:
            continue  # made at run time
        relative = (doc.parent / name).resolve().relative_to(ROOT).as_posix() if (doc.parent / name).exists() else None
        if relative is not None:
            continue
        if name.endswith("/"):
            if name in folders or any(folder.endswith("/" + name) for folder in folders):
                continue
        elif name in files or any(f.endswith("/" + name) for f in files):
            continue
        if "." not in name.rsplit("/", 1)[-1] and not name.endswith("/"):
            continue
        missing.append(name)
    return missing


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_file_a_doc_names_is_in_the_repository(doc: Path) -> None:
    assert missing_files(doc, tracked_files()) == []


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_doc_cites_an_issue_or_a_commit(doc: Path) -> None:
    text = prose(doc)
    assert _ISSUE.findall(text) == []
    assert _COMMIT.findall(text) == []


@pytest.mark.parametrize("doc", [d for d in DOCS if d != BENCHMARKS], ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_rows_per_second_figure_is_one_the_benchmarks_measured(doc: Path) -> None:
    measured = set(re.findall(_NUMBER, BENCHMARKS.read_text()))
    quoted = {number for match in _RATE.findall(prose(doc)) for number in match if number}
    assert quoted - measured == set()


def test_the_checks_catch_what_they_are_for(tmp_path: Path) -> None:
    """The patterns above are not vacuous: each finds its mistake in a doc made for it."""
    doc = tmp_path / "bad.md"
    doc.write_text(
        "See SPEC.md and `../shared/seeds/x.txt`, [the API](docs/nope.md), `cinnox/_client.py`.\n"
        "As issue 5 asked (commit 'Parse: fast'), it merges 150,000 rows a second.\n"
    )
    assert missing_files(doc, tracked_files()) == ["../shared/seeds/x.txt", "SPEC.md", "docs/nope.md"]
    assert _ISSUE.findall(prose(doc)) == ["issue 5"]
    assert _COMMIT.findall(prose(doc))
    assert [n for m in _RATE.findall(prose(doc)) for n in m if n] == ["150,000"]
    assert "150,000" not in set(re.findall(_NUMBER, BENCHMARKS.read_text()))


def test_readme_and_make_help_list_the_same_commands() -> None:
    done = subprocess.run(["make", "--no-print-directory", "help"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    in_help = set(re.findall(r"^  make ([a-z-]+)", done.stdout, flags=re.MULTILINE))
    readme = (ROOT / "README.md").read_text()
    in_readme = set(re.findall(r"`make ([a-z-]+)", readme))
    assert in_readme - in_help == set()
    # Every command a newcomer types is in the README; `help` and `format` are the Makefile's own.
    assert in_help - in_readme <= {"help", "format", "install", "clean"}


def test_readme_quotes_the_times_make_help_gives() -> None:
    done = subprocess.run(["make", "--no-print-directory", "help"], cwd=ROOT, capture_output=True, text=True)
    times = re.findall(r"\b\d+(?:\.\d+)?(?: to \d+)? (?:s|minutes)\b", done.stdout)
    assert times  # `make help` gives the times of run, test and bench
    readme = (ROOT / "README.md").read_text()
    assert [t for t in times if t not in readme] == []
