"""The small traps a new user fell into (issue 23.3, and issue 21.5), each replayed as that user
met it: the real CLI, the sandbox on 127.0.0.1 where a tenant is involved."""

from __future__ import annotations

import dataclasses
import re
import signal
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from client_helpers import make_client, make_env
from env_helpers import ON_YAML, WriteEnv, run_cli

from reconciler.cli import cli
from reconciler.core.journal import read_journal
from reconciler.core.scaffold import CI_CHOICES, scaffold
from reconciler.errors import AuthError
from reconciler.newstore.settings import BY_KEY
from reconciler.sandbox import SandboxApp, SandboxConfig

ROOT = Path(__file__).resolve().parent.parent
INSTALL = ROOT / "docs" / "install.md"

# Just enough for a file that validates: everything off, as a fresh tenant is.
OFF = """\
external_oms:
  enabled: false
external_atp:
  enabled: false
associate_app:
  use_new_om_ui: false
"""


# -- init's "Next" hint -------------------------------------------------------------------------


def test_init_hint_names_the_files_to_edit_and_never_says_run_init_again(tmp_path: Path) -> None:
    """Following the hint must work: running init again refuses to overwrite, so the hint
    names the files that hold OWNER instead."""
    runner = CliRunner()
    repo = tmp_path / "config"
    made = runner.invoke(cli, ["init", str(repo), "--ci", "github"])
    assert made.exit_code == 0, made.output
    holding = sorted(
        str(p.relative_to(repo))
        for p in repo.rglob("*")
        if p.is_file() and "OWNER" in p.read_text()
    )
    assert holding, "init without --source leaves OWNER to replace"
    hint = made.output[made.output.index("Next:") :]
    for name in holding:
        assert name in hint, name
    assert "init again" not in hint
    # The CI secret no file names (so `vars` cannot list it) is named here instead.
    assert "RECONCILER_FINGERPRINT_KEY" in hint
    offline = runner.invoke(cli, ["init", str(tmp_path / "local"), "--ci", "none"])
    assert offline.exit_code == 0 and "RECONCILER_FINGERPRINT_KEY" not in offline.output
    # What the hint says instead of `init again` works: the files are plain text to edit.
    again = runner.invoke(cli, ["init", str(repo), "--source", "https://github.com/a/b@v1"])
    assert again.exit_code == 1 and "refusing to overwrite" in again.output


# -- what the install page says init writes -----------------------------------------------------


def _documented_init_files() -> dict[str, set[str]]:
    """The table in docs/install.md: | file | written with | (always / `--ci github` ...)."""
    text = INSTALL.read_text()
    start = text.index("| file | written")
    rows = text[start:].split("\n\n", 1)[0].splitlines()[2:]
    found: dict[str, set[str]] = {ci: set() for ci in CI_CHOICES}
    for row in rows:
        files_cell, when = (cell.strip() for cell in row.strip("|").split("|"))
        # The files are the code spans outside parentheses (which say what a file holds).
        files = set(re.findall(r"`([^`]+)`", re.sub(r"\([^)]*\)", "", files_cell)))
        choices = CI_CHOICES if when == "always" else re.findall(r"--ci (\w+)", when)
        for ci in choices:
            found[ci] |= files
    return found


def test_the_install_page_lists_exactly_the_files_init_writes() -> None:
    documented = _documented_init_files()
    for ci in CI_CHOICES:
        assert documented[ci] == set(scaffold(ci)), ci


# -- an interrupted step is not a failed one (issue 21.5) --------------------------------------


class _StopDuringProbe(httpx.BaseTransport):
    """The webhook probe goes to the live sandbox; while it is answered, Ctrl-C arrives: the
    step after the gate was never started."""

    def __init__(self, stop: object) -> None:
        self.stop = stop
        self.inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        response.read()
        self.stop.request(signal.SIGINT)  # type: ignore[attr-defined]
        return response

    def close(self) -> None:
        self.inner.close()


def test_a_step_interrupted_before_it_started_reads_not_attempted_never_failed(
    live_sandbox: tuple[SandboxApp, str], write_env: WriteEnv, tmp_path: Path
) -> None:
    from reconciler.config import load_environments
    from reconciler.core.apply import ApplyOptions, Event, StepFinished, apply_run
    from reconciler.core.interrupt import StopRequest
    from reconciler.core.journal import Journal
    from reconciler.core.plan import plan_environments
    from reconciler.errors import Interrupted
    from reconciler.render.stop_report import render_run_report

    sandbox, base = live_sandbox
    directory = write_env("intr", "intr", base, ON_YAML).parent
    envs = load_environments(directory)
    stop = StopRequest()
    events: list[Event] = []
    probe = _StopDuringProbe(stop)
    with Journal(tmp_path / "j.jsonl") as journal, pytest.raises(Interrupted) as caught, probe:
        apply_run(
            envs,
            plan_environments(envs),
            journal,
            ApplyOptions(on_event=events.append, probe_transport=probe, stop=stop),
        )

    finished = [e for e in events if isinstance(e, StepFinished)]
    assert [(e.number, str(e.outcome)) for e in finished] == [(1, "applied"), (2, "applied")]
    text = render_run_report(caught.value.stop)
    assert "FAILED" not in text
    assert "not attempted 3/5 external_atp: update (interrupted: SIGINT before it started)" in text
    assert "not attempted 4/5 external_order_webhook: create (interrupted)\n" in text
    assert "stopped before step 3 of 5 (SIGINT)" in text
    closing = read_journal(tmp_path / "j.jsonl")[-1]
    assert closing["phase"] == "interrupted"
    assert closing["environments"] == {"intr": "interrupted"}
    # The journal holds no result for the step never started: its gate, then the closing.
    atp = [
        e["phase"] for e in read_journal(tmp_path / "j.jsonl") if e.get("setting") == "external_atp"
    ]
    assert atp == ["gate"]
    assert len(sandbox.history("intr")) == 2


# -- a 403 from the wrong tenant in base_url ----------------------------------------------------


def test_a_base_url_naming_another_tenant_is_named_before_any_request(
    live_sandbox: tuple[SandboxApp, str], write_env: WriteEnv
) -> None:
    """The newcomer's typo: the token (realm acme-staging) would go to tenant acme-stagin's API
    and come back 403. Validation (issue 20's tenant identity check) now says so at the URL's
    line before anything is sent, naming both tenants, never permissions."""
    sandbox, base = live_sandbox
    path = write_env("staging", "acme-staging", base, OFF)
    path.write_text(path.read_text().replace(f"{base}/acme-staging\n", f"{base}/acme-stagin\n"))
    line = path.read_text().splitlines().index(f"  base_url: {base}/acme-stagin") + 1
    result = run_cli(path.parent, "plan")
    assert result.exit_code == 1
    err = result.stderr
    assert f"{path}:{line}:3: connection.base_url: names tenant acme-stagin" in err
    assert "`tenant:` says acme-staging" in err
    assert "permission" not in err and "Traceback" not in err
    assert sandbox.requests("acme-stagin") == [] and sandbox.requests("acme-staging") == []


def _forbidden(app: SandboxApp, base_url: str, token_url: str) -> str:
    """The hint of the 403 NewStore gives a token from another tenant's realm, for a
    connection no file check vouched for (the Python API, a proxy's URLs)."""
    env = make_env(tenant="acme-staging")
    connection = dataclasses.replace(env.connection, base_url=base_url, token_url=token_url)
    env = dataclasses.replace(env, connection=connection)
    with make_client(app, env) as client, pytest.raises(AuthError) as caught:
        BY_KEY["external_oms"].read(client)
    assert caught.value.status == 403
    return str(caught.value)


def test_a_403_from_another_tenants_api_names_the_two_tenants_not_permissions() -> None:
    app = SandboxApp(SandboxConfig())
    realm = "http://127.0.0.1/auth/realms/acme-staging/protocol/openid-connect/token"
    text = _forbidden(app, "http://127.0.0.1/acme-stagin", realm)
    assert "connection.base_url is the API of tenant `acme-stagin`" in text
    assert "realm `acme-staging`" in text
    assert "permission" not in text


def test_a_403_behind_urls_that_name_no_tenant_gives_both_causes_the_tenant_first() -> None:
    """A proxy's URLs say nothing of the tenant: the hint cannot tell which cause it is."""
    app = SandboxApp(SandboxConfig())
    proxy = "https://newstore-proxy.acme.example"
    token = f"{proxy}/auth/realms/acme-staging/protocol/openid-connect/token"
    text = _forbidden(app, f"{proxy}/acme-stagin", token)
    assert "Either connection.base_url is not the API of the tenant whose realm issued" in text
    assert text.index("tenant whose realm") < text.index("lacks access")


# -- URLs, variables, key lengths ---------------------------------------------------------------


def _validate(tmp_path: Path, text: str, env: dict[str, str | None]) -> str:
    (tmp_path / "a.yaml").write_text(text)
    base = {"NEWSTORE_CLIENT_ID": "id", "NEWSTORE_CLIENT_SECRET": "s" * 24}
    result = CliRunner().invoke(
        cli, ["--environments-dir", str(tmp_path), "validate"], env=base | env
    )
    assert result.exit_code == 1, result.output
    return result.output


WEBHOOK = """\
tenant: acme
external_oms:
  enabled: true
availability_webhook:
  url: {url}
  api_key: ${{{var}}}
  timeout: 15
external_atp:
  enabled: false
associate_app:
  use_new_om_ui: false
"""


def test_a_misspelt_scheme_is_named_with_the_fix(tmp_path: Path) -> None:
    text = WEBHOOK.format(url="htps://atp.acme.example/availabilities", var="KEY")
    out = _validate(tmp_path, text, {"KEY": "k" * 24})
    assert "a.yaml:5:3: availability_webhook.url: " in out
    assert "unknown scheme `htps`; did you mean `https`?" in out
    assert "atp.acme.example" not in out  # a URL is never quoted: it could hold a password


def test_a_misspelt_variable_suggests_the_one_that_is_set(tmp_path: Path) -> None:
    text = WEBHOOK.format(url="https://atp.acme.example/a", var="ACME_STAGNG_ATP_API_KEY")
    value = "the-real-staging-atp-key-0001"
    out = _validate(tmp_path, text, {"ACME_STAGING_ATP_API_KEY": value})
    assert (
        "environment variable ACME_STAGNG_ATP_API_KEY is not set "
        "(did you mean ACME_STAGING_ATP_API_KEY, which is set?)"
    ) in out
    assert value not in out


def test_no_suggestion_between_different_names(tmp_path: Path) -> None:
    """NEWSTORE_CLIENT_SECRET is not a misspelling of NEWSTORE_CLIENT_ID."""
    (tmp_path / "a.yaml").write_text("tenant: acme\n" + OFF)
    result = CliRunner().invoke(
        cli,
        ["--environments-dir", str(tmp_path), "validate"],
        env={"NEWSTORE_CLIENT_ID": None, "NEWSTORE_CLIENT_SECRET": "s" * 24},
    )
    assert result.exit_code == 1
    assert "NEWSTORE_CLIENT_ID is not set" in result.output
    assert "did you mean" not in result.output


def test_a_short_key_names_its_variable_and_never_its_value(tmp_path: Path) -> None:
    text = WEBHOOK.format(url="https://atp.acme.example/a", var="ACME_ATP_API_KEY")
    out = _validate(tmp_path, text, {"ACME_ATP_API_KEY": "short-key-12"})
    assert (
        "availability_webhook.api_key: environment variable ACME_ATP_API_KEY holds 12 "
        "characters; api_key must be at least 20 characters long"
    ) in out
    assert "short-key-12" not in out
