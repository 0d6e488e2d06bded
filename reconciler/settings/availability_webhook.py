"""Availability webhook config. (Declarations only: read/write land with the client issue.)"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from reconciler.model import ABSENT, Fields, Value
from reconciler.settings.base import Setting

if TYPE_CHECKING:
    from reconciler.client import NewStoreClient


class AvailabilityWebhook(Setting):
    key = "availability_webhook"
    title = "Availability webhook config"
    path = "/v0/config/availability/webhook"
    secret_fields = frozenset({"api_key"})
    deletable = True
    default: ClassVar[Value] = ABSENT

    def read(self, client: NewStoreClient) -> Value:
        raise NotImplementedError

    def write(self, client: NewStoreClient, value: Fields) -> str | None:
        raise NotImplementedError
