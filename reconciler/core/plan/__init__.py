"""The plan is a value: what each environment needs, in a safe order, and why.

The package splits the planner by responsibility: `values` (the data model that the planner,
renderers, apply and drift share), `diff` (what changes and what a plan may show), `order`
(the safe order and the why of each step), `fingerprint`, `gates` (the stock confirmation and
the gates a step needs), `probes` (the core's one use of the webhook probe), `build`
(`build_plan`, pure) and `live` (the only part that reads NewStore). Each imports only the
ones before it in that list; this module re-exports the names the rest of the project uses.
"""

from reconciler.core.plan.build import build_plan
from reconciler.core.plan.diff import differs, shown_value
from reconciler.core.plan.fingerprint import desired_fingerprint, fingerprint, fingerprint_key
from reconciler.core.plan.gates import stock_confirmation_line, stock_confirmation_problem
from reconciler.core.plan.live import default_client, plan_environments, policy_now, read_live
from reconciler.core.plan.order import order_steps, probed_rules
from reconciler.core.plan.probes import (
    ProbeOutcome,
    check_health,
    probe_for,
    refuses_write,
    run_gate,
    with_probes,
)
from reconciler.core.plan.values import (
    PARTNER_NOT_WRITTEN,
    STOCK_CONFIRMED,
    WEBHOOK,
    WEBHOOK_PROBE,
    Action,
    ClientFactory,
    EnvPlan,
    FieldChange,
    Gate,
    RunPlan,
    Status,
    Step,
    status_of,
)

__all__ = [
    "PARTNER_NOT_WRITTEN",
    "STOCK_CONFIRMED",
    "WEBHOOK",
    "WEBHOOK_PROBE",
    "Action",
    "ClientFactory",
    "EnvPlan",
    "FieldChange",
    "Gate",
    "ProbeOutcome",
    "RunPlan",
    "Status",
    "Step",
    "build_plan",
    "check_health",
    "default_client",
    "desired_fingerprint",
    "differs",
    "fingerprint",
    "fingerprint_key",
    "order_steps",
    "plan_environments",
    "policy_now",
    "probe_for",
    "probed_rules",
    "read_live",
    "refuses_write",
    "run_gate",
    "shown_value",
    "status_of",
    "stock_confirmation_line",
    "stock_confirmation_problem",
    "with_probes",
]
