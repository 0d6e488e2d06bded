"""Structural differences between two JSON-like documents, as key paths (`a.b[0].c`).

One place that knows deepdiff's path notation: the Associate App read-back check (only the
managed field may differ between the document written and the one read back) and apply's
"what moved since the plan" report both ask it which paths differ. Values are never returned,
so no caller can print a secret by accident.

DeepDiff parses each list index and number key it reports with `ast.literal_eval`. CPython 3.11
keeps the AST constructor's recursion depth in state every thread shares (gh-106905; 3.11.2 and
3.11.7 do, 3.12.1 and 3.13.0 count it per call): a parse that lets another one run in its
middle ends in `SystemError: AST constructor recursion depth mismatch`. A parse lets others run
when an allocation inside it starts a garbage collection, whose finalizers and gc callbacks are
Python code, where the GIL can pass to another thread. Environments applied in parallel threads,
verifying their Associate App documents at once, hit it: the step stopped on an "unexpected
SystemError". On 3.11 the calls here run one at a time with collection held off, so no other
parse starts in the middle of theirs. That guards these calls only: a parse elsewhere that lets
others run in its middle can still be broken by one of these (3.11's traceback formatting
parses too, and the sandbox formats tracebacks in its request threads when an app fails).
Nothing else in the package parses Python.
"""

from __future__ import annotations

import contextlib
import gc
import re
import sys
import threading
from collections.abc import Iterator, Mapping
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


_SHARED_AST_DEPTH = sys.version_info < (3, 12)
_ONE_AT_A_TIME = threading.Lock()


@contextlib.contextmanager
def _parses_undisturbed() -> Iterator[None]:
    """On 3.11 (gh-106905): one caller at a time, no garbage collection meanwhile
    (turned back on only if it was on)."""
    if not _SHARED_AST_DEPTH:
        yield
        return
    with _ONE_AT_A_TIME:
        collecting = gc.isenabled()
        gc.disable()
        try:
            yield
        finally:
            if collecting:
                gc.enable()


def _deepdiff_paths(before: Any, after: Any) -> list[str]:
    from deepdiff import DeepDiff  # lazy: start-up time (deepdiff, only when a value moved)

    found: list[str] = []
    with _parses_undisturbed():  # the report's paths too: they may be built as they are read
        diff: Mapping[str, Any] = DeepDiff(before, after)
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
