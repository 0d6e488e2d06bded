"""Structural differences between two JSON-like documents, as key paths (`a.b[0].c`).

One place that knows deepdiff's path notation: the Associate App read-back check (only the
managed field may differ between the document written and the one read back) and apply's
"what moved since the plan" report both ask it which paths differ. Values are never returned,
so no caller can print a secret by accident.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_PART = re.compile(r"\['((?:[^'\\]|\\.)*)'\]|\[(\d+)\]")


def _key_path(deepdiff_path: str) -> str:
    """`root['ui_configurations']['use_new_om_ui']` → `ui_configurations.use_new_om_ui`."""
    out = ""
    for key, index in _PART.findall(deepdiff_path.removeprefix("root")):
        if index:
            out += f"[{index}]"
        else:
            out += f".{key}" if out else key
    return out


def _deepdiff_paths(before: Any, after: Any) -> list[str]:
    from deepdiff import DeepDiff  # lazy: start-up time (deepdiff, only when a value moved)

    diff: Mapping[str, Any] = DeepDiff(before, after)
    found: list[str] = []
    for report in diff.values():
        items = report.keys() if isinstance(report, Mapping) else report
        found += [str(item) for item in items]
    return found


def changed_paths(before: Any, after: Any) -> list[str]:
    """Every key path at which `after` differs from `before` (added, removed or changed),
    sorted; "" is the whole document (e.g. a different type)."""
    return sorted({_key_path(path) for path in _deepdiff_paths(before, after)})


def changed_keys(before: Mapping[str, Any], after: Mapping[str, Any]) -> set[str]:
    """The top-level keys under which `after` differs from `before` (keys may hold dots)."""
    keys = set()
    for path in _deepdiff_paths(before, after):
        parts = _PART.findall(path.removeprefix("root"))
        if parts:
            keys.add(parts[0][0] or parts[0][1])
    return keys
