"""Check a merged document against `schemas/environment.schema.json`, in words people read.

jsonschema's own messages quote the offending value (which may be a secret) and speak in
schema terms, so every error is rephrased here from its keyword and the schema's limits.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable
from functools import cache
from typing import TYPE_CHECKING, Any

from reconciler.config.resolve import Merged
from reconciler.config.yamlsafe import child_path
from reconciler.errors import Problem
from reconciler.newstore.settings import BY_KEY, REGISTRY
from reconciler.resources import schema_path

if TYPE_CHECKING:
    from jsonschema.exceptions import ValidationError
    from jsonschema.protocols import Validator

SCHEMA_NAME = "environment.schema.json"

_KINDS = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "null": "empty",
}


@cache
def environment_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(schema_path(SCHEMA_NAME).read_text(encoding="utf-8"))
    return schema


@cache
def _validator() -> Validator:
    # lazy: start-up time (jsonschema)
    from jsonschema import Draft202012Validator

    # The schema is not checked against the meta-schema here (30 ms of every command's
    # start-up): it is generated and checked in, and tests/test_schemas_generated.py checks
    # that copy.
    return Draft202012Validator(environment_schema())


def _kind(value: Any) -> str:
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, float) and not value.is_integer():
        return "a fraction"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "a mapping"


def _path(error: ValidationError) -> str:
    path = ""
    for part in error.absolute_path:
        path = child_path(path, part)
    return path


def closest(word: str, choices: Iterable[str]) -> str | None:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return close[0] if close else None


def _bare_null(path: str) -> str:
    setting = BY_KEY.get(path)
    if setting is not None and setting.deletable:
        return (
            "has no value; a bare null is not a delete: write `absent` to delete the "
            "configuration, or remove the key to leave it unmanaged"
        )
    if setting is not None:
        return f"has no value; a bare null is not allowed: remove the key to leave {path} unmanaged"
    return "has no value; give one or remove the key"


def _message(error: ValidationError, path: str) -> str:
    schema = error.schema if isinstance(error.schema, dict) else {}
    keyword = error.validator
    if error.instance is None and keyword in ("type", "const", "required"):
        return _bare_null(path)
    if keyword == "pattern" and "patternErrorMessage" in schema:
        return str(schema["patternErrorMessage"])
    if "errorMessage" in schema:
        return str(schema["errorMessage"])
    if keyword == "type":
        kinds = error.validator_value
        kinds = kinds if isinstance(kinds, list) else [kinds]
        wanted = " or ".join(_KINDS.get(str(k), str(k)) for k in kinds)
        if error.instance == "absent" and path in BY_KEY:
            deletable = ", ".join(s.key for s in REGISTRY if s.deletable)
            return f"`absent` only applies to {deletable}; {path} must be {wanted}"
        return f"must be {wanted}, not {_kind(error.instance)}"
    if keyword in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        low, high = schema.get("minimum"), schema.get("maximum")
        if low is not None and high is not None:
            return f"must be between {low} and {high}, not {error.instance}"
        if "exclusiveMinimum" in schema:
            return f"must be greater than {schema['exclusiveMinimum']}"
        if low is not None:
            return f"must be at least {low}"
        return f"must be at most {high}"
    if keyword == "minLength":
        if error.validator_value == 1:
            return "must not be empty"
        return f"must be at least {error.validator_value} characters long"
    if keyword == "maxLength":
        return f"must be at most {error.validator_value} characters long"
    if keyword == "minItems":
        count = error.validator_value
        return f"must list at least {count} item{'s' if count != 1 else ''}"
    if keyword == "uniqueItems":
        return "must not list the same item twice"
    if keyword == "const":
        return f"must be `{error.validator_value}`"
    if keyword == "enum":
        options: list[Any] = list(error.validator_value)  # type: ignore[arg-type]
        return "must be one of " + ", ".join(f"`{v}`" for v in options)
    return f"is not valid ({keyword})"


def _quiet(path: str, bad: set[str]) -> bool:
    return any(path == b or path.startswith((f"{b}.", f"{b}[")) for b in bad)


def check_schema(merged: Merged, bad: set[str]) -> list[Problem]:
    """Problems of the merged document, one per key path, none under a path in `bad`."""
    problems: dict[str, Problem] = {}

    def add(path: str, message: str) -> None:
        if path not in problems and not _quiet(path, bad):
            problems[path] = merged.problem(path, message)

    errors = list(_validator().iter_errors(merged.data))
    # A misspelt key already says "did you mean `x`?"; "`x` is required" would be noise.
    suggested: set[str] = set()
    for error in errors:
        path = _path(error)
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            known = error.schema.get("properties", {}) if isinstance(error.schema, dict) else {}
            for key in error.instance:
                if key not in known:
                    match = closest(key, known)
                    hint = f"; did you mean `{match}`?" if match else ""
                    if match:
                        suggested.add(child_path(path, match))
                    add(child_path(path, key), f"unknown key `{key}`{hint}")
    for error in errors:
        path = _path(error)
        if error.validator == "additionalProperties":
            continue
        if error.validator == "required" and isinstance(error.instance, dict):
            required: list[str] = list(error.validator_value)  # type: ignore[arg-type]
            for key in required:
                if key not in error.instance and child_path(path, key) not in suggested:
                    add(child_path(path, key), f"`{key}` is required here")
        elif error.validator == "minLength" and path in merged.variables:
            # The value is a secret from a variable: name the variable, never the value.
            field = path.rsplit(".", 1)[-1]
            length = len(error.instance) if isinstance(error.instance, str) else 0
            add(
                path,
                f"environment variable {merged.variables[path]} holds {length} characters; "
                f"{field} must be at least {error.validator_value} characters long",
            )
        else:
            add(path, _message(error, path))
    return list(problems.values())
