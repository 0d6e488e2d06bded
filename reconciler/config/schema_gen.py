"""The JSON schemas that describe settings, generated from the settings' declarations.

`schemas/environment.schema.json` is the frame `schema_frames/environment.json` (every key that
is not a setting) with each registered setting's `file_schema()` in place of its `(settings)`
marker, in REGISTRY order, and their `schema_defs` as `$defs`. `schemas/drift.schema.json` is
its frame with the registered keys as the `setting` enum. `reconciler schema --write` writes
them, `--check` (and a test) fails while a checked-in file differs from what is generated.
The plan schema names no setting (a step's `setting` is any key), so it is kept by hand.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

from reconciler.fsutil import atomic_write_text
from reconciler.newstore.settings import REGISTRY, Setting

SETTINGS_MARK = "(settings)"
GENERATED = ("environment.schema.json", "drift.schema.json")


@cache
def _frame(name: str) -> dict[str, Any]:
    text = (files("reconciler.config") / "schema_frames" / f"{name}.json").read_text("utf-8")
    frame: dict[str, Any] = json.loads(text)
    return frame


def environment_schema(settings: Sequence[Setting] = REGISTRY) -> dict[str, Any]:
    frame = copy.deepcopy(_frame("environment"))
    properties: dict[str, Any] = {}
    for key, value in frame["properties"].items():
        if key == SETTINGS_MARK:
            properties.update({s.key: s.file_schema() for s in settings})
        else:
            properties[key] = value
    frame["properties"] = properties
    defs = {name: dict(d) for s in settings for name, d in s.schema_defs.items()}
    if defs:
        frame["$defs"] = copy.deepcopy(defs)
    return frame


def drift_schema(settings: Sequence[Setting] = REGISTRY) -> dict[str, Any]:
    frame = copy.deepcopy(_frame("drift"))
    frame["$defs"]["setting"]["properties"]["setting"]["enum"] = [s.key for s in settings]
    return frame


def generated(name: str) -> str:
    """The text of `schemas/<name>` (one of GENERATED) as the registered settings make it."""
    build = {"environment.schema.json": environment_schema, "drift.schema.json": drift_schema}
    return json.dumps(build[name](), indent=2, ensure_ascii=False) + "\n"


def stale(directory: Path) -> list[str]:
    """The GENERATED files in `directory` that differ from what is generated (or are missing)."""
    out = []
    for name in GENERATED:
        path = directory / name
        if not path.is_file() or path.read_text(encoding="utf-8") != generated(name):
            out.append(name)
    return out


def write(directory: Path) -> list[str]:
    """Write the GENERATED files that are stale into `directory`; their names."""
    names = stale(directory)
    for name in names:
        atomic_write_text(directory / name, generated(name), what="schema")
    return names
