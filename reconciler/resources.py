"""Files the package ships next to its code (JSON schemas), found the same way however the
package was installed."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from reconciler.errors import ReconcilerError


def schema_path(name: str) -> Path:
    """Path of `schemas/<name>` (e.g. "environment.schema.json").

    A wheel carries the repository's top-level `schemas/` as `reconciler/schemas/`; an editable
    install only has the repository itself, so fall back to `<repo>/schemas/`.
    """
    packaged = Path(str(files("reconciler") / "schemas" / name))
    if packaged.is_file():
        return packaged
    in_repo = Path(__file__).resolve().parent.parent / "schemas" / name
    if in_repo.is_file():
        return in_repo
    raise ReconcilerError(
        f"schema {name} is missing from this installation "
        f"(looked in {packaged.parent} and {in_repo.parent}); reinstall newstore-reconciler."
    )


def ci_example_path(name: str) -> Path:
    """Path of `examples/ci/<name>` (the CI recipes `reconciler init` copies): inside the wheel
    as `reconciler/examples/ci/`, in the repository itself for an editable install."""
    packaged = Path(str(files("reconciler") / "examples" / "ci" / name))
    if packaged.is_file():
        return packaged
    in_repo = Path(__file__).resolve().parent.parent / "examples" / "ci" / name
    if in_repo.is_file():
        return in_repo
    raise ReconcilerError(
        f"CI recipe {name} is missing from this installation "
        f"(looked in {packaged.parent} and {in_repo.parent}); reinstall newstore-reconciler."
    )
