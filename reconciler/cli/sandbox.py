"""`sandbox`: a local NewStore, for demos and tests. The only CLI module that imports
`reconciler.sandbox` (tests/test_layers.py: the entry points alone start it)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8765,
    show_default=True,
    help="Port to listen on (0: any free port).",
)
@click.option(
    "--state",
    "state_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Keep tenants in this JSON file across restarts (default: in memory).",
)
@click.option(
    "--latency-ms",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Delay every API, token and webhook answer.",
)
@click.option(
    "--fault-rate",
    type=click.FloatRange(0.0, 1.0),
    default=0.0,
    show_default=True,
    help="Answer this fraction of API and token requests with a transient 429 or 503.",
)
@click.option("--seed", type=int, help="Seed for --fault-rate, for reproducible runs.")
@click.option(
    "--token-ttl",
    # At most a year: `expires_in` is a whole number of seconds (an infinite one is not).
    type=click.FloatRange(min=0, min_open=True, max=365 * 86400),
    default=3600.0,
    show_default=True,
    help="Seconds an access token stays valid (at most a year).",
)
@click.option(
    "--webhook-api-key",
    envvar="SANDBOX_WEBHOOK_API_KEY",
    help="Key the sample webhook expects in Authorization (at least 20 characters; "
    "default: the built-in demo key).",
)
@click.option(
    "--mask-webhook-api-key", is_flag=True, help="Answer the webhook config's api_key masked."
)
@click.option(
    "--admin-shows-keys",
    is_flag=True,
    help="Answer the api_keys in clear on the admin endpoints (state, history); masked "
    "otherwise. For tests that compare whole states.",
)
@click.option(
    "--allow-host",
    "allowed_hosts",
    multiple=True,
    metavar="NAME",
    help="Also answer requests addressed to this host name (repeatable); only loopback names "
    "and --host are answered otherwise.",
)
@click.option(
    "--tls-cert",
    type=click.Path(exists=True, dir_okay=False),
    help="Serve HTTPS with this PEM certificate (with --tls-key); clients trust it through "
    "connection.ca_bundle or SSL_CERT_FILE.",
)
@click.option(
    "--tls-key", type=click.Path(exists=True, dir_okay=False), help="The --tls-cert's PEM key."
)
@click.option(
    "--quiet",
    is_flag=True,
    help="No access log (one line per request on stderr); for load runs such as `make bench`.",
)
def sandbox(
    host: str,
    port: int,
    state_file: Path | None,
    latency_ms: int,
    fault_rate: float,
    seed: int | None,
    token_ttl: float,
    webhook_api_key: str | None,
    mask_webhook_api_key: bool,
    admin_shows_keys: bool,
    allowed_hosts: tuple[str, ...],
    tls_cert: str | None,
    tls_key: str | None,
    quiet: bool,
) -> None:
    """Run a local NewStore for demos and tests, until Ctrl-C."""
    # lazy: start-up time
    from reconciler.sandbox import SandboxApp, SandboxConfig, serve
    from reconciler.sandbox.app import DEFAULT_WEBHOOK_API_KEY
    from reconciler.sandbox.banner import banner
    from reconciler.sandbox.server import tls_context

    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("--tls-cert and --tls-key go together.")
    tls = tls_context(tls_cert, tls_key) if tls_cert and tls_key else None
    config = SandboxConfig(
        token_ttl=token_ttl,
        latency_ms=latency_ms,
        fault_rate=fault_rate,
        seed=seed,
        webhook_api_key=DEFAULT_WEBHOOK_API_KEY if webhook_api_key is None else webhook_api_key,
        mask_webhook_api_key=mask_webhook_api_key,
        state_file=state_file,
        admin_shows_keys=admin_shows_keys,
    )
    serve(
        SandboxApp(config),
        host,
        port,
        on_ready=lambda url: click.echo(banner(url, config, state_file)),
        allowed_hosts=allowed_hosts,
        tls=tls,
        quiet=quiet,
    )
    click.echo("Sandbox stopped.")


COMMANDS = (sandbox,)
