"""The command line: parse flags, call the API (`reconciler.api`), render, map exit codes.

Commands hold no business logic: what `plan`, `apply` and `drift` do is `reconciler.api`, the
same functions a Python caller uses. This package is the only code that prints (with
`reconciler.render`) and this module the only place where exceptions become exit codes
(`ReconcilerGroup.main`). Heavy imports happen inside commands so that `reconciler --help` and
`validate` start fast.

Here: the group (`cli`), its global options, `main()` and the boundary. The commands live
beside it by responsibility, each block of click declarations next to the few lines that call
the API and the helpers only it reads: `plan_apply` (plan, apply, unlock), `drift` (and its
notifications), `files` (validate, dump, vars, init, schema), `sandbox`; `options` holds what
several share (`Globals`, the shared options, completion). They declare plain commands and
import nothing from here; the group adds them below, so the imports point one way.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import click

from reconciler._version import __version__
from reconciler.cli import drift, files, plan_apply, sandbox
from reconciler.cli.options import Globals
from reconciler.clock import Clock, system_clock
from reconciler.core.interrupt import Terminated
from reconciler.errors import ExitCode, ReconcilerError, ReportedError

__all__ = ["Globals", "Injected", "cli", "main"]

_real_process = False  # set by `main()`: signals are ours to handle, os._exit ours to call


@dataclass(frozen=True)
class Injected:
    """What a test hands the CLI in-process, as click's `obj`
    (`CliRunner().invoke(cli, args, obj=Injected(clock=...))`). No flag or environment
    variable reaches it: nothing a user sets may move "now" out of a freeze. `sleep` waits
    between a notification's retries (a test records the waits instead)."""

    clock: Clock = system_clock
    sleep: Callable[[float], None] = time.sleep


def _error(message: str, code: int = ExitCode.ERROR) -> int:
    click.echo(f"Error: {message}", err=True)
    return code


def _words(exc: ReconcilerError) -> str:
    """An error's message, and the stop report it carries in words."""
    if not isinstance(exc, ReportedError) or not exc.stop:
        return str(exc)
    from reconciler.render.stop_report import render_error  # lazy: start-up time (the core)

    return render_error(exc)


def _exit(code: int) -> NoReturn:
    try:
        sys.stdout.flush()
    except OSError:
        # Python's SIGPIPE recipe: point stdout at /dev/null, so that the interpreter's last
        # flush of what could not be written does not print "Exception ignored ..." on exit.
        try:
            stdout = sys.stdout.fileno()
        except (AttributeError, OSError, ValueError):
            pass  # not a real file (a test runner's buffer): nothing is flushed at exit
        else:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, stdout)
            os.close(devnull)
    sys.exit(code)


# -- global options after the command (`reconciler plan -v`) ----------------------------------

_GLOBAL_FLAGS = frozenset({"--no-color", "-v", "--verbose"})
_GLOBAL_WITH_VALUE = "--environments-dir"


def _globals_first(args: list[str]) -> list[str]:
    """Move the global options given after the command in front of it, where click expects
    them: `reconciler plan -v` is `reconciler -v plan`. Stops at `--`; `-vv` counts twice."""
    # The first word that is neither an option nor `--environments-dir`'s value.
    command = next(
        (
            i
            for i, a in enumerate(args)
            if not a.startswith("-") and (i == 0 or args[i - 1] != _GLOBAL_WITH_VALUE)
        ),
        None,
    )
    if command is None or args[command] not in cli.commands:
        return args  # no command (or an unknown one): click says what is wrong
    head, tail = list(args[: command + 1]), args[command + 1 :]
    moved: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(tail):
        arg = tail[i]
        if arg == "--":
            rest += tail[i:]
            break
        if arg in _GLOBAL_FLAGS or re.fullmatch(r"-v+", arg):
            moved.append(arg)
        elif arg == _GLOBAL_WITH_VALUE and i + 1 < len(tail):
            moved += tail[i : i + 2]
            i += 1
        elif arg.startswith(f"{_GLOBAL_WITH_VALUE}="):
            moved.append(arg)
        else:
            rest.append(arg)
        i += 1
    return head[:-1] + moved + head[-1:] + rest


class ReconcilerGroup(click.Group):
    """Turns every error into a one-paragraph message and an exit code, in one place."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # Bare `reconciler` is a request for help, so it is answered like `--help`: on
        # stdout, exit 0 (click >= 8.2 would print it to stderr as an error, exit 2).
        if not args and not ctx.resilient_parsing:
            click.echo(ctx.get_help(), color=ctx.color)
            ctx.exit(ExitCode.OK)
        return super().parse_args(ctx, _globals_first(args))

    def main(self, *args: Any, **kwargs: Any) -> NoReturn:
        kwargs["standalone_mode"] = False
        try:
            rv = super().main(*args, **kwargs)
            code = rv if isinstance(rv, int) else ExitCode.OK
        except click.Abort as exc:
            # click turns Ctrl-C into Abort, the interrupt kept as its context (a prompt
            # does the same with Ctrl-D, which is no interrupt).
            if isinstance(exc.__context__, KeyboardInterrupt):
                code = _error("interrupted.", ExitCode.INTERRUPTED)
            else:
                code = _error("aborted.")
        except click.ClickException as exc:
            exc.show()  # for usage errors: the usage line and where to find help, too
            # Usage errors exit 1, not click's 2: 2 means "changes pending" in this tool.
            code = ExitCode.ERROR
        except ReconcilerError as exc:
            code = _error(_words(exc), exc.exit_code)
        except KeyboardInterrupt:
            code = _error("interrupted.", ExitCode.INTERRUPTED)
        except Terminated:
            code = _error("terminated (SIGTERM).", ExitCode.TERMINATED)
        except OSError as exc:
            # The core turns its own file errors into ReconcilerErrors, so one without a file
            # name is a stream refusing a write: stdout on a full disk or a closed pipe.
            if exc.filename is not None:
                raise
            if isinstance(exc, BrokenPipeError):
                code = ExitCode.ERROR  # the reader left (`| head`) having seen all it wanted
            else:
                code = _error(f"cannot write output: {exc.strerror or type(exc).__name__}.")
        if code in (ExitCode.INTERRUPTED, ExitCode.TERMINATED) and _real_process:
            # Promptly: worker threads may still wait on NewStore answers (and retries), and
            # the interpreter would join them before exiting. Nothing is left to clean up:
            # the journal is fsynced per record, and the kernel drops the apply locks.
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            os._exit(code)
        _exit(code)


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
    # Set once in a shell to rehearse every command on `reconciler init`'s rehearsal/ files.
    envvar="RECONCILER_ENVIRONMENTS_DIR",
    help="Directory holding the environment files [env: RECONCILER_ENVIRONMENTS_DIR].",
)
@click.option("--no-color", is_flag=True, help="Never colour output (NO_COLOR is honoured too).")
@click.option("-v", "--verbose", count=True, help="Log HTTP calls (secrets masked) to stderr.")
@click.version_option(__version__, prog_name="reconciler")
@click.pass_context
def cli(ctx: click.Context, environments_dir: Path, no_color: bool, verbose: int) -> None:
    """Manage a NewStore tenant's external-OMS integration as code."""
    # lazy: start-up time (httpx)
    from reconciler.newstore.limiter import HostLimiter

    # One command is one run: hosts blocked or paused by an earlier one in this process (a
    # test runner's) start afresh.
    HostLimiter.forget_all()
    injected = ctx.obj if isinstance(ctx.obj, Injected) else Injected()
    ctx.obj = Globals(
        environments_dir, _use_color(no_color), verbose, injected.clock, injected.sleep
    )
    if verbose:
        # The `reconciler` logger only: on the root logger, httpx would log full URLs (query
        # strings included) and httpcore, at -vv, every response header.
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        logger = logging.getLogger("reconciler")
        logger.handlers = [handler]
        logger.setLevel(logging.DEBUG if verbose > 1 else logging.INFO)


for command in (*plan_apply.COMMANDS, *drift.COMMANDS, *files.COMMANDS, *sandbox.COMMANDS):
    cli.add_command(command)


def main() -> None:
    from reconciler.core import interrupt  # lazy: start-up time (signals only for a real process)

    global _real_process
    _real_process = True
    interrupt.install()
    cli(prog_name="reconciler")
