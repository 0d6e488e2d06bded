"""Diffing a live value against the desired one, and the values a plan shows.

Pure: `differs` says whether a setting needs a write, `_action` which write, `_field_changes`
lists the fields that change, and `shown_value` / `_shown` turn values into what a plan may
show (secrets masked, unknown fields marked). Nothing here talks to NewStore.
"""

from __future__ import annotations

from typing import Any, Final

from reconciler.core.plan.values import (
    Action,
    FieldChange,
)
from reconciler.model import (
    ABSENT,
    SENSITIVE,
    SENSITIVE_CHANGED,
    UNKNOWN,
    UNKNOWN_SHOWN,
    Fields,
    Masked,
    Value,
    unreadable,
)
from reconciler.newstore.settings import Setting

_MISSING: Final[Any] = object()  # a field one side of a diff does not have (create/delete)


def _fields(value: Value) -> Fields:
    return {} if value is ABSENT else value


def _same_field(live: Any, desired: Any) -> bool:
    # A wholly masked live field cannot be compared; treating it as different would make every
    # run re-send the secret and report a change that may not exist. A partly masked one is
    # compared on what the mask left visible: a desired key it cannot be is a real change.
    if isinstance(live, Masked):
        return live.could_be(desired)
    return live is UNKNOWN or live == desired


def differs(setting: Setting, live: Value, desired: Value) -> bool:
    """Whether `live` must change to become `desired` (a masked live field never counts)."""
    live_n, desired_n = setting.normalize(live), setting.normalize(desired)
    if live_n is ABSENT or desired_n is ABSENT:
        return live_n is not desired_n
    names = live_n.keys() | desired_n.keys()
    return not all(
        _same_field(live_n.get(name, _MISSING), desired_n.get(name, _MISSING)) for name in names
    )


def _action(live: Value, desired: Value) -> Action:
    if live is ABSENT:
        return Action.CREATE
    if desired is ABSENT:
        return Action.DELETE
    return Action.UPDATE


NO_SECRETS: Final[frozenset[str]] = frozenset()


def _shown(
    setting: Setting,
    name: str,
    value: Any,
    *,
    changed_secret: bool = False,
    secret: frozenset[str] = NO_SECRETS,
) -> Any:
    if value is _MISSING:
        return None
    if name in setting.secret_fields or name in secret:
        return SENSITIVE_CHANGED if changed_secret else SENSITIVE
    if unreadable(value):
        return UNKNOWN_SHOWN
    return value


def shown_value(setting: Setting, value: Value, secret: frozenset[str] = NO_SECRETS) -> Any:
    """A whole value, masked for people and files: None when absent, secret fields (the
    setting's, and `secret`: those the environment makes secret, `Environment.secret_names`)
    "(sensitive)", masked live fields "(unknown)"."""
    normal = setting.normalize(value)
    if normal is ABSENT:
        return None
    return {
        name: _shown(setting, name, field_value, secret=secret)
        for name, field_value in normal.items()
    }


def _field_changes(
    setting: Setting, live: Value, desired: Value, secret: frozenset[str] = NO_SECRETS
) -> tuple[FieldChange, ...]:
    """The masked field-level diff of one step. A masked live field is listed only when the
    step rewrites the object anyway (a PUT sends every field, so it is written regardless).
    `secret`: fields the environment makes secret beyond the setting's own."""
    before, after = _fields(setting.normalize(live)), _fields(setting.normalize(desired))
    names = list(after) + [name for name in before if name not in after]
    changes = []
    for name in names:
        old, new = before.get(name, _MISSING), after.get(name, _MISSING)
        if isinstance(old, Masked) and new is not _MISSING and not old.could_be(new):
            # What NewStore shows of its key cannot belong to the file's: the key changes.
            changes.append(
                FieldChange(
                    f"{setting.key}.{name}",
                    _shown(setting, name, old, secret=secret),
                    _shown(setting, name, new, changed_secret=True, secret=secret),
                )
            )
        elif unreadable(old) and new is not _MISSING:
            changes.append(
                FieldChange(
                    f"{setting.key}.{name}",
                    _shown(setting, name, old, secret=secret),
                    _shown(setting, name, new, secret=secret),
                )
            )
        elif old != new:
            both = old is not _MISSING and new is not _MISSING
            changes.append(
                FieldChange(
                    f"{setting.key}.{name}",
                    _shown(setting, name, old, secret=secret),
                    _shown(setting, name, new, changed_secret=both, secret=secret),
                )
            )
    return tuple(changes)
