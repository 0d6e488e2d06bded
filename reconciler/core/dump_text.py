"""The text `reconciler dump` writes: a setting's YAML block, spliced into a file's own text.

    setting_lines(setting, value, ...)   one setting's block (secrets only as `${...}`)
    top_level_spans(text, file)          where each top-level key's block is in a file
    replace_block / insert_block         an edited text; every other byte stays as written

Editing the file's text rather than re-emitting YAML is what lets a dump over a file keep its
comments, its order and its quoting, so that a tenant that already matches is a zero diff.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

import yaml

from reconciler.errors import ConfigError
from reconciler.model import ABSENT, UNKNOWN, Masked, Value, unreadable
from reconciler.newstore.settings import Setting

# The keys a file starts with, before its settings (as the examples and `init` lay it out).
HEAD_KEYS: Final = ("extends", "tenant", "connection")
SCHEMA_LINE: Final = "# yaml-language-server: $schema=../schemas/environment.schema.json"


def schema_line(directory: Path) -> str:
    """The editor's schema link for a file in `directory`: to the nearest
    `schemas/environment.schema.json` above it (as `reconciler init` lays a repository out),
    else to where `init` would have put it, beside the environments directory."""
    start = directory.resolve()
    for parent in (start, *start.parents):
        candidate = parent / "schemas" / "environment.schema.json"
        if candidate.is_file():
            link = Path(os.path.relpath(candidate, start)).as_posix()
            return f"# yaml-language-server: $schema={link}"
    return SCHEMA_LINE


def header(tenant: str, name: str, variables: Sequence[str]) -> list[str]:
    """The comment a stub's dump starts with: what it is, and the variables it needs."""
    lines = [f"# The live state of NewStore tenant {tenant}, written by `reconciler dump {name}`."]
    if variables:
        lines.append("# `reconciler plan` shows no changes for it once these variables are set:")
        lines += [f"#   export {variable}=..." for variable in variables]
    else:
        lines.append("# `reconciler plan` shows no changes for it.")
    return lines


def with_header(text: str, comment: list[str], link: str) -> str:
    """`text` with `comment` after its editor schema line (`link` when it has none)."""
    first, _, rest = text.partition("\n")
    if not first.startswith("# yaml-language-server:"):
        first, rest = link, "\n" + text
    if not rest.startswith(("\n", "#")):
        rest = "\n" + rest
    return "\n".join([first, "#", *comment]) + "\n" + rest


def secret_variable(env_name: str, setting_key: str, field: str) -> str:
    """The variable a dumped secret (or masked field) is read from when the file names none:
    the webhook api_key of acme-staging → ACME_STAGING_ATP_API_KEY (the name the examples use);
    any other → ACME_STAGING_<SETTING>_<FIELD>."""
    stem = _variable_part(env_name)
    if not stem or stem[0].isdigit():
        stem = f"ENV_{stem}"
    if (setting_key, field) == ("availability_webhook", "api_key"):
        return f"{stem}_ATP_API_KEY"
    return f"{stem}_{_variable_part(setting_key)}_{_variable_part(field)}"


def _variable_part(text: str) -> str:
    return re.sub(r"[^A-Z0-9]+", "_", text.upper()).strip("_")


def scalar(value: Any) -> str:
    """`value` as a one-line YAML scalar or flow collection."""
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
    setting: Setting,
    value: Value,
    env_name: str,
    variables: list[str],
    warnings: list[str],
    *,
    names: Mapping[str, str] | None = None,
    omit: Sequence[str] = (),
) -> list[str]:
    """One setting's block. A secret field, or a field NewStore answered masked, is written as
    a `${...}` reference only: the variable `names` gives for it (the one the file already
    uses), else one named after the environment; each is appended to `variables`. Fields in
    `omit` are left out (a base file already says them). A setting that is not configured and
    cannot be deleted through the API is left out (unmanaged): `absent` would be a validation
    error for it."""
    if value is ABSENT and not setting.deletable:
        return [
            f"# {setting.key}: not configured in NewStore; NewStore's API cannot delete it, so "
            "it is left unmanaged here"
        ]
    if value is ABSENT:
        return [f"{setting.key}: absent"]
    names = names or {}
    lines = [f"{setting.key}:"]
    for name, field_value in setting.to_file(value).items():
        if name in omit:
            continue
        if name in setting.secret_fields or unreadable(field_value):
            variable = names.get(name) or secret_variable(env_name, setting.key, name)
            variables.append(variable)
            if name in names and not unreadable(field_value):
                lines.append(f"  {name}: ${{{variable}}}")  # the file's own, as it was
                continue
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
        return [f"{indent}{name}: {scalar(value)}"]
    lines = [f"{indent}{name}:"]
    for key, item in value.items():
        lines += _mapping_lines(str(key), item, indent + "  ")
    return lines


# --- the file's text --------------------------------------------------------------------------


@dataclass(frozen=True)
class Span:
    """A top-level key's block: from the key to the end of its value's last line (its comment
    included), without the blank and comment-only lines after it, which lead into the next."""

    start: int
    end: int


def _trim(block: str) -> str:
    lines = block.split("\n")
    while lines and (not lines[-1].strip() or lines[-1].lstrip().startswith("#")):
        lines.pop()
    return "\n".join(lines)


def top_level_spans(text: str, file: str) -> dict[str, Span]:
    """Where each top-level key of `text` (a block mapping) is written."""
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if root is None:
        return {}
    if not isinstance(root, yaml.MappingNode) or root.flow_style:
        raise ConfigError(
            f"{file}: dump edits files whose top level is a block mapping (`key: value` lines); "
            "rewrite it in that style, or dump to a new file with --out"
        )
    spans: dict[str, Span] = {}
    for key_node, value_node in root.value:
        start = key_node.start_mark.index
        end = value_node.end_mark.index
        if value_node.end_mark.column != 0:  # keep a comment at the end of the line
            newline = text.find("\n", end)
            end = len(text) if newline < 0 else newline
        spans[str(key_node.value)] = Span(start, start + len(_trim(text[start:end])))
    return spans


def replace_block(text: str, span: Span, block: str) -> str:
    return text[: span.start] + block + text[span.end :]


def insert_block(text: str, file: str, key: str, block: str, order: Sequence[str]) -> str:
    """`text` with `block` (the block of `key`, not in it yet) where `order` puts it: after the
    closest key before it that is there, else before the closest one after it, else after the
    head keys (`extends`, `tenant`, `connection`) as a group of its own, else at the end."""
    spans = top_level_spans(text, file)
    index = order.index(key)
    before = [spans[k] for k in reversed(order[:index]) if k in spans]
    if before:
        end = before[0].end
        return text[:end] + "\n" + block + text[end:]
    after = [spans[k] for k in order[index + 1 :] if k in spans]
    if after:
        start = after[0].start
        return text[:start] + block + "\n" + text[start:]
    heads = [spans[k] for k in HEAD_KEYS if k in spans]
    if heads:
        end = max(span.end for span in heads)
        rest = text[end:]
        gap = "\n" if rest.lstrip("\n") else ""
        return text[:end] + "\n\n" + block + (gap if not rest.startswith("\n\n") else "") + rest
    if text and not text.endswith("\n"):
        text += "\n"
    return text + block + "\n"
