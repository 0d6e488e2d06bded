"""A real `reconciler apply` held at its confirmation prompt (on a pseudo-terminal), so that it
holds its tenants' locks while a test starts another apply: shared by the local and the git
lock tests."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO

PROMPT = "? [y/N]"
WAIT_SECONDS = 60  # an upper bound for a subprocess to reach a point, never a measured time


def read_until(stream: IO[str] | None, text: str, proc: subprocess.Popen[str]) -> str:
    """What `stream` printed up to and including `text` (read unbuffered, so that a later
    `communicate` still gets the rest)."""
    assert stream is not None
    seen = b""
    deadline = time.monotonic() + WAIT_SECONDS
    while text.encode() not in seen:
        assert time.monotonic() < deadline, f"never printed {text!r}: {seen!r}"
        ready, _, _ = select.select([stream], [], [], 0.1)
        if ready:
            chunk = os.read(stream.fileno(), 4096)
            assert chunk or proc.poll() is None, f"exited before {text!r}: {seen!r}"
            seen += chunk
    return seen.decode()


@dataclass
class Holder:
    """An apply holding its locks at its confirmation prompt."""

    proc: subprocess.Popen[str]
    terminal: int

    def answer(self, text: str) -> tuple[str, str]:
        os.write(self.terminal, text.encode())
        return self.proc.communicate(timeout=WAIT_SECONDS)


@contextmanager
def at_prompt(start: Callable[[int], subprocess.Popen[str]]) -> Iterator[Holder]:
    """The apply `start(stdin)` starts, once it waits at its prompt; killed and closed after."""
    controller, terminal = pty.openpty()
    proc = start(terminal)
    os.close(terminal)
    try:
        read_until(proc.stdout, PROMPT, proc)
        yield Holder(proc, controller)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for stream in (proc.stdout, proc.stderr):
            assert stream is not None
            stream.close()
        os.close(controller)
