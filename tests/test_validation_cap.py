"""A file with thousands of problems: the message lists the first 50 and counts the rest;
`ValidationFailed.problems` keeps every one."""

from __future__ import annotations

from pathlib import Path

import pytest
from env_helpers import run_cli

from reconciler.config import load_environments
from reconciler.errors import MAX_PROBLEMS_SHOWN, ValidationFailed

HEAD = """\
tenant: acme
connection:
  client_id: acme-client
  client_secret: ${ACME_CLIENT_SECRET}
"""


def _directory(tmp_path: Path, unknown_keys: int) -> Path:
    directory = tmp_path / "environments"
    directory.mkdir()
    keys = "".join(f"bogus_{n:05}: 1\n" for n in range(unknown_keys))
    (directory / "acme.yaml").write_text(HEAD + keys)
    return directory


@pytest.mark.parametrize(
    ("count", "last_line"),
    [
        (MAX_PROBLEMS_SHOWN, "  acme.yaml:54:1: bogus_00049: unknown key `bogus_00049`"),
        (MAX_PROBLEMS_SHOWN + 1, "  … and 1 more problem (fix these first)"),
        (2_000, "  … and 1950 more problems (fix these first)"),
    ],
)
def test_the_message_lists_at_most_50_problems(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, count: int, last_line: str
) -> None:
    monkeypatch.setenv("ACME_CLIENT_SECRET", "a-client-secret")
    directory = _directory(tmp_path, count)
    monkeypatch.chdir(directory)

    result = run_cli(Path(), "validate")

    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[0] == f"Error: {count} problems found:"
    assert lines[1] == "  acme.yaml:5:1: bogus_00000: unknown key `bogus_00000`"
    assert lines[-1] == last_line
    listed = [line for line in lines[1:] if "unknown key" in line]
    assert len(listed) == MAX_PROBLEMS_SHOWN
    assert len(lines) == 1 + MAX_PROBLEMS_SHOWN + (count > MAX_PROBLEMS_SHOWN)

    with pytest.raises(ValidationFailed) as info:
        load_environments(Path())
    assert len(info.value.problems) == count, "the exception keeps every problem"
    assert str(info.value.problems[-1]).endswith(f"bogus_{count - 1:05}`")
