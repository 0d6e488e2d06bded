"""Which paths of a JSON document changed (`reconciler.diffing`): what it reports, and that a
parse started in the middle of its own cannot break it (CPython 3.11, gh-106905)."""

from __future__ import annotations

import ast
import contextlib
import gc
from collections.abc import Iterator
from typing import Any

import pytest

from reconciler.diffing import changed_keys, changed_paths
from reconciler.jsonexact import loads

BEFORE = {"ui": {"use_new_om_ui": False, "tabs": [1, 2, {"name": "orders"}]}, "a.b": 1}
AFTER = {"ui": {"use_new_om_ui": True, "tabs": [1, 3, {"name": "history"}]}, "a.b": 1}


def test_changed_paths_name_every_difference_by_key_path() -> None:
    assert changed_paths(BEFORE, AFTER) == ["ui.tabs[1]", "ui.tabs[2].name", "ui.use_new_om_ui"]
    assert changed_paths({"a": 1}, {"a": 1, "b": 2}) == ["b"]
    assert changed_paths({"a": 1, "b": 2}, {"a": 1}) == ["b"]
    assert changed_paths(BEFORE, BEFORE) == []
    assert changed_paths([1], {"a": 1}) == [""]  # the whole document


@pytest.mark.parametrize(("before", "after"), [(1, True), (1, 1.0), (0, None), ("1", 1)])
def test_a_change_of_type_is_a_change_even_where_the_values_compare_equal(
    before: Any, after: Any
) -> None:
    assert changed_paths({"x": before}, {"x": after}) == ["x"]


def test_numbers_read_exactly_compare_by_value() -> None:
    written = loads(b'{"timeout": 80.00, "ratio": 1e2}')
    read_back = loads(b'{"timeout": 80.0, "ratio": 100}')
    assert changed_paths(written, read_back) == []
    assert changed_paths(written, loads(b'{"timeout": 80.01, "ratio": 100}')) == ["timeout"]


def test_changed_keys_are_the_top_level_keys_even_with_dots_in_them() -> None:
    assert changed_keys({"a.b": 1, "c": {"d": 1}}, {"a.b": 2, "c": {"d": 2}}) == {"a.b", "c"}
    assert changed_keys({"a.b": 1}, {"a.b": 1}) == set()


@contextlib.contextmanager
def _a_parse_at_every_collection() -> Iterator[list[int]]:
    """A garbage collection at every allocation, each running a parse of its own: what another
    thread's parse does when the GIL passes to it in the middle of one (gh-106905), here in one
    thread and every time. Only inside the test's own body: pytest parses too."""
    parses: list[int] = []

    def parse(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            ast.parse("[1, 2]")
            parses.append(1)

    threshold = gc.get_threshold()
    gc.callbacks.append(parse)
    gc.set_threshold(1)
    try:
        yield parses
    finally:
        gc.set_threshold(*threshold)
        gc.callbacks.remove(parse)


def test_a_parse_in_the_middle_of_a_diff_does_not_break_it() -> None:
    # On 3.11 without the guard: SystemError: AST constructor recursion depth mismatch.
    with _a_parse_at_every_collection() as parses:
        paths = changed_paths(BEFORE, AFTER)
        keys = changed_keys(BEFORE, AFTER)
        during = len(parses)
        gc.collect()  # collections (and their parses) run again after the diff
        after = len(parses)
    assert paths == ["ui.tabs[1]", "ui.tabs[2].name", "ui.use_new_om_ui"]
    assert keys == {"ui"}
    assert after > during
    assert gc.isenabled()


def test_collection_stays_off_after_a_diff_when_it_was_off() -> None:
    gc.disable()
    try:
        changed_paths(BEFORE, AFTER)
        assert not gc.isenabled()
    finally:
        gc.enable()
