"""Issue 25.7: the parts of a document the tool does not manage go back exactly as they came.

The Associate App write reads the whole document, changes one field and PUTs it back: every
other value, numbers included, must be sent as NewStore gave it, and a document the tool could
not verify after the write (too deep, a repeated key) is refused before writing. A middleware
in front of the sandbox plays a NewStore that keeps numbers to the digit: it shows them in its
answers and records the bodies it receives. The real CLI against the sandbox on 127.0.0.1.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from apply_helpers import ON, WEBHOOK, seed, writes
from click.testing import Result
from env_helpers import ON_YAML, WriteEnv, run_cli

from reconciler.sandbox import SandboxApp, running
from reconciler.sandbox.app import WEBHOOK_PATH

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

TENANT = "acme-staging"
DOCUMENT = f"/{TENANT}/api/v1/associate-app/config"
# What NewStore holds, as text, and what the sandbox behind the middleware stores instead.
EXACT = {
    "seconds_until_logout_on_inactivity": ("123456789012345678901234567890.5", "900"),
    "air_print_paper_width": ("80.00", "80"),
}


class ExactNumbers(SandboxApp):
    """Shows the EXACT numbers in every answer for the document and records every body PUT to
    it (translated back before the sandbox sees them, so its strict schema stays satisfied)."""

    def __init__(self) -> None:
        super().__init__()
        self.received: list[bytes] = []
        self.duplicate_key = False
        self.rounds_after_a_write = False  # then shows the float's rounding after a PUT

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ["PATH_INFO"] != DOCUMENT:
            return super().__call__(environ, start_response)
        if environ["REQUEST_METHOD"] == "PUT":
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            self.received.append(body)
            for key, (shown, stored) in EXACT.items():
                body = re.sub(
                    rf'("{key}":\s*){re.escape(shown)}'.encode(), rb"\g<1>" + stored.encode(), body
                )
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
        captured: dict[str, Any] = {}

        def keep(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured.update(status=status, headers=headers)
            return lambda data: None

        body = b"".join(super().__call__(environ, keep))
        for key, (shown, stored) in EXACT.items():
            if self.rounds_after_a_write and self.received:
                shown = repr(float(shown))
            body = re.sub(
                rf'("{key}":\s*){stored}(?=[,}}\s])'.encode(), rb"\g<1>" + shown.encode(), body
            )
        if self.duplicate_key:
            body = body.replace(
                b'"hide_selling": false', b'"hide_selling": false, "hide_selling": true'
            )
        headers = [(k, v) for k, v in captured["headers"] if k.lower() != "content-length"]
        start_response(captured["status"], [*headers, ("Content-Length", str(len(body)))])
        return [body]


@pytest.fixture
def exact() -> Iterator[tuple[ExactNumbers, str]]:
    app = ExactNumbers()
    with running(app) as base:
        yield app, base


def _migrated_but_the_ui(app: SandboxApp, base: str) -> None:
    """Everything on but the new OM UI: the plan's one step is the Associate App's."""
    seed(app, TENANT, {**ON, "availability_webhook": {**WEBHOOK, "url": base + WEBHOOK_PATH}})
    state = app.state(TENANT)
    state["associate_app_config"]["ui_configurations"]["use_new_om_ui"] = False
    app.seed(TENANT, state)


def _apply(directory: Path) -> Result:
    return run_cli(
        directory, "apply", "--auto-approve", "--journal", str(directory.parent / "j.jsonl")
    )


def test_unmanaged_numbers_go_back_to_the_digit(
    exact: tuple[ExactNumbers, str], write_env: WriteEnv
) -> None:
    app, base = exact
    _migrated_but_the_ui(app, base)
    directory = write_env(TENANT, TENANT, base, ON_YAML).parent

    result = _apply(directory)

    assert result.exit_code == 0, result.output
    (sent,) = app.received
    assert b'"seconds_until_logout_on_inactivity": 123456789012345678901234567890.5' in sent or (
        b'"seconds_until_logout_on_inactivity":123456789012345678901234567890.5' in sent
    ), sent
    assert re.search(rb'"air_print_paper_width":\s*80\.00[,}]', sent), sent
    assert app.state(TENANT)["associate_app_config"]["ui_configurations"]["use_new_om_ui"]


def test_a_rounded_unmanaged_number_fails_the_read_back(
    exact: tuple[ExactNumbers, str], write_env: WriteEnv
) -> None:
    """A NewStore that rounds the number it was sent is caught: the read-back compares the
    value, not two floats rounded alike."""
    app, base = exact
    _migrated_but_the_ui(app, base)
    app.rounds_after_a_write = True
    directory = write_env(TENANT, TENANT, base, ON_YAML).parent

    result = _apply(directory)

    assert result.exit_code == 1, result.output
    assert "the document read back after the write differs from the one written at" in (
        result.stderr
    )
    assert "ui_configurations.seconds_until_logout_on_inactivity" in result.stderr


def _nested(depth: int) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for _ in range(depth - 1):
        doc = {"a": doc}
    return doc


def test_a_document_too_deep_to_verify_is_refused_before_the_write(
    live_sandbox: tuple[SandboxApp, str], write_env: WriteEnv
) -> None:
    sandbox, base = live_sandbox
    _migrated_but_the_ui(sandbox, base)
    state = sandbox.state(TENANT)
    # survey_selling takes properties the spec does not list: NewStore stores what it is given.
    state["associate_app_config"]["capabilities"]["survey_selling"]["x_notes"] = _nested(250)
    sandbox.seed(TENANT, state)
    directory = write_env(TENANT, TENANT, base, ON_YAML).parent

    result = _apply(directory)

    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert "the tenant's Associate App document nests" in result.stderr, result.stderr
    assert "more than the 64 levels the reconciler can verify after writing it" in result.stderr
    assert "nothing of this step was written" in result.stderr
    assert writes(sandbox, TENANT) == []


def test_a_document_with_a_repeated_key_is_refused(
    exact: tuple[ExactNumbers, str], write_env: WriteEnv
) -> None:
    app, base = exact
    _migrated_but_the_ui(app, base)
    app.duplicate_key = True
    directory = write_env(TENANT, TENANT, base, ON_YAML).parent

    result = _apply(directory)

    assert result.exit_code == 1, result.output
    assert "repeats the key ui_configurations.hide_selling" in result.stderr, result.stderr
    assert app.received == []
