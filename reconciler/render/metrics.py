"""The drift report as Prometheus metrics (`drift --output prometheus=PATH`, `--pushgateway`):
the text exposition format, for node_exporter's textfile collector or a Pushgateway.

Made with the official client (`prometheus_client`) in a registry of its own, so the names,
label escaping and format are the client's, and nothing of the process (its default registry's
CPU and memory metrics) leaks in. Every metric is prefixed `newstore_reconciler_`:

    environment_status{environment,tenant,status}   1 for the current status, 0 for the others
    drifted_settings{environment,tenant}            settings that differ (not for an error)
    drifted_fields{environment,tenant}              fields that differ (not for an error)
    live_rule_violations{environment,tenant}        safety rules the live state breaks
    probe_ok{environment,tenant}                    1 passed, 0 failed; only where probed
    environments{status}                            how many environments have each status
    last_run_timestamp_seconds                      when this run started reading
    last_success_timestamp_seconds                  the last run that read every environment
    run_info{tool_version,config_commit,dirty}      1, where the report came from

The two alert rules to copy are in docs/drift.md.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import CollectorRegistry, Gauge, generate_latest

from reconciler._version import __version__
from reconciler.core.drift import DriftReport, DriftStatus

PREFIX: Final = "newstore_reconciler_"
_ENV: Final = ("environment", "tenant")


def metrics_registry(report: DriftReport) -> CollectorRegistry:
    """A registry holding the report's metrics (and nothing else)."""
    registry = CollectorRegistry(auto_describe=True)

    def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
        return Gauge(PREFIX + name, doc, labels, registry=registry)

    status = gauge(
        "environment_status",
        "1 for the environment's current drift status, 0 for the others.",
        (*_ENV, "status"),
    )
    settings = gauge("drifted_settings", "Settings whose live state differs from the file.", _ENV)
    fields = gauge("drifted_fields", "Fields whose live value differs from the file.", _ENV)
    violations = gauge(
        "live_rule_violations", "Safety rules the live state breaks right now.", _ENV
    )
    probe = gauge(
        "probe_ok", "1 when the live availability webhook passed the probe, 0 when not.", _ENV
    )
    for env in report.environments:
        labels = (env.name, env.tenant)
        for each in DriftStatus:
            status.labels(*labels, str(each)).set(1 if env.status is each else 0)
        if env.status is not DriftStatus.ERROR:
            settings.labels(*labels).set(len(env.settings))
            fields.labels(*labels).set(sum(len(s.fields) for s in env.settings))
            violations.labels(*labels).set(len(env.live_violations))
        if env.probe_ok is not None:
            probe.labels(*labels).set(1 if env.probe_ok else 0)

    counts = gauge("environments", "Environments with each drift status.", ("status",))
    for each in DriftStatus:
        counts.labels(str(each)).set(report.count(each))
    gauge("last_run_timestamp_seconds", "When the last drift run started reading (Unix time).").set(
        report.checked_at.timestamp()
    )
    if report.last_success_at is not None:
        # Absent until a run read every environment (or a state file remembers one): an alert
        # on staleness then sees the old value, never a fresh but failed run's.
        gauge(
            "last_success_timestamp_seconds",
            "When the last drift run that read every environment started (Unix time).",
        ).set(report.last_success_at.timestamp())
    commit = report.config_commit
    gauge(
        "run_info",
        "Where the last drift report came from: tool version and config commit.",
        ("tool_version", "config_commit", "dirty"),
    ).labels(
        __version__,
        "" if commit is None else commit.sha,
        "" if commit is None else str(commit.dirty).lower(),
    ).set(1)
    return registry


def render_metrics(report: DriftReport) -> str:
    return generate_latest(metrics_registry(report)).decode("utf-8")
