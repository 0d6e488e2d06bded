"""Reading the documentation as the tests run it (docs/development.md, "Examples that are run").

code_blocks(page)       the fenced blocks of a Markdown page, with the marker above each
parse_marker(text)      `<!-- doctest: ... -->` → Marker
links(page)             the relative links of a page (outside code)
anchors(page)           the `#anchors` GitHub gives its headings
Session                 runs a page's blocks in order, as a reader at a shell would
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SANDBOX_ADDRESS = "127.0.0.1:8765"
# Languages whose blocks must carry a marker: what a reader pastes into a shell or Python.
RUN_LANGUAGES = frozenset({"sh", "bash", "shell", "console", "python", "py"})
PAGES = sorted(
    [ROOT / "README.md", ROOT / "RELIABILITY.md", *(ROOT / "docs").glob("*.md")],
    key=lambda p: str(p),
)
LINKED_PAGES = [*PAGES, ROOT / "examples" / "ci" / "README.md"]

_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
_MARKER = re.compile(r"^\s*<!--\s*doctest:\s*(?P<body>.*?)\s*-->\s*$")


@dataclass(frozen=True)
class Marker:
    """How the tests treat a block: `run` it (its exit status must be `exit`), `skip` it
    (`reason` says why), it is run `by` another test file, or it is a file to `write` or an
    `edit` (a diff) to make before the next block runs. `setup` (the first marker of a page
    only) prepares the page's directory."""

    kind: str  # "run" | "skip" | "by" | "write" | "edit"
    exit: int = 0
    reason: str = ""
    path: str = ""
    setup: str = ""


class MarkerError(ValueError):
    pass


SETUPS = ("empty", "examples")


def parse_marker(body: str) -> Marker:
    """`exit=N [setup=NAME]`, `skip: REASON`, `by=tests/FILE.py`, `write=PATH`, `edit=PATH`."""
    if body.startswith("skip"):
        reason = body.removeprefix("skip").lstrip(":—- ").strip()
        if not reason:
            raise MarkerError("`skip` needs a reason: `<!-- doctest: skip: why -->`")
        return Marker("skip", reason=reason)
    options: dict[str, str] = {}
    for word in body.split():
        key, equals, value = word.partition("=")
        if not equals or not value:
            raise MarkerError(f"`{word}`: expected key=value")
        options[key] = value
    setup = options.pop("setup", "")
    if setup and setup not in SETUPS:
        raise MarkerError(f"setup={setup}: expected one of {', '.join(SETUPS)}")
    kinds = [k for k in ("exit", "by", "write", "edit") if k in options]
    if len(kinds) != 1 or options.keys() - {"exit", "by", "write", "edit"}:
        raise MarkerError(f"`{body}`: give exactly one of exit=, by=, write=, edit=, or skip")
    (kind,) = kinds
    if kind == "exit":
        if not options["exit"].isdigit():
            raise MarkerError(f"exit={options['exit']}: expected a number")
        return Marker("run", exit=int(options["exit"]), setup=setup)
    return Marker(kind, path=options[kind], setup=setup)


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # of the opening fence, 1-based
    language: str
    text: str
    marker: Marker | None
    marker_error: str = ""

    def __str__(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


_QUOTE = re.compile(r"^ {0,3}(?:> ?)+")


def _lines(page: Path) -> list[str]:
    """The page's lines, blockquote markers (`> `) taken off: a block in a quote is a block."""
    return [_QUOTE.sub("", line) for line in page.read_text(encoding="utf-8").splitlines()]


def code_blocks(page: Path) -> list[Block]:
    lines = _lines(page)
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if match is None:
            i += 1
            continue
        fence, info = match["fence"], match["info"].strip()
        start = i
        i += 1
        body: list[str] = []
        while i < len(lines) and not (
            lines[i].strip().startswith(fence[0] * len(fence))
            and not lines[i].strip().strip(fence[0])
        ):
            body.append(lines[i])
            i += 1
        i += 1
        previous = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        found = _MARKER.match(previous)
        marker, error = None, ""
        if found is not None:
            try:
                marker = parse_marker(found["body"])
            except MarkerError as exc:
                error = str(exc)
        language = info.split()[0] if info else ""
        blocks.append(Block(page, start + 1, language, "\n".join(body) + "\n", marker, error))
    return blocks


def _outside_code(text: str, *, inline: bool = True) -> str:
    """`text` with fenced blocks (and, with `inline`, inline code) blanked: links in them are
    not links, and `#` lines in them are not headings."""
    kept: list[str] = []
    fence = ""
    for line in text.splitlines():
        match = _FENCE.match(line)
        if fence:
            if line.strip().startswith(fence) and not line.strip().strip(fence[0]):
                fence = ""
            kept.append("")
            continue
        if match is not None:
            fence = match["fence"]
            kept.append("")
            continue
        kept.append(re.sub(r"(`+)(?:(?!\1).)+\1", "", line) if inline else line)
    return "\n".join(kept)


_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE = re.compile(r"^\s*\[[^\]]+\]:\s*(\S+)", re.M)
_HTML_LINK = re.compile(r"""<a\s[^>]*href=["']([^"']+)["']""")


def links(page: Path) -> list[str]:
    text = _outside_code("\n".join(_lines(page)))
    found = _LINK.findall(text) + _REFERENCE.findall(text) + _HTML_LINK.findall(text)
    return [t for t in found if not re.match(r"^[a-z][a-z0-9+.-]*:", t, re.I)]


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"<[^>]+>", "", heading)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link's text
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    found: set[str] = set()
    for line in _outside_code("\n".join(_lines(page)), inline=False).splitlines():
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match is None:
            continue
        slug = _slug(match[1])
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    found |= set(re.findall(r"""<a\s+(?:name|id)=["']([^"']+)["']""", page.read_text()))
    return found


def broken_links(page: Path) -> list[str]:
    """Every relative link of `page` whose file, or whose #anchor in a Markdown file, is not
    there."""
    broken: list[str] = []
    for target in links(page):
        path_part, _, anchor = target.partition("#")
        resolved = (page.parent / path_part).resolve() if path_part else page
        if not resolved.exists():
            broken.append(f"{page.name} → {target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{page.name} → {target}: no heading #{anchor} there")
    return broken


# --- running a page's blocks ------------------------------------------------------------------


def apply_edit(path: Path, diff: str) -> None:
    """Apply a one-hunk diff block (lines starting with ' ', '-', '+'; `@@` lines ignored):
    its context and `-` lines must occur exactly once in the file."""
    old, new = [], []
    for line in diff.splitlines():
        if line.startswith("@@") or line.startswith(("---", "+++")):
            continue
        mark, rest = (line[:1], line[1:]) if line else (" ", "")
        if mark in (" ", "-"):
            old.append(rest)
        if mark in (" ", "+"):
            new.append(rest)
    text = path.read_text()
    before, after = "\n".join(old) + "\n", "\n".join(new) + "\n"
    count = text.count(before)
    if count != 1:
        raise AssertionError(f"the edit's old lines occur {count} times in {path}:\n{before}")
    path.write_text(text.replace(before, after))


@dataclass
class Session:
    """A reader's shell: each block runs in a fresh `bash -eo pipefail` that starts where the
    last one ended (its directory and exported variables). The sandbox runs on a free port:
    `127.0.0.1:8765` in a block, or in a file under the session's directory, means it."""

    home: Path
    address: str  # host:port of the sandbox
    env: dict[str, str] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)  # each block and what it printed
    outputs: list[str] = field(default_factory=list)  # what the blocks printed, alone

    def __post_init__(self) -> None:
        self.work = self.home / "work"
        self.work.mkdir(parents=True, exist_ok=True)
        self.state = self.home / "state.sh"
        self.cwd = self.home / "cwd"
        self.cwd.write_text(str(self.work))
        self.state.write_text("")

    @property
    def directory(self) -> Path:
        return Path(self.cwd.read_text().strip())

    def _point_files_at_the_sandbox(self) -> None:
        for path in self.work.rglob("*"):
            if path.is_file() and path.suffix in (".yaml", ".yml") and path.stat().st_size < 2**20:
                text = path.read_text(errors="replace")
                if SANDBOX_ADDRESS in text:
                    path.write_text(text.replace(SANDBOX_ADDRESS, self.address))

    def run(self, block: Block) -> subprocess.CompletedProcess[str]:
        assert block.marker is not None and block.marker.kind == "run"
        body = block.text.replace(SANDBOX_ADDRESS, self.address)
        if block.language in ("python", "py"):
            script = self.home / f"block-{block.line}.py"
            script.write_text(body)
            body = f'python "{script}"\n'
        wrapper = (
            f'cd "$(cat "{self.cwd}")"\n'
            f'source "{self.state}"\n'
            f'trap \'code=$?; export -p > "{self.state}"; pwd > "{self.cwd}"; exit $code\' EXIT\n'
            "set -eo pipefail\n" + body
        )
        result = subprocess.run(
            ["bash", "--noprofile", "--norc", "-c", wrapper],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        self.log.append(f"$ [{block}]\n{block.text}{result.stdout}{result.stderr}")
        self.outputs.append(result.stdout + result.stderr)
        self._point_files_at_the_sandbox()
        return result

    def write(self, block: Block) -> None:
        assert block.marker is not None
        path = self.directory / block.marker.path
        if block.marker.kind == "write":
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(block.text.replace(SANDBOX_ADDRESS, self.address))
        else:
            apply_edit(path, block.text)
        self.log.append(f"[{block}] {block.marker.kind} {block.marker.path}")


def reader_env(home: Path) -> dict[str, str]:
    """A new user's shell: the reconciler on PATH, nothing of this test run's own secrets or
    settings, a HOME of its own."""
    dropped = ("NEWSTORE_", "SANDBOX_", "ACME_", "LOCAL_", "GITHUB_", "CI_", "RECONCILER_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped) and k != "CI"}
    env |= {
        "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        "HOME": str(home),
        "NO_COLOR": "1",
        "GIT_AUTHOR_NAME": "Newcomer",
        "GIT_AUTHOR_EMAIL": "newcomer@example.invalid",
        "GIT_COMMITTER_NAME": "Newcomer",
        "GIT_COMMITTER_EMAIL": "newcomer@example.invalid",
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    if "RECONCILER_LOCK_DIR" in os.environ:  # the test's own lock directory (conftest)
        env["RECONCILER_LOCK_DIR"] = os.environ["RECONCILER_LOCK_DIR"]
    return env


def runnable(blocks: list[Block]) -> Iterator[Block]:
    return (b for b in blocks if b.marker is not None and b.marker.kind in ("run", "write", "edit"))
