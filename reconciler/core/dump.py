"""`reconciler dump`: a tenant's live state written into an environment file.

How a team adopts the tool: write a file with just `tenant` and `connection` (and `extends`,
`gates`), dump over it, review and commit the result. How it refreshes one: dump over the file
again. Either way the dump edits the file's own text (`dump_text`), so everything it does not
change stays as written:

- the file that is edited is `--out` when it exists, else ENV's own file; its `extends`,
  `connection`, `gates`, comments and every `${NAME}` it uses are kept;
- a file that manages no setting yet (the adoption stub) gets every setting; one that manages
  some keeps managing exactly those (an omitted setting is unmanaged: a dump does not widen
  what the file controls, it notes what it left out);
- a setting whose block already says what NewStore holds is not touched; one that differs is
  rewritten (secrets under the variable names the file already uses); one that a base file
  already says is not written at all, and a differing one gets only the fields the base does
  not already say;
- the Associate App's stores are the ones the file lists, plus `--store ID`: NewStore cannot
  list stores, and the dump says so.

A webhook api_key is only ever written as a `${...}` reference. A live state that breaks a
safety rule is still dumped, with a warning naming the rule: the file then fails validation
until someone decides which side to fix.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from reconciler.config import load_unmanaged
from reconciler.config.rehearsal import is_rehearsal, sample_webhook_url
from reconciler.config.resolve import (
    CREDENTIAL_DEFAULTS,
    Resolver,
    merge_data,
    references,
    whole_reference,
)
from reconciler.config.yamlsafe import load_file, parse_text
from reconciler.core.dump_text import (
    header,
    insert_block,
    replace_block,
    scalar,
    schema_line,
    secret_variable,
    setting_lines,
    top_level_spans,
    with_header,
)
from reconciler.core.plan import default_client, differs, read_live
from reconciler.errors import ConfigError, ValidationFailed
from reconciler.fsutil import atomic_write_text
from reconciler.model import ABSENT, Environment, Value
from reconciler.newstore.settings import REGISTRY, Setting
from reconciler.newstore.settings.associate_app import managed_stores, store_field
from reconciler.rules import violations

if TYPE_CHECKING:
    from reconciler.newstore.client import NewStoreClient

__all__ = [
    "Dump",
    "check_out",
    "dump_environment",
    "secret_variable",
    "setting_lines",
    "write_dump",
]

STORE_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
ORDER: Final = tuple(s.key for s in REGISTRY)


@dataclass(frozen=True)
class Dump:
    text: str  # the environment file
    variables: tuple[str, ...]  # every variable the file (with its bases) needs, in order
    warnings: tuple[str, ...]  # for stderr: broken safety rules, paths that moved
    notes: tuple[str, ...] = ()  # for stderr: what the dump could not see or left out
    before: str | None = None  # the text of the file dumped over (None: a new file, stdout)
    changed: tuple[str, ...] = ()  # the settings whose blocks were written or rewritten
    new_variables: tuple[str, ...] = ()  # of `variables`, those the file did not use before


# --- the file dumped over ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Template:
    path: Path
    text: str
    own: dict[str, Any]  # what the file itself says, before `extends` and `${NAME}`
    base: dict[str, Any]  # what its `extends` chain says (merged), before `${NAME}`
    merged: dict[str, Any]  # both

    def says(self, key: str) -> Any:
        return self.merged.get(key)


def _template(path: Path) -> _Template:
    document, problems = load_file(path, str(path))
    if document is None:
        raise ValidationFailed(problems)
    base: dict[str, Any] = {}
    target = document.data.get("extends")
    if isinstance(target, str):
        resolved, problems = Resolver().resolve(path.parent / target, str(path.parent / target))
        if resolved is None:
            raise ValidationFailed(problems)
        base = resolved.data
    own = {k: v for k, v in document.data.items() if k != "extends"}
    return _Template(
        path, path.read_text(encoding="utf-8"), document.data, base, merge_data(base, own)
    )


def _variables_in(data: Any) -> list[str]:
    if isinstance(data, str):
        return references(data)
    if isinstance(data, dict):
        return [name for item in data.values() for name in _variables_in(item)]
    if isinstance(data, list):
        return [name for item in data for name in _variables_in(item)]
    return []


def _needed(data: dict[str, Any]) -> list[str]:
    """The variables a merged document needs, in order, the credential defaults included."""
    names = _variables_in(data)
    connection = data.get("connection")
    if not isinstance(connection, dict):
        connection = {}
    for path, reference in CREDENTIAL_DEFAULTS.items():
        if path.rsplit(".", 1)[1] not in connection:
            names += references(reference)
    return list(dict.fromkeys(names))


# --- comparing what the file says with what NewStore holds --------------------------------------


def _desired(
    setting: Setting, raw: Any, environ: Mapping[str, str]
) -> tuple[Value | None, str | None]:
    """What the file's (merged) block for `setting` asks for, secrets aside; None when it
    cannot be read as a value. The second item names an unset variable a non-secret field
    needs: then the block cannot be compared (and is kept as written)."""
    if raw == "absent":
        return ABSENT, None
    if not isinstance(raw, dict):
        return None, None
    fields: dict[str, Any] = {}
    for name, value in raw.items():
        if name in setting.secret_fields:
            continue
        if isinstance(value, str):
            for variable in references(value):
                if variable not in environ:
                    return None, variable
                value = value.replace(f"${{{variable}}}", environ[variable])
        fields[name] = value
    try:
        return setting.from_file(fields), None
    except (KeyError, TypeError, ValueError):
        return None, None


def _without_secrets(setting: Setting, value: Value) -> Value:
    if value is ABSENT:
        return ABSENT
    return {k: v for k, v in value.items() if k not in setting.secret_fields}


def _matches(setting: Setting, live: Value, desired: Value) -> bool:
    return not differs(setting, _without_secrets(setting, live), _without_secrets(setting, desired))


def _omitted(setting: Setting, live: Value, base: Any, own: Any) -> list[str]:
    """The fields of `setting`'s block that need not be written: those a base file already
    says as NewStore holds them, and, in a block the file has, those it leaves to their
    default where NewStore holds the default."""
    if live is ABSENT:
        return []
    base_fields = base if isinstance(base, dict) else {}
    own_fields = own if isinstance(own, dict) else None
    omit = []
    for name, value in setting.to_file(live).items():
        if name in setting.secret_fields:
            # The base names the variable and the file does not: keep the base's.
            if name in base_fields and (own_fields is None or name not in own_fields):
                omit.append(name)
        elif (name in base_fields and base_fields[name] == value) or (
            own_fields is not None
            and name not in own_fields
            and name in setting.field_defaults
            and setting.field_defaults[name] == value
        ):
            omit.append(name)
    return omit


def _names(setting: Setting, raw: Any) -> dict[str, str]:
    """The variables the file already uses for `setting`'s secret fields."""
    if not isinstance(raw, dict):
        return {}
    found = {name: whole_reference(raw.get(name)) for name in setting.secret_fields}
    return {name: variable for name, variable in found.items() if variable is not None}


# --- the dump ----------------------------------------------------------------------------------


def _relocated(template: _Template, text: str, out: Path, warnings: list[str]) -> str:
    """ENV's own file written somewhere else: its relative paths adjusted to the new place."""
    target = template.own.get("extends")
    spans = top_level_spans(text, str(template.path))
    if isinstance(target, str) and "extends" in spans:
        moved = os.path.relpath(template.path.parent / target, out.parent)
        text = replace_block(text, spans["extends"], f"extends: {scalar(Path(moved).as_posix())}")
    connection = template.own.get("connection")
    if isinstance(connection, dict) and "ca_bundle" in connection:
        warnings.append(
            f"connection.ca_bundle is relative to {template.path}; {out} is in another "
            "directory, so adjust it there"
        )
    first, _, rest = text.partition("\n")
    if first.startswith("# yaml-language-server:"):
        text = schema_line(out.parent) + "\n" + rest
    return text


def dump_environment(
    path: Path,
    *,
    out: Path | None = None,
    environ: Mapping[str, str] | None = None,
    client_factory: Callable[[Environment], AbstractContextManager[NewStoreClient]] | None = None,
    stores: Sequence[str] = (),
) -> Dump:
    """Read the live state of the environment in `path` and write it into its file: `out`
    when that exists, else `path` (relative paths adjusted when `out` is elsewhere); `out`
    None for stdout. `stores` are store ids whose Associate App documents are read besides
    those the file lists (NewStore cannot list them)."""
    bad = [store for store in stores if not STORE_ID.fullmatch(store)]
    if bad:
        raise ConfigError(
            f"--store {bad[0]!r} is not a store id: use 1-64 letters, digits, '_' or '-'."
        )
    environ = os.environ if environ is None else environ
    env, resolved = load_unmanaged(path, environ=environ)
    # A rehearsal sent the sandbox's sample webhook in place of the file's: see below.
    sample = sample_webhook_url(env.connection.base_url) if is_rehearsal(resolved) else None
    existing = out is not None and out.exists()
    template = _template(out if existing and out is not None else path)
    file = str(template.path)
    stub = not any(key in template.own for key in ORDER)
    warnings: list[str] = []
    notes: list[str] = []

    # Read every setting, and the stores the file lists or --store names.
    listed = template.says("associate_app")
    listed_stores = listed.get("stores") if isinstance(listed, dict) else None
    wanted_stores = list(dict.fromkeys([*(listed_stores or {}), *stores]))
    defaults = {s.key: s.default for s in REGISTRY}
    app = defaults["associate_app"]
    assert app is not ABSENT
    defaults["associate_app"] = {**app, **{store_field(s): None for s in wanted_stores}}
    everything = replace(env, desired=defaults)
    with (client_factory or default_client)(everything) as client:
        live = read_live(everything, client)
    for rule in violations(live):
        warnings.append(
            f"the live state of {env.tenant} breaks {rule}: {rule.consequence}. It is dumped "
            "as it is, so the file fails validation until one side is fixed"
        )

    text = template.text
    lives_in = (out if out is not None else path).parent
    if out is not None and not existing and out.parent.resolve() != path.parent.resolve():
        text = _relocated(template, text, out, warnings)
    changed: list[str] = []
    new_blocks: list[tuple[str, str]] = []
    variables: list[str] = []
    for setting in REGISTRY:
        key, value = setting.key, live[setting.key]
        in_own, in_base = key in template.own, key in template.base
        if not (stub or in_own or in_base):
            if differs(setting, value, setting.default):
                notes.append(
                    f"{key} is configured in NewStore but not managed by {file} (an omitted "
                    "setting is unmanaged), so it was left out; add it to the file to manage it"
                )
            continue
        raw = template.says(key)
        desired, unset = _desired(setting, raw, environ)
        if sample is not None and isinstance(value, dict) and value.get("url") == sample:
            if isinstance(desired, dict) and "url" in desired:
                # What the rehearsal sent for the file's url: the file's url stands.
                value = {**value, "url": desired["url"]}
            else:
                warnings.append(
                    f"{key} in NewStore is the sandbox's sample webhook, which a rehearsal "
                    f"sends: replace its url in {file} with your webhook's"
                )
        extra_stores = key == "associate_app" and set(stores) - set(listed_stores or {})
        if unset is not None:
            warnings.append(
                f"{key} in {file} uses ${{{unset}}}, which is not set, so it cannot be compared "
                "with NewStore: kept as written"
            )
            continue
        if desired is not None and not extra_stores and _matches(setting, value, desired):
            continue
        if value is ABSENT and not setting.deletable and (in_own or in_base):
            warnings.append(
                f"{key} is not configured in NewStore, and its API cannot delete it: {file} "
                "still says what it should be (plan will create it)"
            )
            continue
        own_raw = template.own.get(key)
        lines = setting_lines(
            setting,
            value,
            env.name,
            variables,
            warnings,
            names=_names(setting, raw),
            omit=_omitted(setting, value, template.base.get(key), own_raw),
        )
        block = "\n".join(lines)
        changed.append(key)
        spans = top_level_spans(text, file)
        if key in spans:
            text = replace_block(text, spans[key], block)
        else:
            new_blocks.append((key, block))
    if stub and new_blocks:
        # One group in registry order, comment lines (a setting left unmanaged) in their place.
        keys, blocks = zip(*new_blocks, strict=True)
        text = insert_block(text, file, keys[0], "\n".join(blocks), ORDER)
    else:
        for key, block in new_blocks:
            text = insert_block(text, file, key, block, ORDER)

    manages_app = stub or "associate_app" in template.own or "associate_app" in template.base
    if manages_app or wanted_stores:
        which = ", ".join(managed_stores(live["associate_app"])) or "none"
        notes.append(
            "NewStore's API cannot list stores: only the store documents the file lists or "
            f"--store names were read ({which}); add `--store ID` for any other store with a "
            "document of its own"
        )

    edited, problems = parse_text(text, file)
    if edited is None:  # the edit is built to parse; say so rather than write a broken file
        raise ValidationFailed(problems)
    own_now = {k: v for k, v in edited.data.items() if k != "extends"}
    needed = _needed(merge_data(template.base, own_now))
    before_names = set(_needed(template.merged))
    if stub:
        text = with_header(text, header(env.tenant, env.name, needed), schema_line(lives_in))
    return Dump(
        text=text,
        variables=tuple(needed),
        warnings=tuple(warnings),
        notes=tuple(notes),
        before=template.text if existing else None,
        changed=tuple(changed),
        new_variables=tuple(name for name in needed if name not in before_names),
    )


def check_out(out: Path, *, force: bool) -> None:
    """Refuse to overwrite an existing file without --force (before reading anything)."""
    if out.exists() and not force:
        raise ConfigError(f"{out} already exists; pass --force to overwrite it.")


def write_dump(text: str, out: Path, *, force: bool) -> None:
    """Write atomically: the file is either the old one or the whole new one."""
    check_out(out, force=force)
    atomic_write_text(out, text)
