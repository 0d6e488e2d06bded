"""The command line: parse flags, call the API (`reconciler.api`), render, map exit codes.

Commands hold no business logic: what `plan`, `apply` and `drift` do is `reconciler.api`, the
same functions a Python caller uses. This is the only module that prints (with
`reconciler.render`) and the only place where exceptions become exit codes
(`ReconcilerGroup.main`). Heavy imports happen inside commands so that `reconciler --help` and
`validate` start fast.

Why one module of ~800 lines: most of it is click's declarations, the options and the help text
a user reads, one block per command next to the few lines that call the API; split across
files, a command's flags would sit away from the only code that reads them.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click
import click.shell_completion

from reconciler._version import __version__
from reconciler.clock import Clock, system_clock
from reconciler.core.interrupt import Terminated
from reconciler.errors import ConfigError, ExitCode, ReconcilerError, ReportedError
from reconciler.fsutil import check_output_file
from reconciler.parallelism import DEFAULT_PARALLELISM

if TYPE_CHECKING:
    from reconciler.core.plan import RunPlan


_real_process = False  # set by `main()`: signals are ours to handle, os._exit ours to call


@dataclass
class Globals:
    environments_dir: Path
    color: bool
    verbose: int
    clock: Clock = system_clock  # "now" for the change-window policy
    sleep: Callable[[float], None] = time.sleep  # the notifications' backoff


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


# Options shared by several commands, defined once; each command words its own help.
_format_option = functools.partial(
    click.option,
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "markdown"]),
    default="text",
    show_default=True,
)
_parallelism_option = functools.partial(
    click.option,
    "--parallelism",
    type=click.IntRange(min=1),
    default=DEFAULT_PARALLELISM,
    show_default=True,
    help="Environments read at the same time.",
)


_output_option = functools.partial(
    click.option,
    "--output",
    "outputs",
    multiple=True,
    metavar="FORMAT=PATH",
)

_replace_option = functools.partial(
    click.option,
    "--replace",
    "replace",
    multiple=True,
    metavar="SETTING",
    help="Rewrite SETTING even where it compares equal (probed where a safety rule needs it), "
    "e.g. `--replace availability_webhook` to rotate a key NewStore only returns masked.",
)


def _complete_environments(
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


@cli.command()
@click.argument("envs", nargs=-1, metavar="[ENV]...", shell_complete=_complete_environments)
@click.option(
    "--allow-missing-secrets",
    is_flag=True,
    help="Accept unset variables behind credentials (api_key, client_secret, client_id).",
)
@click.pass_obj
def validate(g: Globals, envs: tuple[str, ...], allow_missing_secrets: bool) -> None:
    """Check environment files offline: schema, references, safety of the desired state."""
    from reconciler import api  # lazy: start-up time

    environments = api.load(g.environments_dir, envs, allow_missing_secrets=allow_missing_secrets)
    count = len(environments)
    names = ", ".join(e.name for e in environments)
    click.echo(f"{count} environment{'s' if count != 1 else ''} valid: {names}")
    for env in environments:
        for path, variables in env.secret_urls.items():
            shown = ", ".join(f"${{{name}}}" for name in variables)
            click.echo(
                f"note: {env.where(path)}: {path} has {shown} in its query: the whole url is a "
                "secret (masked in every output, fingerprinted in plan files)"
            )


@cli.command()
@click.argument("envs", nargs=-1, metavar="[ENV]...", shell_complete=_complete_environments)
@_format_option(help="json is the plan file itself; markdown suits a pull-request comment.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Also write the plan file, for `apply --plan`.",
)
@click.option(
    "--detailed-exitcode",
    is_flag=True,
    help="Exit 2 when changes are pending (0: converged, 3: blocked, 1: error).",
)
@_parallelism_option()
@click.option("--probe", is_flag=True, help="Run webhook probes now rather than at apply.")
@_replace_option()
@_output_option(
    help="Also write the plan in FORMAT (text, json, markdown) to PATH, atomically; "
    "repeatable, e.g. `--output markdown=plan.md --output json=plan.json`."
)
@click.pass_obj
def plan(
    g: Globals,
    envs: tuple[str, ...],
    fmt: str,
    out: Path | None,
    detailed_exitcode: bool,
    parallelism: int,
    probe: bool,
    replace: tuple[str, ...],
    outputs: tuple[str, ...],
) -> int:
    """Show what apply would change, in a safe order, and why."""
    # lazy: start-up time
    from reconciler import api
    from reconciler.config import discover
    from reconciler.core.plan import Status
    from reconciler.core.planfile import plan_to_json, write_plan_file
    from reconciler.render.outputs import PLAN_FORMATS, parse_outputs, plan_renderers, write_outputs
    from reconciler.render.run_progress import progress

    if out is not None:
        check_output_file(out, "plan file")
    files = parse_outputs(outputs, PLAN_FORMATS)
    api.check_replace(replace)
    # One environment's broken file is its error; the others are still planned.
    with progress(len(discover(g.environments_dir, envs)), "planned") as done:
        run = api.plan(
            g.environments_dir,
            envs,
            parallelism=parallelism,
            probe=probe,
            on_done=done,
            clock=g.clock,
            replace=replace,
        )
    # The plan's own `created_at`: `--format json` and `--out` print the very same document.
    if fmt == "json":
        click.echo(plan_to_json(run), nl=False)
    elif fmt == "markdown":
        # lazy: start-up time
        from reconciler.core.planfile import plan_to_dict
        from reconciler.render.markdown import render_markdown

        # The checksum of the very plan file `--out` writes (the run's own `created_at`), and
        # the commit the plan records.
        checksum = plan_to_dict(run)["checksum"]
        click.echo(render_markdown(run, commit=run.config_commit, checksum=checksum), nl=False)
    else:
        from reconciler.render.text import render_text  # lazy: start-up time

        click.echo(render_text(run, color=g.color), nl=False)
    write_outputs(files, run, plan_renderers())
    if out is not None:
        write_plan_file(run, out)
        _say_how_to_apply(g, run, out, to_stdout=fmt == "text")

    statuses = {env.status for env in run.environments}
    for env in run.environments:
        if env.status is Status.ERROR:
            click.echo(f"Error: {env.error}", err=True)
    if Status.ERROR in statuses:
        return ExitCode.ERROR
    if Status.BLOCKED in statuses:
        return ExitCode.BLOCKED
    if Status.CHANGES in statuses and detailed_exitcode:
        return ExitCode.CHANGES
    return ExitCode.OK


def _say_how_to_apply(g: Globals, run: Any, out: Path, *, to_stdout: bool) -> None:
    """After `plan --out`: the command that applies exactly that plan. On stdout after a text
    report; after a JSON or Markdown one (a document, often piped) only on a terminal's
    stderr."""
    from reconciler.core.plan import Status  # lazy: start-up time

    statuses = {env.status for env in run.environments}
    if to_stdout is False and not sys.stderr.isatty():
        return
    if statuses & {Status.BLOCKED, Status.ERROR}:
        line = f"Saved the plan to {out}; it cannot be applied as it is (blocked or failed)."
    elif Status.CHANGES not in statuses:
        line = f"Saved the plan to {out}; it has no changes to apply."
    else:
        where = (
            ""
            if g.environments_dir == Path("environments")
            else f" --environments-dir {shlex.quote(str(g.environments_dir))}"
        )
        line = (
            f"Saved the plan to {out}. To apply exactly this plan once reviewed:\n"
            f"  reconciler{where} apply --plan {shlex.quote(str(out))}"
        )
    click.echo(line, err=not to_stdout)


def _confirmation(plan_file: Path | None, *, err: bool = False) -> Callable[[RunPlan], bool]:
    """`apply`'s question before the first write: on a terminal, asked; elsewhere refused."""

    def confirm(run: RunPlan) -> bool:
        from reconciler.core.plan import Status  # lazy: start-up time

        if not sys.stdin.isatty():
            how = (
                f"Once {plan_file} is reviewed, run `apply --plan {plan_file} --auto-approve`."
                if plan_file is not None
                else "Review the changes with `reconciler plan`, then run apply with "
                "--auto-approve (or save them with `plan --out FILE` and run "
                "`apply --plan FILE --auto-approve`)."
            )
            raise ConfigError(
                f"refusing to apply without confirmation: there is no terminal to ask on. {how}"
            )
        pending = [env for env in run.environments if env.status is Status.CHANGES]
        steps = sum(len(env.steps) for env in pending)
        targets = ", ".join(env.name for env in pending)
        return click.confirm(f"Apply these {steps} changes to {targets}?", default=False, err=err)

    return confirm


@cli.command()
@click.argument("envs", nargs=-1, metavar="[ENV]...", shell_complete=_complete_environments)
@click.option(
    "--plan",
    "plan_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Apply exactly this reviewed plan file (from `plan --out`); refused if anything "
    "moved since it was written.",
)
@click.option(
    "--auto-approve",
    is_flag=True,
    help="Apply without asking for confirmation, with or without --plan; needed where there "
    "is no terminal to ask on (CI).",
)
@click.option(
    "--skip-probe",
    is_flag=True,
    help="Do not probe the webhook before external ATP goes on (recorded in the journal).",
)
@click.option(
    "--journal",
    "journal_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Record every write here, as JSON lines "
    "[default: .reconciler/journal/apply-<UTC time>-<pid>.jsonl].",
)
@click.option(
    "--keep-going",
    is_flag=True,
    help="Apply the other environments when one is blocked (it is skipped) or fails; the exit "
    "code still says so. Not for --plan: a reviewed plan with a blocked environment is refused "
    "whole.",
)
@_parallelism_option(help="Environments read at the same time while planning.")
@click.option(
    "--lock-timeout",
    type=click.FloatRange(min=0),
    default=0,
    metavar="SECONDS",
    show_default=True,
    help="Wait this long for another apply of the same tenant to finish (0: refuse at once).",
)
@click.option(
    "--no-lock",
    is_flag=True,
    help="Do not take the per-tenant apply lock (recorded in the journal); only when you are "
    "sure no other apply of these tenants runs.",
)
@click.option(
    "--lock",
    "lock_backend",
    type=click.Choice(["local", "git"]),
    help="Which apply lock: local (a file lock on this machine) or git (a ref in the "
    "configuration repository's remote, shared by every runner; refuses a commit older than "
    "the one applied last) [default: the files' apply_lock, else local].",
)
@click.option(
    "--lock-remote",
    metavar="NAME",
    help="The git remote holding the git lock [default: the files' apply_lock.remote, else "
    "origin].",
)
@click.option(
    "--lock-ttl",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="git lock: after this long, another apply may break this run's lock (set it above "
    "your longest apply) [default: the files' apply_lock.ttl_minutes, else never: only "
    "`reconciler unlock` breaks it].",
)
@click.option(
    "--allow-older-commit",
    is_flag=True,
    help="git lock: apply even when this checkout's commit is older than the one applied last "
    "to the tenant (a deliberate rollback; a revert commit is better).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: JSON lines on stdout (schemas/apply-events.schema.json), the text on stderr.",
)
@click.option(
    "--break-glass",
    metavar="REASON",
    help="Write even outside the environments' apply windows or inside a freeze (an "
    "emergency); REASON is recorded in the output and the journal. Never overrides a gate or "
    "a safety rule.",
)
@_replace_option()
@click.pass_obj
def apply(
    g: Globals,
    envs: tuple[str, ...],
    plan_file: Path | None,
    auto_approve: bool,
    skip_probe: bool,
    journal_file: Path | None,
    keep_going: bool,
    parallelism: int,
    lock_timeout: float,
    no_lock: bool,
    lock_backend: str | None,
    lock_remote: str | None,
    lock_ttl: float | None,
    allow_older_commit: bool,
    fmt: str,
    break_glass: str | None,
    replace: tuple[str, ...],
) -> int:
    """Make the live state match the environment files, one checked step at a time."""
    # lazy: start-up time
    from reconciler import api
    from reconciler.provenance import of_run
    from reconciler.render.apply_output import apply_output

    if no_lock and lock_backend is not None:
        raise ConfigError(f"--no-lock and --lock {lock_backend} contradict each other: give one.")
    origin = of_run(g.environments_dir)
    output = apply_output(fmt, color=g.color, break_glass=break_glass, provenance=origin)
    try:
        result = api.apply(
            g.environments_dir,
            envs,
            plan_file=plan_file,
            confirm=(lambda run: True)
            if auto_approve
            else _confirmation(plan_file, err=fmt == "json"),
            journal=journal_file,
            keep_going=keep_going,
            skip_probe=skip_probe,
            break_glass=break_glass,
            replace=replace,
            parallelism=parallelism,
            lock=False if no_lock else (lock_backend or True),
            lock_timeout=lock_timeout,
            lock_remote=lock_remote,
            lock_ttl=lock_ttl,
            allow_older_commit=allow_older_commit,
            clock=g.clock,
            on_event=output.event,
            on_plan=output.plan,
            on_locks=output.locks,
            on_lock_wait=output.waiting,
            on_start=output.started,
            provenance=origin,
        )
    except ReconcilerError as exc:
        output.failed(exc)
        raise
    except KeyboardInterrupt:
        output.interrupted("SIGINT")
        raise
    except Terminated:
        output.interrupted("SIGTERM")
        raise
    output.done(result.results, result.journal)
    return ExitCode.OK


@cli.command()
@click.argument("env", metavar="ENV", shell_complete=_complete_environments)
@click.option("--lock-id", "lock_id", required=True, metavar="ID", help="The lock's id, as "
              "the messages of the apply it blocks name it.")  # fmt: skip
@click.option(
    "--lock-remote",
    metavar="NAME",
    help="The git remote holding the lock [default: the file's apply_lock.remote, else origin].",
)
@click.option("--force", is_flag=True, help="Do not ask for confirmation on a terminal.")
@click.pass_obj
def unlock(g: Globals, env: str, lock_id: str, lock_remote: str | None, force: bool) -> None:
    """Break a stale git apply lock of ENV's tenant (a killed CI job's), only by its id.

    Like Terraform's force-unlock: the id proves you read the lock you break. Breaking the lock
    of an apply that still runs lets a second apply interleave with it; make sure it is gone.
    """
    from reconciler import api_lock  # lazy: start-up time

    if not force and sys.stdin.isatty():
        holder = api_lock.read_lock(g.environments_dir, env, remote=lock_remote)
        if holder is not None and holder.lock_id == lock_id:
            click.echo(f"The git apply lock of {env}'s tenant: {holder.describe()}.")
            if not click.confirm("Break it? Only if that apply is gone for good", default=False):
                raise ConfigError("unlock cancelled: the lock is still held.")
    holder = api_lock.unlock(g.environments_dir, env, lock_id, remote=lock_remote)
    click.echo(f"Unlocked {env}'s tenant: broke lock id {holder.lock_id} ({holder.describe()}).")


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8765,
    show_default=True,
    help="Port to listen on (0: any free port).",
)
@click.option(
    "--state",
    "state_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Keep tenants in this JSON file across restarts (default: in memory).",
)
@click.option(
    "--latency-ms",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Delay every API, token and webhook answer.",
)
@click.option(
    "--fault-rate",
    type=click.FloatRange(0.0, 1.0),
    default=0.0,
    show_default=True,
    help="Answer this fraction of API and token requests with a transient 429 or 503.",
)
@click.option("--seed", type=int, help="Seed for --fault-rate, for reproducible runs.")
@click.option(
    "--token-ttl",
    type=click.FloatRange(min=0, min_open=True),
    default=3600.0,
    show_default=True,
    help="Seconds an access token stays valid.",
)
@click.option(
    "--webhook-api-key",
    envvar="SANDBOX_WEBHOOK_API_KEY",
    help="Key the sample webhook expects in Authorization (at least 20 characters; "
    "default: the built-in demo key).",
)
@click.option(
    "--mask-webhook-api-key", is_flag=True, help="Answer the webhook config's api_key masked."
)
@click.option(
    "--admin-shows-keys",
    is_flag=True,
    help="Answer the api_keys in clear on the admin endpoints (state, history); masked "
    "otherwise. For tests that compare whole states.",
)
@click.option(
    "--allow-host",
    "allowed_hosts",
    multiple=True,
    metavar="NAME",
    help="Also answer requests addressed to this host name (repeatable); only loopback names "
    "and --host are answered otherwise.",
)
@click.option(
    "--tls-cert",
    type=click.Path(exists=True, dir_okay=False),
    help="Serve HTTPS with this PEM certificate (with --tls-key); clients trust it through "
    "connection.ca_bundle or SSL_CERT_FILE.",
)
@click.option(
    "--tls-key", type=click.Path(exists=True, dir_okay=False), help="The --tls-cert's PEM key."
)
def sandbox(
    host: str,
    port: int,
    state_file: Path | None,
    latency_ms: int,
    fault_rate: float,
    seed: int | None,
    token_ttl: float,
    webhook_api_key: str | None,
    mask_webhook_api_key: bool,
    admin_shows_keys: bool,
    allowed_hosts: tuple[str, ...],
    tls_cert: str | None,
    tls_key: str | None,
) -> None:
    """Run a local NewStore for demos and tests, until Ctrl-C."""
    # lazy: start-up time
    from reconciler.sandbox import SandboxApp, SandboxConfig, serve
    from reconciler.sandbox.app import DEFAULT_WEBHOOK_API_KEY
    from reconciler.sandbox.banner import banner
    from reconciler.sandbox.server import tls_context

    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("--tls-cert and --tls-key go together.")
    tls = tls_context(tls_cert, tls_key) if tls_cert and tls_key else None
    config = SandboxConfig(
        token_ttl=token_ttl,
        latency_ms=latency_ms,
        fault_rate=fault_rate,
        seed=seed,
        webhook_api_key=DEFAULT_WEBHOOK_API_KEY if webhook_api_key is None else webhook_api_key,
        mask_webhook_api_key=mask_webhook_api_key,
        state_file=state_file,
        admin_shows_keys=admin_shows_keys,
    )
    serve(
        SandboxApp(config),
        host,
        port,
        on_ready=lambda url: click.echo(banner(url, config, state_file)),
        allowed_hosts=allowed_hosts,
        tls=tls,
    )
    click.echo("Sandbox stopped.")


@cli.command()
@click.argument("envs", nargs=-1, metavar="[ENV]...", shell_complete=_complete_environments)
@_format_option(
    help="json follows schemas/drift.schema.json; markdown suits a ticket or PR comment."
)
@_parallelism_option()
@click.option(
    "--probe",
    is_flag=True,
    help="Also probe the live webhook of every environment whose external ATP is on; a "
    "failure is `unhealthy` (exit 2, listed first).",
)
@_output_option(
    help="Also write the report in FORMAT to PATH, atomically; repeatable. FORMAT: text, "
    "json, markdown, html (a self-contained dashboard), prometheus (for node_exporter's "
    "textfile collector)."
)
@click.option(
    "--notify",
    "notify_urls",
    multiple=True,
    metavar="URL",
    envvar="RECONCILER_NOTIFY",
    help="Tell this webhook what changed: https://... (JSON, signed with "
    "RECONCILER_NOTIFY_SECRET) or slack:https://... (a Slack incoming webhook); repeatable. "
    "A secret: pass '${VAR}' (quoted) or set RECONCILER_NOTIFY; never printed.",
)
@click.option(
    "--state",
    "state_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Keep each environment's last status here: notify only on a change or a recovery "
    "(without it, every run with drift notifies). Cache it between CI runs.",
)
@click.option(
    "--notify-every-run",
    is_flag=True,
    help="Notify on every run, about every environment, changed or not.",
)
@click.option(
    "--pushgateway",
    metavar="URL",
    help="Also push the metrics to this Prometheus Pushgateway (job newstore_reconciler).",
)
@click.pass_obj
def drift(
    g: Globals,
    envs: tuple[str, ...],
    fmt: str,
    parallelism: int,
    probe: bool,
    outputs: tuple[str, ...],
    notify_urls: tuple[str, ...],
    state_file: Path | None,
    notify_every_run: bool,
    pushgateway: str | None,
) -> int:
    """Report where the live state differs from the files; never writes (for a cron).

    Exits 0 when everything is in sync, 2 on any drift (blocked included) or, with --probe,
    an unhealthy webhook, 1 when an environment could not be read (the others are still
    reported) or a notification or push could not be delivered (after every file is written).
    """
    # lazy: start-up time
    from reconciler import api
    from reconciler.config import discover
    from reconciler.core.drift import DriftStatus
    from reconciler.core.drift_state import next_state, read_state, with_history, write_state
    from reconciler.render.outputs import (
        DRIFT_FORMATS,
        DRIFT_RENDERERS,
        parse_outputs,
        write_outputs,
    )
    from reconciler.render.run_progress import progress

    # Everything a user can get wrong is refused before any tenant is read.
    files = parse_outputs(outputs, DRIFT_FORMATS)
    targets, gateway = _notify_targets(notify_urls, pushgateway)
    if state_file is not None:
        check_output_file(state_file, "drift state file", makes_directories=True)
    state = read_state(state_file) if state_file is not None else None

    # One environment's broken file is its error; the others are still checked.
    with progress(len(discover(g.environments_dir, envs)), "checked") as done:
        report = api.drift(
            g.environments_dir,
            envs,
            parallelism=parallelism,
            on_done=done,
            probe=probe,
            clock=g.clock,
        )
    # The one value every output renders: the report, with what changed since the last run.
    report = with_history(report, state)
    renderer = DRIFT_RENDERERS[fmt]
    click.echo(renderer(report) if fmt != "text" else _drift_text(report, g.color), nl=False)
    write_outputs(files, report, DRIFT_RENDERERS)

    failures, undelivered = _send(
        report, targets, gateway, every_run=notify_every_run, sleep=g.sleep
    )
    if state_file is not None:
        # After the notifications: an undelivered change stays a change for the next run.
        write_state(state_file, next_state(report, state, undelivered=undelivered))

    for env in report.environments:
        if env.status is DriftStatus.ERROR:
            click.echo(f"Error: {env.error}", err=True)
    for failure in failures:
        click.echo(f"Error: {failure}.", err=True)
    worst = report.worst
    if worst is DriftStatus.ERROR or failures:
        return ExitCode.ERROR
    return ExitCode.CHANGES if worst in (DriftStatus.DRIFT, DriftStatus.UNHEALTHY) else ExitCode.OK


def _send(
    report: Any, targets: list[Any], gateway: Any, *, every_run: bool, sleep: Any
) -> tuple[tuple[str, ...], bool]:
    """The pushed metrics and the notifications: what could not be delivered, and whether a
    notification was among it. Nothing to send imports nothing."""
    if not targets and gateway is None:
        return (), False
    from reconciler.notify import SECRET_VARIABLE, send  # lazy: start-up time (httpx)

    secret = os.environ.get(SECRET_VARIABLE) or None
    sent = send(
        report, targets=targets, gateway=gateway, every_run=every_run, secret=secret, sleep=sleep
    )
    return sent.failures, sent.undelivered


def _drift_text(report: Any, color: bool) -> str:
    from reconciler.render.drift import render_drift_text  # lazy: start-up time

    return render_drift_text(report, color=color)


def _notify_targets(urls: Sequence[str], pushgateway: str | None) -> tuple[list[Any], Any]:
    """The notification targets and the Pushgateway, checked (a `${VAR}` read now)."""
    if not urls and pushgateway is None:
        return [], None
    from reconciler.notify import parse_gateway, parse_targets  # lazy: start-up time (httpx)

    targets = parse_targets([u for u in urls if u.strip()], os.environ)
    gateway = parse_gateway(pushgateway, os.environ) if pushgateway is not None else None
    return targets, gateway


@cli.command()
@click.argument("env", metavar="ENV", shell_complete=_complete_environments)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the environment file here instead of printing it.",
)
@click.option("--force", is_flag=True, help="Overwrite --out if it exists.")
@click.option(
    "--store",
    "stores",
    multiple=True,
    metavar="ID",
    help="Also write this store's Associate App document (repeatable; NewStore cannot list "
    "stores).",
)
@click.pass_obj
def dump(g: Globals, env: str, out: Path | None, force: bool, stores: tuple[str, ...]) -> None:
    """Write ENV's live state into its environment file, so that it plans zero changes.

    The file edited is --out when it exists (with --force), else ENV's own file, which supplies
    the tenant and connection (a file with no settings yet is how a tenant is adopted). Its
    extends, comments and ${NAME}s are kept; only what differs from NewStore, and no base file
    says already, is written; a diff shows what changed. Secrets are written as ${...} only.
    """
    # lazy: start-up time
    from reconciler.config import discover
    from reconciler.core.dump import check_out, dump_environment, write_dump
    from reconciler.render.dump import render_dump_diff, render_written

    (source,) = discover(g.environments_dir, [env])
    if out is not None:
        check_out(out, force=force)
    result = dump_environment(source, out=out, stores=stores)
    for warning in result.warnings:
        click.echo(f"Warning: {warning}", err=True)
    for note in result.notes:
        click.echo(f"Note: {note}", err=True)
    if out is None:
        click.echo(result.text, nl=False)
        return
    if result.before is not None:
        click.echo(render_dump_diff(result, out, color=g.color), nl=False)
        if result.before == result.text:
            return  # nothing to write: the file stays as it is, byte for byte
    write_dump(result.text, out, force=force)
    click.echo(render_written(result, out))


@cli.command("vars")
@click.argument("envs", nargs=-1, metavar="[ENV]...", shell_complete=_complete_environments)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json follows schemas/vars.schema.json.",
)
@click.pass_obj
def vars_(g: Globals, envs: tuple[str, ...], fmt: str) -> int:
    """List the ${NAME} variables the environments use: where, and whether each is set now.

    Never prints a value. What to export before a run, and the CI secrets to add.
    """
    # lazy: start-up time
    from reconciler.config import discover
    from reconciler.config.variables import report_to_dict, variables_of

    report = variables_of(discover(g.environments_dir, envs))
    if fmt == "json":
        import json  # lazy: start-up time

        click.echo(json.dumps(report_to_dict(report), indent=2))
    else:
        from reconciler.render.variables import render_variables  # lazy: start-up time

        click.echo(render_variables(report), nl=False)
    for broken in report.unresolved:
        problems = "; ".join(str(p) for p in broken.problems)
        click.echo(
            f"Error: {broken.file} cannot be resolved, its variables are unknown: {problems}",
            err=True,
        )
    return ExitCode.ERROR if report.unresolved else ExitCode.OK


# -- starting a configuration repository (init, schema) -----------------------------------------


@cli.command()
@click.argument(
    "directory",
    required=False,
    default=Path("."),
    type=click.Path(path_type=Path),
    metavar="[DIR]",
)
@click.option(
    "--ci",
    type=click.Choice(["github", "gitlab", "none"]),
    default="github",
    show_default=True,
    help="Which CI files to add (the recipes of examples/ci).",
)
@click.option(
    "--source",
    metavar="GIT_URL@REF",
    help="Where pipelines and pre-commit install newstore-reconciler from: its git repository "
    "and a tag or commit [default: https://github.com/OWNER/newstore-reconciler@v<version>].",
)
def init(directory: Path, ci: str, source: str | None) -> None:
    """Start a configuration repository in DIR (default: here); never overwrites a file."""
    from reconciler.core.scaffold import (  # lazy: start-up time
        DEFAULT_SOURCE,
        scaffold,
        write_scaffold,
    )

    files = scaffold(ci, source or DEFAULT_SOURCE)
    write_scaffold(directory, files)
    for name in files:
        click.echo(f"  created {directory / name}")
    where = "" if directory == Path(".") else f"cd {directory} && "
    steps = [
        "set `tenant:` in environments/staging.yaml to your staging tenant's name",
        f"{where}reconciler validate --allow-missing-secrets   # offline, no secrets needed",
        "reconciler vars   # the variables to export here and to add as CI secrets"
        # No file names the reconciler's own key, so vars cannot list it; CI needs it.
        + (", and RECONCILER_FINGERPRINT_KEY (`openssl rand -hex 32`)" if ci != "none" else ""),
        "rehearse on a local sandbox: see rehearsal/staging.yaml",
    ]
    # Running init again would refuse to overwrite these files: name them, to edit.
    owner = [name for name, text in files.items() if "OWNER" in text]
    if owner:
        steps.insert(
            0,
            f"replace OWNER in {', '.join(owner)} with the account that hosts your copy of "
            "newstore-reconciler (`init --source GIT_URL@REF` fills it in for a new repository)",
        )
    click.echo("Next:\n" + "\n".join(f"  {i}. {step}" for i, step in enumerate(steps, 1)))


@cli.command()
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the schema to this file instead of printing it.",
)
@click.option(
    "--write",
    "write_generated",
    is_flag=True,
    help="Regenerate the schemas made from the settings' declarations (environment, drift) "
    "in --dir.",
)
@click.option(
    "--check",
    is_flag=True,
    help="Exit 1, naming them, when the schemas in --dir differ from the generated ones.",
)
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("schemas"),
    show_default=True,
    help="The repository's schemas directory, for --write and --check.",
)
def schema(out: Path | None, write_generated: bool, check: bool, directory: Path) -> None:
    """Print the environment files' JSON schema (for editors and other tools); --write and
    --check keep the repository's generated schemas in step with the settings."""
    from reconciler.config import schema_gen  # lazy: start-up time

    if write_generated or check:
        if write_generated and check:
            raise ConfigError("schema: give --write or --check, not both")
        if not directory.is_dir():
            raise ConfigError(f"schema: {directory} is not a directory (give --dir)")
        if check:
            names = schema_gen.stale(directory)
            if names:
                raise ConfigError(
                    f"{', '.join(str(directory / n) for n in names)}: differ from the schemas "
                    "the settings generate; run `reconciler schema --write`"
                )
            click.echo(f"{directory}: the generated schemas are up to date.")
            return
        names = schema_gen.write(directory)
        written = ", ".join(str(directory / n) for n in names) or "nothing (up to date)"
        click.echo(f"Wrote {written}.")
        return
    text = schema_gen.generated("environment.schema.json")
    if out is None:
        click.echo(text, nl=False)
        return
    check_output_file(out, "schema", makes_directories=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    click.echo(f"Wrote {out}.")


def main() -> None:
    from reconciler.core import interrupt  # lazy: start-up time (signals only for a real process)

    global _real_process
    _real_process = True
    interrupt.install()
    cli(prog_name="reconciler")
