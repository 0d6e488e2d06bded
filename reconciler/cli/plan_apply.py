"""The commands that change a tenant, and the ones around them: `plan` (what would change,
and the plan file), `apply` (the ordered, gated, verified writes) and `unlock` (breaking a
stale git apply lock)."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from reconciler.cli.options import (
    Globals,
    complete_environments,
    format_option,
    output_option,
    parallelism_option,
    replace_option,
)
from reconciler.core.interrupt import Terminated
from reconciler.errors import ConfigError, ExitCode, ReconcilerError
from reconciler.fsutil import check_output_file

if TYPE_CHECKING:
    from reconciler.core.plan import RunPlan


@click.command()
@click.argument("envs", nargs=-1, metavar="[ENV]...", shell_complete=complete_environments)
@format_option(help="json is the plan file itself; markdown suits a pull-request comment.")
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
@parallelism_option()
@click.option("--probe", is_flag=True, help="Run webhook probes now rather than at apply.")
@replace_option()
@output_option(
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


@click.command()
@click.argument("envs", nargs=-1, metavar="[ENV]...", shell_complete=complete_environments)
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
@parallelism_option(help="Environments read at the same time while planning.")
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
@replace_option()
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


@click.command()
@click.argument("env", metavar="ENV", shell_complete=complete_environments)
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


COMMANDS = (plan, apply, unlock)
