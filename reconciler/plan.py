"""The plan is a value: what each environment needs, in a safe order, and why.

The data model comes first (planner, renderers, apply and drift all share it), then the pure
planner (`build_plan`, `order_steps`, fingerprints), then the two functions that read NewStore
(`read_live`, `plan_environments`).
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import hmac
import itertools
import json
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, TypeAlias

from reconciler.clock import today_utc
from reconciler.errors import BlockedError, ConfigError, ReconcilerError
from reconciler.model import (
    ABSENT,
    SENSITIVE,
    SENSITIVE_CHANGED,
    UNKNOWN,
    UNKNOWN_SHOWN,
    Environment,
    Fields,
    Masked,
    Unresolved,
    Value,
    unreadable,
)
from reconciler.parallelism import DEFAULT_PARALLELISM
from reconciler.policy import ALWAYS, Decision, decide
from reconciler.rules import RULES, Rule, harm_of, is_enabled, violations
from reconciler.settings import BY_KEY, REGISTRY, Setting

if TYPE_CHECKING:
    import httpx

    # lazy: start-up time (httpx)
    from reconciler.newstore.client import NewStoreClient

ClientFactory: TypeAlias = Callable[[Environment], AbstractContextManager["NewStoreClient"]]
"""Builds the client of one environment; tests pass one on the in-process sandbox."""

_REGISTRY_KEYS: Final = tuple(s.key for s in REGISTRY)


class Action(enum.StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"


class Status(enum.StrEnum):
    CONVERGED = "converged"
    CHANGES = "changes"
    BLOCKED = "blocked"
    ERROR = "error"  # the environment could not be read; `error` says why


@dataclass(frozen=True)
class FieldChange:
    """One field's before → after, already masked: secrets are "(sensitive)" or
    "(sensitive, changed)", never their values."""

    path: str  # "availability_webhook.url"
    before: Any  # masked; ABSENT shown as None
    after: Any  # masked


@dataclass(frozen=True)
class Gate:
    """A check that runs right before its step: "webhook_probe" or "newstore_stock_confirmed"."""

    name: str
    description: str  # e.g. the probe request it will send (masked)
    satisfied: bool | None  # None = runs at apply time (probe not run during plan)


@dataclass(frozen=True)
class Step:
    setting: str  # setting key
    action: Action
    # Unmasked, for apply to write: kept out of repr so a logged or printed plan holds no secret.
    before: Value = field(repr=False)  # live value
    after: Value = field(repr=False)  # desired value
    changes: tuple[FieldChange, ...]
    why: str  # the rule or gate that placed it here, in words
    gates: tuple[Gate, ...] = ()
    # Written even when the live value compares equal (`--replace`, or a masked key that is
    # re-asserted): apply must not skip it as "already done".
    rewrite: bool = False


@dataclass(frozen=True)
class EnvPlan:
    """One environment's plan: a value, frozen once built. A later check (a probe, the policy
    at apply time) returns a new plan (`dataclasses.replace`) and never edits this one; the
    status is computed once, by whoever builds the plan (`status_of`).

    The sequences are typed read-only and stored as lists (so that a plan still compares
    equal to a list, as callers and tests read it); nothing appends to them once built."""

    name: str
    tenant: str
    status: Status
    steps: Sequence[Step] = ()
    blocked_by: Sequence[str] = ()
    live_violations: Sequence[str] = ()  # rules live already breaks
    notes: Sequence[str] = ()  # e.g. "api_key masked by NewStore: unverified"
    fingerprints: Mapping[str, str] = field(default_factory=dict)  # setting key → fingerprint
    # setting key → live value as read, masked (shown_value): what `apply --plan` compares with
    live: Mapping[str, Any] = field(default_factory=dict)
    desired_fingerprint: str = ""
    error: str = ""  # Status.ERROR only: the one-paragraph failure message
    # Whether an apply at planning time may write, by the environment's `policy` (only for an
    # environment with a policy and steps); never changes `status`: plans are never blocked
    # by the calendar, applies are.
    policy: Decision | None = None
    replaced: Sequence[str] = ()  # `--replace` settings (rewritten if equal)
    # `drift --probe` only: why the live webhook cannot serve availability (empty = healthy or
    # not probed); `probe` says what the probe did.
    unhealthy: Sequence[str] = ()
    probe: str = ""

    def __post_init__(self) -> None:
        # Private copies: a caller's list appended to later cannot change the plan.
        for name in ("steps", "blocked_by", "live_violations", "notes", "replaced", "unhealthy"):
            object.__setattr__(self, name, list(getattr(self, name)))
        object.__setattr__(self, "fingerprints", dict(self.fingerprints))
        object.__setattr__(self, "live", dict(self.live))


def status_of(steps: Sequence[Step], blocked_by: Sequence[str]) -> Status:
    """The status of a readable environment's plan: blocked, changes or converged."""
    if blocked_by:
        return Status.BLOCKED
    return Status.CHANGES if steps else Status.CONVERGED


@dataclass(frozen=True)
class RunPlan:
    """Every environment's plan, in the order given: a value, like its plans."""

    environments: Sequence[EnvPlan]

    def __post_init__(self) -> None:
        object.__setattr__(self, "environments", list(self.environments))


# --- planning --------------------------------------------------------------------------------
#
# Everything up to `build_plan` is pure: an Environment and a live state in, an EnvPlan out.
# `read_live` and `plan_environments`, at the end, are the only functions that talk to NewStore.

_MISSING: Final[Any] = object()  # a field one side of a diff does not have (create/delete)


def _fields(value: Value) -> Fields:
    return {} if value is ABSENT else value


def _same_field(live: Any, desired: Any) -> bool:
    # A wholly masked live field cannot be compared; treating it as different would make every
    # run re-send the secret and report a change that may not exist. A partly masked one is
    # compared on what the mask left visible: a desired key it cannot be is a real change.
    if isinstance(live, Masked):
        return live.could_be(desired)
    return live is UNKNOWN or live == desired


def differs(setting: Setting, live: Value, desired: Value) -> bool:
    """Whether `live` must change to become `desired` (a masked live field never counts)."""
    live_n, desired_n = setting.normalize(live), setting.normalize(desired)
    if live_n is ABSENT or desired_n is ABSENT:
        return live_n is not desired_n
    names = live_n.keys() | desired_n.keys()
    return not all(
        _same_field(live_n.get(name, _MISSING), desired_n.get(name, _MISSING)) for name in names
    )


def _action(live: Value, desired: Value) -> Action:
    if live is ABSENT:
        return Action.CREATE
    if desired is ABSENT:
        return Action.DELETE
    return Action.UPDATE


def _shown(setting: Setting, name: str, value: Any, *, changed_secret: bool = False) -> Any:
    if value is _MISSING:
        return None
    if name in setting.secret_fields:
        return SENSITIVE_CHANGED if changed_secret else SENSITIVE
    if unreadable(value):
        return UNKNOWN_SHOWN
    return value


def shown_value(setting: Setting, value: Value) -> Any:
    """A whole value, masked for people and files: None when absent, secret fields
    "(sensitive)", masked live fields "(unknown)"."""
    normal = setting.normalize(value)
    if normal is ABSENT:
        return None
    return {name: _shown(setting, name, field_value) for name, field_value in normal.items()}


def _field_changes(setting: Setting, live: Value, desired: Value) -> tuple[FieldChange, ...]:
    """The masked field-level diff of one step. A masked live field is listed only when the
    step rewrites the object anyway (a PUT sends every field, so it is written regardless)."""
    before, after = _fields(setting.normalize(live)), _fields(setting.normalize(desired))
    names = list(after) + [name for name in before if name not in after]
    changes = []
    for name in names:
        old, new = before.get(name, _MISSING), after.get(name, _MISSING)
        if isinstance(old, Masked) and new is not _MISSING and not old.could_be(new):
            # What NewStore shows of its key cannot belong to the file's: the key changes.
            changes.append(
                FieldChange(
                    f"{setting.key}.{name}",
                    _shown(setting, name, old),
                    _shown(setting, name, new, changed_secret=True),
                )
            )
        elif unreadable(old) and new is not _MISSING:
            changes.append(
                FieldChange(
                    f"{setting.key}.{name}", _shown(setting, name, old), _shown(setting, name, new)
                )
            )
        elif old != new:
            both = old is not _MISSING and new is not _MISSING
            changes.append(
                FieldChange(
                    f"{setting.key}.{name}",
                    _shown(setting, name, old),
                    _shown(setting, name, new, changed_secret=both),
                )
            )
    return tuple(changes)


def _mixed_breaks(rule: Rule, live: Mapping[str, Value], changed: Mapping[str, Value]) -> bool:
    """Does `rule` break in `live` overlaid with `changed`, when it holds (or is unknown) in
    `live` itself? That is what "this write adds a violation" means."""
    if rule.holds(live) is False:
        return False
    return rule.holds({**live, **changed}) is False


def probed_rules(key: str, after: Mapping[str, Value]) -> list[Rule]:
    """The rules whose gate must pass right before writing `key`, given the state `after` the
    write: a rule with a `probe` whose condition holds after it (e.g. external ATP on) and of
    which the write changes either side (turns ATP on, or writes the webhook config). An unknown
    (unmanaged) condition does not count: the plan notes that it cannot check the rule."""
    return [
        rule
        for rule in RULES
        if rule.probe is not None
        and key in (rule.if_setting, rule.then_setting)
        and rule.condition(after) is True
        # Unmanaged counts: its gate then blocks, as it cannot know what to probe.
        and after.get(rule.then_setting) is not ABSENT
    ]


def _why(
    key: str,
    done: Sequence[str],
    later: Sequence[str],
    live: Mapping[str, Value],
    desired: Mapping[str, Value],
) -> str:
    after: dict[str, list[Rule]] = {}
    before: dict[str, list[Rule]] = {}
    unexposed: dict[str, list[Rule]] = {}
    state_before = {**live, **{k: desired[k] for k in done}}
    state_after = {**state_before, key: desired[key]}
    for rule in RULES:
        pair = {rule.if_setting, rule.then_setting}
        if key not in pair:
            continue
        (other,) = pair - {key}
        # Rules are pairwise, so only the two settings' own order can break one.
        if other in done and _mixed_breaks(rule, live, {key: desired[key]}):
            after.setdefault(other, []).append(rule)
        if other in later and _mixed_breaks(rule, live, {other: desired[other]}):
            before.setdefault(other, []).append(rule)
        if other in later:
            # Going first keeps `other` from being written while the rule's condition holds.
            exposed = {**state_before, other: desired[other]}
            if rule in probed_rules(other, exposed) and rule not in probed_rules(
                other, {**exposed, key: desired[key]}
            ):
                unexposed.setdefault(other, []).append(rule)
    # The rules this step makes the condition of, whose other side holds before it (in the
    # live state or thanks to an earlier step): they had to, so the step names them.
    listed = {rule for found in after.values() for rule in found}
    needed = [
        rule
        for rule in RULES
        if rule.if_setting == key
        and rule not in listed
        and rule.condition(state_after) is True
        and rule.condition(state_before) is not True
        and rule.then_setting in live
        and rule.holds(state_after) is True
    ]
    # ...and those whose other side this file does not manage: the plan cannot check them.
    unchecked = [
        rule
        for rule in RULES
        if rule.if_setting == key
        and rule.condition(state_after) is True
        and rule.condition(state_before) is not True
        and rule.then_setting not in live
    ]
    repaired = [r for r in violations(state_before) if r not in violations(state_after)]
    probed = [r for r in probed_rules(key, state_after) if r.then_setting == key]

    parts = []
    if after:
        names = " and ".join(k for k in _REGISTRY_KEYS if k in after)
        parts.append(f"after {names}: {_rule_list(after)}")
    if needed:
        parts.append("needs " + ", ".join(str(r) for r in needed) + ", which holds before it")
    if unchecked:
        parts.append(
            "needs "
            + ", ".join(
                f"{r}, which it cannot check ({r.then_setting} is unmanaged)" for r in unchecked
            )
        )
    if before:
        names = " and ".join(
            f"{k} {_action(live[k], desired[k])}" for k in _REGISTRY_KEYS if k in before
        )
        parts.append(f"before {names}: {_rule_list(before)}")
    if unexposed:
        names = " and ".join(
            f"{k} {_action(live[k], desired[k])}" for k in _REGISTRY_KEYS if k in unexposed
        )
        parts.append(
            f"before {names}, so that it is not written while {_rule_list(unexposed)} depends on it"
        )
    if repaired:
        rules = ", ".join(str(r) for r in _worst_first(repaired))
        parts.append(f"repairs {rules}, which the live state breaks, worst harm first")
    if probed:
        rules = ", ".join(f"rule {r.number}" for r in probed)
        parts.append(
            f"written while {rules} depends on it ({probed[0].if_setting} is on): "
            "probed right before the write"
        )
    return "; ".join(parts) or _FREE


_FREE: Final = "no rule constrains this step"


def _worst_first(rules: Sequence[Rule]) -> list[Rule]:
    return sorted(rules, key=lambda rule: (-rule.harm, rule.number))


def _rule_list(by_setting: Mapping[str, list[Rule]]) -> str:
    rules = {rule.number: rule for found in by_setting.values() for rule in found}
    return ", ".join(str(rules[n]) for n in sorted(rules))


_NO_HARM: Final = harm_of(())


def _order_cost(
    live: Mapping[str, Value], desired: Mapping[str, Value], order: Sequence[str]
) -> tuple[tuple[int, ...], int] | None:
    """How bad an order is, or None if a step adds a violation: the broken rules summed over
    the states after each prefix, counted per harm level, worst level first (so a repair of
    "stops selling" goes before any number of lesser ones), then the number of writes that
    need a probe (a write made while a rule depends on it is an exposure, however probed)."""
    state = dict(live)
    previous = set(violations(state))
    cost = list(_NO_HARM)
    exposures = 0
    for key in order:
        state[key] = desired[key]
        now = set(violations(state))
        if now - previous:
            return None
        cost = [a + b for a, b in zip(cost, harm_of(now), strict=True)]
        exposures += bool(probed_rules(key, state))
        previous = now
    return tuple(cost), exposures


def order_steps(
    live: Mapping[str, Value],
    desired: Mapping[str, Value],
    forced: Collection[str] = (),
) -> list[tuple[str, str]] | None:
    """The differing settings of `desired` (and those in `forced`, rewritten even when equal)
    in a safe apply order, each with why it sits there; None when every order adds a rule
    violation on some intermediate state.

    Every permutation is tried (at most 5! = 120). An order is safe when no step adds a violation
    that the state before it did not have. Among safe orders the one whose prefixes carry the
    least harm wins (it repairs a broken live state worst harm first), then the one with the
    fewest writes needing a probe (e.g. external ATP off before the webhook config is written),
    then the first in REGISTRY order, which is the order NewStore's documentation prescribes.
    """
    pending = [
        s.key
        for s in REGISTRY
        if s.key in desired and (s.key in forced or differs(s, live[s.key], desired[s.key]))
    ]
    best: tuple[str, ...] | None = None
    best_cost: tuple[tuple[int, ...], int] | None = None
    # permutations() yields orders lexicographically by position in its input, which is in
    # REGISTRY order, so keeping only strictly cheaper orders keeps the REGISTRY-first one
    # among equals.
    for order in itertools.permutations(pending):
        cost = _order_cost(live, desired, order)
        if cost is not None and (best_cost is None or cost < best_cost):
            best, best_cost = order, cost
    if best is None:
        return None
    return [(key, _why(key, best[:i], best[i + 1 :], live, desired)) for i, key in enumerate(best)]


# --- fingerprints ----------------------------------------------------------------------------


def _canonical(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _value_doc(setting: Setting, value: Value, key: bytes) -> Any:
    normal = setting.normalize(value)
    if normal is ABSENT:
        return None
    doc: dict[str, Any] = {}
    for name, field_value in normal.items():
        if field_value is UNKNOWN:
            doc[name] = {"unknown": True}
        elif isinstance(field_value, Masked):
            # What the mask shows, keyed like a secret: a re-read showing another key differs.
            shown = f"{field_value.prefix}\0{field_value.suffix}".encode()
            doc[name] = {"masked": hmac.new(key, shown, hashlib.sha256).hexdigest()}
        elif name in setting.secret_fields:
            # Keyed, so a stolen plan file cannot be brute-forced into the secret without
            # the environment's client secret too.
            mac = hmac.new(key, str(field_value).encode(), hashlib.sha256).hexdigest()
            doc[name] = {"hmac": mac}
        else:
            doc[name] = {"value": field_value}
    return doc


def _sha256(doc: Any) -> str:
    return "sha256:" + hashlib.sha256(_canonical(doc)).hexdigest()


def fingerprint(setting: Setting, value: Value, key: bytes) -> str:
    """The normalised value as "sha256:<hex>". Secret fields enter only as HMAC-SHA256(key, ·);
    a wholly masked (UNKNOWN) field hashes as a fixed marker, so re-reading it gives the same
    hash; a partly masked one as the HMAC of what the mask shows."""
    return _sha256({"setting": setting.key, "value": _value_doc(setting, value, key)})


def fingerprint_key(env: Environment) -> bytes:
    """The HMAC key for an environment's secrets: its OAuth client secret (plan and apply both
    hold it; a plan file reader without it cannot test guesses)."""
    return env.connection.client_secret.encode()


def desired_fingerprint(env: Environment) -> str:
    """Fingerprint of the tenant, every managed setting's desired value and the gates."""
    key = fingerprint_key(env)
    probe = env.gates.webhook_probe
    return _sha256(
        {
            "tenant": env.tenant,
            "settings": {
                s.key: _value_doc(s, env.desired[s.key], key)
                for s in REGISTRY
                if s.key in env.desired
            },
            "gates": {
                "webhook_probe": None
                if probe is None
                else {
                    "products": list(probe.products),
                    "fulfillment_locations": list(probe.fulfillment_locations),
                },
                "newstore_stock_confirmed": None
                if env.gates.newstore_stock_confirmed is None
                else env.gates.newstore_stock_confirmed.isoformat(),
                "stock_confirmation_valid_days": env.gates.stock_confirmation_valid_days,
            },
        }
    )


# --- gates -----------------------------------------------------------------------------------

_ATP = "external_atp"
_WEBHOOK = "availability_webhook"
WEBHOOK_PROBE = "webhook_probe"
STOCK_CONFIRMED = "newstore_stock_confirmed"


def _probe_target(env: Environment) -> Fields | None:
    webhook = env.desired.get(_WEBHOOK, ABSENT)
    return None if webhook is ABSENT else webhook


def _probe_description(target: Fields, probe: Any) -> str:
    return (
        f"POST {target.get('url')} with Authorization: {SENSITIVE}, "
        f"products {json.dumps(list(probe.products))}, "
        f"fulfillment_locations {json.dumps(list(probe.fulfillment_locations))}; "
        f"must answer 200 with a valid availabilities body within {target.get('timeout')}s"
    )


def stock_confirmation_line(env: Environment, today: date) -> str:
    """Where and what to write to confirm stock: always the environment's own file (a base
    would confirm stock for every environment that extends it), with the exact line."""
    line = f"newstore_stock_confirmed: {today.isoformat()}"
    own = env.locations.get("gates.newstore_stock_confirmed")
    if own is not None and own.file == env.file:
        return f"change line {own.line} of {env.file} to `{line}`"
    gates = env.locations.get("gates")
    if gates is not None and gates.file == env.file:
        return f"add the line `  {line}` under `gates:` ({env.file}:{gates.line}) in {env.file}"
    return f"add `gates:` with the line `  {line}` under it to {env.file}"


def stock_confirmation_problem(env: Environment, today: date) -> str | None:
    """Why the stock confirmation does not count today (missing or expired), or None."""
    confirmed = env.gates.newstore_stock_confirmed
    days = env.gates.stock_confirmation_valid_days
    what = (
        "turning external ATP off makes NewStore compute availability from its own stock; "
        "confirm that NewStore holds stock for the products (no API can prove it), then "
    )
    if confirmed is None:
        return what + stock_confirmation_line(env, today)
    expires = confirmed + timedelta(days=days)
    if today >= expires:
        return (
            f"the stock confirmation of {confirmed.isoformat()} "
            f"({env.where('gates.newstore_stock_confirmed')}) expired on {expires.isoformat()} "
            f"(it counts for {days} day{'s' if days != 1 else ''}, UTC); {what}"
            + stock_confirmation_line(env, today)
        )
    return None


def _gates(
    env: Environment,
    key: str,
    live: Value,
    desired: Value,
    probed: Sequence[Rule],
    today: date,
) -> tuple[list[Gate], list[str]]:
    """The gates a step needs and the reasons it is blocked (empty when it may run)."""
    gates: list[Gate] = []
    blocked: list[str] = []
    if probed:
        probe, target = env.gates.webhook_probe, _probe_target(env)
        if key == _ATP:
            doing = "turning external ATP on"
        else:
            doing = f"writing {key} while external ATP is on"
        if probe is None:
            blocked.append(
                f"{doing} needs gates.webhook_probe in {env.where('gates')}: "
                "a sample availability request (products and fulfillment_locations) sent to the "
                "webhook first, because NewStore treats every item as unavailable when the "
                "webhook fails"
            )
            gates.append(Gate(WEBHOOK_PROBE, "not configured", False))
        elif target is None:
            blocked.append(
                f"{doing} needs availability_webhook managed in {env.file}, "
                "so the webhook probe knows where to send its sample request"
            )
            gates.append(Gate(WEBHOOK_PROBE, "no webhook url to probe", False))
        else:
            gates.append(Gate(WEBHOOK_PROBE, _probe_description(target, probe), None))
    if key == _ATP and is_enabled(live) and not is_enabled(desired):
        problem = stock_confirmation_problem(env, today)
        description = (
            "a person confirmed that NewStore holds stock for the products "
            "(NewStore computes availability from its own stock once external ATP is off)"
        )
        gates.append(Gate(STOCK_CONFIRMED, description, problem is None))
        if problem is not None:
            blocked.append(problem)
    return gates, blocked


# --- the plan of one environment -------------------------------------------------------------


def _unknown_notes(setting: Setting, live: Value, desired: Value, rewritten: bool) -> list[str]:
    live_n, desired_n = setting.normalize(live), setting.normalize(desired)
    if live_n is ABSENT or desired_n is ABSENT:
        return []
    notes = []
    for name, value in live_n.items():
        if not unreadable(value) or name not in desired_n:
            continue
        if isinstance(value, Masked) and not value.could_be(desired_n[name]):
            notes.append(
                f"{setting.key}.{name}: NewStore returns it masked, and what the mask shows "
                "cannot belong to the file's value: NewStore holds another one, so the update "
                "writes the file's"
            )
        elif rewritten:
            notes.append(
                f"{setting.key}.{name}: NewStore returns it masked; the update sends the whole "
                "desired object, so it is written even if it is unchanged"
            )
        else:
            notes.append(
                f"{setting.key}.{name}: NewStore returns it masked; cannot verify it "
                "(not treated as a change)"
            )
    return notes


def _fully_masked(setting: Setting, live: Value) -> bool:
    """Whether a secret of `live` cannot be compared at all (NewStore masks it wholly)."""
    return live is not ABSENT and any(live.get(name) is UNKNOWN for name in setting.secret_fields)


def _forced(
    env: Environment, live: Mapping[str, Value], replace: Collection[str]
) -> dict[str, str]:
    """Settings rewritten although they compare equal, each with why: asked for
    (`--replace`), or a webhook config whose key cannot be read back that external ATP is
    about to depend on (the probe before ATP goes on must test the key NewStore will hold)."""
    forced: dict[str, str] = {}
    for key in replace:
        if key in env.desired and env.desired[key] is not ABSENT and live[key] is not ABSENT:
            forced[key] = f"replaced on request (--replace {key}), with the probe its write needs"
    webhook = live.get(_WEBHOOK, ABSENT)
    atp_on = _ATP in env.desired and is_enabled(env.desired[_ATP])
    if (
        _WEBHOOK not in forced
        and _WEBHOOK in env.desired
        and env.desired[_WEBHOOK] is not ABSENT
        and atp_on
        and not is_enabled(live.get(_ATP, ABSENT))
        and _fully_masked(BY_KEY[_WEBHOOK], webhook)
    ):
        forced[_WEBHOOK] = (
            "re-asserts the webhook config before external ATP goes on: NewStore returns its "
            "api_key masked, so the key it holds cannot be read back and compared"
        )
    return forced


def _removable_confirmation_notes(env: Environment, live: Mapping[str, Value]) -> list[str]:
    if env.gates.newstore_stock_confirmed is None or _ATP not in env.desired:
        return []
    if is_enabled(env.desired[_ATP]) or is_enabled(live.get(_ATP, ABSENT)):
        return []
    return [
        f"gates.newstore_stock_confirmed ({env.where('gates.newstore_stock_confirmed')}) can be "
        "removed: external ATP is off and stays off, and a confirmation left in the file would "
        "approve a later migration without a fresh look at NewStore's stock"
    ]


def _unchecked_rule_notes(env: Environment, changing: set[str]) -> list[str]:
    notes = []
    for rule in RULES:
        pair = (rule.if_setting, rule.then_setting)
        unmanaged = [k for k in pair if k not in env.desired]
        if len(unmanaged) != 1 or not set(pair) & changing:
            continue
        # Only where the managed side could let the rule break: its condition true (the
        # unmanaged consequence is needed) or its consequence false (an unmanaged condition
        # would break it). Turning the new UI off cannot break rule 4, whatever the webhook.
        managed = rule.then_setting if unmanaged[0] == rule.if_setting else rule.if_setting
        value = env.desired[managed]
        if (managed == rule.if_setting and rule.if_holds(value)) or (
            managed == rule.then_setting and not rule.then_holds(value)
        ):
            notes.append(
                f"{rule} involves {unmanaged[0]}, which {env.file} does not manage: "
                "the plan cannot check it"
            )
    return notes


def build_plan(
    env: Environment,
    live: Mapping[str, Value],
    *,
    replace: Collection[str] = (),
    today: date | None = None,
) -> EnvPlan:
    """The plan that takes `live` (exactly the managed settings) to `env.desired`.

    `replace`: settings to rewrite (probed where a rule needs it) even when they compare equal,
    e.g. to rotate a key NewStore only returns masked. `today` (UTC) dates the stock
    confirmation; it defaults to the real today."""
    today = today or today_utc()
    key = fingerprint_key(env)
    managed = [s for s in REGISTRY if s.key in env.desired]
    desired = {s.key: env.desired[s.key] for s in managed}
    blocked_by = [
        f"the desired state breaks {rule}: {rule.consequence}; fix it in "
        f"{env.where(rule.if_setting)}"
        for rule in violations(desired)
    ]

    forced = _forced(env, live, replace)
    differing = {
        s.key for s in managed if s.key in forced or differs(s, live[s.key], desired[s.key])
    }
    notes: list[str] = []
    for s in managed:
        notes += _unknown_notes(s, live[s.key], desired[s.key], s.key in differing)
    notes += _unchecked_rule_notes(env, differing)
    notes += _removable_confirmation_notes(env, live)
    for s in managed:
        # Only when a step makes a rule's condition necessary again (e.g. turns the external
        # OMS off): then what the setting could not read (unlisted stores) matters.
        if any(
            rule.if_setting == s.key
            and rule.then_setting in differing
            and not rule.then_holds(desired[rule.then_setting])
            for rule in RULES
        ):
            notes += s.notes(desired[s.key])

    order = order_steps(live, desired, forced)
    if order is None:
        blocked_by.append(
            "no order of the steps keeps every safety rule on every intermediate state"
        )
        order = [(k, "not ordered: no safe order exists") for k in _REGISTRY_KEYS if k in differing]
    state = dict(live)
    steps: list[Step] = []
    for setting_key, why in order:
        setting = BY_KEY[setting_key]
        before, after = live[setting_key], desired[setting_key]
        state[setting_key] = after
        if after is ABSENT and not setting.deletable:
            # Config validation refuses this already; the planner must never emit a DELETE the
            # API does not have, whoever built the Environment.
            blocked_by.append(f"{setting_key} cannot be deleted through NewStore's API")
        gates, blocked = _gates(
            env, setting_key, before, after, probed_rules(setting_key, state), today
        )
        blocked_by += blocked
        if setting_key in forced:
            why = f"{forced[setting_key]}; {why}" if why != _FREE else forced[setting_key]
        gate_words = " and ".join(f"gate {g.name}" for g in gates)
        steps.append(
            Step(
                setting=setting_key,
                action=_action(before, after),
                before=before,
                after=after,
                changes=_field_changes(setting, before, after),
                why=f"{why}; {gate_words}" if gate_words else why,
                gates=tuple(gates),
                rewrite=setting_key in forced,
            )
        )
    return EnvPlan(
        name=env.name,
        tenant=env.tenant,
        status=status_of(steps, blocked_by),
        steps=steps,
        blocked_by=blocked_by,
        live_violations=[f"{rule}: {rule.consequence}" for rule in _worst_first(violations(live))],
        notes=notes,
        fingerprints={s.key: fingerprint(s, live[s.key], key) for s in managed},
        live={s.key: shown_value(s, live[s.key]) for s in managed},
        desired_fingerprint=desired_fingerprint(env),
        replaced=sorted(k for k in replace if k in desired),
    )


# --- reading NewStore ------------------------------------------------------------------------


def read_live(
    env: Environment, client: NewStoreClient, *, reads: Executor | None = None
) -> dict[str, Value]:
    """The live value of every setting the environment manages (unmanaged ones are never read).

    The GETs run side by side: the first to start fetches the token while the others wait for
    it, so an environment costs two round trips instead of five; over hundreds of environments
    that is most of a run. The first failure in registry order is raised. `reads` runs them
    (a run's executor shared by its environments); without it, threads of their own.
    """
    settings = [s for s in REGISTRY if s.key in env.desired]
    if len(settings) < 2:
        return {s.key: s.read_managed(client, env.desired[s.key]) for s in settings}
    if reads is not None:
        futures = [reads.submit(s.read_managed, client, env.desired[s.key]) for s in settings]
        # Every read ends before the first failure is raised: the caller closes the client
        # then, and a read still under way would find it closed.
        wait(futures)
    else:
        with ThreadPoolExecutor(max_workers=len(settings)) as pool:
            futures = [pool.submit(s.read_managed, client, env.desired[s.key]) for s in settings]
    return {s.key: future.result() for s, future in zip(settings, futures, strict=True)}


def probe_for(env: Environment, *, transport: httpx.BaseTransport | None = None) -> str:
    """Run the webhook-probe gate of `env`: its gates.webhook_probe sample sent to its desired
    webhook. Returns the probe's summary; raises BlockedError saying why it failed, or why it
    cannot run."""
    # lazy: start-up time (httpx)
    from reconciler.newstore.probe import probe_webhook

    target, probe = _probe_target(env), env.gates.webhook_probe
    if target is None or probe is None:
        raise BlockedError(
            "turning external ATP on needs gates.webhook_probe and a managed "
            f"availability_webhook in {env.file}"
        )
    return probe_webhook(
        str(target["url"]),
        str(target["api_key"]),
        probe,
        float(target["timeout"]),
        transport=transport,
        ca_bundle=env.connection.ca_bundle,
    )


def check_health(
    env: Environment,
    live: Mapping[str, Value],
    *,
    transport: httpx.BaseTransport | None = None,
) -> tuple[list[str], str]:
    """`drift --probe`: can the live webhook serve availability while external ATP is on?
    Returns why not (empty: healthy, or nothing to probe) and what the probe did, in words.

    It probes the *live* url and timeout, with the key NewStore holds where it can be read and
    the file's key otherwise; a masked key whose visible part cannot be the file's is
    unhealthy without a probe (NewStore sends a key the webhook was not given)."""
    # lazy: start-up time (httpx)
    from reconciler.newstore.probe import probe_webhook

    if not is_enabled(live.get(_ATP, ABSENT)):
        return [], "not probed: external ATP is off or not managed here"
    if _WEBHOOK not in live:
        return [], "not probed: availability_webhook is not managed here"
    webhook = live[_WEBHOOK]
    if webhook is ABSENT:
        return [
            "external ATP is on and no availability webhook config exists: NewStore treats "
            "every item as unavailable"
        ], "not probed: no webhook config"
    wanted = env.desired[_WEBHOOK]
    file_key = None if wanted is ABSENT else wanted.get("api_key")
    held = webhook.get("api_key")
    if isinstance(held, Masked) and not held.could_be(file_key):
        return [
            "NewStore holds another webhook api_key than the file's (the part its mask shows "
            "cannot belong to the file's key): the webhook may refuse every availability call"
        ], "not probed: the key NewStore holds is not the file's"
    key = held if isinstance(held, str) else file_key
    probe = env.gates.webhook_probe
    if probe is None or not isinstance(key, str):
        return [], "not probed: needs gates.webhook_probe and the webhook's api_key in the file"
    try:
        summary = probe_webhook(
            str(webhook.get("url")),
            key,
            probe,
            float(webhook.get("timeout") or 15),
            transport=transport,
            ca_bundle=env.connection.ca_bundle,
        )
    except ReconcilerError as exc:
        return [f"the live webhook failed the probe: {exc}"], f"failed: {exc}"
    return [], f"passed: {summary}"


def with_probes(env: Environment, plan: EnvPlan) -> EnvPlan:
    """The plan with the webhook probe of every step whose gate waits for it run now: a new
    plan, blocked by a failing probe. (A gate waits only when the probe and its webhook are
    configured: `_gates` blocks the plan otherwise.)"""
    blocked_by = list(plan.blocked_by)
    steps = []
    for step in plan.steps:
        gates = []
        for gate in step.gates:
            if gate.name == WEBHOOK_PROBE and gate.satisfied is None:
                try:
                    summary = probe_for(env)
                except ReconcilerError as exc:
                    blocked_by.append(str(exc))
                    gate = replace(
                        gate, description=f"{gate.description}; failed: {exc}", satisfied=False
                    )
                else:
                    gate = replace(
                        gate, description=f"{gate.description}; passed: {summary}", satisfied=True
                    )
            gates.append(gate)
        steps.append(replace(step, gates=tuple(gates)))
    return replace(plan, steps=steps, blocked_by=blocked_by, status=status_of(steps, blocked_by))


def policy_now(env: Environment, plan: EnvPlan, now: datetime) -> Decision | None:
    """What `env`'s policy says of applying `plan` at `now`; None when there is nothing to
    write or no policy to ask."""
    if not plan.steps or env.policy == ALWAYS:
        return None
    return decide(env.policy, now)


def default_client(env: Environment) -> AbstractContextManager[NewStoreClient]:
    """The client of `env` as every command builds it (imported here, not at the top, so that
    commands that never talk HTTP start without loading httpx)."""
    # lazy: start-up time (httpx)
    from reconciler.newstore.client import NewStoreClient
    from reconciler.settings import SECRET_KEYS

    # The client picks its host's shared limiter, so a 429 slows every environment on it.
    return NewStoreClient(env, secret_keys=SECRET_KEYS)


def plan_environments(
    envs: Sequence[Environment | Unresolved],
    *,
    parallelism: int = DEFAULT_PARALLELISM,
    client_factory: ClientFactory | None = None,
    probe: bool = False,
    on_done: Callable[[EnvPlan], None] | None = None,
    now: datetime | None = None,
    replace: Collection[str] = (),
    health: bool = False,
    today: date | None = None,
) -> RunPlan:
    """Read and plan every environment, `parallelism` at a time, in the order given.

    An environment whose read fails, or whose file could not be resolved (`Unresolved`),
    becomes an ERROR plan carrying the one-paragraph message; the others are planned
    regardless. With `probe`, webhook-probe gates run now (they
    otherwise run at apply) and a failing probe blocks its environment. `on_done(plan)` is
    called from the worker threads as each environment finishes (for progress reports).
    With `now`, each plan with steps says whether its policy lets an apply write at `now`.
    `replace`: settings every environment rewrites even when equal (`--replace`). With
    `health` (`drift --probe`), each plan also says whether its live webhook is healthy.
    `today` (UTC) dates the stock confirmation; it defaults to the real today.
    """
    if parallelism < 1:
        raise ConfigError(f"--parallelism must be at least 1, got {parallelism}.")
    factory = client_factory or default_client

    def plan_one(env: Environment | Unresolved) -> EnvPlan:
        if isinstance(env, Unresolved):
            return EnvPlan(name=env.name, tenant=env.tenant, status=Status.ERROR, error=env.error)
        try:
            with factory(env) as client:
                live = read_live(env, client, reads=reads)
            plan = build_plan(env, live, replace=replace, today=today)
        except ReconcilerError as exc:
            return EnvPlan(name=env.name, tenant=env.tenant, status=Status.ERROR, error=str(exc))
        if health:
            unhealthy, probed = check_health(env, live)
            plan = dataclasses.replace(plan, unhealthy=unhealthy, probe=probed)
        if probe:
            plan = with_probes(env, plan)
        if now is not None:
            plan = dataclasses.replace(plan, policy=policy_now(env, plan, now))
        return plan

    def plan_and_report(env: Environment | Unresolved) -> EnvPlan:
        plan = plan_one(env)
        if on_done is not None:
            on_done(plan)
        return plan

    if not envs:
        return RunPlan([])
    workers = min(parallelism, len(envs))
    # One executor for every environment's setting reads, sized so that no read ever waits
    # for a thread: starting four threads per environment was a tenth of a run's CPU.
    with (
        ThreadPoolExecutor(max_workers=workers * len(REGISTRY)) as reads,
        ThreadPoolExecutor(max_workers=workers) as pool,
    ):
        return RunPlan(list(pool.map(plan_and_report, envs)))
