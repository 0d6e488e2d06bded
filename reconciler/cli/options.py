"""What every command shares: the `Globals` a command is handed (click's `obj`), the options
several commands declare (each words its own help), and the shell completion of environment
names. Imports nothing heavy: `reconciler --help` reads every command's options."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import click
import click.shell_completion

from reconciler.clock import Clock, system_clock
from reconciler.errors import ReconcilerError
from reconciler.parallelism import DEFAULT_PARALLELISM


@dataclass
class Globals:
    environments_dir: Path
    color: bool
    verbose: int
    clock: Clock = system_clock  # "now" for the change-window policy
    sleep: Callable[[float], None] = time.sleep  # the notifications' backoff


# Options shared by several commands, defined once; each command words its own help.
format_option = functools.partial(
    click.option,
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "markdown"]),
    default="text",
    show_default=True,
)
parallelism_option = functools.partial(
    click.option,
    "--parallelism",
    type=click.IntRange(min=1),
    default=DEFAULT_PARALLELISM,
    show_default=True,
    help="Environments read at the same time.",
)


output_option = functools.partial(
    click.option,
    "--output",
    "outputs",
    multiple=True,
    metavar="FORMAT=PATH",
)

replace_option = functools.partial(
    click.option,
    "--replace",
    "replace",
    multiple=True,
    metavar="SETTING",
    help="Rewrite SETTING even where it compares equal (probed where a safety rule needs it), "
    "e.g. `--replace availability_webhook` to rotate a key NewStore only returns masked.",
)


def complete_environments(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[click.shell_completion.CompletionItem]:
    """Shell completion of environment names: the files in --environments-dir (or its
    default), those not already on the command line."""
    from reconciler.config import discover  # lazy: start-up time

    directory = ctx.find_root().params.get("environments_dir") or Path("environments")
    try:
        names = [path.stem for path in discover(Path(directory))]
    except (ReconcilerError, OSError):
        return []  # completion never prints an error
    given = set(ctx.params.get(param.name or "", None) or ())
    return [
        click.shell_completion.CompletionItem(name)
        for name in names
        if name.startswith(incomplete) and name not in given
    ]
