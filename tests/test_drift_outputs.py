"""`drift --output FORMAT=PATH` (issue 22): one run, every output, each rendered from the one
report and written whole. The real CLI against the sandbox on 127.0.0.1, a fleet with every
status (tests/drift_helpers.py)."""

from __future__ import annotations

import json
import os
import re
import stat
from datetime import datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest
from drift_helpers import SECRETS, STATUSES, fleet
from env_helpers import WriteEnv, run_cli
from jsonschema import Draft202012Validator
from prometheus_client.parser import text_string_to_metric_families

from reconciler.resources import schema_path
from reconciler.sandbox import SandboxApp

Sandbox = tuple[SandboxApp, str]
FORMATS = ("text", "json", "markdown", "html", "prometheus")


@pytest.fixture
def envs(live_sandbox: Sandbox, write_env: WriteEnv) -> Path:
    sandbox, base = live_sandbox
    return fleet(sandbox, base, write_env)


def _outputs(out: Path) -> list[str]:
    suffix = {"text": "txt", "json": "json", "markdown": "md", "html": "html", "prometheus": "prom"}
    args = []
    for fmt in FORMATS:
        args += ["--output", f"{fmt}={out / f'drift.{suffix[fmt]}'}"]
    return args


class _Text(HTMLParser):
    """The page's visible text and every element it holds."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.tags: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self._skip += tag in ("style", "title")

    def handle_endtag(self, tag: str) -> None:
        self._skip -= tag in ("style", "title")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.text.append(data)


def page_text(html: str) -> tuple[str, list[str]]:
    parser = _Text()
    parser.feed(html)
    parser.close()
    return " ".join(" ".join(parser.text).split()), parser.tags


def test_one_run_writes_all_five_outputs_from_the_same_report(envs: Path, tmp_path: Path) -> None:
    out = tmp_path / "reports" / "nightly"  # missing directories are made
    result = run_cli(envs, "drift", "--probe", "--format", "json", *_outputs(out))

    assert result.exit_code == 1, result.output  # acme-gone could not be read
    assert sorted(p.name for p in out.iterdir()) == [
        "drift.html",
        "drift.json",
        "drift.md",
        "drift.prom",
        "drift.txt",
    ], "every output, and no temporary file left beside them"
    # The JSON file is the very document on stdout: one report, one checked_at.
    assert (out / "drift.json").read_text() == result.stdout
    doc = json.loads(result.stdout)
    schema = json.loads(schema_path("drift.schema.json").read_text())
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    assert [e.message for e in validator.iter_errors(doc)] == []
    assert {e["name"]: e["status"] for e in doc["environments"]} == STATUSES

    text = (out / "drift.txt").read_text()
    assert "\x1b[" not in text, "a file never gets terminal colours"
    assert "acme-prod (tenant acme-prod): UNHEALTHY" in text
    assert text.rstrip().endswith(
        "Drift: 5 environments: 1 UNHEALTHY, 1 in sync, 1 drifted, 1 blocked, 1 error"
    )
    markdown = (out / "drift.md").read_text()
    assert markdown.startswith("## NewStore drift report\n")
    when = doc["checked_at"][:16].replace("T", " ")
    assert f"Checked {when} UTC" in markdown, "the same checked_at in every output"

    shown, tags = page_text((out / "drift.html").read_text())
    for name in STATUSES:
        assert name in shown
    for word in ("in sync", "drift", "blocked", "unhealthy", "error"):
        assert word in shown
    assert "script" not in tags

    families = {f.name: f for f in text_string_to_metric_families((out / "drift.prom").read_text())}
    current = {
        s.labels["environment"]: s.labels["status"]
        for s in families["newstore_reconciler_environment_status"].samples
        if s.value == 1
    }
    assert current == STATUSES
    last_run = families["newstore_reconciler_last_run_timestamp_seconds"].samples[0].value
    # The JSON says the second; the metric has the fraction too: the same moment.
    assert int(last_run) == int(datetime.fromisoformat(doc["checked_at"]).timestamp())
    assert "newstore_reconciler_last_success_timestamp_seconds" not in families, (
        "a run that could not read acme-gone is no success"
    )
    for path in out.iterdir():
        for secret in SECRETS:
            assert secret not in path.read_text(), f"{secret} in {path.name}"


def test_stdout_keeps_format_and_the_files_get_theirs(envs: Path, tmp_path: Path) -> None:
    (envs / "acme-gone.yaml").unlink()
    result = run_cli(
        envs,
        "drift",
        "--format",
        "markdown",
        "--output",
        f"text={tmp_path / 'a.txt'}",
        "--output",
        f"text={tmp_path / 'b.txt'}",
    )
    assert result.exit_code == 2, result.output
    assert result.stdout.startswith("## NewStore drift report")
    assert (tmp_path / "a.txt").read_text() == (tmp_path / "b.txt").read_text()
    assert (tmp_path / "a.txt").read_text().startswith("acme-back (tenant acme-back): drift")


def test_an_output_replaces_the_old_file_whole_and_keeps_its_mode(
    envs: Path, tmp_path: Path
) -> None:
    (envs / "acme-gone.yaml").unlink()
    target = tmp_path / "metrics" / "reconciler.prom"
    target.parent.mkdir()
    target.write_text("# an older run's metrics, much longer than the new ones\n" * 2000)
    os.chmod(target, 0o640)
    link = tmp_path / "current.prom"
    link.symlink_to(target)

    result = run_cli(envs, "drift", "--output", f"prometheus={link}")

    assert result.exit_code == 2, result.output
    assert link.is_symlink(), "the link stays a link; its target is replaced"
    text = target.read_text()
    assert "older run" not in text
    assert text.endswith("\n") and "newstore_reconciler_environment_status" in text
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert sorted(p.name for p in target.parent.iterdir()) == ["reconciler.prom"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("html", "expected FORMAT=PATH"),
        ("pdf=report.pdf", "unknown format 'pdf'; one of text, json, markdown, html, prometheus"),
        ("html=", "expected FORMAT=PATH"),
    ],
)
def test_a_bad_output_is_refused_before_any_tenant_is_read(
    envs: Path, live_sandbox: Sandbox, spec: str, message: str
) -> None:
    sandbox, _ = live_sandbox
    result = run_cli(envs, "drift", "--output", spec)
    assert result.exit_code == 1
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert all(sandbox.requests(t) == [] for t in STATUSES), "nothing was read"


def test_the_same_path_twice_and_an_unwritable_directory_are_refused(
    envs: Path, tmp_path: Path
) -> None:
    twice = run_cli(
        envs, "drift", "--output", f"html={tmp_path}/x", "--output", f"json={tmp_path}/x"
    )
    assert twice.exit_code == 1
    assert "is already another --output's file" in twice.stderr
    (tmp_path / "file").write_text("")
    nowhere = run_cli(envs, "drift", "--output", f"html={tmp_path}/file/drift.html")
    assert nowhere.exit_code == 1
    assert re.search(r"cannot write the html output .*: .*file is not a directory", nowhere.stderr)
