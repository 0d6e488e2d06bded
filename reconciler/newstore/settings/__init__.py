"""The managed settings, in their canonical order (the order the documentation applies them in
when turning the external OMS on). Adding a setting = one module + one entry here (and one in
the sandbox's `reconciler.sandbox.endpoints.ENDPOINTS`): docs/adding-a-setting.md."""

from __future__ import annotations

from collections.abc import Iterable

from reconciler.newstore.settings.associate_app import AssociateApp
from reconciler.newstore.settings.availability_webhook import AvailabilityWebhook
from reconciler.newstore.settings.base import Setting
from reconciler.newstore.settings.external_atp import ExternalATP
from reconciler.newstore.settings.external_oms import ExternalOMS
from reconciler.newstore.settings.external_order_webhook import ExternalOrderWebhook

REGISTRY: tuple[Setting, ...] = (
    ExternalOMS(),
    AvailabilityWebhook(),
    ExternalATP(),
    ExternalOrderWebhook(),
    AssociateApp(),
)
BY_KEY: dict[str, Setting] = {s.key: s for s in REGISTRY}

CLIENT_SECRET_PATH = "connection.client_secret"


def secret_paths(settings: Iterable[Setting]) -> frozenset[str]:
    """Every environment-file key path that holds a secret: each setting's `secret_fields`,
    and the OAuth client secret."""
    fields = {f"{s.key}.{name}" for s in settings for name in s.secret_fields}
    return frozenset({*fields, CLIENT_SECRET_PATH})


SECRET_PATHS: frozenset[str] = secret_paths(REGISTRY)
"""The one list of secrets: config refuses them as literals, the client scrubs them from errors,
every output masks them. Derived, so a new setting's `secret_fields` are covered everywhere."""

SECRET_KEYS: frozenset[str] = frozenset(
    {path.rsplit(".", 1)[1] for path in SECRET_PATHS} | {"access_token"}
)
"""Body keys whose string values are secrets wherever they appear in a request or answer: what
the commands hand the NewStore client to scrub (it imports no setting)."""

__all__ = [
    "BY_KEY",
    "CLIENT_SECRET_PATH",
    "REGISTRY",
    "SECRET_KEYS",
    "SECRET_PATHS",
    "Setting",
    "secret_paths",
]
