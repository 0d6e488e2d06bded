"""`reconciler dump --out FILE` in words: the diff of a file dumped over, what to set next."""

from __future__ import annotations

import difflib
from pathlib import Path

from reconciler.core.dump import Dump

_GREEN, _RED, _RESET = "\033[32m", "\033[31m", "\033[0m"


def render_dump_diff(dump: Dump, out: Path, *, color: bool = False) -> str:
    """A unified diff of the file before and after (empty lines of context trimmed to 3), or
    one line saying it already matches."""
    assert dump.before is not None
    if dump.before == dump.text:
        return f"{out} already says what NewStore holds: nothing to change.\n"
    lines = list(
        difflib.unified_diff(
            dump.before.splitlines(keepends=True),
            dump.text.splitlines(keepends=True),
            f"{out} (before)",
            f"{out} (NewStore now)",
        )
    )
    if color:
        lines = [
            f"{_GREEN}{line.rstrip(chr(10))}{_RESET}\n"
            if line.startswith("+") and not line.startswith("+++")
            else f"{_RED}{line.rstrip(chr(10))}{_RESET}\n"
            if line.startswith("-") and not line.startswith("---")
            else line
            for line in lines
        ]
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def render_written(dump: Dump, out: Path) -> str:
    """The line after writing: what was written, and the variables to set before planning."""
    what = (
        f"Wrote {out}"
        if dump.before is None
        else f"Wrote {out} ({', '.join(dump.changed) or 'no setting'} changed)"
    )
    names = dump.variables if dump.before is None else dump.new_variables
    if not names:
        return f"{what}."
    return f"{what}; set {', '.join(names)} before planning it."
