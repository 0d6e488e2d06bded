"""The sandbox's settings: credentials, token lifetime, latency, faults, webhook key, state file.

`SandboxConfig` checks itself on construction (a ConfigError naming every problem), so a
sandbox never starts with a setting that makes it lie about NewStore (e.g. a webhook key
shorter than NewStore accepts).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from reconciler.demo_keys import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_WEBHOOK_API_KEY
from reconciler.errors import ConfigError

DEFAULT_WEBHOOK_API_KEY = DEMO_WEBHOOK_API_KEY


@dataclass
class SandboxConfig:
    token_ttl: float = 3600.0  # seconds an access token stays valid
    latency_ms: int = 0  # added to every API, token and webhook request
    fault_rate: float = 0.0  # fraction of API and token requests answered 429/503
    seed: int | None = None  # makes fault_rate reproducible
    webhook_api_key: str = field(default=DEFAULT_WEBHOOK_API_KEY, repr=False)
    mask_webhook_api_key: bool = False  # GET/PUT webhook config answer the api_key masked
    state_file: Path | None = None  # load at start, persist after every state change
    client_id: str = DEMO_CLIENT_ID
    client_secret: str = field(default=DEMO_CLIENT_SECRET, repr=False)
    # More API clients every tenant accepts, id -> secret (e.g. a read-only plan client beside
    # the apply client, as the CI recipes have).
    more_clients: dict[str, str] = field(default_factory=dict, repr=False)
    # The admin endpoints (state, history) answer api_keys in clear; masked otherwise, so
    # that whatever reaches the sandbox cannot be read back by anyone who can reach its port.
    admin_shows_keys: bool = False

    def __post_init__(self) -> None:
        problems = []
        if not self.token_ttl > 0:
            problems.append("the token lifetime must be positive")
        if self.latency_ms < 0:
            problems.append("the latency must be >= 0 ms")
        if not 0.0 <= self.fault_rate <= 1.0:
            problems.append("the fault rate must be between 0 and 1")
        if len(self.webhook_api_key) < 20:
            # NewStore refuses shorter keys, so no webhook config could ever point at it.
            problems.append("the webhook api key must be at least 20 characters")
        if self.state_file is not None and not self.state_file.parent.is_dir():
            problems.append(f"the state file's directory {self.state_file.parent} does not exist")
        if problems:
            raise ConfigError("sandbox: " + "; ".join(problems) + ".")
