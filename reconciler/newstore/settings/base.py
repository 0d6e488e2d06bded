"""What every managed NewStore setting module provides.

A setting module subclasses `Setting`, declares its API path, its secret and server-managed
fields, and implements `read`/`write` (and `delete` where the API has one). The planner, the
renderers, drift, dump and the generated schemas only ever use this interface, so a new setting
is one new module plus one line in `reconciler.newstore.settings.REGISTRY` (and, for the
sandbox, one entry in `reconciler.sandbox.endpoints.ENDPOINTS`); docs/adding-a-setting.md.
An on/off flag subclasses `flag.Flag` instead, which does the rest.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any, ClassVar

from reconciler.errors import ConflictError
from reconciler.model import ABSENT, Fields, Value

if TYPE_CHECKING:
    from reconciler.newstore.client import NewStoreClient


class Setting(ABC):
    key: ClassVar[str]  # the environment file's key, e.g. "availability_webhook"
    path: ClassVar[str]  # API path under the tenant's base_url
    secret_fields: ClassVar[frozenset[str]] = frozenset()
    server_managed_fields: ClassVar[frozenset[str]] = frozenset({"updated_at"})
    # Managed fields in the order people read them (plans, dumps); unlisted ones follow, sorted.
    field_order: ClassVar[tuple[str, ...]] = ()
    # Whether the configuration can be removed (`key: absent` in a file, a delete step). Only
    # settings with `deletable = True` implement `delete`; config refuses `absent` for others.
    deletable: ClassVar[bool] = False
    # The value a tenant has before anyone configured it (what `read` returns then).
    default: ClassVar[Value] = ABSENT
    # What the environment file may leave out, and the value it then has.
    field_defaults: ClassVar[Mapping[str, Any]] = {}
    # Fields holding a URL: config checks them (https except loopback, no credentials);
    # `url_query_allowed` says whether a query string (?...) is acceptable in them.
    url_fields: ClassVar[frozenset[str]] = frozenset()
    url_query_allowed: ClassVar[bool] = False
    # Fields the file gives as whole numbers (YAML may spell them 15.0).
    integer_fields: ClassVar[frozenset[str]] = frozenset()
    # The JSON Schema of the file's `<key>:` (`schemas/environment.schema.json` is generated
    # from these by `reconciler schema --write`), and the `$defs` entries it refers to. It must
    # accept `absent` exactly when the setting is `deletable`.
    schema: ClassVar[Mapping[str, Any]] = {}
    schema_defs: ClassVar[Mapping[str, Mapping[str, Any]]] = {}

    @abstractmethod
    def read(self, client: NewStoreClient) -> Value:
        """GET the live value, normalised to the managed fields, or ABSENT."""

    @abstractmethod
    def write(self, client: NewStoreClient, value: Fields) -> str | None:
        """Set the live value to `value`. Returns NewStore's request id when it gave one."""

    def write_over(self, client: NewStoreClient, value: Fields, before: Value) -> str | None:
        """`write`, where `before` is what the caller read just before (apply's re-read). A
        setting whose write reads the live value again first (a document changed in place)
        overrides this, to refuse a read that contradicts `before`; "set to this value" writes
        need not."""
        return self.write(client, value)

    def read_managed(self, client: NewStoreClient, desired: Value) -> Value:
        """The live value of what `desired` manages. Most settings are one object and ignore
        `desired`; one whose reads depend on what the file lists (the Associate App's store
        documents) overrides this. Plan, apply, drift and dump all read through it."""
        return self.read(client)

    def from_file(self, fields: Mapping[str, Any]) -> Value:
        """The desired value of the (schema-checked) mapping the environment file gives."""
        value: Fields = {**self.field_defaults, **fields}
        for name in self.integer_fields & value.keys():
            value[name] = int(value[name])
        return self.normalize(value)

    def to_file(self, value: Fields) -> dict[str, Any]:
        """The mapping an environment file gives for `value` (the inverse of `from_file`)."""
        return dict(value)

    def file_schema(self) -> dict[str, Any]:
        """The JSON Schema of the file's `<key>:` (`schema`, unless a subclass builds it)."""
        return dict(self.schema)

    def notes(self, desired: Value) -> list[str]:
        """What the plan should say about managing `desired` that no diff shows."""
        return []

    def delete(self, client: NewStoreClient) -> str | None:
        """Remove the configuration. Only settings with `deletable = True` implement it."""
        raise NotImplementedError(f"{self.key} cannot be deleted")

    def normalize(self, value: Value) -> Value:
        """Canonical form used for diffs and fingerprints: the managed fields in `field_order`
        (override for representation quirks)."""
        if value is ABSENT:
            return ABSENT
        rank = _ranks(self.field_order)
        unlisted = len(rank)
        names = sorted(
            (name for name in value if name not in self.server_managed_fields),
            key=lambda name: (rank.get(name, unlisted), name),
        )
        return {name: value[name] for name in names}


@functools.cache
def _ranks(field_order: tuple[str, ...]) -> dict[str, int]:
    """Each field's place in `field_order` (a plan normalises values some fifty times per
    environment: built once per setting, not per call)."""
    return {name: index for index, name in enumerate(field_order)}


CONFLICT_ATTEMPTS = 3


def retry_on_conflict(send: Callable[[], str | None], done: Callable[[], bool]) -> str | None:
    """`send()` a "set to this value" write; on a 409 (a concurrent update won) re-read with
    `done()`: if the setting already holds the value, the write is done (request id None);
    otherwise send again, at most CONFLICT_ATTEMPTS times in all."""
    attempt = 1
    while True:
        try:
            return send()
        except ConflictError as err:
            if done():
                return None
            if attempt >= CONFLICT_ATTEMPTS:
                raise replace(
                    err,
                    message=f"kept losing a concurrent update (409), {attempt} attempts "
                    f"with a re-read before each retry: {err.message}",
                    hint="Someone else is changing this setting right now; run again "
                    "once they are done.",
                ) from None
            attempt += 1
