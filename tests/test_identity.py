"""Tenant identity: the spellings of one tenant API are one identity, different tenants are
not, and the tenant name is read only out of URLs of NewStore's or the sandbox's form."""

from __future__ import annotations

import pytest

from reconciler.identity import (
    canonical_host,
    tenant_identity,
    tenant_in_base_url,
    tenant_in_token_url,
)


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("https://acme.p.newstore.net", "https://ACME.p.newstore.net./"),
        ("https://acme.p.newstore.net", "https://acme.p.newstore.net:443"),
        ("http://127.0.0.1:8765/acme", "http://localhost:8765/acme/"),
        ("http://127.0.0.1:8765/acme", "http://[::1]:8765/acme"),
        ("http://127.0.0.1:8765/acme", "http://LOCALHOST.:8765/acme"),
        ("http://127.0.0.2:8765/acme", "http://127.0.0.1:8765/acme"),
    ],
)
def test_spellings_of_one_tenant_are_one_identity(one: str, other: str) -> None:
    assert tenant_identity(one) == tenant_identity(other)
    assert tenant_identity(one).ref_name == tenant_identity(other).ref_name


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("https://acme.p.newstore.net", "https://acme-staging.p.newstore.net"),
        ("http://127.0.0.1:8765/acme", "http://127.0.0.1:8766/acme"),
        ("http://127.0.0.1:8765/acme", "http://127.0.0.1:8765/acme-staging"),
        ("http://127.0.0.1:8765/acme", "http://127.0.0.1:8765/ACME"),
        ("https://proxy.example/a", "https://proxy.example/b"),
    ],
)
def test_different_tenants_are_different_identities(one: str, other: str) -> None:
    assert tenant_identity(one) != tenant_identity(other)
    assert tenant_identity(one).ref_name != tenant_identity(other).ref_name


def test_ref_name_is_safe_for_git_refs_and_file_names() -> None:
    name = tenant_identity("http://[::1]:8765/acme").ref_name
    assert name.startswith("loopback-8765-acme-")
    assert not set(name) & set(":/ ~^?*[\\")


def test_canonical_host() -> None:
    assert canonical_host("https://Id.P.NewStore.net./auth") == "id.p.newstore.net"
    assert canonical_host("http://example.test:80/") == "example.test"
    assert canonical_host("https://example.test:8443") == "example.test:8443"
    assert canonical_host("not a url") == ""


@pytest.mark.parametrize(
    ("url", "tenant"),
    [
        ("https://acme-production.p.newstore.net", "acme-production"),
        ("https://ACME.p.newstore.net./", "acme"),
        ("http://127.0.0.1:8765/acme-staging", "acme-staging"),
        ("http://localhost:8765/acme/", "acme"),
        ("https://proxy.example/acme", None),
        ("https://acme.p.newstore.net/extra", None),
        ("http://127.0.0.1:8765/a/b", None),
    ],
)
def test_tenant_in_base_url(url: str, tenant: str | None) -> None:
    assert tenant_in_base_url(url) == tenant


@pytest.mark.parametrize(
    ("url", "tenant"),
    [
        (
            "https://id.p.newstore.net/auth/realms/acme/protocol/openid-connect/token",
            "acme",
        ),
        (
            "http://127.0.0.1:8765/auth/realms/acme-staging/protocol/openid-connect/token",
            "acme-staging",
        ),
        ("https://login.example/oauth/token", None),
    ],
)
def test_tenant_in_token_url(url: str, tenant: str | None) -> None:
    assert tenant_in_token_url(url) == tenant


def test_localhost_with_the_roots_dot_is_loopback() -> None:
    """Issue 20: `localhost.` is the same machine, for plain-http checks and the lock alike."""
    from reconciler.net import is_loopback

    assert is_loopback("localhost.") and is_loopback("LOCALHOST")
    assert not is_loopback("localhost.example")
    assert tenant_identity("http://localhost.:8765/acme") == tenant_identity(
        "http://127.0.0.1:8765/acme/"
    )
