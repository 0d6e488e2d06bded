"""From a merged, substituted, schema-checked document to an `Environment`.

Holds the checks a schema cannot express: what is required only after `extends` merging,
https-or-loopback URLs, files that must exist, and the safety rules on the desired state.
"""

from __future__ import annotations

import os
import re
from datetime import date, time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from reconciler.clock import today_utc
from reconciler.config.consent import said_here
from reconciler.config.resolve import Merged
from reconciler.config.urls import spelling_problem, unreachable_by_newstore, url_problem
from reconciler.config.yamlsafe import child_path
from reconciler.errors import Problem
from reconciler.identity import tenant_in_base_url, tenant_in_token_url
from reconciler.model import (
    ABSENT,
    Connection,
    Environment,
    Gates,
    LockChoice,
    Value,
    WebhookProbe,
)
from reconciler.net import is_loopback
from reconciler.newstore.settings import REGISTRY
from reconciler.policy import DAYS, Freeze, Policy, Window
from reconciler.rules import RULES, Rule


class _EnvironmentBuilder:
    """Turns a merged document into an Environment, collecting every problem on the way."""

    def __init__(self, merged: Merged, bad: set[str]) -> None:
        self.merged = merged
        self.data = merged.data
        self.bad = bad
        self.problems: list[Problem] = []

    def report(self, path: str, message: str) -> None:
        if not self.reported(path):
            self.problems.append(self.merged.problem(path, message))
        self.bad.add(path)

    def reported(self, path: str) -> bool:
        """Something was already said about `path` or one of its parents."""
        return any(path == b or path.startswith((f"{b}.", f"{b}[")) for b in self.bad)

    def ok(self, path: str) -> bool:
        """Nothing was reported about `path`, its parents, or anything inside it."""
        return not self.reported(path) and not any(
            b.startswith((f"{path}.", f"{path}[")) for b in self.bad
        )

    def section(self, key: str) -> dict[str, Any]:
        value = self.data.get(key)
        return value if isinstance(value, dict) and self.ok(key) else {}

    def connection(self, tenant: str) -> Connection | None:
        conn = self.data.get("connection", {})
        if not isinstance(conn, dict) or self.reported("connection"):
            return None
        # client_id / client_secret are always there: the loader fills in their defaults.
        urls = {
            "base_url": f"https://{tenant}.p.newstore.net",
            "token_url": (
                f"https://id.p.newstore.net/auth/realms/{tenant}/protocol/openid-connect/token"
            ),
        }
        named_by = {"base_url": tenant_in_base_url, "token_url": tenant_in_token_url}
        for key in urls:
            path = child_path("connection", key)
            if isinstance(conn.get(key), str) and self.ok(path):
                why = (
                    url_problem(conn[key], allow_query=False)
                    or spelling_problem(conn[key])
                    or self._other_tenant(named_by[key](conn[key]), tenant)
                )
                if why:
                    self.report(path, why)
                else:
                    urls[key] = conn[key]
        ca_bundle = None
        path = "connection.ca_bundle"
        if isinstance(conn.get("ca_bundle"), str) and self.ok(path):
            written_in = Path(self.merged.locate(path).file).parent
            ca_bundle = os.path.abspath(written_in / conn["ca_bundle"])
            if not os.path.isfile(ca_bundle):
                self.report(path, f"CA bundle {ca_bundle} does not exist")
        retry = conn.get("retry")
        retry = retry if isinstance(retry, dict) else {}
        if self.problems or not tenant or not self.ok("connection"):
            return None
        return Connection(
            base_url=urls["base_url"].rstrip("/"),
            token_url=urls["token_url"],
            client_id=conn["client_id"],
            client_secret=conn["client_secret"],
            timeout=float(conn.get("timeout", 10)),
            ca_bundle=ca_bundle,
            retry_attempts=int(retry.get("attempts", 10)),
            retry_max_seconds=float(retry.get("max_seconds", 60)),
        )

    def _other_tenant(self, named: str | None, tenant: str) -> str | None:
        """Why a URL of NewStore's or the sandbox's form that names another tenant than
        `tenant:` is refused (every request would go to the tenant it names), or None."""
        if named is None or not tenant or named == tenant:
            return None
        return (
            f"names tenant {named}, but `tenant:` says {tenant} ({self.merged.locate('tenant')}): "
            f"every request would go to {named} while plans and reports say {tenant}; make "
            "them agree"
        )

    def desired(self) -> tuple[dict[str, Value], set[str]]:
        """The managed settings' normalised values, and the managed keys that are invalid."""
        desired: dict[str, Value] = {}
        invalid: set[str] = set()
        for setting in REGISTRY:
            key = setting.key
            if key not in self.data:
                continue
            value = self.data[key]
            if not self.ok(key):
                invalid.add(key)
            elif value == "absent":
                desired[key] = ABSENT
            elif isinstance(value, dict):
                desired[key] = setting.from_file(value)
            else:
                invalid.add(key)
        return desired, invalid

    def setting_urls(self, tenant: str) -> None:
        conn = self.data.get("connection")
        base = conn.get("base_url") if isinstance(conn, dict) else None
        base = base if isinstance(base, str) else f"https://{tenant}.p.newstore.net"
        # NewStore calls these urls from its own network: for a tenant it hosts (any base_url
        # not on this machine), a url only this machine or its network can reach never works.
        hosted = not is_loopback(urlsplit(base).hostname or "localhost")
        for setting in REGISTRY:
            section = self.data.get(setting.key)
            if not isinstance(section, dict):
                continue
            for name in sorted(setting.url_fields):
                path = child_path(setting.key, name)
                if isinstance(section.get(name), str) and self.ok(path):
                    why = url_problem(section[name], allow_query=setting.url_query_allowed)
                    if why is None and hosted:
                        why = unreachable_by_newstore(section[name])
                    if why:
                        self.report(path, why)

    def rules(self, desired: dict[str, Value], invalid: set[str]) -> None:
        def where(key: str, rule: Rule | None = None) -> str:
            value = desired.get(key)
            # Point at the field that breaks the rule (a store's flag), else at the one field
            # a flag-like setting has, e.g. external_atp.enabled.
            name = rule.if_field(value) if rule is not None and value is not None else None
            if name is not None:
                return f"{key}.{name}"
            if isinstance(value, dict) and len(value) == 1:
                return child_path(key, next(iter(value)))
            return key

        for rule in RULES:
            cause, effect = rule.if_setting, rule.then_setting
            if cause in invalid or effect in invalid:
                continue
            if cause in desired and rule.if_holds(desired[cause]):
                if effect not in desired:
                    self.report(
                        where(cause, rule),
                        f"{rule} cannot be checked: {effect} is not managed in this "
                        f"environment; add it (if the rule broke, {rule.consequence})",
                    )
                elif not rule.then_holds(desired[effect]):
                    self.report(where(cause, rule), f"breaks {rule}: {rule.consequence}")
            elif (
                effect in desired and not rule.then_holds(desired[effect]) and cause not in desired
            ):
                self.report(
                    where(effect),
                    f"{rule} cannot be checked: {cause} is not managed in this "
                    f"environment; add it, switched off (if the rule broke, "
                    f"{rule.consequence})",
                )

    def stock_confirmed(self, today: date) -> date | None:
        """`gates.newstore_stock_confirmed`: the date a person checked NewStore's stock, or
        None (false or omitted). `true` is refused: an undated confirmation outlived the
        migration it was given for and silently approved the next one."""
        path = "gates.newstore_stock_confirmed"
        value = self.section("gates").get("newstore_stock_confirmed", False)
        if value is False or not self.ok(path):
            return None
        example = f"`newstore_stock_confirmed: {today.isoformat()}`"
        if value is True:
            self.report(
                path,
                "`true` is no longer accepted: write the date (UTC) you checked that NewStore "
                f"holds stock, e.g. {example}; it counts for gates.stock_confirmation_valid_days "
                "days (default 7), so it cannot approve a later migration by accident",
            )
            return None
        confirmed = _parse_date(value)
        if confirmed is None:
            self.report(
                path,
                "must be the date (YYYY-MM-DD) NewStore's stock was checked, or false; "
                f"e.g. {example}",
            )
            return None
        if confirmed > today:
            self.report(
                path,
                f"{confirmed.isoformat()} is in the future (today is {today.isoformat()} UTC): "
                "write the day the stock was checked",
            )
            return None
        written_in = self.merged.locate(path).file
        if written_in != self.merged.file:
            # A base is shared: a confirmation there would approve every environment that
            # extends it, each without anyone looking at that tenant's stock.
            self.report(
                path,
                "a stock confirmation belongs in the environment's own file "
                f"({self.merged.file}), not in {written_in}, which every environment that "
                f"extends it shares: move the line `newstore_stock_confirmed: "
                f"{confirmed.isoformat()}` under `gates:` in {self.merged.file}",
            )
            return None
        return confirmed

    def gates(self, stock_confirmed: date | None) -> Gates:
        gates = self.section("gates")
        probe = gates.get("webhook_probe")
        return Gates(
            webhook_probe=(
                WebhookProbe(
                    tuple(probe["products"]),
                    tuple(probe["fulfillment_locations"]),
                    probe.get("min_available"),
                )
                if isinstance(probe, dict)
                else None
            ),
            newstore_stock_confirmed=stock_confirmed,
            stock_confirmation_valid_days=int(gates.get("stock_confirmation_valid_days", 7)),
        )

    def policy(self) -> Policy:
        """`policy`, checked for what the schema cannot: a known timezone, real dates, a
        freeze that ends after it starts, a window that is not empty."""
        section = self.data.get("policy")
        # Not self.section(): a problem inside one window must not hide the others'.
        if not isinstance(section, dict) or self.reported("policy"):
            section = {}
        timezone = section.get("timezone", "UTC")
        if isinstance(timezone, str) and self.ok("policy.timezone") and timezone != "UTC":
            # lazy: start-up time (the time-zone database, only for a policy that names one)
            from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

            try:
                ZoneInfo(timezone)
            except (ZoneInfoNotFoundError, ValueError):
                self.report(
                    "policy.timezone",
                    f"unknown timezone `{timezone}`: use an IANA name such as "
                    "America/New_York, Europe/Berlin or UTC",
                )
        windows = []
        for index, window in enumerate(section.get("apply_windows") or []):
            path = child_path("policy.apply_windows", index)
            if not isinstance(window, dict) or not self.ok(path):
                continue
            start = time.fromisoformat(window["from"])
            end = None if window["to"] == "24:00" else time.fromisoformat(window["to"])
            if end == start:
                self.report(
                    child_path(path, "to"),
                    'must differ from `from` (a whole day is `from: "00:00"`, `to: "24:00"`)',
                )
                continue
            days = frozenset(DAYS.index(day) for day in window["days"])
            windows.append(Window(days, start, end))
        freezes = []
        for index, freeze in enumerate(section.get("freezes") or []):
            path = child_path("policy.freezes", index)
            if not isinstance(freeze, dict) or not self.ok(path):
                continue
            bounds: list[date] = []
            for key in ("from", "to"):
                try:
                    bounds.append(date.fromisoformat(freeze[key]))
                except ValueError:
                    self.report(child_path(path, key), "is not a date in the calendar")
            if len(bounds) != 2:
                continue
            if bounds[1] < bounds[0]:
                self.report(
                    child_path(path, "to"),
                    f"the freeze ends ({bounds[1]}) before it starts ({bounds[0]})",
                )
                continue
            freezes.append(Freeze(bounds[0], bounds[1], freeze["reason"]))
        if not isinstance(timezone, str):
            timezone = "UTC"
        return Policy(timezone=timezone, windows=tuple(windows), freezes=tuple(freezes))

    def apply_lock(self) -> LockChoice | None:
        """`apply_lock`: `local`, `git`, or a mapping with `backend`, `remote`, `ttl_minutes`
        (the schema checked the shape)."""
        value = self.data.get("apply_lock")
        if value is None or not self.ok("apply_lock"):
            return None
        if isinstance(value, str):
            return LockChoice(backend=value)
        ttl = value.get("ttl_minutes")
        return LockChoice(
            backend=str(value.get("backend", "local")),
            remote=str(value.get("remote", "origin")),
            ttl_seconds=None if ttl is None else float(ttl) * 60,
        )


DEFAULT_PLAN_VALID_HOURS = 24

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _parse_date(value: Any) -> date | None:
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or not _DATE.fullmatch(value.strip()):
        return None
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        return None


def secret_urls(data: Any) -> dict[str, tuple[str, ...]]:
    """The settings' URL fields whose query, fragment or userinfo a `${NAME}` fills, in a
    document *before* substitution (key path -> the variables' names): such a url carries a
    secret, so the whole url is one."""
    found: dict[str, tuple[str, ...]] = {}
    if not isinstance(data, dict):
        return found
    for setting in REGISTRY:
        section = data.get(setting.key)
        if not isinstance(section, dict):
            continue
        for name in sorted(setting.url_fields):
            raw = section.get(name)
            if not isinstance(raw, str) or "${" not in raw:
                continue
            try:
                parts = urlsplit(raw)
            except ValueError:
                continue  # url_problem says what is wrong with it
            hidden = parts.netloc.rpartition("@")[0] + "?" + parts.query + "#" + parts.fragment
            names = tuple(dict.fromkeys(_VARIABLE.findall(hidden)))
            if names:
                found[child_path(setting.key, name)] = names
    return found


_VARIABLE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def build_environment(
    name: str,
    merged: Merged,
    bad: set[str],
    *,
    today: date | None = None,
    secrets_in_urls: dict[str, tuple[str, ...]] | None = None,
) -> tuple[Environment | None, list[Problem]]:
    """Check what the schema cannot and build the Environment; None if anything is wrong.

    `bad` holds the key paths already reported (by substitution or the schema); nothing more
    is said about them or anything inside them. `secrets_in_urls`: `secret_urls` of the
    document before substitution.
    """
    builder = _EnvironmentBuilder(merged, set(bad))
    tenant = merged.data.get("tenant")
    if "tenant" not in merged.data:
        builder.report("tenant", "`tenant` is required (the NewStore tenant id, e.g. acme-staging)")
    tenant = tenant if isinstance(tenant, str) and builder.ok("tenant") else ""
    connection = builder.connection(tenant)
    builder.setting_urls(tenant)
    desired, invalid = builder.desired()
    builder.rules(desired, invalid)
    policy = builder.policy()
    stock_confirmed = builder.stock_confirmed(today or today_utc())
    if builder.problems or bad or connection is None:
        return None, builder.problems
    return (
        Environment(
            name=name,
            file=merged.file,
            tenant=tenant,
            connection=connection,
            desired=desired,
            gates=builder.gates(stock_confirmed),
            policy=policy,
            plan_valid_hours=int(merged.data.get("plan_valid_hours", DEFAULT_PLAN_VALID_HOURS)),
            locations=merged.locations,
            allow_shared_tenant=said_here(merged, "allow_shared_tenant"),
            apply_lock=builder.apply_lock(),
            secret_urls=dict(secrets_in_urls or {}),
        ),
        [],
    )
