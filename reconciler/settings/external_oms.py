"""External OMS flag. (Declarations only: read/write land with the client issue.)"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from reconciler.model import Fields, Value
from reconciler.settings.base import Setting

if TYPE_CHECKING:
    from reconciler.client import NewStoreClient


class ExternalOMS(Setting):
    key = "external_oms"
    title = "External OMS flag"
    path = "/v0/config/sales_order/external_oms"
    deletable = False
    default: ClassVar[Value] = {"enabled": False}

    def read(self, client: NewStoreClient) -> Value:
        raise NotImplementedError

    def write(self, client: NewStoreClient, value: Fields) -> str | None:
        raise NotImplementedError
