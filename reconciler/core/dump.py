"""`reconciler dump`: a tenant's live state as an environment file that plans zero changes.

How a team adopts the tool: write a file with just `tenant` and `connection` (and `extends`,
`gates`), dump it, review and commit the result. The source file supplies those sections,
copied as written (comments and `${...}` references kept, nothing substituted); its settings,
if any, are ignored, and all of them are read live (with `--store ID`, the named stores'
Associate App documents too: NewStore cannot list stores). A webhook api_key is only ever
written as a `${...}` reference named after the environment; a header comment lists every
variable to set.

A live state that breaks a safety rule is still dumped, with a warning naming the rule: the file
then fails validation until someone decides which side to fix.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit, urlunsplit

import yaml

from reconciler.config import load_unmanaged
from reconciler.config.yamlsafe import load_file
from reconciler.core.plan import default_client, read_live
from reconciler.errors import ConfigError, ValidationFailed
from reconciler.fsutil import atomic_write_text
from reconciler.model import ABSENT, UNKNOWN, Environment, Masked, Value, unreadable
from reconciler.newstore.settings import REGISTRY, Setting
from reconciler.newstore.settings.associate_app import store_field
from reconciler.rules import violations

if TYPE_CHECKING:
    from reconciler.newstore.client import NewStoreClient

# The sections a dump copies from its source file, in the order it writes them (settings go
# between `connection` and `gates`, as in the examples).
_HEAD_SECTIONS: Final = ("extends", "tenant", "connection")
_TAIL_SECTIONS: Final = ("gates",)
_SCHEMA_LINE: Final = "# yaml-language-server: $schema=../schemas/environment.schema.json"
_REFERENCE: Final = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
STORE_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass(frozen=True)
class Dump:
    text: str  # the environment file
    variables: tuple[str, ...]  # what to export before planning it, in order of appearance
    warnings: tuple[str, ...]  # for stderr: broken safety rules, paths that moved


def secret_variable(env_name: str, setting_key: str, field: str) -> str:
    """The variable a dumped secret (or masked field) is read from: the webhook api_key of
    acme-staging → ACME_STAGING_ATP_API_KEY (the name the README and CI recipes use); any other
    → ACME_STAGING_<SETTING>_<FIELD>."""
    stem = _variable_part(env_name)
    if not stem or stem[0].isdigit():
        stem = f"ENV_{stem}"
    if (setting_key, field) == ("availability_webhook", "api_key"):
        return f"{stem}_ATP_API_KEY"
    return f"{stem}_{_variable_part(setting_key)}_{_variable_part(field)}"


def _variable_part(text: str) -> str:
    return re.sub(r"[^A-Z0-9]+", "_", text.upper()).strip("_")


# --- the source file ---------------------------------------------------------------------------


def _references(value: Any) -> list[str]:
    if isinstance(value, str):
        return _REFERENCE.findall(value)
    if isinstance(value, dict):
        return [name for item in value.values() for name in _references(item)]
    if isinstance(value, list):
        return [name for item in value for name in _references(item)]
    return []


def _trim(block: str) -> str:
    """Drop the blank and comment-only lines a section's text ends with: they lead into the
    next section."""
    lines = block.split("\n")
    while lines and (not lines[-1].strip() or lines[-1].lstrip().startswith("#")):
        lines.pop()
    return "\n".join(lines)


def _own_sections(path: Path) -> tuple[str | None, dict[str, str], dict[str, Any]]:
    """The source file's schema line, the text of its own copied sections (as written, comments
    included), and their raw values."""
    document, problems = load_file(path, str(path))
    if document is None:
        raise ValidationFailed(problems)
    wanted = (*_HEAD_SECTIONS, *_TAIL_SECTIONS)
    raw = {key: document.data[key] for key in wanted if key in document.data}
    # Already read within load_file's limits, so composing it again is cheap and safe.
    text = path.read_text(encoding="utf-8")
    first = text.split("\n", 1)[0]
    schema_line = first if first.startswith("# yaml-language-server:") else None
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    sections: dict[str, str] = {}
    pairs = root.value if isinstance(root, yaml.MappingNode) and not root.flow_style else []
    for key_node, value_node in pairs:
        key = str(key_node.value)
        if key not in raw or key_node.start_mark.column != 0:
            continue
        end = value_node.end_mark.index
        if value_node.end_mark.column != 0:  # keep a comment at the end of the line
            newline = text.find("\n", end)
            end = len(text) if newline < 0 else newline
        sections[key] = _trim(text[key_node.start_mark.index : end])
    for key in raw.keys() - sections.keys():  # flow style or odd layout: re-emit the value
        sections[key] = yaml.safe_dump({key: raw[key]}, sort_keys=False).rstrip("\n")
    return schema_line, sections, raw


# --- the live settings -------------------------------------------------------------------------


def _scalar(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=2**31 - 1)
    return text.removesuffix("\n...\n").rstrip("\n")


def _without_credentials(url: Any) -> tuple[Any, bool]:
    if not isinstance(url, str):
        return url, False
    try:
        parts = urlsplit(url)
    except ValueError:
        return url, False
    if "@" not in parts.netloc:
        return url, False
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=host)), True


def setting_lines(
    setting: Setting, value: Value, env_name: str, variables: list[str], warnings: list[str]
) -> list[str]:
    """One setting's block of the dumped file. A secret field, or a field NewStore answered
    masked, is written as a `${...}` reference only, and its variable appended to
    `variables`. A setting that is not configured and cannot be deleted through the API is left
    out (unmanaged): `absent` would be a validation error for it."""
    if value is ABSENT and not setting.deletable:
        return [
            f"# {setting.key}: not configured in NewStore; NewStore's API cannot delete it, so "
            "it is left unmanaged here"
        ]
    if value is ABSENT:
        return [f"{setting.key}: absent"]
    lines = [f"{setting.key}:"]
    for name, field_value in setting.to_file(value).items():
        if name in setting.secret_fields or unreadable(field_value):
            variable = secret_variable(env_name, setting.key, name)
            variables.append(variable)
            if isinstance(field_value, Masked):
                why = "NewStore answers it masked; plan checks only the part the mask shows"
            elif field_value is UNKNOWN:
                why = "NewStore answers it masked, so plan cannot check the value you export"
            else:
                why = "export NewStore's current value; it is never written here"
            lines.append(f"  {name}: ${{{variable}}}  # {why}")
            continue
        if name in setting.url_fields:
            field_value, stripped = _without_credentials(field_value)
            if stripped:
                warnings.append(
                    f"the live {setting.key}.{name} embeds credentials (user:password@); "
                    "they are left out of the dump, so plan will show the url changing"
                )
        lines += _mapping_lines(name, field_value, "  ")
    return lines


def _mapping_lines(name: str, value: Any, indent: str) -> list[str]:
    """`name: value` in block style, nested mappings indented under their key."""
    if not isinstance(value, dict) or not value:
        return [f"{indent}{name}: {_scalar(value)}"]
    lines = [f"{indent}{name}:"]
    for key, item in value.items():
        lines += _mapping_lines(str(key), item, indent + "  ")
    return lines


# --- the dump ----------------------------------------------------------------------------------


def _schema_line(directory: Path) -> str:
    """The editor's schema link for a file in `directory`: to the nearest
    `schemas/environment.schema.json` above it (as `reconciler init` lays a repository out),
    else to where `init` would have put it, beside the environments directory."""
    start = directory.resolve()
    for parent in (start, *start.parents):
        candidate = parent / "schemas" / "environment.schema.json"
        if candidate.is_file():
            link = Path(os.path.relpath(candidate, start)).as_posix()
            return f"# yaml-language-server: $schema={link}"
    return _SCHEMA_LINE


def dump_environment(
    path: Path,
    *,
    out: Path | None = None,
    environ: Mapping[str, str] | None = None,
    client_factory: Callable[[Environment], AbstractContextManager[NewStoreClient]] | None = None,
    stores: Sequence[str] = (),
) -> Dump:
    """Read the live state of every setting of the environment in `path` and render it as an
    environment file. `out` is where the file will be written (relative paths are adjusted to
    it); None for stdout, where paths are kept as written. `stores` are the store ids whose
    Associate App documents are read too (NewStore cannot list them)."""
    bad = [store for store in stores if not STORE_ID.fullmatch(store)]
    if bad:
        raise ConfigError(
            f"--store {bad[0]!r} is not a store id: use 1-64 letters, digits, '_' or '-'."
        )
    env, merged_raw = load_unmanaged(path, environ=environ)
    schema_line, sections, raw = _own_sections(path)
    warnings: list[str] = []

    if out is not None and out.parent.resolve() != path.parent.resolve():
        if isinstance(raw.get("extends"), str):
            target = os.path.relpath(path.parent / raw["extends"], out.parent)
            sections["extends"] = f"extends: {_scalar(Path(target).as_posix())}"
        connection = raw.get("connection")
        if isinstance(connection, dict) and "ca_bundle" in connection:
            warnings.append(
                f"connection.ca_bundle is relative to {path}; {out} is in another directory, "
                "so adjust it there"
            )

    factory = client_factory or default_client
    defaults = {s.key: s.default for s in REGISTRY}
    if stores:
        app = defaults["associate_app"]
        assert app is not ABSENT
        defaults["associate_app"] = {**app, **{store_field(s): None for s in dict.fromkeys(stores)}}
    everything = replace(env, desired=defaults)
    with factory(everything) as client:
        live = read_live(everything, client)

    for rule in violations(live):
        warnings.append(
            f"the live state of {env.tenant} breaks {rule}: {rule.consequence}. It is dumped "
            "as it is, so the file fails validation until one side is fixed"
        )

    variables = list(_references(merged_raw))
    settings = [
        line
        for setting in REGISTRY
        for line in setting_lines(setting, live[setting.key], env.name, variables, warnings)
    ]
    variables = list(dict.fromkeys(variables))
    lives_in = (out if out is not None else path).parent
    if schema_line is None or lives_in.resolve() != path.parent.resolve():
        schema_line = _schema_line(lives_in)
    header = [
        schema_line,
        "#",
        f"# The live state of NewStore tenant {env.tenant}, written by "
        f"`reconciler dump {env.name}`.",
    ]
    if variables:
        header.append("# `reconciler plan` shows no changes for it once these variables are set:")
        header += [f"#   export {name}=..." for name in variables]
    else:
        header.append("# `reconciler plan` shows no changes for it.")
    blocks = [
        "\n".join(header),
        "\n".join(sections[key] for key in _HEAD_SECTIONS if key in sections),
        "\n".join(settings),
        "\n".join(sections[key] for key in _TAIL_SECTIONS if key in sections),
    ]
    text = "\n\n".join(block for block in blocks if block) + "\n"
    return Dump(text, tuple(variables), tuple(warnings))


def check_out(out: Path, *, force: bool) -> None:
    """Refuse to overwrite an existing file without --force (before reading anything)."""
    if out.exists() and not force:
        raise ConfigError(f"{out} already exists; pass --force to overwrite it.")


def write_dump(text: str, out: Path, *, force: bool) -> None:
    """Write atomically: the file is either the old one or the whole new one."""
    check_out(out, force=force)
    atomic_write_text(out, text)
