"""What a person consents to in an environment file must be written in that file itself:
not inherited from a base file every environment extends (`said_here`), not filled by an
environment variable (`confirmations_from_variables`). Both would let a consent hold for
environments, or runs, nobody looked at.
"""

from __future__ import annotations

from reconciler.config.resolve import Merged
from reconciler.errors import Problem


def said_here(merged: Merged, key: str) -> bool:
    """`key: true` written in the environment's own file: a base file every environment
    extends shares it, and a consent there would silently hold for all of them."""
    return merged.data.get(key) is True and merged.locate(key).file == merged.file


CONFIRMATIONS = ("gates.newstore_stock_confirmed",)
"""Values a person writes in the reviewed file: never from an environment variable."""


def confirmations_from_variables(merged: Merged) -> list[Problem]:
    """A confirmation filled by `${NAME}` (checked before substitution): the date would come
    from a CI variable or a shell (`$(date)`), confirmed by nobody reading the file."""
    problems = []
    for path in CONFIRMATIONS:
        section, _, key = path.partition(".")
        block = merged.data.get(section)
        raw = block.get(key) if isinstance(block, dict) else None
        if isinstance(raw, str) and "${" in raw:
            problems.append(
                merged.problem(
                    path,
                    "must be a date written in the environment file itself (e.g. "
                    f"`{key}: 2025-01-31`), not `{raw}`: a confirmation is a line a person "
                    "writes after checking NewStore's stock, never a variable's value",
                )
            )
    return problems
