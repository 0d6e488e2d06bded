"""`extends:` chains and `${NAME}` references: from files on disk to one merged document.

Substitution runs after merging, so a base's `${VAR}` that an environment overrides is never
needed, and every string keeps the file:line it was written at (in `Merged.locations`).
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reconciler.config.yamlsafe import Document, child_path, load_file
from reconciler.errors import Problem
from reconciler.model import Location, locate
from reconciler.newstore.settings import SECRET_PATHS

SECRET_MIN_LENGTH = 20
# Secrets that travel as an HTTP header value (NewStore's webhook call, our probe): visible
# ASCII, with single spaces or tabs only between words.
HEADER_PATHS = frozenset({"availability_webhook.api_key"})
_HEADER_VALUE = re.compile(r"[\x21-\x7e]+(?:[ \t]+[\x21-\x7e]+)*")
# The client id is no secret (a file may spell it out), but it comes from the same CI secret
# store as the client secret: an offline check that may skip one may skip the other.
CREDENTIAL_PATHS = frozenset({"connection.client_id"})
# The contract's defaults: an environment may leave its credentials to the usual variables.
CREDENTIAL_DEFAULTS = {
    "connection.client_id": "${NEWSTORE_CLIENT_ID}",
    "connection.client_secret": "${NEWSTORE_CLIENT_SECRET}",
}
# Real chains are one or two bases deep; the cap keeps a generated chain from recursing forever.
MAX_EXTENDS_DEPTH = 16

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_REFERENCE = re.compile(rf"\$\$\{{|\$\{{(?P<name>{_NAME})\}}|\$\{{")
"""`$${` (an escaped `${`), a `${NAME}` reference, or a `${` that starts none."""
_WHOLE_REFERENCE = re.compile(rf"\$\{{(?P<name>{_NAME})\}}")


@dataclass
class Merged:
    """An environment's document after `extends` merging (and later, substitution)."""

    file: str
    data: dict[str, Any]
    locations: dict[str, Location]
    # Key path → the variable its whole value came from (`api_key: ${NAME}`), filled in by
    # `substitute`, so a message about the value can name where it came from instead.
    variables: dict[str, str] = field(default_factory=dict)

    def locate(self, path: str) -> Location:
        """Where `path` was written, else its closest written parent, else the file's start."""
        return locate(self.locations, path) or Location(self.file, 1, 1)

    def problem(self, path: str, message: str) -> Problem:
        loc = self.locate(path)
        return Problem(loc.file, loc.line, loc.column, path, message)


def references(text: str) -> list[str]:
    """The variable names `text` refers to, in order (`$${` escapes are not references)."""
    return [match["name"] for match in _REFERENCE.finditer(text) if match["name"]]


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith((f"{prefix}.", f"{prefix}["))


class Resolver:
    """Loads environments for one run; each file is read and parsed at most once."""

    def __init__(self) -> None:
        self._parsed: dict[Path, tuple[Document | None, list[Problem]]] = {}

    def _parse(self, path: Path, file: str) -> tuple[Document | None, list[Problem]]:
        key = path.resolve()
        if key not in self._parsed:
            self._parsed[key] = load_file(path, file)
        return self._parsed[key]

    def resolve(self, path: Path, file: str) -> tuple[Merged | None, list[Problem]]:
        """The file merged over its `extends` chain; None when the chain cannot be read."""
        return self._resolve(path, file, [])

    def _resolve(
        self, path: Path, file: str, chain: list[tuple[Path, str]]
    ) -> tuple[Merged | None, list[Problem]]:
        document, parse_problems = self._parse(path, file)
        problems = list(parse_problems)
        if document is None:
            return None, problems
        # Copied because a base is shared by every environment that extends it.
        merged = Merged(file, copy.deepcopy(document.data), dict(document.locations))
        if "extends" not in merged.data:
            return merged, problems

        target = merged.data.pop("extends")
        if not isinstance(target, str) or not target.strip():
            message = "must name a file relative to this one, e.g. `extends: _base.yaml`"
            return None, [*problems, merged.problem("extends", message)]
        base_path = path.parent / target
        base_file = os.path.normpath(os.path.join(os.path.dirname(file), target))
        here = [*chain, (path.resolve(), file)]
        if any(seen == base_path.resolve() for seen, _ in here):
            cycle = " → ".join([name for _, name in here] + [base_file])
            return None, [*problems, merged.problem("extends", f"extends cycle: {cycle}")]
        if len(here) >= MAX_EXTENDS_DEPTH:
            message = f"extends chain is longer than {MAX_EXTENDS_DEPTH} files"
            return None, [*problems, merged.problem("extends", message)]
        if not base_path.is_file():
            message = f"base file {base_file} does not exist"
            return None, [*problems, merged.problem("extends", message)]
        extends_location = merged.locations.pop("extends")

        base, base_problems = self._resolve(base_path, base_file, here)
        problems += base_problems
        if base is None:
            return None, problems
        data, locations = _merge(base.data, base.locations, merged.data, merged.locations)
        # `extends` is gone from the data; keep its line for messages about the chain.
        locations["extends"] = extends_location
        return Merged(file, data, locations), problems


def _merge(
    base: dict[str, Any],
    base_locations: dict[str, Location],
    child: dict[str, Any],
    child_locations: dict[str, Location],
) -> tuple[dict[str, Any], dict[str, Location]]:
    """Mappings merge deeply; anything else in the child (scalar, list, `absent`, null) replaces
    the base's value, and the base's locations under it go with it."""
    locations = dict(base_locations)

    def merge(into: dict[str, Any], over: dict[str, Any], prefix: str) -> dict[str, Any]:
        result = dict(into)
        for key, value in over.items():
            path = child_path(prefix, key)
            if isinstance(value, dict) and isinstance(result.get(key), dict):
                result[key] = merge(result[key], value, path)
            else:
                for stale in [p for p in locations if _under(p, path)]:
                    del locations[stale]
                result[key] = value
        return result

    data = merge(base, child, "")
    locations.update(child_locations)
    return data, locations


def _distance(a: str, b: str, limit: int) -> int:
    """Levenshtein distance of `a` and `b`, or `limit + 1` once it is known to exceed `limit`."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        if min(current) > limit:
            return limit + 1
        previous = current
    return previous[-1]


def similar_variable(name: str, environ: Mapping[str, str]) -> str | None:
    """A set variable whose name is a likely misspelling of `name` (a letter or two apart,
    case aside), or None. Only names are compared; no value is looked at."""
    limit = min(2, max(1, len(name) // 8))
    best: tuple[int, str] | None = None
    for candidate in environ:
        if candidate == name:
            continue
        distance = _distance(name.upper(), candidate.upper(), limit)
        if distance <= limit and (best is None or (distance, candidate) < best):
            best = (distance, candidate)
    return best[1] if best is not None else None


def not_set(name: str, environ: Mapping[str, str]) -> str:
    """The message for an unset variable, with the likely intended one when it is set."""
    similar = similar_variable(name, environ)
    hint = f" (did you mean {similar}, which is set?)" if similar is not None else ""
    return f"environment variable {name} is not set{hint}"


def merge_data(base: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """`child` merged over `base` as `extends` merges them (no locations kept)."""
    return _merge(base, {}, child, {})[0]


def whole_reference(value: Any) -> str | None:
    """The variable `value` is exactly a reference to (`${NAME}`), else None."""
    match = _WHOLE_REFERENCE.fullmatch(value) if isinstance(value, str) else None
    return match["name"] if match is not None else None


def _placeholder(name: str) -> str:
    # Long enough for every length rule, and obviously not a real secret in any output.
    return f"<missing:{name}>".ljust(SECRET_MIN_LENGTH, "-")


def substitute(
    merged: Merged, environ: Mapping[str, str], *, allow_missing_secrets: bool
) -> tuple[list[Problem], set[str]]:
    """Replace `${NAME}` in every string of `merged.data`, in place.

    Returns the problems and the key paths they concern, so later checks stay quiet about a
    value we already complained about.
    """
    problems: list[Problem] = []
    bad: set[str] = set()

    def report(path: str, message: str) -> None:
        problems.append(merged.problem(path, message))
        bad.add(path)

    def secret(path: str, value: Any) -> Any:
        match = _WHOLE_REFERENCE.fullmatch(value) if isinstance(value, str) else None
        if match is None:
            field = path.rsplit(".", 1)[-1]
            report(
                path,
                f"literal secret: {field} may only come from an environment variable, "
                f"written as the whole value, e.g. `{field}: ${{MY_SECRET_VARIABLE}}`",
            )
            return value
        name = match["name"]
        merged.variables[path] = name
        if name in environ:
            value = environ[name]
            if path in HEADER_PATHS and not _HEADER_VALUE.fullmatch(value):
                report(
                    path,
                    f"environment variable {name} holds characters an HTTP header cannot "
                    "carry (it must be printable ASCII): the api_key is sent as the webhook's "
                    "Authorization header",
                )
            return value
        if allow_missing_secrets:
            return _placeholder(name)
        report(path, not_set(name, environ))
        return value

    def text(path: str, value: str) -> str:
        def replace(match: re.Match[str]) -> str:
            if match[0] == "$${":
                return "${"
            name = match["name"]
            if name is None:
                report(
                    path,
                    "`${` must start a reference like `${NAME}` "
                    "(letters, digits, underscores); write `$${` for a literal `${`",
                )
                return match[0]
            if name not in environ:
                report(path, not_set(name, environ))
                return match[0]
            return environ[name]

        return _REFERENCE.sub(replace, value)

    def walk(path: str, value: Any) -> Any:
        # A secret may only come from the environment, never from a file in git.
        if path in SECRET_PATHS and value is not None and not isinstance(value, dict | list):
            return secret(path, value)
        if path in CREDENTIAL_PATHS and allow_missing_secrets and isinstance(value, str):
            match = _WHOLE_REFERENCE.fullmatch(value)
            if match is not None and match["name"] not in environ:
                return _placeholder(match["name"])
        if isinstance(value, str):
            return text(path, value)
        if isinstance(value, dict):
            return {k: walk(child_path(path, k), v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(child_path(path, i), v) for i, v in enumerate(value)]
        return value

    merged.data = walk("", merged.data)
    return problems, bad
