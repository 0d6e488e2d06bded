"""`reconciler vars`: the `${NAME}` variables a run needs, by name and where each is used.

    variables_of(directory, names, environ)   a VariableReport: every variable the resolved
                                              files use (after `extends`: a base's reference
                                              that an environment overrides is not needed),
                                              whether it is set now, file:line of each use;
                                              a rehearsal's secrets (the sandbox's demo
                                              values) need none
    report_to_dict(report)                    the JSON document (schemas/vars.schema.json)

Values are never read beyond "is it set": the report holds names and places only, so it is
safe to print anywhere, which is what CI needs to export exactly these variables and no more.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from reconciler.config.rehearsal import rehearse_secrets
from reconciler.config.resolve import CREDENTIAL_DEFAULTS, Merged, Resolver, references
from reconciler.config.yamlsafe import child_path
from reconciler.errors import Problem
from reconciler.newstore.settings import SECRET_PATHS

FORMAT_VERSION: Final = 1


@dataclass(frozen=True)
class Use:
    """One place a variable is used, in one environment."""

    environment: str
    file: str
    line: int  # 0 for a default (written nowhere)
    column: int
    path: str  # the key path, e.g. "availability_webhook.api_key"
    secret: bool  # the value is a secret (an api_key, the client secret)
    default: bool = False  # the contract's default for an omitted credential


@dataclass(frozen=True)
class Variable:
    name: str
    set: bool
    uses: tuple[Use, ...]

    @property
    def environments(self) -> tuple[str, ...]:
        return tuple(sorted({use.environment for use in self.uses}))

    @property
    def secret(self) -> bool:
        return any(use.secret for use in self.uses)


@dataclass(frozen=True)
class Unresolvable:
    """An environment whose `extends` chain could not be read: its variables are unknown."""

    environment: str
    file: str
    problems: tuple[Problem, ...]


@dataclass(frozen=True)
class VariableReport:
    environments: tuple[str, ...]  # those whose variables are listed
    variables: tuple[Variable, ...]  # sorted by name
    unresolved: tuple[Unresolvable, ...] = ()
    # `rehearsal: true` environments: their secrets are the sandbox's demo values, so the
    # variables their bases name for them are neither read nor listed
    rehearsals: tuple[str, ...] = ()

    @property
    def missing(self) -> tuple[str, ...]:
        return tuple(v.name for v in self.variables if not v.set)


def _uses_in(environment: str, merged: Merged) -> list[tuple[str, Use]]:
    found: list[tuple[str, Use]] = []

    def walk(path: str, value: Any) -> None:
        if isinstance(value, str):
            location = merged.locate(path)
            for name in references(value):
                use = Use(
                    environment,
                    location.file,
                    location.line,
                    location.column,
                    path,
                    secret=path in SECRET_PATHS,
                )
                found.append((name, use))
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(child_path(path, key), item)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(child_path(path, index), item)

    walk("", merged.data)
    connection = merged.data.get("connection", {})
    if isinstance(connection, dict):
        for path, reference in CREDENTIAL_DEFAULTS.items():
            if path.rsplit(".", 1)[1] not in connection:
                (name,) = references(reference)
                default = Use(environment, merged.file, 0, 0, path, path in SECRET_PATHS, True)
                found.append((name, default))
    return found


def variables_of(
    paths: Sequence[Path], *, environ: Mapping[str, str] | None = None
) -> VariableReport:
    """The variables the environment files `paths` (from `config.discover`) use."""
    environ = os.environ if environ is None else environ
    resolver = Resolver()
    by_name: dict[str, list[Use]] = {}
    listed: list[str] = []
    unresolved: list[Unresolvable] = []
    rehearsals: list[str] = []
    for path in paths:
        merged, problems = resolver.resolve(path, str(path))
        if merged is None:
            unresolved.append(Unresolvable(path.stem, str(path), tuple(problems)))
            continue
        listed.append(path.stem)
        # What config.load does before substituting: a rehearsal's secrets name demo values.
        supplied = rehearse_secrets(merged)
        if supplied:
            rehearsals.append(path.stem)
        for name, use in _uses_in(path.stem, merged):
            if name not in supplied:
                by_name.setdefault(name, []).append(use)
    variables = tuple(
        Variable(
            name,
            name in environ,
            tuple(sorted(uses, key=lambda u: (u.file, u.line, u.column, u.environment))),
        )
        for name, uses in sorted(by_name.items())
    )
    return VariableReport(
        tuple(sorted(listed)), variables, tuple(unresolved), tuple(sorted(rehearsals))
    )


def report_to_dict(report: VariableReport) -> dict[str, Any]:
    """The JSON form (schemas/vars.schema.json); the one serializer of a VariableReport."""
    return {
        "format_version": FORMAT_VERSION,
        "environments": list(report.environments),
        "variables": [
            {
                "name": v.name,
                "set": v.set,
                "secret": v.secret,
                "environments": list(v.environments),
                "uses": [
                    {
                        "environment": u.environment,
                        "file": u.file,
                        "line": u.line or None,
                        "column": u.column or None,
                        "path": u.path,
                        "secret": u.secret,
                        "default": u.default,
                    }
                    for u in v.uses
                ],
            }
            for v in report.variables
        ],
        "missing": list(report.missing),
        "rehearsals": list(report.rehearsals),
        "errors": [
            {
                "environment": u.environment,
                "file": u.file,
                "problems": [str(p) for p in u.problems],
            }
            for u in report.unresolved
        ],
    }
