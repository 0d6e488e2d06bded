"""How a run is applied, as one value: what `api.apply` hands `apply_run`, which hands each
environment's `apply_environment` the same object. Adding an option means adding a field here,
not a parameter to three signatures."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from reconciler.clock import Clock, system_clock
from reconciler.core.apply.events import OnEvent, ignore

if TYPE_CHECKING:
    import httpx

    from reconciler.core.interrupt import StopRequest
    from reconciler.core.plan import ClientFactory


@dataclass(frozen=True)
class ApplyOptions:
    """The choices and callbacks of one apply run.

    keep_going       apply the other environments when one is blocked or fails
    skip_probe       no webhook probe before external ATP goes on (journaled)
    break_glass      a reason: overrides the change policy (never a gate or rule); recorded
    clock            "now" for the change policy and the stock confirmation
    stop             checked before every write (a signal asks the run to stop)
    on_event         each gate, step and convergence, as it happens
    client_factory   how an environment's NewStore client is built (None: the real one)
    probe_transport  where the webhook probe's requests go (None: the network)
    """

    keep_going: bool = False
    skip_probe: bool = False
    break_glass: str | None = None
    clock: Clock = system_clock
    stop: StopRequest | None = None
    on_event: OnEvent = ignore
    client_factory: ClientFactory | None = None
    probe_transport: httpx.BaseTransport | None = None


DEFAULT_OPTIONS = ApplyOptions()
