"""Hostile input, fuzzed: environment files and plan files that are broken in every way we can
generate go through the real CLI (validate, plan, apply; apply --plan) and always end in one
clear error paragraph with exit 1 and never reach NewStore (no wall-clock bound: timings
belong to the benchmark).

Environment files come from pull requests and plan files travel between CI jobs, so both are
untrusted. Every example runs against a sandbox served on 127.0.0.1 behind a recorder that
notes every request it receives, whatever the tenant: a refused input must not have sent any.
A mutation that happens to leave an environment file valid is fine; it is then only planned
(reads), never applied. The bounds (2 s per command, 64 MB traced peak) are part of the
requirement: a pull request must not be able to hang or exhaust the runner that checks it.
"""

from __future__ import annotations

import copy
import json
import shutil
import string
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from apply_helpers import OFF, seed
from click.testing import Result
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from reconciler.core.planfile import checksum
from reconciler.resources import schema_path
from reconciler.sandbox import SandboxApp, SandboxConfig
from reliability.cli_run import Recorder, assert_clear_error, invoke, recorded_sandbox
from reliability.summary import SCALE, count

TENANT = "hostile"
SECRET_ENV = {
    "SANDBOX_CLIENT_SECRET": "sandbox-secret",
    "SANDBOX_WEBHOOK_API_KEY": "sandbox-webhook-api-key-0001",
    "SANDBOX_ORDER_WEBHOOK_API_KEY": "sandbox-order-webhook-key-0001",
}
MAX_PEAK_BYTES = 64 * 1024 * 1024

BASE_YAML = """\
# Shared connection settings.
connection:
  base_url: {base}/{tenant}
  token_url: {base}/auth/realms/{tenant}/protocol/openid-connect/token
  client_id: sandbox
  client_secret: ${{SANDBOX_CLIENT_SECRET}}
  timeout: 5
  retry:
    attempts: 2
    max_seconds: 2
"""
ENV_YAML = """\
# yaml-language-server: $schema=../schemas/environment.schema.json
extends: _base.yaml
tenant: {tenant}
external_oms:
  enabled: true
availability_webhook:
  url: {base}/_sandbox/webhook/availabilities
  api_key: ${{SANDBOX_WEBHOOK_API_KEY}}
  external_identifier: product_id
  timeout: 5
external_atp:
  enabled: true
external_order_webhook:
  url: https://oms.acme.example/newstore
  api_key: ${{SANDBOX_ORDER_WEBHOOK_API_KEY}}
  timeout: 15
associate_app:
  use_new_om_ui: true
gates:
  webhook_probe:
    products: ["1000061", "1000062"]
    fulfillment_locations: ["US01"]
  newstore_stock_confirmed: false
"""


def _settings(examples: int) -> Any:
    # Derandomized: CI runs the same examples every time, so the counts in RELIABILITY.md are
    # reproducible; RELIABILITY_SCALE raises the count for a longer local fuzzing run.
    return settings(
        max_examples=examples * SCALE,
        deadline=None,  # no wall-clock bound: a busy machine must not fail the suite
        derandomize=SCALE == 1,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


class Fuzz:
    """One sandbox, one scratch directory, and the valid files every mutation starts from."""

    def __init__(self, root: Path, base_url: str, recorder: Recorder, app: SandboxApp) -> None:
        self.root, self.base_url, self.recorder, self.app = root, base_url, recorder, app
        self.directory = root / "environments"
        self.env_file = self.directory / f"{TENANT}.yaml"
        self.base_file = self.directory / "_base.yaml"
        self.valid = {
            self.env_file.name: ENV_YAML.format(base=base_url, tenant=TENANT).encode(),
            self.base_file.name: BASE_YAML.format(base=base_url, tenant=TENANT).encode(),
        }

    def write(self, files: dict[str, bytes]) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
        self.directory.mkdir()
        for name, data in files.items():
            (self.directory / name).write_bytes(data)

    def run(self, *args: str) -> Result:
        # No wall-clock bound: timings belong to the benchmark. The parser's size, depth and
        # node caps are what keep hostile input cheap, and they are asserted as messages.
        return invoke(self.directory, *args, env=SECRET_ENV)

    def check(self, files: dict[str, bytes], suite: str) -> str:
        """Write `files`, run validate/plan/apply on them; "refused" or "still valid"."""
        self.write(files)
        given = b"\n".join(files.values()).decode("utf-8", "replace")
        names = [str(self.directory / name) for name in files] + [str(self.directory)]
        mark = self.recorder.mark()
        validated = self.run("validate")
        if validated.exit_code == 0:
            # The mutation left a valid file. Planning it only reads, and only if it still
            # points at this sandbox (a mutated host must not send traffic anywhere else).
            if b"".join(files.values()).count(self.base_url.encode()) >= 3:
                planned = self.run("plan")
                assert planned.exit_code in (0, 1, 2, 3), planned.output
                if planned.exit_code == 1:
                    assert_clear_error(planned, names=[TENANT, *names], given=given)
            assert self.recorder.writes_since(mark) == [], "planning never writes"
            count(suite, "still valid after mutation (planned, never applied)")
            return "still valid"
        assert_clear_error(validated, names=names, given=given)
        assert validated.stdout == ""
        for args in (("plan",), ("apply", "--auto-approve")):
            result = self.run(*args)
            assert_clear_error(result, names=names, given=given)
            assert result.stdout == "", "nothing is planned from an invalid file"
        assert self.recorder.since(mark) == [], "an invalid file must not reach NewStore at all"
        count(suite, "refused with exit 1, no request sent")
        return "refused"


@pytest.fixture(scope="module")
def fuzz(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzz]:
    app = SandboxApp(SandboxConfig())
    seed(app, TENANT, OFF)
    root = tmp_path_factory.mktemp("hostile")
    with recorded_sandbox(app) as (base_url, recorder), pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)  # a journal, if one were ever opened, lands here
        fuzz = Fuzz(root, base_url, recorder, app)
        fuzz.write(fuzz.valid)
        assert fuzz.run("validate").exit_code == 0, "the starting point is valid"
        assert fuzz.run("plan", "--detailed-exitcode").exit_code == 2, "and has changes"
        yield fuzz
        assert app.history(TENANT) == [], "no example ever wrote"


# --- environment files -----------------------------------------------------------------------

YAML_ALPHABET = string.ascii_letters + string.digits + " \t\n:-[]{}&*!|>'\"%@`#,?.$<=~\\"
yaml_like_text = st.text(alphabet=YAML_ALPHABET, max_size=600)
any_text = st.text(max_size=300)


@_settings(60)
@given(text=st.one_of(yaml_like_text, any_text), replace_base=st.booleans())
def test_random_text(fuzz: Fuzz, text: str, replace_base: bool) -> None:
    files = dict(fuzz.valid)
    files[fuzz.base_file.name if replace_base else fuzz.env_file.name] = text.encode()
    fuzz.check(files, "hostile: random YAML text")


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    """`data` after 1-4 byte flips, line deletions, duplications, swaps or insertions."""
    for _ in range(draw(st.integers(1, 4))):
        lines = data.split(b"\n")
        kind = draw(st.sampled_from(["flip", "delete", "duplicate", "swap", "insert"]))
        if kind == "flip":
            at = draw(st.integers(0, len(data) - 1))
            data = data[:at] + bytes([draw(st.integers(0, 255))]) + data[at + 1 :]
        elif kind == "insert":
            at = draw(st.integers(0, len(data)))
            data = data[:at] + draw(st.binary(min_size=1, max_size=8)) + data[at:]
        else:
            i = draw(st.integers(0, len(lines) - 1))
            if kind == "delete":
                del lines[i]
            elif kind == "duplicate":
                lines.insert(i, lines[i])
            else:
                j = draw(st.integers(0, len(lines) - 1))
                lines[i], lines[j] = lines[j], lines[i]
            data = b"\n".join(lines)
    return data


@_settings(120)
@given(data=st.data(), in_base=st.booleans())
def test_mutated_valid_files(fuzz: Fuzz, data: st.DataObject, in_base: bool) -> None:
    files = dict(fuzz.valid)
    name = fuzz.base_file.name if in_base else fuzz.env_file.name
    files[name] = data.draw(mutated(files[name]))
    assume(files != fuzz.valid)
    fuzz.check(files, "hostile: mutated valid files")


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every key path (and list index) of a parsed document."""
    items = doc.items() if isinstance(doc, dict) else enumerate(doc)
    for key, value in items:
        yield (*prefix, key)
        if isinstance(value, dict | list):
            yield from _paths(value, (*prefix, key))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=6,
)


@_settings(100)
@given(data=st.data())
def test_wrong_type_at_every_key(fuzz: Fuzz, data: st.DataObject) -> None:
    # One document (the base merged in), so every key of the format is a target.
    doc = yaml.safe_load(fuzz.valid[fuzz.base_file.name]) | yaml.safe_load(
        fuzz.valid[fuzz.env_file.name]
    )
    del doc["extends"]
    path = data.draw(st.sampled_from(sorted(_paths(doc), key=str)))
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    old = parent[path[-1]]
    new = data.draw(json_values.filter(lambda v: type(v) is not type(old)))
    parent[path[-1]] = new
    text = yaml.safe_dump(doc, allow_unicode=True).encode()
    fuzz.check({fuzz.env_file.name: text}, "hostile: wrong type at a key")


def _deep_flow(n: int) -> str:
    return "tenant: " + "[" * n + "]" * n + "\n"


def _deep_block(n: int) -> str:
    return "".join("  " * i + "a:\n" for i in range(n)) + "  " * n + "x\n"


def _deep_sequence(n: int) -> str:
    return "- " * n + "x\n"


def _alias_bomb(fanout: int, levels: int) -> str:
    lines = ["tenant: t1", "a0: &a0 [" + ", ".join(['"lol"'] * fanout) + "]"]
    for level in range(1, levels):
        refs = ", ".join([f"*a{level - 1}"] * fanout)
        lines.append(f"a{level}: &a{level} [{refs}]")
    return "\n".join(lines) + "\n"


def _many_keys(n: int) -> str:
    return "tenant: t1\n" + "".join(f"k{i}: {i}\n" for i in range(n))


def _long_value(n: int) -> str:
    return "tenant: t1\nconnection:\n  client_id: " + "x" * n + "\n"


def _long_key(n: int) -> str:
    return "tenant: t1\n" + "k" * n + ": 1\n"


def _many_documents(n: int) -> str:
    return "tenant: t1\n" + "---\ntenant: t2\n" * n


def _huge_number(n: int) -> str:
    return "tenant: t1\nconnection:\n  timeout: " + "9" * n + "\n"


def _merge_keys(n: int) -> str:
    return "base: &b {tenant: t1}\n" + "".join(f"m{i}:\n  <<: *b\n" for i in range(n))


def _python_tags(n: int) -> str:
    return "tenant: !!python/object/apply:os.system ['true']\n" + "x: !!binary aGk=\n" * n


GIANTS = st.one_of(
    st.builds(_deep_flow, st.integers(60, 50_000)),
    st.builds(_deep_block, st.integers(60, 700)),  # n² bytes
    st.builds(_deep_sequence, st.integers(60, 50_000)),
    st.builds(_alias_bomb, st.integers(2, 12), st.integers(3, 12)),
    st.builds(_many_keys, st.integers(9_000, 80_000)),
    st.builds(_long_value, st.integers(100_000, 1_300_000)),
    st.builds(_long_key, st.integers(1_000, 1_300_000)),
    st.builds(_many_documents, st.integers(1, 5_000)),
    st.builds(_huge_number, st.integers(4_000, 200_000)),
    st.builds(_merge_keys, st.integers(1, 500)),
    st.builds(_python_tags, st.integers(1, 50)),
)


@_settings(30)
@given(text=GIANTS)
def test_huge_deep_and_explosive_documents(fuzz: Fuzz, text: str) -> None:
    files = {**fuzz.valid, fuzz.env_file.name: text.encode()}
    assert fuzz.check(files, "hostile: huge, deep and alias-bomb documents") == "refused"
    if len(text) > 300_000:
        return  # flat and big: linear in its size, capped at 1 MB; tracing it takes seconds
    # Memory, measured in a second run: tracemalloc slows Python down several times.
    tracemalloc.start()
    try:
        invoke(fuzz.directory, "validate", env=SECRET_ENV)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < MAX_PEAK_BYTES, f"peak {peak / 1e6:.1f} MB"


INVALID_UTF8 = [
    b"\xff",
    b"\xfe\xff",
    b"\xc3\x28",
    b"\xe2\x28\xa1",
    b"\xed\xa0\x80",  # an encoded UTF-16 surrogate
    b"\xc0\xaf",  # overlong "/"
    b"\xf8\x88\x80\x80\x80",
    b"\x80",
]
CONTROL = [b"\x00", b"\x07", b"\x1b[31m", b"\x7f", b"\xef\xbf\xbe", b"\xc2\x85"]


@_settings(40)
@given(data=st.data(), in_base=st.booleans())
def test_invalid_utf8_and_control_characters(
    fuzz: Fuzz, data: st.DataObject, in_base: bool
) -> None:
    files = dict(fuzz.valid)
    name = fuzz.base_file.name if in_base else fuzz.env_file.name
    text = files[name]
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(text)))
        text = text[:at] + data.draw(st.sampled_from(INVALID_UTF8 + CONTROL)) + text[at:]
    files[name] = text
    fuzz.check(files, "hostile: invalid UTF-8 and control characters")


def test_a_file_in_another_encoding_is_refused(fuzz: Fuzz) -> None:
    for encoding in ("utf-16", "utf-32", "latin-1"):
        text = fuzz.valid[fuzz.env_file.name].decode() + "# café\n"
        files = {**fuzz.valid, fuzz.env_file.name: text.encode(encoding)}
        fuzz.check(files, "hostile: invalid UTF-8 and control characters")


# --- plan files ------------------------------------------------------------------------------


class Plans:
    """A reviewed plan for tenant plan-alpha (which has pending changes), and the environments
    directory it was made from."""

    def __init__(self, fuzz: Fuzz) -> None:
        self.fuzz = fuzz
        self.directory = fuzz.root / "plans" / "environments"
        self.directory.mkdir(parents=True)
        for name in ("alpha", "beta"):
            base = fuzz.base_url
            connection = BASE_YAML.format(base=base, tenant=f"plan-{name}")
            desired = ENV_YAML.format(base=base, tenant=f"plan-{name}").replace(
                "extends: _base.yaml\n", ""
            )
            (self.directory / f"{name}.yaml").write_text(desired + connection)
            seed(fuzz.app, f"plan-{name}", OFF)
        self.file = fuzz.root / "plans" / "reviewed.json"
        made = invoke(self.directory, "plan", "alpha", "--out", str(self.file), env=SECRET_ENV)
        assert made.exit_code == 0, made.output
        self.text = self.file.read_bytes()
        self.doc = json.loads(self.text)
        assert self.doc["environments"][0]["status"] == "changes"
        self.schema = json.loads(schema_path("plan.schema.json").read_text())

    def apply(self, data: bytes, suite: str, *, expect: str = "") -> Result:
        """`apply --plan` on `data`: refused with a clear message naming the file, no write."""
        target = self.fuzz.root / "plans" / "candidate.json"
        target.write_bytes(data)
        mark = self.fuzz.recorder.mark()
        result = invoke(
            self.directory, "apply", "--plan", str(target), "--auto-approve", env=SECRET_ENV
        )
        given = data.decode("utf-8", "replace")
        assert_clear_error(result, names=[str(target)], given=given)
        assert expect in result.stderr, result.stderr
        assert self.fuzz.recorder.writes_since(mark) == [], "a refused plan must not write"
        count(suite, "refused with exit 1, no write")
        return result


@pytest.fixture(scope="module")
def plans(fuzz: Fuzz) -> Plans:
    return Plans(fuzz)


def _with_checksum(doc: dict[str, Any]) -> bytes:
    doc = {**doc, "checksum": checksum(doc)}
    return json.dumps(doc, indent=2).encode()


@_settings(40)
@given(data=st.data())
def test_truncated_plan_files(plans: Plans, data: st.DataObject) -> None:
    cut = data.draw(st.integers(0, len(plans.text) - 2))  # the last byte is the final newline
    plans.apply(plans.text[:cut], "hostile: plan files, truncated")


@_settings(60)
@given(data=st.data())
def test_byte_edited_plan_files(plans: Plans, data: st.DataObject) -> None:
    edited = data.draw(mutated(plans.text))
    try:
        same = json.loads(edited) == plans.doc
    except ValueError:
        same = False
    assume(not same)  # whitespace-only edits leave the very same plan: that one is fine
    plans.apply(edited, "hostile: plan files, byte-edited")


@_settings(60)
@given(data=st.data())
def test_checksum_fixed_but_schema_invalid(plans: Plans, data: st.DataObject) -> None:
    doc = copy.deepcopy(plans.doc)
    del doc["checksum"]
    path = data.draw(st.sampled_from(sorted(_paths(doc), key=str)))
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    how = data.draw(st.sampled_from(["delete", "retype", "add"]))
    if how == "delete" and isinstance(parent, dict):
        del parent[path[-1]]
    elif how == "add" and isinstance(parent, dict):
        parent[data.draw(st.text(min_size=1, max_size=10))] = data.draw(json_values)
    else:
        old = parent[path[-1]]
        parent[path[-1]] = data.draw(json_values.filter(lambda v: type(v) is not type(old)))
    candidate = {**doc, "checksum": checksum(doc)}
    assume(not Draft202012Validator(plans.schema).is_valid(candidate))
    plans.apply(_with_checksum(doc), "hostile: plan files, checksum fixed, schema invalid")


def test_a_plan_file_from_another_environment_is_refused(plans: Plans) -> None:
    doc = copy.deepcopy(plans.doc)
    del doc["checksum"]
    renamed = copy.deepcopy(doc)
    renamed["environments"][0]["name"] = "beta"
    plans.apply(
        _with_checksum(renamed), "hostile: plan files, foreign", expect="planned for tenant"
    )
    retenanted = copy.deepcopy(doc)
    retenanted["environments"][0]["tenant"] = "plan-beta"
    plans.apply(_with_checksum(retenanted), "hostile: plan files, foreign", expect="planned for")
    # A genuine plan of alpha, presented where alpha's file manages beta's tenant.
    original = (plans.directory / "alpha.yaml").read_text()
    try:
        (plans.directory / "alpha.yaml").write_text(original.replace("plan-alpha", "plan-beta"))
        plans.apply(plans.text, "hostile: plan files, foreign", expect="planned for tenant")
    finally:
        (plans.directory / "alpha.yaml").write_text(original)


@pytest.mark.parametrize("version", [2, 99, 10**12])
def test_a_plan_file_from_a_newer_format_is_refused(plans: Plans, version: int) -> None:
    doc = {k: v for k, v in plans.doc.items() if k != "checksum"}
    doc["format_version"] = version
    plans.apply(_with_checksum(doc), "hostile: plan files, newer format", expect="upgrade")


@pytest.mark.parametrize("version", [0, -1, "1", True, None, 1.5])
def test_a_plan_file_with_a_nonsense_format_version_is_refused(plans: Plans, version: Any) -> None:
    doc = {k: v for k, v in plans.doc.items() if k != "checksum"}
    doc["format_version"] = version
    plans.apply(_with_checksum(doc), "hostile: plan files, newer format")


@pytest.mark.parametrize(
    "text",
    [b"", b"null", b"[]", b'"plan"', b"{}", b"\xff\xfe{", b"{" * 100_000, b"[" * 100_000],
    ids=["empty", "null", "list", "string", "empty object", "not utf-8", "deep {", "deep ["],
)
def test_plan_files_that_are_not_plans_are_refused(plans: Plans, text: bytes) -> None:
    plans.apply(text, "hostile: plan files, not a plan")


@pytest.mark.parametrize("depth", [40, 500, 900])
def test_a_deeply_nested_plan_file_with_a_valid_checksum_is_refused(
    plans: Plans, depth: int
) -> None:
    # Deep enough for the schema validator's recursion, yet parseable: a valid checksum gets it
    # past the parser, so only a depth check stands between it and a RecursionError.
    doc = {k: v for k, v in plans.doc.items() if k != "checksum"}
    doc["environments"] = copy.deepcopy(doc["environments"])
    nested: list[Any] = []
    for _ in range(depth - 1):
        nested = [nested]
    doc["environments"][0]["notes"] = nested
    plans.apply(_with_checksum(doc), "hostile: plan files, not a plan", expect="nests deeper")


def test_a_huge_value_in_a_plan_file_is_not_quoted_back_whole(plans: Plans) -> None:
    doc = {k: v for k, v in plans.doc.items() if k != "checksum"}
    doc["tool_version"] = ["x" * 1000] * 1000
    doc["generated_at"] = 7
    doc["environments"] = [{"name": str(i)} for i in range(50)]
    result = plans.apply(_with_checksum(doc), "hostile: plan files, checksum fixed, schema invalid")
    assert len(result.stderr) < 2000, f"{len(result.stderr)} characters of error"
    assert "more" in result.stderr


FORWARD_WRITES = [
    ("POST", "/plan-alpha/v0/config/sales_order/external_oms"),
    ("PUT", "/plan-alpha/v0/config/availability/webhook"),
    ("POST", "/plan-alpha/v0/config/routing/uses_external_atp"),
    ("POST", "/plan-alpha/v0/config/sales_order/external_order_webhook"),
    ("PUT", "/plan-alpha/api/v1/associate-app/config"),
]


def _edit(value: Any) -> st.SearchStrategy[Any]:
    if isinstance(value, bool):
        return st.just(not value)
    if isinstance(value, int):
        return st.integers().filter(lambda v: v != value)
    if isinstance(value, str):
        return st.one_of(
            st.text(max_size=20), st.sampled_from(["converged", "blocked", "update", "sha256:"])
        ).filter(lambda v: v != value)
    return st.nothing()


@_settings(60)
@given(data=st.data())
def test_checksum_fixed_schema_valid_edits_apply_the_reviewed_plan_or_nothing(
    plans: Plans, data: st.DataObject
) -> None:
    """The checksum catches accidental edits; a deliberate one recomputes it. What then stands
    between an edited plan and NewStore is apply's own re-check: it applies exactly what a fresh
    plan of the live state says, and only if that is what the file says, or nothing."""
    doc = copy.deepcopy(plans.doc)
    del doc["checksum"]
    leaves = []
    for path in _paths(doc):
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        if isinstance(parent[path[-1]], bool | int | str):
            leaves.append(path)
    path = data.draw(st.sampled_from(sorted(leaves, key=str)))
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = data.draw(_edit(parent[path[-1]]))
    candidate = {**doc, "checksum": checksum(doc)}
    assume(Draft202012Validator(plans.schema).is_valid(candidate))

    target = plans.fuzz.root / "plans" / "candidate.json"
    target.write_bytes(_with_checksum(doc))
    mark = plans.fuzz.recorder.mark()
    result = invoke(
        plans.directory, "apply", "--plan", str(target), "--auto-approve", env=SECRET_ENV
    )
    writes = plans.fuzz.recorder.writes_since(mark)
    if result.exit_code == 0:
        # Only fields apply does not act on were edited (a `why`, a note, the timestamp).
        assert writes == FORWARD_WRITES, f"edited {path}: {result.output}"
        seed(plans.fuzz.app, "plan-alpha", OFF)
        count("hostile: plan files, checksum fixed, schema valid", "applied as reviewed")
    else:
        assert_clear_error(result, names=[str(target)], given=json.dumps(doc))
        assert writes == [], f"edited {path}: a refused plan must not write"
        count("hostile: plan files, checksum fixed, schema valid", "refused, no write")
