"""Hostile environment files end in a clear problem, in bounded memory.

The memory bound below is part of the requirement (a pull request must not be able to exhaust
the CI runner that validates it), hence the explicit resource assertion. Time is not asserted:
a wall-clock limit fails on a busy machine; the parser's caps keep the work small, and the
benchmark is where timings live.
"""

from __future__ import annotations

import random
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler.cli import cli
from reconciler.config import load_environments
from reconciler.errors import ConfigError

FIXTURES = Path(__file__).parent / "fixtures" / "config"
MAX_PEAK_BYTES = 50 * 1024 * 1024


def _alias_bomb(directory: Path) -> None:
    (directory / "env.yaml").write_bytes((FIXTURES / "alias_bomb" / "env.yaml").read_bytes())


def _five_megabytes(directory: Path) -> None:
    head = b"tenant: t1\n"
    padding = b"#" * (5 * 1024 * 1024 - len(head) - 1)
    (directory / "env.yaml").write_bytes(head + padding + b"\n")


def _random_bytes(directory: Path) -> None:
    # /dev/urandom-like, but seeded so a failure can be reproduced.
    (directory / "env.yaml").write_bytes(random.Random(7).randbytes(256 * 1024))


def _invalid_utf8(directory: Path) -> None:
    (directory / "env.yaml").write_bytes(b"tenant: t1\nconnection:\n  client_id: caf\xe9-id\n")


def _nul_character(directory: Path) -> None:
    (directory / "env.yaml").write_bytes(b"tenant: t1\x00\n")


def _deep_flow(directory: Path) -> None:
    (directory / "env.yaml").write_text("tenant: " + "[" * 10_000 + "]" * 10_000 + "\n")


def _deep_block(directory: Path) -> None:
    (directory / "env.yaml").write_text("- " * 10_000 + "x\n")


def _self_referencing_alias(directory: Path) -> None:
    (directory / "env.yaml").write_text("tenant: t1\ngates: &g {loop: *g}\n")


def _many_values(directory: Path) -> None:
    (directory / "env.yaml").write_text("".join(f"k{i}: {i}\n" for i in range(60_000)))


def _huge_number(directory: Path) -> None:
    (directory / "env.yaml").write_text("tenant: t1\nconnection:\n  timeout: " + "9" * 50_000)


# (case, how to write it, the problem's start: file:line:col, part of the message)
CASES: list[tuple[str, Callable[[Path], None], str, str]] = [
    ("alias bomb", _alias_bomb, ":2:", "expands to more than 10000 values"),
    ("5 MB file", _five_megabytes, ":1:1:", "file is too large (5,242,880 bytes)"),
    ("random bytes", _random_bytes, ":", "not UTF-8 text: byte 0x"),
    ("invalid UTF-8", _invalid_utf8, ":3:17:", "byte 0xe9 at byte offset 39"),
    ("NUL character", _nul_character, ":1:11:", "character #x0000 is not allowed"),
    ("10k-deep flow nesting", _deep_flow, ":1:", "nested deeper than 64 levels"),
    ("10k-deep block nesting", _deep_block, ":1:129:", "nested deeper than 64 levels"),
    ("self-referencing alias", _self_referencing_alias, ":2:", "through aliases"),
    ("too many values", _many_values, ":", "has more than 10000 values"),
    ("huge number", _huge_number, ":3:12:", "number cannot be read"),
]


@pytest.mark.parametrize(
    ("case", "write", "where", "text"), CASES, ids=[case for case, *_ in CASES]
)
def test_hostile_file_is_a_clear_problem_within_bounds(
    tmp_path: Path, case: str, write: Callable[[Path], None], where: str, text: str
) -> None:
    write(tmp_path)

    with pytest.raises(ConfigError) as info:
        load_environments(tmp_path, environ={})

    # Memory, not time, is the bound asserted here: a wall-clock limit fails on a busy machine
    # (timings belong to the benchmark). Measured in a second run under tracemalloc.
    tracemalloc.start()
    try:
        with pytest.raises(ConfigError):
            load_environments(tmp_path, environ={})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    message = str(info.value)
    assert f"{tmp_path / 'env.yaml'}{where}" in message, message
    assert text in message, message
    assert "Traceback" not in message
    assert peak < MAX_PEAK_BYTES, f"{case}: peak {peak / 1e6:.1f} MB"


@pytest.mark.parametrize(("write"), [_alias_bomb, _random_bytes, _deep_flow])
def test_cli_exits_1_without_a_traceback(tmp_path: Path, write: Callable[[Path], None]) -> None:
    write(tmp_path)
    result = CliRunner().invoke(cli, ["--environments-dir", str(tmp_path), "validate"])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith("Error: 1 problem found:\n")
    assert "Traceback" not in result.stderr


def test_a_long_extends_chain_is_cut_short(tmp_path: Path) -> None:
    (tmp_path / "env.yaml").write_text("extends: _0.yaml\ntenant: t1\n")
    for i in range(2000):
        (tmp_path / f"_{i}.yaml").write_text(f"extends: _{i + 1}.yaml\n")
    with pytest.raises(ConfigError) as info:
        load_environments(tmp_path, environ={})
    assert f"{tmp_path / '_14.yaml'}:1:1: extends: extends chain is longer than 16 files" in str(
        info.value
    )
