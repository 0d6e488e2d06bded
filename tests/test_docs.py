"""Documentation that cannot rot (issue 23.5): every shell and Python example in the README and
docs/ carries a marker saying how the tests treat it, the ones that run are run against the
sandbox (each page's in order, in a shell of their own), and every relative link and #anchor
in the README, docs/, RELIABILITY.md and examples/ci/README.md resolves. The marker scheme is
in docs/development.md; the README's "Your first tenant" is followed end to end below."""

from __future__ import annotations

import itertools
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from docs_harness import (
    LINKED_PAGES,
    PAGES,
    ROOT,
    RUN_LANGUAGES,
    Block,
    MarkerError,
    Session,
    broken_links,
    code_blocks,
    links,
    parse_marker,
    reader_env,
    runnable,
)
from example_helpers import EXAMPLE_KEYS, examples_on, seed_as_written

from reconciler.cli import cli
from reconciler.sandbox import SandboxApp

README = ROOT / "README.md"


def _all_blocks() -> list[Block]:
    return [block for page in PAGES for block in code_blocks(page)]


def test_every_shell_and_python_example_says_how_it_is_tested() -> None:
    unmarked = [str(b) for b in _all_blocks() if b.language in RUN_LANGUAGES and b.marker is None]
    assert not unmarked, f"add a <!-- doctest: ... --> marker above: {unmarked}"
    broken = [f"{b}: {b.marker_error}" for b in _all_blocks() if b.marker_error]
    assert not broken, broken
    for block in _all_blocks():
        marker = block.marker
        if marker is None:
            continue
        if marker.kind == "by":
            test = ROOT / marker.path
            assert test.is_file(), f"{block}: {marker.path} does not exist"
            page = block.page.name
            assert page in test.read_text(), f"{block}: {marker.path} never reads {page}"
        if marker.kind == "edit":
            assert block.language == "diff", f"{block}: an edit is a ```diff block"
        if marker.setup:
            first = next(b for b in code_blocks(block.page) if b.marker is not None)
            assert first == block, f"{block}: setup= belongs on a page's first marker"


def test_the_marker_grammar() -> None:
    assert parse_marker("exit=2").exit == 2
    assert parse_marker("exit=0 setup=examples").setup == "examples"
    assert parse_marker("skip: runs until Ctrl-C").reason == "runs until Ctrl-C"
    assert parse_marker("by=tests/test_api.py").path == "tests/test_api.py"
    for bad in ("skip", "exit=two", "exit=0 by=x", "run", "setup=examples", "exit=0 setup=x"):
        with pytest.raises(MarkerError):
            parse_marker(bad)


def test_every_relative_link_and_anchor_resolves() -> None:
    broken = [problem for page in LINKED_PAGES for problem in broken_links(page)]
    assert not broken, "\n".join(broken)
    assert all(links(page) for page in PAGES if page != ROOT / "RELIABILITY.md"), (
        "every page links somewhere (at least back to the README)"
    )


def test_the_link_checker_sees_what_is_broken(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    twice = "## A `code` heading, twice\n"
    (tmp_path / "other.md").write_text("# Other page\n" + twice + twice)
    page.write_text(
        "[ok](other.md#other-page) [anchor](other.md#a-code-heading-twice-1) "
        "[web](https://example.com/x) `[not](a-link.md)`\n```\n[not](either.md)\n```\n"
        "[missing](nowhere.md) [gone](other.md#no-such-heading) [here](#other-page)\n"
    )
    assert broken_links(page) == [
        "page.md → nowhere.md: no such file",
        "page.md → other.md#no-such-heading: no heading #no-such-heading there",
        "page.md → #other-page: no heading #other-page there",
    ]


def _session(tmp_path: Path, base: str) -> Session:
    home = tmp_path / "reader"
    home.mkdir()
    return Session(home, base.removeprefix("http://"), reader_env(home))


def _run_page(page: Path, session: Session, sandbox: SandboxApp, base: str) -> None:
    blocks = list(runnable(code_blocks(page)))
    setup = next((b.marker.setup for b in blocks if b.marker and b.marker.setup), "empty")
    if setup == "examples":
        directory = examples_on(base, session.work / "environments")
        for path in directory.glob("[!_]*.yaml"):
            seed_as_written(sandbox, path, EXAMPLE_KEYS)
        session.env |= EXAMPLE_KEYS
    for block in blocks:
        assert block.marker is not None
        if block.marker.kind in ("write", "edit"):
            session.write(block)
            continue
        result = session.run(block)
        assert result.returncode == block.marker.exit, (
            f"{block} exited {result.returncode}, the marker says {block.marker.exit}:\n"
            + "\n".join(session.log)
        )
        assert "Traceback" not in result.stderr, "\n".join(session.log)


RUN_PAGES = [
    page
    for page in PAGES
    if page != README and any(b.marker and b.marker.kind == "run" for b in code_blocks(page))
]


@pytest.mark.e2e
@pytest.mark.parametrize("page", RUN_PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_examples_of_each_page_run_against_the_sandbox(
    page: Path, tmp_path: Path, live_sandbox: tuple[SandboxApp, str]
) -> None:
    sandbox, base = live_sandbox
    _run_page(page, _session(tmp_path, base), sandbox, base)


@pytest.mark.e2e
def test_your_first_tenant_followed_literally_reaches_a_converged_staging(
    tmp_path: Path, live_sandbox: tuple[SandboxApp, str]
) -> None:
    """The README's tour, every block in order, as a newcomer runs it after a clone (the
    reconciler installed) against the sandbox: a configuration repository, its staging tenant
    adopted, changed, applied and in sync, and workflows that name no secret."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    sandbox, base = live_sandbox
    session = _session(tmp_path, base)
    _run_page(README, session, sandbox, base)

    repo = next(p.parent for p in session.work.rglob("_base.yaml")).parent
    assert (repo / ".github" / "workflows" / "plan.yml").is_file()
    # What the README says init wrote is there (it once promised a requirements.txt).
    said = README.read_text().split("`init` writes ", 1)[1].split("\n\n", 1)[0]
    named = re.findall(r"`([\w./-]+\.(?:yaml|yml|json|txt))`", said)
    assert "environments/_base.yaml" in named and "rehearsal/staging.yaml" in named
    assert [name for name in named if not (repo / name).is_file()] == []
    state = sandbox.state("acme-staging")
    assert state["external_oms"] == {"enabled": True}, "the tour's first change was applied"
    assert sandbox.history("acme-staging"), "written through the reconciler"
    names = ("NEWSTORE_CLIENT_ID", "NEWSTORE_CLIENT_SECRET")
    for workflow in (repo / ".github" / "workflows").glob("*.yml"):
        text = workflow.read_text()
        assert not re.findall(r"secrets\.\w", text), workflow.name
        assert not [name for name in names if name in text], workflow.name
    assert not [out for out in session.outputs if "sandbox-secret" in out], "a secret printed"


def test_the_readme_leads_in_at_most_300_lines() -> None:
    """What it is, the quick start, then the tour a newcomer follows, the commands, and a link
    to every topic page (issue 23.4): the rest lives in docs/."""
    text = README.read_text()
    assert len(text.splitlines()) <= 300
    headings = re.findall(r"^## (.+)$", text, re.M)
    assert headings == ["Quick start", "Your first tenant", "Commands", "Documentation"]
    tour = text.split("## Your first tenant\n", 1)[1].split("\n## ", 1)[0]
    steps = re.findall(r"^### \d+\. (.+)$", tour, re.M)
    for topic in (
        "API client",
        "configuration repository",
        "secrets",
        "Validate",
        "applied",
        "pull-request",
        "drift",
    ):
        assert [s for s in steps if topic in s], f"the tour has no step about {topic}: {steps}"
    linked = {target.partition("#")[0] for target in links(README)}
    assert {f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")} <= linked


def test_the_output_the_tour_shows_for_vars_is_what_vars_prints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README shows `reconciler vars` in a new repository before the secrets are set:
    that text is what the command prints there."""
    blocks = code_blocks(README)
    (shown,) = [
        after
        for block, after in itertools.pairwise(blocks)
        if block.text == "reconciler vars\n" and after.language == "text"
    ]
    runner = CliRunner()
    monkeypatch.chdir(tmp_path)
    assert runner.invoke(cli, ["init", "acme-config", "--ci", "github"]).exit_code == 0
    monkeypatch.chdir(tmp_path / "acme-config")
    unset: dict[str, str | None] = {
        "NEWSTORE_CLIENT_ID": None,
        "NEWSTORE_CLIENT_SECRET": None,
        "RECONCILER_ENVIRONMENTS_DIR": None,
    }
    printed = runner.invoke(cli, ["vars"], env=unset)
    assert printed.exit_code == 0, printed.output
    assert printed.stdout == shown.text


def test_the_endpoint_table_names_every_settings_path() -> None:
    from reconciler.newstore.settings import REGISTRY

    text = (ROOT / "docs" / "configuration.md").read_text()
    for setting in REGISTRY:
        assert f"| `{setting.key}` | `{setting.path}`" in text, setting.key
