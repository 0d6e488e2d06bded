"""The exception tree: exit codes live on the classes (ExitCode, the one source), the errors
that carry a stop report share one base, and one location lookup serves every message."""

from __future__ import annotations

import dataclasses

from plan_helpers import ALL_ON, make_env

from reconciler.config.resolve import Merged
from reconciler.errors import (
    ApplyError,
    BlockedError,
    ChangedUnderneath,
    ExitCode,
    Interrupted,
    PlanFileError,
    ReportedError,
)
from reconciler.model import Location, locate
from reconciler.render.stop_report import render_error


def test_exit_codes_live_on_the_exception_classes() -> None:
    assert PlanFileError("x").exit_code == ExitCode.ERROR == 1
    assert ApplyError("x").exit_code == ExitCode.ERROR
    assert BlockedError("x").exit_code == ExitCode.BLOCKED == 3
    assert Interrupted("x").exit_code == ExitCode.INTERRUPTED == 130
    assert Interrupted("x", signal_name="SIGTERM").exit_code == ExitCode.TERMINATED == 143


def test_the_errors_with_a_stop_report_share_one_base() -> None:
    for error in (ApplyError("x"), ChangedUnderneath("x"), Interrupted("x"), BlockedError("x")):
        assert isinstance(error, ReportedError)
        assert (error.stop, render_error(error), str(error)) == (None, "x", "x")


def test_one_location_lookup_walks_keys_and_list_indexes() -> None:
    where = Location("acme.yaml", 7, 3)
    locations = {"gates": Location("acme.yaml", 6, 1), "gates.webhook_probe.items": where}

    assert locate(locations, "gates.webhook_probe.items[2].product_id") == where
    assert locate(locations, "gates.other") == Location("acme.yaml", 6, 1)
    assert locate(locations, "external_oms.enabled") is None
    env = dataclasses.replace(make_env(ALL_ON), locations=locations)
    assert env.where("gates.webhook_probe.items[2]") == "acme.yaml:7:3"
    assert env.where("external_oms") == env.file
    merged = Merged("acme.yaml", {}, locations)
    assert merged.locate("gates.webhook_probe.items[2]") == where
    assert merged.locate("external_oms") == Location("acme.yaml", 1, 1)
