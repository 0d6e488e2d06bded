"""JSON documents that go back exactly as they came: for a document the tool changes in place.

The Associate App write GETs a whole document, changes one field and PUTs it back. Python's
`json` would turn `123456789012345678901234567890.5` into a float and send back
`1.2345678901234568e+29`, `80.00` into `80.0`, and keep only the last of two equal keys: a
value nobody asked to change would change. Here:

    loads(data)       -> the document; every number a `Number` (compares by value, keeps its
                         text); a repeated key raises RepeatedKey naming its path; NaN and
                         Infinity (not JSON) raise ValueError
    dumps(document)   -> bytes: every `Number` as the very text it was read as
    depth(document)   -> how deep it nests (without recursion), for a bound on what the tool
                         can verify after writing it
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any, Final

MAX_DEPTH: Final = 64
"""The deepest document the tool writes: the read-back comparison (deepdiff) recurses, and
fails a few hundred levels down; a real Associate App document nests about six deep."""


class Number(Decimal):
    """A JSON number as it was written: equal to any number of the same value (so `80.0`
    and `80.00` compare equal), sent back as its own text. Immutable, like Decimal."""

    text: str

    def __new__(cls, text: str) -> Number:
        number = super().__new__(cls, text)
        number.text = text
        return number

    def __copy__(self) -> Number:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Number:
        return self


class RepeatedKey(ValueError):
    """A JSON object names the same key twice: which value counts is the reader's guess."""

    def __init__(self, path: str) -> None:
        super().__init__(f"repeated key {path}")
        self.path = path


class _Repeats(dict[str, Any]):
    """An object that named a key twice (the last value kept, as json does), until `loads`
    finds where it is."""

    repeated: str = ""


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    repeated = ""
    for key, value in pairs:
        if key in seen and not repeated:
            repeated = key
        seen[key] = value
    if not repeated:
        return seen
    marked = _Repeats(seen)
    marked.repeated = repeated
    return marked


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON number")


def _walk(document: Any) -> Iterator[tuple[str, Any, int]]:
    """Every value with its key path and depth (1 for the document), without recursion."""
    todo: list[tuple[str, Any, int]] = [("", document, 1)]
    while todo:
        path, value, level = todo.pop()
        yield path, value, level
        if isinstance(value, dict):
            todo += [(f"{path}.{k}" if path else k, v, level + 1) for k, v in value.items()]
        elif isinstance(value, list):
            todo += [(f"{path}[{i}]", v, level + 1) for i, v in enumerate(value)]


def loads(data: bytes | str) -> Any:
    """Parse `data` keeping every number's text; RepeatedKey names a key given twice.
    RecursionError for a document nested deeper than the parser goes (callers say so)."""
    document = json.loads(
        data,
        parse_float=Number,
        parse_int=Number,
        parse_constant=_not_json,
        object_pairs_hook=_object,
    )
    for path, value, _ in _walk(document):
        if isinstance(value, _Repeats):
            raise RepeatedKey(f"{path}.{value.repeated}" if path else value.repeated)
    return document


def depth(document: Any) -> int:
    """How many levels `document` nests: 1 for a scalar or an empty object."""
    return max(level for _, _, level in _walk(document))


def dumps(document: Any) -> bytes:
    """The JSON text of `document` (UTF-8), each `Number` as it was read. `document` must be
    no deeper than the interpreter's recursion allows (callers check `depth` first)."""
    parts: list[str] = []

    def emit(value: Any) -> None:
        if isinstance(value, Number):
            parts.append(value.text)
        elif isinstance(value, dict):
            parts.append("{")
            for index, (key, item) in enumerate(value.items()):
                if index:
                    parts.append(", ")
                parts.append(json.dumps(str(key), ensure_ascii=False) + ": ")
                emit(item)
            parts.append("}")
        elif isinstance(value, list | tuple):
            parts.append("[")
            for index, item in enumerate(value):
                if index:
                    parts.append(", ")
                emit(item)
            parts.append("]")
        else:
            parts.append(json.dumps(value, ensure_ascii=False, allow_nan=False))

    emit(document)
    return "".join(parts).encode("utf-8")
