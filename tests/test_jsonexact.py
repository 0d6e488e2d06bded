"""`reconciler.jsonexact`: a document read and written back keeps every number's text."""

from __future__ import annotations

import copy
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.jsonexact import MAX_DEPTH, Number, RepeatedKey, depth, dumps, loads

NUMBERS = [
    "123456789012345678901234567890.5",
    "80.00",
    "-0",
    "-0.0",
    "1E400",
    "1e-400",
    "2.50E+10",
    "9" * 5000,  # past Python's int-from-text digit limit
    "0.1",
]


@pytest.mark.parametrize("text", NUMBERS)
def test_numbers_go_back_to_the_digit(text: str) -> None:
    document = loads(f'{{"a": {{"n": {text}, "list": [{text}, true, null, "s"]}}}}')
    again = dumps(copy.deepcopy(document))
    assert f'"n": {text}' in again.decode()
    assert f"[{text}, true, null" in again.decode()
    assert loads(again) == document


def test_numbers_compare_by_value() -> None:
    assert loads("[80.0]") == loads("[80.00]") == [80]
    assert loads("[1.5]") != loads("[1.50001]")
    assert isinstance(loads("[1]")[0], Number)


@settings(deadline=None, derandomize=True)
@given(
    st.decimals(allow_nan=False, allow_infinity=False).map(str)
    | st.integers().map(str)
    | st.from_regex(r"-?(0|[1-9][0-9]{0,30})(\.[0-9]{1,30})?([eE][+-]?[0-9]{1,3})?", fullmatch=True)
)
def test_any_json_number_text_survives(text: str) -> None:
    try:
        json.loads(text)
    except ValueError:
        return  # Decimal's own spellings (e.g. "0E-8" is JSON, "Infinity" is not) aside
    assert dumps(loads(f"[{text}]")) == f"[{text}]".encode()


def test_strings_keys_and_order_are_kept() -> None:
    text = '{"z": "é\\u00e9\\n", "a": [], "m": {}}'
    document = loads(text)
    assert list(document) == ["z", "a", "m"]
    assert loads(dumps(document)) == document


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ('{"a": 1, "a": 2}', "a"),
        ('{"ui": {"hide": false, "hide": true}}', "ui.hide"),
        ('{"list": [{"x": 1}, {"y": 1, "y": 2}]}', "list[1].y"),
    ],
)
def test_a_repeated_key_is_named(text: str, path: str) -> None:
    with pytest.raises(RepeatedKey) as caught:
        loads(text)
    assert caught.value.path == path


@pytest.mark.parametrize("text", ["[NaN]", "[Infinity]", "[-Infinity]"])
def test_not_json_numbers_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="is not a JSON number"):
        loads(text)


def test_depth_counts_without_recursion() -> None:
    assert depth(loads("1")) == 1
    assert depth(loads('{"a": [1]}')) == 3
    deep: object = []
    for _ in range(100_000):
        deep = [deep]
    assert depth(deep) == 100_001
    assert MAX_DEPTH >= 16
