"""Apply: carry out a plan one checked step at a time, and stop safely on any failure.

    apply_run(envs, run, journal, options)   every environment of a RunPlan, one after
                                             another (run)
    apply_environment(env, plan, client, journal, options)
                                             one environment's steps, then the convergence
                                             check (environment)
    ApplyOptions                             how: keep-going, skip-probe, break-glass, clock,
                                             stop request, on_event, ... (options)
    check_plan_file(run, source, envs)   `apply --plan`: refuse unless the file still describes
                                         the world, then return the same plan re-made from it
                                         (planfile_check)

Any failure stops at once and raises ApplyError / ChangedUnderneath / BlockedError /
Interrupted whose `stop` is the stop report (report.RunReport): the steps applied, the one that
failed (with NewStore's request id), those not attempted, and what a fresh read of the live
state says about every safety rule; `render.stop_report` words it (the errors' `report`).
Nothing here needs local state to be correct: running apply again continues from the live state.

The core is silent: progress goes to an `on_event` callback (events), which the CLI renders.
"""

from __future__ import annotations

from reconciler.core.apply.environment import apply_environment
from reconciler.core.apply.events import (
    EnvironmentConverged,
    Event,
    GateChecked,
    OnEvent,
    Outcome,
    PlanAccepted,
    StepFinished,
    StepStarted,
)
from reconciler.core.apply.options import DEFAULT_OPTIONS, ApplyOptions
from reconciler.core.apply.planfile_check import check_plan_file, plan_file_environments
from reconciler.core.apply.report import (
    EnvFate,
    NotAttempted,
    NothingWritten,
    RunReport,
    SafetyCheck,
    StopReport,
)
from reconciler.core.apply.run import (
    EnvResult,
    apply_run,
    held_by_policy,
    refuse_held,
    refuse_unready,
)
from reconciler.core.plan import WEBHOOK

__all__ = [
    "DEFAULT_OPTIONS",
    "WEBHOOK",
    "ApplyOptions",
    "EnvFate",
    "EnvResult",
    "EnvironmentConverged",
    "Event",
    "GateChecked",
    "NotAttempted",
    "NothingWritten",
    "OnEvent",
    "Outcome",
    "PlanAccepted",
    "RunReport",
    "SafetyCheck",
    "StepFinished",
    "StepStarted",
    "StopReport",
    "apply_environment",
    "apply_run",
    "check_plan_file",
    "held_by_policy",
    "plan_file_environments",
    "refuse_held",
    "refuse_unready",
]
