"""Associate App use_new_om_ui. (Declarations only: read/write land with the client issue.)"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from reconciler.model import Fields, Value
from reconciler.settings.base import Setting

if TYPE_CHECKING:
    from reconciler.client import NewStoreClient


class AssociateApp(Setting):
    key = "associate_app"
    title = "Associate App use_new_om_ui"
    path = "/api/v1/associate-app/config"
    deletable = False
    default: ClassVar[Value] = {"use_new_om_ui": False}

    def read(self, client: NewStoreClient) -> Value:
        raise NotImplementedError

    def write(self, client: NewStoreClient, value: Fields) -> str | None:
        raise NotImplementedError
