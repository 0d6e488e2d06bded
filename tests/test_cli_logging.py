"""`-v`/`-vv` log the tool's own HTTP lines, never httpx's or httpcore's (full URLs with query
strings, response headers): the README promises "never a header"."""

from __future__ import annotations

from env_helpers import OFF_YAML, WriteEnv, run_cli_process

from reconciler.sandbox import SandboxApp


def test_debug_logging_shows_the_reconcilers_lines_and_no_library_ones(
    live_sandbox: tuple[SandboxApp, str], write_env: WriteEnv
) -> None:
    _, base = live_sandbox
    directory = write_env("acme-eu", "acme-eu", base, OFF_YAML).parent

    # A subprocess: logging is configured exactly as for a user, not on pytest's root logger.
    result = run_cli_process(directory, "-vv", "plan")

    assert result.returncode == 0, result.stderr
    err = result.stderr
    assert "DEBUG reconciler.http: token: POST /auth/realms/acme-eu/" in err
    assert "INFO reconciler.http: GET /acme-eu/v0/config/routing/uses_external_atp → 200" in err
    for library_line in ("httpx", "httpcore", "HTTP Request:", "headers", "Bearer"):
        assert library_line not in err
