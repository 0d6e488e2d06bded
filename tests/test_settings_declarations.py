"""What a setting module declares is what every layer uses: a new setting's secret is covered
everywhere its `secret_fields` say, and `absent` is accepted exactly where `deletable` says,
without a second list to keep in step."""

from __future__ import annotations

from typing import ClassVar

from jsonschema import Draft202012Validator

from reconciler.config.schema import environment_schema
from reconciler.core.dump import setting_lines
from reconciler.model import UNKNOWN, Fields, Value
from reconciler.newstore.client import NewStoreClient
from reconciler.newstore.settings import REGISTRY, SECRET_KEYS, SECRET_PATHS, Setting, secret_paths


class _Fifth(Setting):
    """A setting a contributor might add next: a loyalty integration with its own token."""

    key = "loyalty_hook"
    title = "Loyalty hook"
    path = "/v0/config/loyalty/hook"
    secret_fields = frozenset({"token"})
    default: ClassVar[Value] = {"url": "", "token": "", "region": ""}

    def read(self, client: NewStoreClient) -> Value:
        raise AssertionError("not called")

    def write(self, client: NewStoreClient, value: Fields) -> str | None:
        raise AssertionError("not called")


def test_the_secret_paths_are_every_settings_secret_fields_and_the_client_secret() -> None:
    assert {
        "availability_webhook.api_key",
        "external_order_webhook.api_key",
        "connection.client_secret",
    } == SECRET_PATHS
    assert secret_paths((*REGISTRY, _Fifth())) == SECRET_PATHS | {"loyalty_hook.token"}


def test_the_client_scrubs_every_secret_field_name_and_tokens() -> None:
    assert {path.rsplit(".", 1)[1] for path in SECRET_PATHS} | {"access_token"} == SECRET_KEYS


def test_dump_writes_a_new_settings_secret_and_masked_fields_as_references() -> None:
    variables: list[str] = []
    warnings: list[str] = []
    lines = setting_lines(
        _Fifth(),
        {"url": "https://loyalty.example/hook", "token": "tok-0123456789abcdef", "region": UNKNOWN},
        "acme-staging",
        variables,
        warnings,
    )
    text = "\n".join(lines)
    assert "tok-0123456789abcdef" not in text
    assert lines[0] == "loyalty_hook:"
    assert lines[1] == "  url: https://loyalty.example/hook"
    assert lines[2].startswith("  token: ${ACME_STAGING_LOYALTY_HOOK_TOKEN}  # export")
    assert lines[3].startswith("  region: ${ACME_STAGING_LOYALTY_HOOK_REGION}  # NewStore answers")
    assert variables == ["ACME_STAGING_LOYALTY_HOOK_TOKEN", "ACME_STAGING_LOYALTY_HOOK_REGION"]
    assert warnings == []


def test_the_schema_accepts_absent_exactly_for_deletable_settings() -> None:
    schema = environment_schema()
    validator = Draft202012Validator(schema)
    accepts_absent = {
        setting.key: validator.evolve(schema=schema["properties"][setting.key]).is_valid("absent")
        for setting in REGISTRY
    }
    assert accepts_absent == {setting.key: setting.deletable for setting in REGISTRY}
    assert [key for key, ok in accepts_absent.items() if ok] == ["availability_webhook"]
