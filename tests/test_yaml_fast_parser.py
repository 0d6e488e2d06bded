"""libyaml's parser under the located loader: the same documents, the same locations and the
same messages as PyYAML's pure-Python one, on every environment file the project ships and on
generated YAML."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.config import yamlsafe

ROOT = Path(__file__).resolve().parent.parent
FILES = sorted([*ROOT.glob("environments/*.yaml"), *ROOT.glob("tests/fixtures/config/**/*.yaml")])

pytestmark = pytest.mark.skipif(
    not yaml.__with_libyaml__, reason="PyYAML was built without libyaml: one parser only"
)


def _both(text: str, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any]:
    fast = yamlsafe.parse_text(text, "f.yaml")
    with monkeypatch.context() as patch:
        patch.setattr(yamlsafe, "_FAST", yamlsafe._PureComposer)
        pure = yamlsafe.parse_text(text, "f.yaml")
    return fast, pure


def _same(fast: Any, pure: Any) -> None:
    (fast_doc, fast_problems), (pure_doc, pure_problems) = fast, pure
    assert fast_problems == pure_problems
    if pure_doc is None:
        assert fast_doc is None
    else:
        assert fast_doc is not None
        assert fast_doc.data == pure_doc.data
        assert fast_doc.locations == pure_doc.locations


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(ROOT)) for p in FILES])
def test_shipped_files_parse_the_same(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _same(*_both(path.read_text(encoding="utf-8", errors="replace"), monkeypatch))


def test_there_are_files_to_compare() -> None:
    assert len(FILES) >= 5


def test_the_fast_parser_is_the_one_in_use() -> None:
    assert yamlsafe._FAST is not yamlsafe._PureComposer


_scalars = st.one_of(
    st.integers(-(10**6), 10**6),
    st.booleans(),
    st.none(),
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=12),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text("abcdefgh_", min_size=1, max_size=6), inner, max_size=4),
    ),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None)
@given(
    _values,
    st.booleans(),
    st.sampled_from(["", "\t", ": :", "- [", "{a: 1", "&x a", "*y", "---\n", "\x07"]),
)
def test_generated_yaml_parses_the_same(value: Any, flow: bool, noise: str) -> None:
    text = yaml.safe_dump({"tenant": "t", "value": value}, default_flow_style=flow)
    for candidate in (text, text + noise, noise + text):
        with pytest.MonkeyPatch.context() as patch:
            _same(*_both(candidate, patch))
