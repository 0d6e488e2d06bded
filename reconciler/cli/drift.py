"""`drift`: where the live state differs from the files, for a cron; and what leaves the
machine after it (the notifications, the pushed metrics, the state file of the last run)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from reconciler.cli.options import (
    Globals,
    complete_environments,
    format_option,
    output_option,
    parallelism_option,
)
from reconciler.errors import ExitCode
from reconciler.fsutil import check_output_file


@click.command()
@click.argument("envs", nargs=-1, metavar="[ENV]...", shell_complete=complete_environments)
@format_option(
    help="json follows schemas/drift.schema.json; markdown suits a ticket or PR comment."
)
@parallelism_option()
@click.option(
    "--probe",
    is_flag=True,
    help="Also probe the live webhook of every environment whose external ATP is on; a "
    "failure is `unhealthy` (exit 2, listed first).",
)
@output_option(
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


COMMANDS = (drift,)
