"""Environment files: every failure mode is a fixture under tests/fixtures/config/<case>/, and
each message is checked for its text, its file:line:column and its key path."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler.cli import cli
from reconciler.config import discover, load_environment, load_environments
from reconciler.errors import ConfigError, ValidationFailed
from reconciler.model import ABSENT, Location

FIXTURES = Path(__file__).parent / "fixtures" / "config"
EXAMPLES = Path(__file__).parent.parent / "environments"

ENV = {
    "CLIENT_ID": "client-id",
    "CLIENT_SECRET": "client-secret-value-7f3a",
    "ATP_KEY": "atp-key-0123456789-abcdef",
    "SHORT_KEY": "tiny-key-42",
}
# Values that must never be echoed: secrets from the environment and literals in fixtures.
SECRET_VALUES = (
    ENV["CLIENT_SECRET"],
    ENV["ATP_KEY"],
    ENV["SHORT_KEY"],
    "hunter2",
    "not-from-the-environment",
    "literal-secret-in-broken-line",
)

EXAMPLE_ENV = {
    "NEWSTORE_CLIENT_ID": "acme-reconciler",
    "NEWSTORE_CLIENT_SECRET": "newstore-client-secret-1",
    "ACME_PRODUCTION_ATP_API_KEY": "production-atp-key-0123456789",
    "ACME_STAGING_ATP_API_KEY": "staging-atp-key-0123456789",
    "SANDBOX_CLIENT_ID": "sandbox",
    "SANDBOX_CLIENT_SECRET": "sandbox-secret",
    "LOCAL_ATP_API_KEY": "local-atp-key-0123456789",
    "ACME_PRODUCTION_ORDER_WEBHOOK_API_KEY": "production-order-key-0123456789",
    "LOCAL_ORDER_WEBHOOK_API_KEY": "local-order-key-0123456789",
}


@pytest.fixture(autouse=True)
def _in_fixtures(monkeypatch: pytest.MonkeyPatch) -> None:
    # Relative paths keep the expected `file:line:col` short and exact.
    monkeypatch.chdir(FIXTURES)


def problems(case: str, environ: Mapping[str, str] = ENV, **kwargs: bool) -> list[str]:
    with pytest.raises(ValidationFailed) as info:
        load_environments(Path(case), environ=environ, **kwargs)
    return [str(p) for p in info.value.problems]


# (case, [(file:line:col, key path, part of the message), ...]): exactly these problems.
CASES: list[tuple[str, list[tuple[str, str, str]]]] = [
    ("syntax_error", [("env.yaml:4:20", "", "YAML syntax error: expected ',' or ']'")]),
    (
        "syntax_error_secret",
        [("env.yaml:5:1", "", "found unexpected end of stream (while scanning a quoted scalar")],
    ),
    ("duplicate_key", [("env.yaml:5:1", "tenant", "duplicate key `tenant` (lines 1 and 5)")]),
    ("not_mapping", [("env.yaml:1:1", "", "the top level must be a mapping")]),
    ("empty", [("env.yaml:1:1", "", "file is empty")]),
    (
        "unknown_key",
        [
            ("env.yaml:5:3", "connection.timout", "unknown key `timout`; did you mean `timeout`?"),
            (
                "env.yaml:6:1",
                "external_om",
                "unknown key `external_om`; did you mean `external_oms`?",
            ),
            (
                "env.yaml:11:5",
                "gates.webhook_probe.fulfilment_locations",
                "did you mean `fulfillment_locations`?",
            ),
        ],
    ),
    (
        "wrong_types",
        [
            ("env.yaml:5:3", "connection.timeout", "must be a number, not a string"),
            ("env.yaml:7:3", "external_oms.enabled", "must be true or false, not a string"),
            ("env.yaml:8:1", "associate_app", "must be a mapping, not a list"),
        ],
    ),
    ("missing_tenant", [("env.yaml:1:1", "tenant", "`tenant` is required")]),
    (
        "bad_tenant",
        [("env.yaml:1:1", "tenant", "must be a NewStore tenant id: lowercase letters, digits")],
    ),
    (
        "short_api_key",
        [("env.yaml:9:3", "availability_webhook.api_key", "must be at least 20 characters long")],
    ),
    (
        "webhook_timeout",
        [("env.yaml:10:3", "availability_webhook.timeout", "must be between 5 and 60, not 90")],
    ),
    (
        "webhook_timeout_fraction",
        [("env.yaml:10:3", "availability_webhook.timeout", "must be a whole number")],
    ),
    (
        "external_identifier",
        [
            (
                "env.yaml:10:3",
                "availability_webhook.external_identifier",
                "only `product_id` is supported",
            )
        ],
    ),
    (
        "webhook_missing_fields",
        [
            ("env.yaml:7:1", "availability_webhook.api_key", "`api_key` is required"),
            ("env.yaml:7:1", "availability_webhook.timeout", "`timeout` is required"),
        ],
    ),
    (
        "webhook_url_not_url",
        [("env.yaml:8:3", "availability_webhook.url", "must be an absolute URL")],
    ),
    (
        "webhook_url_http",
        [("env.yaml:8:3", "availability_webhook.url", "must use https (plain http is only")],
    ),
    (
        "connection_urls",
        [
            ("env.yaml:3:3", "connection.base_url", "must not have a query string"),
            ("env.yaml:4:3", "connection.token_url", "must not embed credentials"),
        ],
    ),
    (
        "extends_missing",
        [("env.yaml:1:1", "extends", "base file extends_missing/_nope.yaml does not exist")],
    ),
    (
        "extends_cycle",
        [
            (
                "_b.yaml:1:1",
                "extends",
                "extends cycle: extends_cycle/env.yaml → extends_cycle/_a.yaml → "
                "extends_cycle/_b.yaml → extends_cycle/_a.yaml",
            )
        ],
    ),
    (
        "base_errors",
        [
            ("_base.yaml:4:3", "connection.client_id", "duplicate key `client_id` (lines 2 and 4)"),
            ("_base.yaml:4:3", "connection.client_id", "environment variable OTHER_CLIENT_ID"),
            ("_base.yaml:5:3", "connection.time_out", "did you mean `timeout`?"),
        ],
    ),
    ("base_syntax", [("_base.yaml:3:2", "", "YAML syntax error")]),
    (
        "missing_variable",
        [("env.yaml:3:3", "connection.base_url", "environment variable NEWSTORE_HOST is not set")],
    ),
    (
        "literal_secret",
        [
            ("env.yaml:4:3", "connection.client_secret", "literal secret: client_secret may only"),
            ("env.yaml:9:3", "availability_webhook.api_key", "literal secret: api_key may only"),
        ],
    ),
    (
        "malformed_reference",
        [("env.yaml:3:3", "connection.client_id", "write `$${` for a literal `${`")],
    ),
    (
        "bare_null",
        [
            ("env.yaml:5:1", "external_oms", "a bare null is not allowed: remove the key"),
            ("env.yaml:6:1", "availability_webhook", "a bare null is not a delete: write `absent`"),
        ],
    ),
    (
        "absent_on_flag",
        [
            ("env.yaml:5:1", "external_oms", "`absent` only applies to availability_webhook"),
            ("env.yaml:6:1", "availability_webhook", "must be a mapping (url, api_key, timeout)"),
        ],
    ),
    (
        "unsafe_desired",
        [
            (
                "env.yaml:9:3",
                "external_atp.enabled",
                # Rule 1's words since issue 12: existing is not enough, it must answer.
                "breaks rule 1 (external ATP on ⇒ the availability webhook config exists and "
                "answered the probe with the values NewStore holds): NewStore treats every item "
                "as unavailable",
            )
        ],
    ),
    (
        "unmanaged_dependency",
        [
            (
                "env.yaml:6:3",
                "associate_app.use_new_om_ui",
                "rule 3 (use_new_om_ui true ⇒ the external OMS flag is on) cannot be checked: "
                "external_oms is not managed",
            )
        ],
    ),
    (
        "oms_off_alone",
        [("env.yaml:6:3", "external_oms.enabled", "associate_app is not managed")],
    ),
    (
        "bad_tag",
        [("env.yaml:1:9", "tenant", "tag !!python/object/apply:os.system is not allowed")],
    ),
    (
        "gates_and_retry",
        [
            ("env.yaml:5:3", "connection.timeout", "must be greater than 0"),
            ("env.yaml:7:5", "connection.retry.attempts", "must be between 1 and 20, not 50"),
            ("env.yaml:10:5", "gates.webhook_probe.products", "must list at least 1 item"),
            # A date since issue 12, so the message asks for one.
            ("env.yaml:12:3", "gates.newstore_stock_confirmed", "must be the date (YYYY-MM-DD)"),
        ],
    ),
    ("ca_bundle_missing", [("env.yaml:5:3", "connection.ca_bundle", "certs/acme-ca.pem does")]),
    (
        "yaml11_booleans",
        [
            ("env.yaml:6:12", "external_oms.enabled", "write true or false; `yes` is ambiguous"),
            ("env.yaml:8:12", "external_atp.enabled", "write true or false; `Off` is ambiguous"),
            # Quoted, it is a string to every reader, and the schema says what it wants.
            ("env.yaml:10:3", "associate_app.use_new_om_ui", "must be true or false, not a str"),
            ("env.yaml:12:29", "gates.newstore_stock_confirmed", "`on` is ambiguous"),
        ],
    ),
]


@pytest.mark.parametrize(("case", "expected"), CASES, ids=[c for c, _ in CASES])
def test_failure_mode(case: str, expected: list[tuple[str, str, str]]) -> None:
    found = problems(case)
    assert len(found) == len(expected), found
    for message, (where, path, text) in zip(found, expected, strict=True):
        assert message.startswith(f"{case}/{where}: {path + ':' if path else ''}"), message
        assert text in message
    for secret in SECRET_VALUES:
        assert not any(secret in message for message in found), (secret, found)


def test_a_file_with_many_mistakes_lists_every_one() -> None:
    found = problems("multi_error")
    assert [m.split(": ", 2)[:2] for m in found] == [
        ["multi_error/env.yaml:1:1", "tenant"],
        ["multi_error/env.yaml:4:3", "connection.client_secret"],
        ["multi_error/env.yaml:5:3", "connection.timeout"],
        ["multi_error/env.yaml:9:3", "availability_webhook.url"],
        ["multi_error/env.yaml:11:3", "availability_webhook.timeout"],
        ["multi_error/env.yaml:12:3", "availability_webhook.retries"],
        ["multi_error/env.yaml:14:3", "external_atp.enabled"],
        ["multi_error/env.yaml:16:3", "associate_app.use_new_om_ui"],
    ]
    assert "breaks rule 2" in found[6]
    assert not any("not-from-the-environment" in m for m in found)


def test_problems_of_every_file_come_in_one_run(tmp_path: Path) -> None:
    for case in ("unsafe_desired", "wrong_types"):
        (tmp_path / f"{case}.yaml").write_bytes((FIXTURES / case / "env.yaml").read_bytes())
    with pytest.raises(ValidationFailed) as info:
        load_environments(tmp_path, environ=ENV)
    files = {Path(p.file).name for p in info.value.problems}
    assert files == {"unsafe_desired.yaml", "wrong_types.yaml"}
    assert len(info.value.problems) == 4


def test_a_base_shared_by_two_environments_is_reported_once() -> None:
    found = problems("base_errors")
    assert sum("time_out" in m for m in found) == 1


def test_extends_merges_deeply_and_child_keys_replace() -> None:
    environ = {**ENV, "CHILD_CLIENT_ID": "child-client"}
    child, sibling = load_environments(Path("extends_merge"), environ=environ)

    assert child.name == "child" and child.tenant == "child"
    assert child.connection.client_id == "child-client"
    assert child.connection.client_secret == ENV["CLIENT_SECRET"]
    assert child.connection.timeout == 20.0  # the middle base wins over the first
    assert child.connection.base_url == "https://child.p.newstore.net"
    assert child.connection.token_url == (
        "https://id.p.newstore.net/auth/realms/child/protocol/openid-connect/token"
    )
    assert child.gates.webhook_probe is not None
    assert child.gates.webhook_probe.products == ("3",)  # lists replace
    assert child.gates.webhook_probe.fulfillment_locations == ("US01",)  # mappings merge
    # `absent` in the child replaces the base's whole mapping
    assert child.desired["availability_webhook"] is ABSENT
    assert list(child.desired) == [
        "external_oms",
        "availability_webhook",
        "external_atp",
        "associate_app",
    ]
    assert child.locations["connection.timeout"] == Location("extends_merge/_middle.yaml", 3, 3)
    assert child.locations["connection.client_secret"] == Location("extends_merge/_base.yaml", 3, 3)
    assert child.locations["availability_webhook"] == Location("extends_merge/child.yaml", 10, 1)
    assert "availability_webhook.url" not in child.locations
    assert child.where("gates.webhook_probe.products[0]") == "extends_merge/child.yaml:7:16"

    assert sibling.desired == {
        "external_oms": {"enabled": True},
        "availability_webhook": {
            "url": "https://atp.example/availabilities",
            "api_key": ENV["ATP_KEY"],
            "external_identifier": "product_id",
            "timeout": 30,
        },
    }
    assert sibling.where("availability_webhook.url") == "extends_merge/_base.yaml:10:3"
    assert sibling.where("availability_webhook.timeout") == "extends_merge/sibling.yaml:6:3"


def test_substitution_embeds_variables_and_unescapes_dollar_dollar() -> None:
    env = load_environment(
        Path("substitution/env.yaml"), environ={**ENV, "ATP_HOST": "atp.acme.example"}
    )
    assert env.connection.client_id == "id-${not-a-variable}"
    webhook = env.desired["availability_webhook"]
    assert webhook != ABSENT
    assert webhook["url"] == "https://atp.acme.example/availabilities"


def test_loopback_hosts_may_use_http_and_connection_options_map() -> None:
    env = load_environment(Path("loopback_urls/env.yaml"), environ=ENV)
    assert env.connection.base_url == "http://localhost:8765/t1"
    assert env.connection.token_url.startswith("http://[::1]:8765/")
    assert env.connection.timeout == 2.5
    assert (env.connection.retry_attempts, env.connection.retry_max_seconds) == (3, 20.0)
    assert env.desired["availability_webhook"] != ABSENT


def test_ca_bundle_is_resolved_relative_to_the_file() -> None:
    env = load_environment(Path("ca_bundle_ok/env.yaml"), environ=ENV)
    assert env.connection.ca_bundle == str(FIXTURES / "ca_bundle_ok" / "certs" / "acme-ca.pem")


def test_allow_missing_secrets_fills_secrets_only() -> None:
    env = load_environment(
        Path("short_api_key/env.yaml"),
        environ={"CLIENT_ID": "client-id"},
        allow_missing_secrets=True,
    )
    webhook = env.desired["availability_webhook"]
    assert webhook != ABSENT
    assert webhook["api_key"].startswith("<missing:SHORT_KEY>")
    assert len(webhook["api_key"]) >= 20
    assert env.connection.client_secret.startswith("<missing:CLIENT_SECRET>")

    # The client id comes from the same secret store, so it may be missing too...
    env = load_environment(Path("short_api_key/env.yaml"), environ={}, allow_missing_secrets=True)
    assert env.connection.client_id.startswith("<missing:CLIENT_ID>")
    # ...but a missing variable anywhere else stays an error.
    found = problems("missing_variable", environ={}, allow_missing_secrets=True)
    assert found == [
        "missing_variable/env.yaml:3:3: connection.base_url: "
        "environment variable NEWSTORE_HOST is not set"
    ]


def test_secrets_stay_out_of_repr() -> None:
    env = load_environment(Path("loopback_urls/env.yaml"), environ=ENV)
    assert ENV["ATP_KEY"] not in repr(env)
    assert ENV["CLIENT_SECRET"] not in repr(env)


def test_discover_skips_bases_and_names_environments_by_stem(tmp_path: Path) -> None:
    for name in ("b.yaml", "a.yml", "_base.yaml", "notes.txt", ".hidden.yaml"):
        (tmp_path / name).write_text("tenant: x\n")
    assert [p.name for p in discover(tmp_path)] == ["a.yml", "b.yaml"]
    assert [p.name for p in discover(tmp_path, ["b", "a.yml"])] == ["b.yaml", "a.yml"]


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["acme-stagin"], "unknown environment `acme-stagin`"),
        (["acme-stagin"], "(did you mean `acme-staging`?); available: acme-eu, acme-production"),
        (["_base"], "`_base` is a base file, not an environment"),
    ],
)
def test_discover_rejects_unknown_names(names: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        discover(EXAMPLES, names)
    assert message in str(info.value)


def test_discover_rejects_two_files_for_one_environment(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("tenant: a\n")
    (tmp_path / "a.yml").write_text("tenant: a\n")
    with pytest.raises(ConfigError, match="both define environment `a`"):
        discover(tmp_path)


def test_discover_rejects_an_empty_or_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no environment files in"):
        discover(tmp_path)
    with pytest.raises(ConfigError, match="does not exist"):
        discover(tmp_path / "nope")


def test_the_example_environments_validate() -> None:
    envs = {e.name: e for e in load_environments(EXAMPLES, environ=EXAMPLE_ENV)}
    assert list(envs) == ["acme-eu", "acme-production", "acme-staging", "local"]

    assert envs["acme-production"].desired == {
        "external_oms": {"enabled": True},
        "availability_webhook": {
            "url": "https://atp.acme.example/availabilities",
            "api_key": EXAMPLE_ENV["ACME_PRODUCTION_ATP_API_KEY"],
            "external_identifier": "product_id",
            "timeout": 15,
        },
        "external_atp": {"enabled": True},
        "external_order_webhook": {
            "url": "https://oms.acme.example/newstore",
            "api_key": EXAMPLE_ENV["ACME_PRODUCTION_ORDER_WEBHOOK_API_KEY"],
            "timeout": 15,
        },
        "associate_app": {"use_new_om_ui": True},
    }
    staging = envs["acme-staging"].desired
    assert staging["external_atp"] == {"enabled": False}
    assert staging["availability_webhook"] != ABSENT
    eu = envs["acme-eu"]
    assert eu.desired["availability_webhook"] is ABSENT
    # A date since issue 12 (`true` never expired); the examples hold a fixed past date.
    assert eu.gates.newstore_stock_confirmed == date(2026, 11, 27)

    local = envs["local"]
    assert local.tenant == "acme-local"
    assert local.connection.base_url == "http://127.0.0.1:8765/acme-local"
    assert local.connection.client_secret == "sandbox-secret"
    assert local.desired["availability_webhook"] == {
        "url": "http://127.0.0.1:8765/_sandbox/webhook/availabilities",
        "api_key": EXAMPLE_ENV["LOCAL_ATP_API_KEY"],
        "external_identifier": "product_id",
        "timeout": 15,
    }
    assert local.desired["associate_app"] == {
        "use_new_om_ui": True,
        "stores.STORE-OLD.use_new_om_ui": None,
        "stores.STORE-PILOT.use_new_om_ui": True,
    }
    for path in EXAMPLES.glob("*.yaml"):
        first = path.read_text().splitlines()[0]
        assert first == "# yaml-language-server: $schema=../schemas/environment.schema.json"


def _run(*args: str, env: Mapping[str, str | None] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def test_cli_validate_succeeds_with_a_summary_line() -> None:
    code, out, err = _run("--environments-dir", str(EXAMPLES), "validate", env=EXAMPLE_ENV)
    assert (code, err) == (0, "")
    assert out == "4 environments valid: acme-eu, acme-production, acme-staging, local\n"

    code, out, _ = _run("--environments-dir", str(EXAMPLES), "validate", "local", env=EXAMPLE_ENV)
    assert (code, out) == (0, "1 environment valid: local\n")


def test_cli_validate_lists_every_problem_on_stderr() -> None:
    code, out, err = _run("--environments-dir", "multi_error", "validate", env=ENV)
    assert (code, out) == (1, "")
    lines = err.splitlines()
    assert lines[0] == "Error: 8 problems found:"
    assert lines[1].startswith("  multi_error/env.yaml:1:1: tenant: must be a NewStore tenant id")
    assert "Traceback" not in err
    assert "not-from-the-environment" not in err


def test_cli_validate_allow_missing_secrets() -> None:
    unset: dict[str, str | None] = {name: None for name in EXAMPLE_ENV}
    only_ids = {**unset, "NEWSTORE_CLIENT_ID": "id", "SANDBOX_CLIENT_ID": "sandbox"}
    args = ("--environments-dir", str(EXAMPLES), "validate")

    code, _, err = _run(*args, env=only_ids)
    assert code == 1
    assert "environment variable ACME_PRODUCTION_ATP_API_KEY is not set" in err
    assert f"{EXAMPLES}/_base.yaml:9:3: connection.client_secret:" in err

    code, out, err = _run(*args, "--allow-missing-secrets", env=only_ids)
    assert (code, err) == (0, "")
    assert out.startswith("4 environments valid")

    # No credentials at all, as in a pre-commit hook: still valid offline.
    code, out, err = _run(*args, "--allow-missing-secrets", env=unset)
    assert (code, err) == (0, "")
    assert out.startswith("4 environments valid")


def test_cli_validate_unknown_environment() -> None:
    code, _, err = _run("--environments-dir", str(EXAMPLES), "validate", "acme-prod")
    assert code == 1
    assert "unknown environment `acme-prod`" in err
