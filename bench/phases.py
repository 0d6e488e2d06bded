"""Run the real `reconciler` CLI and record where its CPU goes, phase by phase.

    python bench/phases.py OUT.json -- [reconciler arguments...]

`bench/plan_many.py` runs its plan through this, so the breakdown comes from the measured run
itself. The product's code is untouched: a handful of its functions are wrapped (at the module
attribute the caller looks up) with a timer of the calling thread's CPU (`time.thread_time`),
nesting-aware, so a phase's figure excludes the phases called inside it (the token fetched
inside an environment's first read counts as `token`, not as `reads`). The wrappers cost a few
microseconds per call, a handful of calls per environment.

Phases: `load` (discover, parse and validate the files), `client` (build each environment's
HTTP client), `token` (the OAuth exchange, its HTTPS request included), `reads` (the setting
GETs, their HTTP and parsing), `plan` (diff and order), `render` (the text written to
stdout). `start-up` is the CPU spent before the command runs (the interpreter, the imports
of the modules wrapped here). What no phase covers (the CLI's own imports, thread pools, the
GIL's hand-overs, the fingerprints) is `other`: the process's user + system CPU minus the rest.
"""

from __future__ import annotations

import functools
import json
import resource
import sys
import threading
import time
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

_local = threading.local()
_lock = threading.Lock()
_totals: dict[str, float] = {}
_calls: dict[str, int] = {}


def _enter() -> None:
    stack = getattr(_local, "stack", None)
    if stack is None:
        stack = _local.stack = []
    stack.append([time.thread_time(), 0.0])


def _leave(phase: str) -> None:
    stack = _local.stack
    started, inner = stack.pop()
    spent = time.thread_time() - started
    if stack:
        stack[-1][1] += spent  # the caller's phase does not count this call
    with _lock:
        _totals[phase] = _totals.get(phase, 0.0) + spent - inner
        _calls[phase] = _calls.get(phase, 0) + 1


def _timed(phase: str, function: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _enter()
        try:
            return function(*args, **kwargs)
        finally:
            _leave(phase)

    return wrapper


def _timed_generator(
    phase: str, function: Callable[..., Generator[Any, Any, Any]]
) -> Callable[..., Generator[Any, Any, Any]]:
    # httpx drives the auth flow: the token request it yields is sent, in this thread, between
    # two steps of the generator, so its CPU falls inside the measured span.
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
        _enter()
        try:
            return (yield from function(*args, **kwargs))
        finally:
            _leave(phase)

    return wrapper


def _instrument() -> None:
    import reconciler.api as api
    import reconciler.cli as cli
    import reconciler.core.plan.live as live
    import reconciler.render.text as text
    from reconciler.newstore.auth import ClientCredentials
    from reconciler.newstore.settings import REGISTRY

    # Each replaced where its caller looks it up (a module's global, a class's method).
    wrapped: list[tuple[object, str, str]] = [
        (api, "load_each", "load"),
        (live, "default_client", "client"),
        (live, "build_plan", "plan"),
        (text, "render_text", "render"),
    ]
    wrapped += [(type(setting), "read_managed", "reads") for setting in REGISTRY]
    for owner, name, phase in wrapped:
        original = getattr(owner, name)
        if not getattr(original, "_bench_phase", None):
            timed = _timed(phase, original)
            timed._bench_phase = phase  # type: ignore[attr-defined]
            setattr(owner, name, timed)
    token = ClientCredentials._current_token
    setattr(ClientCredentials, "_current_token", _timed_generator("token", token))  # noqa: B010
    del cli


def main() -> int:
    out, separator, *arguments = sys.argv[1:]
    if separator != "--":
        raise SystemExit("usage: phases.py OUT.json -- [reconciler arguments...]")
    _instrument()
    from reconciler.cli import main as reconciler_main

    started = resource.getrusage(resource.RUSAGE_SELF)
    startup = started.ru_utime + started.ru_stime
    sys.argv = ["reconciler", *arguments]
    code: int | str | None = 0
    try:
        reconciler_main()
    except SystemExit as exit_:
        code = exit_.code
    finally:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        total = usage.ru_utime + usage.ru_stime
        figures = {
            "total_cpu_s": total,
            "user_s": usage.ru_utime,
            "system_s": usage.ru_stime,
            "startup_cpu_s": startup,
            "phases_s": dict(_totals),
            "calls": dict(_calls),
        }
        Path(out).write_text(json.dumps(figures, indent=2))
    return code if isinstance(code, int) else 1


if __name__ == "__main__":
    sys.exit(main())
