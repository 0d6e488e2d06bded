"""Progress of a run over many environments, on stderr only: stdout carries the result.

    with progress(len(envs), "planned") as done:
        run = plan_environments(envs, on_done=done)

`done` may be called from any thread, once per finished environment, with any argument. Short
runs (fewer than `MIN_ENVIRONMENTS`) print nothing. On a terminal it is a progress bar; anywhere
else (CI logs, cron mail) a plain line such as "planned 40/200" about every tenth of the run.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import click

MIN_ENVIRONMENTS = 5
_LINES = 10  # plain lines per run, about


@contextmanager
def progress(total: int, verb: str) -> Iterator[Callable[[object], None]]:
    """Yield the per-environment callback; `verb` names what was done ("planned", "checked")."""
    if total < MIN_ENVIRONMENTS:
        yield lambda _: None
        return
    lock = threading.Lock()
    stream = sys.stderr
    if stream.isatty():
        with click.progressbar(
            length=total, label=verb.capitalize(), file=stream, show_pos=True, show_eta=True
        ) as bar:

            def advance(_: object) -> None:
                with lock:
                    bar.update(1)

            yield advance
        return

    count = 0
    every = max(1, total // _LINES)

    def report(_: object) -> None:
        nonlocal count
        with lock:
            count += 1
            if count % every == 0 or count == total:
                click.echo(f"{verb} {count}/{total}", err=True)

    yield report
