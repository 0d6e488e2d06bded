"""Environment files: find them, load them safely, resolve `extends` and `${NAME}`, validate.

    discover(directory, names)           which files are environments
    load_environments(directory, names)  every environment, or ValidationFailed listing every
                                         problem of every file
    load_each(directory, names)          every environment, each one either an Environment or
                                         Unresolved (its problems): for plan, drift and apply,
                                         where one broken file must not stop the others
    load_environment(path)               one file
    load_unmanaged(path)                 one file with its settings left out (for `dump`)

Loading one environment: `yamlsafe` parses each file of its `extends` chain (bounded against
hostile input, keeping file:line:column of every key), `resolve` merges the chain and replaces
`${NAME}`s, `schema` checks the result against schemas/environment.schema.json, and `build`
checks the rest (required-after-merge keys, URLs, the safety rules) and builds the Environment.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Any

from reconciler.config.build import build_environment, secret_urls
from reconciler.config.consent import confirmations_from_variables
from reconciler.config.rehearsal import rehearse_secrets, rehearse_urls
from reconciler.config.resolve import CREDENTIAL_DEFAULTS, Merged, Resolver, substitute
from reconciler.config.schema import check_schema, closest
from reconciler.errors import ConfigError, Problem, ValidationFailed
from reconciler.identity import tenant_identity
from reconciler.model import FINGERPRINT_KEY_VARIABLE, Environment, Unresolved
from reconciler.newstore.settings import REGISTRY

SUFFIXES = (".yaml", ".yml")

__all__ = [
    "discover",
    "load_each",
    "load_environment",
    "load_environments",
    "load_unmanaged",
]


def discover(directory: Path, names: Sequence[str] = ()) -> list[Path]:
    """The environment files in `directory` (all, or exactly `names`, in that order).

    An environment is a *.yaml / *.yml file whose name does not start with `_` (a base) or
    `.` (editor and tool droppings); its name is the file stem.
    """
    if not directory.is_dir():
        raise ConfigError(f"environments directory {directory} does not exist")
    found: dict[str, Path] = {}
    for path in sorted(directory.iterdir()):
        if path.suffix not in SUFFIXES or path.name.startswith(("_", ".")) or not path.is_file():
            continue
        if path.stem in found:
            raise ConfigError(
                f"{found[path.stem]} and {path} both define environment `{path.stem}`; "
                "remove one of them"
            )
        found[path.stem] = path
    if not names:
        if not found:
            raise ConfigError(
                f"no environment files in {directory} (looking for *.yaml and *.yml files "
                "whose name does not start with `_`)"
            )
        return list(found.values())

    chosen: list[Path] = []
    for name in dict.fromkeys(names):
        stem = name[: -len(suffix)] if (suffix := Path(name).suffix) in SUFFIXES else name
        if stem in found:
            chosen.append(found[stem])
            continue
        available = ", ".join(found) or "none"
        if stem.startswith("_"):
            raise ConfigError(
                f"`{name}` is a base file, not an environment; available: {available}"
            )
        match = closest(stem, found)
        hint = f" (did you mean `{match}`?)" if match else ""
        raise ConfigError(
            f"unknown environment `{name}` in {directory}{hint}; available: {available}"
        )
    return chosen


def _load(
    path: Path,
    resolver: Resolver,
    environ: Mapping[str, str],
    allow_missing_secrets: bool,
    today: date | None,
) -> tuple[Environment | None, list[Problem]]:
    merged, problems = resolver.resolve(path, str(path))
    if merged is None:
        return None, problems
    return _build(path, merged, problems, environ, allow_missing_secrets, today)


MIN_FINGERPRINT_KEY_LENGTH = 32


def fingerprint_secret(environ: Mapping[str, str]) -> str | None:
    """RECONCILER_FINGERPRINT_KEY, the key of plan files' secret fingerprints (surrounding
    whitespace dropped: a CI secret pasted with a newline is the same key), or None when unset
    or empty. A short one is refused: with it, a plan file's fingerprints could be tested
    against guesses of the key."""
    value = environ.get(FINGERPRINT_KEY_VARIABLE, "").strip()
    if not value:
        return None
    if len(value) < MIN_FINGERPRINT_KEY_LENGTH:
        raise ConfigError(
            f"{FINGERPRINT_KEY_VARIABLE} holds {len(value)} characters; it needs at least "
            f"{MIN_FINGERPRINT_KEY_LENGTH} random ones (e.g. the output of `openssl rand -hex "
            "32`), the same value in every job that plans or applies"
        )
    return value


def _build(
    path: Path,
    merged: Merged,
    problems: list[Problem],
    environ: Mapping[str, str],
    allow_missing_secrets: bool,
    today: date | None = None,
) -> tuple[Environment | None, list[Problem]]:
    """Substitute, check the schema, build: everything after `extends` is merged."""
    defaulted = _default_credentials(merged)
    # A rehearsal's secrets are the sandbox's demo values: its real variables are never read.
    demo = rehearse_secrets(merged)
    in_urls = secret_urls(merged.data)  # before substitution: which urls a ${VAR} makes secret
    # Before substitution too: a confirmation must be written out, not filled by a variable.
    confirmations = confirmations_from_variables(merged)
    substitution_problems, bad = substitute(
        merged,
        {**environ, **demo} if demo else environ,
        allow_missing_secrets=allow_missing_secrets,
    )
    substitution_problems += rehearse_urls(merged)
    substitution_problems = [
        dataclasses.replace(
            p, message=f"{p.message} (`{p.path}` defaults to `{CREDENTIAL_DEFAULTS[p.path]}`)"
        )
        if p.path in defaulted
        else p
        for p in substitution_problems
    ]
    problems += substitution_problems + confirmations
    bad |= {p.path for p in problems}
    schema_problems = check_schema(merged, bad)
    problems += schema_problems
    bad |= {p.path for p in schema_problems}
    environment, build_problems = build_environment(
        path.stem, merged, bad, today=today, secrets_in_urls=in_urls
    )
    if environment is not None:
        environment = dataclasses.replace(
            environment, fingerprint_secret=fingerprint_secret(environ)
        )
    return environment, problems + build_problems


def shared_tenants(environments: Sequence[Environment]) -> dict[str, Problem]:
    """Environments that resolve to one tenant identity (`reconciler.identity`) without every
    one of them saying `allow_shared_tenant: true`: environment name -> the problem, which
    names every file of the group. Two files for one tenant undo each other's changes, and
    each would plan from a state the other just moved."""
    groups: dict[object, list[Environment]] = {}
    for env in environments:
        groups.setdefault(tenant_identity(env.connection.base_url), []).append(env)
    problems: dict[str, Problem] = {}
    for identity, group in groups.items():
        if len(group) < 2 or all(env.allow_shared_tenant for env in group):
            continue
        files = " and ".join(env.file for env in group)
        tenants = ", ".join(dict.fromkeys(env.tenant for env in group))
        for env in group:
            loc = env.locations.get("connection.base_url") or env.locations.get("tenant")
            problems[env.name] = Problem(
                loc.file if loc else env.file,
                loc.line if loc else 1,
                loc.column if loc else 1,
                "connection.base_url" if "connection.base_url" in env.locations else "tenant",
                f"{files} both manage tenant {tenants} ({identity}): two files for one tenant "
                "undo each other's changes; keep one, or set `allow_shared_tenant: true` in "
                "each of them (in the file itself: a base file's does not count) if two views "
                "of one tenant are really wanted",
            )
    return problems


def _default_credentials(merged: Merged) -> set[str]:
    """Fill in the credentials an environment (after `extends`) leaves out; returns the paths
    filled, so that a missing variable can say it came from the default."""
    data = merged.data
    if not isinstance(data, dict) or not isinstance(data.get("connection", {}), dict):
        return set()  # the schema check says what is wrong with it
    connection = data.setdefault("connection", {})
    filled = set()
    for path, reference in CREDENTIAL_DEFAULTS.items():
        key = path.rsplit(".", 1)[-1]
        if key not in connection:
            connection[key] = reference
            filled.add(path)
    return filled


def _load_all(
    paths: Sequence[Path],
    environ: Mapping[str, str] | None,
    allow_missing_secrets: bool,
    today: date | None = None,
) -> list[Environment]:
    resolver = Resolver()
    environ = os.environ if environ is None else environ
    fingerprint_secret(environ)  # a bad key is said once, not once per environment
    environments: list[Environment] = []
    # dict keys: a base shared by several environments is reported once, in order
    problems: dict[Problem, None] = {}
    for path in paths:
        environment, found = _load(path, resolver, environ, allow_missing_secrets, today)
        problems.update(dict.fromkeys(found))
        if environment is not None:
            environments.append(environment)
    problems.update(dict.fromkeys(shared_tenants(environments).values()))
    if problems:
        raise ValidationFailed(list(problems))
    return sorted(environments, key=lambda e: e.name)


def load_environments(
    directory: Path,
    names: Sequence[str] = (),
    *,
    environ: Mapping[str, str] | None = None,
    allow_missing_secrets: bool = False,
    today: date | None = None,
) -> list[Environment]:
    """Load and validate the environments in `directory` (all, or `names`), sorted by name.

    Raises ValidationFailed with every problem of every file; `environ` defaults to os.environ.
    With `allow_missing_secrets`, a secret (or the client id, a whole `${NAME}`) whose variable
    is unset gets a placeholder, for offline checks on machines without the CI secret store,
    such as a pre-commit hook; other missing variables stay errors. `today` (UTC, default the
    real one) is what a stock confirmation's date may not be after.
    """
    return _load_all(discover(directory, names), environ, allow_missing_secrets, today)


MAX_PROBLEMS_PER_ENVIRONMENT = 10


def load_each(
    directory: Path,
    names: Sequence[str] = (),
    *,
    environ: Mapping[str, str] | None = None,
    today: date | None = None,
) -> list[Environment | Unresolved]:
    """Like `load_environments`, but a file with problems becomes `Unresolved` (listing them)
    instead of failing the whole load; sorted by name. When no file resolves there is nothing
    to run: ValidationFailed with every problem, as `load_environments` raises."""
    resolver = Resolver()
    environ = os.environ if environ is None else environ
    fingerprint_secret(environ)  # a bad key is said once, not once per environment
    loaded: list[Environment | Unresolved] = []
    every: dict[Problem, None] = {}
    for path in discover(directory, names):
        environment, found = _load(path, resolver, environ, False, today)
        every.update(dict.fromkeys(found))
        if environment is not None and not found:
            loaded.append(environment)
            continue
        problems = sorted(dict.fromkeys(found), key=lambda p: (p.file, p.line, p.column))
        shown = "; ".join(str(p) for p in problems[:MAX_PROBLEMS_PER_ENVIRONMENT])
        more = len(problems) - MAX_PROBLEMS_PER_ENVIRONMENT
        if more > 0:
            shown += f"; … and {more} more (`reconciler validate {path.stem}` lists them)"
        count = len(problems)
        loaded.append(
            Unresolved(
                name=path.stem,
                file=str(path),
                tenant=environment.tenant if environment is not None else _tenant_of(path),
                error=f"{path} cannot be used ({count} problem{'s' if count != 1 else ''}): "
                f"{shown}",
            )
        )
    shared = shared_tenants([env for env in loaded if isinstance(env, Environment)])
    every.update(dict.fromkeys(shared.values()))
    loaded = [
        Unresolved(env.name, env.file, env.tenant, f"{env.file} cannot be used: {shared[env.name]}")
        if env.name in shared
        else env
        for env in loaded
    ]
    if not any(isinstance(env, Environment) for env in loaded):
        raise ValidationFailed(list(every))
    return sorted(loaded, key=lambda e: e.name)


def _tenant_of(path: Path) -> str:
    """The `tenant` a broken file names, when it plainly does ("" otherwise)."""
    merged, _ = Resolver().resolve(path, str(path))
    tenant = merged.data.get("tenant") if merged is not None else None
    return tenant if isinstance(tenant, str) and "${" not in tenant else ""


def load_environment(
    path: Path,
    *,
    environ: Mapping[str, str] | None = None,
    allow_missing_secrets: bool = False,
    today: date | None = None,
) -> Environment:
    """Load and validate one environment file (see `load_environments`)."""
    return _load_all([path], environ, allow_missing_secrets, today)[0]


def load_unmanaged(
    path: Path, *, environ: Mapping[str, str] | None = None
) -> tuple[Environment, dict[str, Any]]:
    """One environment file with its settings left out, so it manages nothing and their
    variables need not be set, and its merged document (settings left out too) before any
    `${NAME}` is replaced. For `dump`, which reads every setting live instead."""
    merged, problems = Resolver().resolve(path, str(path))
    if merged is None:
        raise ValidationFailed(problems)
    for setting in REGISTRY:
        merged.data.pop(setting.key, None)
    raw = copy.deepcopy(merged.data)  # substitute() replaces merged.data
    environment, problems = _build(
        path, merged, problems, os.environ if environ is None else environ, False
    )
    if problems or environment is None:
        raise ValidationFailed(problems)
    return environment, raw
