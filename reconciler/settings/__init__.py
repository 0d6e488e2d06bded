"""The managed settings, in their canonical order (the order the documentation applies them in
when turning the external OMS on). Adding a setting = one module + one entry here."""

from __future__ import annotations

from reconciler.settings.associate_app import AssociateApp
from reconciler.settings.availability_webhook import AvailabilityWebhook
from reconciler.settings.base import Setting
from reconciler.settings.external_atp import ExternalATP
from reconciler.settings.external_oms import ExternalOMS

REGISTRY: tuple[Setting, ...] = (
    ExternalOMS(),
    AvailabilityWebhook(),
    ExternalATP(),
    AssociateApp(),
)
BY_KEY: dict[str, Setting] = {s.key: s for s in REGISTRY}

__all__ = ["BY_KEY", "REGISTRY", "Setting"]
