"""Running the real CLI in-process, and judging what a failure looks like to its user."""

from __future__ import annotations

import builtins
import inspect
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jsonschema.exceptions
import yaml
from click.testing import CliRunner, Result

import reconciler.errors
from reconciler.cli import cli
from reconciler.sandbox import SandboxApp, running
from reconciler.sandbox.app import WEBHOOK_PATH

_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _exception_names(*modules: Any) -> frozenset[str]:
    names = set()
    for module in modules:
        for name, value in vars(module).items():
            if inspect.isclass(value) and issubclass(value, BaseException):
                names.add(name)
    return frozenset(names)


# A user sees a sentence, never the class name of what went wrong inside.
EXCEPTION_NAMES = _exception_names(
    builtins, yaml, yaml.error, jsonschema.exceptions, httpx, reconciler.errors
)


def invoke(directory: Path, *args: str, env: Mapping[str, str] | None = None) -> Result:
    """`reconciler --environments-dir DIR ARGS...` in this process."""
    return CliRunner().invoke(
        cli, ["--environments-dir", str(directory), *args], env=dict(env or {})
    )


def assert_clear_error(result: Result, *, names: Iterable[str], given: str = "") -> None:
    """Exit 1 through the one exit-code boundary with one `Error:` paragraph on stderr that
    names one of `names` (a file), no traceback and no exception class name that is not in the
    user's own input `given` (a key called `KeyError` is quoted back, and that is fine)."""
    shown = f"exit {result.exit_code}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert isinstance(result.exception, SystemExit), (
        f"escaped the CLI's error boundary: {result.exception!r}\n{shown}"
    )
    assert result.exit_code == 1, shown
    err = result.stderr
    assert err.startswith("Error: ") and err.endswith("\n"), shown
    assert "\n\n" not in err.strip(), f"more than one paragraph\n{shown}"
    assert "Traceback" not in err or "Traceback" in given, shown
    for name in EXCEPTION_NAMES:
        if re.search(rf"\b{re.escape(name)}\b", err) and name not in given:
            raise AssertionError(f"an exception class name ({name}) reached the user\n{shown}")
    assert any(n in err for n in names), f"the message names none of {list(names)}\n{shown}"


@dataclass
class Recorder:
    """Every HTTP request a served sandbox received: (method, path)."""

    seen: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def mark(self) -> int:
        with self.lock:
            return len(self.seen)

    def since(self, mark: int) -> list[tuple[str, str]]:
        with self.lock:
            return list(self.seen[mark:])

    def writes_since(self, mark: int) -> list[tuple[str, str]]:
        """API writes (token requests and the sample webhook are not writes to NewStore)."""
        return [
            (method, path)
            for method, path in self.since(mark)
            if method in _WRITES and "/auth/realms/" not in path and path != WEBHOOK_PATH
        ]


@contextmanager
def recorded_sandbox(app: SandboxApp) -> Iterator[tuple[str, Recorder]]:
    """Serve `app` on 127.0.0.1 behind a WSGI wrapper that notes every request, whatever its
    path: a test can then say "nothing at all reached any tenant", not only "this one"."""
    recorder = Recorder()

    def wsgi(environ: dict[str, Any], start_response: Any) -> Any:
        with recorder.lock:
            recorder.seen.append((environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")))
        return app(environ, start_response)

    with running(wsgi) as base_url:  # type: ignore[arg-type]
        yield base_url, recorder
