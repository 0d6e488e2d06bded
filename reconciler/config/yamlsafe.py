"""YAML loading that survives hostile input and remembers where every key was written.

Environment files come from pull requests, so a file may be huge, binary, nested ten thousand
levels deep or an alias bomb. We never call `yaml.load`: PyYAML's SafeLoader only *composes*
the node graph (aliases stay shared, so composing a bomb is cheap), with a depth and node cap
enforced while composing; then `_DocumentBuilder` walks the nodes itself, counting every node it
expands, and records each key path's file:line:column for later messages.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import Resolver

from reconciler.errors import Problem
from reconciler.model import Location

MAX_BYTES = 1024 * 1024
MAX_DEPTH = 64
# An environment file holds a few dozen values; this is orders of magnitude more, yet small
# enough that an alias bomb stops after a few MB of memory.
MAX_NODES = 10_000

_STD = "tag:yaml.org,2002:"
_NON_PRINTABLE = yaml.reader.Reader.NON_PRINTABLE
_SCALAR_TAGS = {f"{_STD}{t}" for t in ("str", "int", "float", "bool", "null", "timestamp")}


def child_path(parent: str, key: str | int) -> str:
    """Key path notation used in messages: `gates.webhook_probe.products[0]`."""
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent else key


@dataclass
class Document:
    """One parsed file: plain values plus where each key path was written."""

    file: str
    data: dict[str, Any]
    locations: dict[str, Location] = field(default_factory=dict)


def _shown(tag: str) -> str:
    return f"!!{tag.removeprefix(_STD)}" if tag.startswith(_STD) else tag


class _LimitExceeded(Exception):
    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(message)
        self.message, self.line, self.column = message, line, column


class _Budget:
    """The composer's depth and node budget (PyYAML's composer is recursive and unbounded)."""

    _depth = 0
    _nodes = 0
    peek_event: Any  # the parser's (PyYAML's or libyaml's)

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        self._nodes += 1
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH or self._nodes > MAX_NODES:
                mark = self.peek_event().start_mark
                what = (
                    f"nested deeper than {MAX_DEPTH} levels"
                    if self._depth > MAX_DEPTH
                    else f"has more than {MAX_NODES} values"
                )
                raise _LimitExceeded(
                    f"document {what}; environment files are small", mark.line + 1, mark.column + 1
                )
            return Composer.compose_node(self, parent, index)  # type: ignore[arg-type]
        finally:
            self._depth -= 1


class _PureComposer(_Budget, yaml.SafeLoader):
    """PyYAML's pure-Python reader, scanner and parser, under the budgeted composer."""

    def __init__(self, text: str) -> None:
        yaml.SafeLoader.__init__(self, text)


if yaml.__with_libyaml__:
    from yaml._yaml import CParser

    class _CComposer(_Budget, CParser, Resolver):
        """libyaml's C scanner and parser for the events (the bulk of the time: ~10× faster
        than PyYAML's pure-Python ones, and not recursive), with PyYAML's Python composer on
        top so that the depth and node budget is still checked node by node. libyaml's own
        composer (CParser.get_single_node) is recursive in C and has no budget: never used.
        Marks (line, column, index) come from libyaml's events as before."""

        get_single_node = Composer.get_single_node
        compose_document = Composer.compose_document
        compose_scalar_node = Composer.compose_scalar_node
        compose_sequence_node = Composer.compose_sequence_node
        compose_mapping_node = Composer.compose_mapping_node

        def __init__(self, text: str) -> None:
            CParser.__init__(self, text)
            Resolver.__init__(self)
            self.anchors: dict[str, Node] = {}

    _FAST: type[_PureComposer] | type[_CComposer] = _CComposer
else:  # pragma: no cover - PyYAML built without libyaml
    _FAST = _PureComposer


def _compose(text: str) -> Node | None:
    """The document's root node, composed by the fast parser; a document it refuses is
    composed again by the pure-Python one, whose error (or, should the two disagree, whose
    node) is the answer, so that messages stay PyYAML's wherever libyaml words them otherwise
    (and libyaml's own nesting cap never pre-empts the composer's)."""
    loader: Any = _FAST(text)
    try:
        return loader.get_single_node()  # type: ignore[no-any-return]
    except _LimitExceeded:
        raise
    except yaml.YAMLError:
        pass
    finally:
        loader.dispose()
    loader = _PureComposer(text)
    try:
        return loader.get_single_node()  # type: ignore[no-any-return]
    finally:
        loader.dispose()


class _DocumentBuilder:
    """Turns composed YAML nodes into plain data with each key path's location (not the same
    job as config.build's `_EnvironmentBuilder`, which turns that data into an Environment)."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.locations: dict[str, Location] = {}
        self.problems: list[Problem] = []
        self._expanded = 0
        self._scalars = SafeConstructor()

    def location(self, node: Node) -> Location:
        return Location(self.file, node.start_mark.line + 1, node.start_mark.column + 1)

    def _problem(self, node: Node, path: str, message: str) -> None:
        loc = self.location(node)
        self.problems.append(Problem(self.file, loc.line, loc.column, path, message))

    def build(self, node: Node, path: str, depth: int) -> Any:
        self._expanded += 1
        if self._expanded > MAX_NODES or depth > MAX_DEPTH:
            loc = self.location(node)
            raise _LimitExceeded(
                f"document expands to more than {MAX_NODES} values or {MAX_DEPTH} levels "
                "through aliases (an alias bomb?)",
                loc.line,
                loc.column,
            )
        if isinstance(node, MappingNode):
            return self._mapping(node, path, depth)
        if isinstance(node, SequenceNode):
            if node.tag != f"{_STD}seq":
                self._problem(node, path, f"tag {_shown(node.tag)} is not allowed here")
                return None
            items = []
            for index, item in enumerate(node.value):
                item_path = child_path(path, index)
                self.locations[item_path] = self.location(item)
                items.append(self.build(item, item_path, depth + 1))
            return items
        assert isinstance(node, ScalarNode)
        return self._scalar(node, path)

    def _mapping(self, node: MappingNode, path: str, depth: int) -> dict[str, Any]:
        if node.tag != f"{_STD}map":
            self._problem(node, path, f"tag {node.tag} is not allowed here")
            return {}
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.tag not in _SCALAR_TAGS:
                if key_node.tag == f"{_STD}merge":
                    message = "YAML merge keys (<<) are not supported; use `extends:` instead"
                else:
                    message = "keys must be plain words (a list or mapping cannot be a key)"
                self._problem(key_node, path, message)
                continue
            # The key's text, not its YAML 1.1 type: `on:` is the key "on", not True.
            key = str(key_node.value)
            key_path = child_path(path, key)
            if key in result:
                lines = f"{self.locations[key_path].line} and {key_node.start_mark.line + 1}"
                self._problem(key_node, key_path, f"duplicate key `{key}` (lines {lines})")
            self.locations[key_path] = self.location(key_node)
            result[key] = self.build(value_node, key_path, depth + 1)
        return result

    def _scalar(self, node: ScalarNode, path: str) -> Any:
        tag = node.tag
        try:
            if tag == f"{_STD}str":
                return node.value
            if tag == f"{_STD}null":
                return None
            if tag == f"{_STD}bool":
                if node.value.lower() not in ("true", "false"):
                    # YAML 1.1 reads yes/no/on/off as booleans, YAML 1.2 and many tools as
                    # strings: in a safety switch, a value two readers disagree on is refused.
                    self._problem(
                        node,
                        path,
                        f"write true or false; `{node.value}` is ambiguous (a boolean in "
                        "YAML 1.1, a string in YAML 1.2)",
                    )
                    return None
                return self._scalars.construct_yaml_bool(node)
            if tag == f"{_STD}int":
                return self._scalars.construct_yaml_int(node)
            if tag == f"{_STD}float":
                return self._scalars.construct_yaml_float(node)
            if tag == f"{_STD}timestamp":
                # Nothing in an environment file is a date; keep the text so types still check.
                return node.value
        except ValueError:
            # e.g. an integer with more digits than Python agrees to convert
            self._problem(node, path, "number cannot be read (too long?)")
            return None
        self._problem(node, path, f"tag {_shown(tag)} is not allowed; use plain YAML values")
        return None


def _decode(data: bytes, file: str) -> tuple[str | None, Problem | None]:
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        offset = exc.start
        line = data.count(b"\n", 0, offset) + 1
        column = offset - (data.rfind(b"\n", 0, offset) + 1) + 1
        message = (
            f"not UTF-8 text: byte 0x{data[offset]:02x} at byte offset {offset} "
            "cannot be decoded (is this a binary file?)"
        )
        return None, Problem(file, line, column, "", message)


def _position(text: str, index: int) -> tuple[int, int]:
    line = text.count("\n", 0, index) + 1
    return line, index - (text.rfind("\n", 0, index) + 1) + 1


def _tab_at(text: str, index: int, problem: str | None) -> bool:
    """Whether PyYAML's complaint is about a tab: named in the problem, or the character at
    (or just before) where it stopped."""
    return "\t" in (problem or "") or "\t" in text[max(index - 1, 0) : index + 1]


def parse_text(text: str, file: str) -> tuple[Document | None, list[Problem]]:
    """Parse YAML text. Returns (None, problems) when nothing usable could be read."""
    try:
        # PyYAML's Reader rejects non-printable characters while constructing its loader;
        # libyaml's message for them is less helpful, so the same check runs first here.
        bad = _NON_PRINTABLE.search(text)
        if bad is not None:
            raise yaml.reader.ReaderError(file, bad.start(), ord(bad.group()), "unicode", "")
        root = _compose(text)
    except _LimitExceeded as exc:
        return None, [Problem(file, exc.line, exc.column, "", exc.message)]
    except yaml.reader.ReaderError as exc:
        line, column = _position(text, int(exc.position))
        code = ord(exc.character) if isinstance(exc.character, str) else int(exc.character)
        message = f"character #x{code:04x} is not allowed in YAML (is this a binary file?)"
        return None, [Problem(file, line, column, "", message)]
    except yaml.MarkedYAMLError as exc:
        # Built from PyYAML's problem/context only: str(exc) quotes the offending line, which
        # may hold a secret.
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        message = f"YAML syntax error: {exc.problem or 'cannot parse'}"
        if isinstance(exc, yaml.composer.ComposerError) and "single document" in str(exc.context):
            message = "a file holds one YAML document, but a second one (`---`) starts here"
        elif exc.context:
            message += f" ({exc.context}"
            if exc.context_mark and exc.context_mark is not mark:
                message += f" at line {exc.context_mark.line + 1}"
            message += ")"
        if mark is not None and _tab_at(text, mark.index, exc.problem):
            message += "; YAML does not allow tabs for indentation: indent with spaces"
        return None, [Problem(file, line, column, "", message)]
    except yaml.YAMLError as exc:  # any other PyYAML complaint, without its text
        return None, [Problem(file, 0, 0, "", f"YAML error ({type(exc).__name__})")]

    if root is None:
        return None, [
            Problem(file, 1, 1, "", "file is empty; expected a mapping such as `tenant:`")
        ]
    builder = _DocumentBuilder(file)
    try:
        data = builder.build(root, "", 0)
    except _LimitExceeded as exc:
        return None, [Problem(file, exc.line, exc.column, "", exc.message)]
    if not isinstance(data, dict):
        loc = builder.location(root)
        message = "the top level must be a mapping of keys (`tenant:`, `connection:`, ...)"
        return None, [*builder.problems, Problem(file, loc.line, loc.column, "", message)]
    builder.locations[""] = builder.location(root)
    return Document(file, data, builder.locations), builder.problems


def load_file(path: Path, file: str) -> tuple[Document | None, list[Problem]]:
    """Read and parse one file; `file` is how messages name it."""
    try:
        with path.open("rb") as stream:
            size = os.fstat(stream.fileno()).st_size
            data = stream.read(MAX_BYTES + 1)
    except OSError as exc:
        return None, [Problem(file, 0, 0, "", f"cannot read file: {exc.strerror or exc}")]
    if len(data) > MAX_BYTES:
        shown = f"{max(size, len(data)):,} bytes"
        message = f"file is too large ({shown}); environment files are limited to {MAX_BYTES:,}"
        return None, [Problem(file, 1, 1, "", message + " bytes")]
    text, problem = _decode(data, file)
    if text is None:
        assert problem is not None
        return None, [problem]
    return parse_text(text, file)
