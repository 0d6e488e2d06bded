"""The command line: parse flags, call the core, render, and map errors to exit codes.

This is the only module that prints (with `reconciler.render`) and the only place where
exceptions become exit codes (`ReconcilerGroup.main`). Heavy imports happen inside commands so
that `reconciler --help` and `validate` start fast.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import click

from reconciler import __version__
from reconciler.errors import ReconcilerError

EXIT_OK, EXIT_ERROR, EXIT_CHANGES, EXIT_BLOCKED = 0, 1, 2, 3


@dataclass
class Globals:
    environments_dir: Path
    color: bool
    verbose: int


def _fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


class ReconcilerGroup(click.Group):
    """Turns every error into a one-paragraph message and an exit code, in one place."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        try:
            rv = super().main(*args, **kwargs)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.Abort:
            _fail("aborted.")
        except click.ClickException as exc:
            # Usage errors exit 1, not click's 2: 2 means "changes pending" in this tool.
            _fail(exc.format_message())
        except ReconcilerError as exc:
            _fail(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            _fail("interrupted.", 130)
        sys.exit(rv if isinstance(rv, int) else EXIT_OK)


def _use_color(no_color: bool) -> bool:
    if no_color or os.environ.get("NO_COLOR"):
        return False
    return sys.stdout.isatty()


@click.group(cls=ReconcilerGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--environments-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("environments"),
    show_default=True,
    help="Directory holding the environment files.",
)
@click.option("--no-color", is_flag=True, help="Never colour output (NO_COLOR is honoured too).")
@click.option("-v", "--verbose", count=True, help="Log HTTP calls (secrets masked) to stderr.")
@click.version_option(__version__, prog_name="reconciler")
@click.pass_context
def cli(ctx: click.Context, environments_dir: Path, no_color: bool, verbose: int) -> None:
    """Manage a NewStore tenant's external-OMS integration as code."""
    ctx.obj = Globals(environments_dir, _use_color(no_color), verbose)
    if verbose:
        logging.basicConfig(
            level=logging.DEBUG if verbose > 1 else logging.INFO,
            format="%(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )


def main() -> None:
    cli(prog_name="reconciler")
