"""External ATP flag. (Declarations only: read/write land with the client issue.)"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from reconciler.model import Fields, Value
from reconciler.settings.base import Setting

if TYPE_CHECKING:
    from reconciler.client import NewStoreClient


class ExternalATP(Setting):
    key = "external_atp"
    title = "External ATP flag"
    path = "/v0/config/routing/uses_external_atp"
    deletable = False
    default: ClassVar[Value] = {"enabled": False}

    def read(self, client: NewStoreClient) -> Value:
        raise NotImplementedError

    def write(self, client: NewStoreClient, value: Fields) -> str | None:
        raise NotImplementedError
