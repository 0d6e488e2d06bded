"""What apply checks around each write against a concurrent writer, as pure functions.

NewStore has no locks, ETags or conditional writes: a write by someone else can land between
apply's last re-read and its own write. So right after every write that a safety rule relies
on, apply re-reads the rule's other settings; if the rule is broken now, the write is undone at
once with a compensating write to the safe side, and apply stops. The window in which a
concurrent writer can leave a rule broken is then one round trip.

    relied_on(key, state)                the rules a write of `key` leaves depending on others
    moved_fields(setting, now, probed)   what differs between NewStore's config and the probed
    compensation(...)                    the one write that makes the broken rules hold again
    blind_compensation(...)              the one write that makes rules hold whatever is unread
    did(setting, before, after)          a change in words: "deleted availability_webhook"
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from reconciler.model import ABSENT, Masked, Value, unreadable
from reconciler.newstore.settings import BY_KEY, Setting
from reconciler.rules import RULES, Rule, violations

SAFE_SIDE: Final[Mapping[str, Value]] = {"external_atp": {"enabled": False}}
"""A rule's condition setting at the value that keeps every rule it is the condition of,
whatever the other side: the safe side a compensation may take when undoing the write itself
cannot be done (e.g. a deleted webhook whose key NewStore answered masked cannot be put back).
External ATP off makes NewStore compute availability from its own stock again: the state the
tenant was in before external ATP went on."""


def relied_on(key: str, after: Mapping[str, Value]) -> list[Rule]:
    """The rules that a write of `key`, leaving the state `after`, depends on another setting
    for: it made or kept the rule's condition true (external ATP on: the webhook must stay),
    it left the rule's consequence false (the webhook deleted: external ATP must stay off), or
    it wrote a config a probe vouches for (the webhook while external ATP may be on). A rule
    whose other setting is not known (unmanaged, not read) is not judged."""
    found = []
    for rule in RULES:
        if key not in (rule.if_setting, rule.then_setting):
            continue
        if rule.if_setting not in after or rule.then_setting not in after:
            continue
        if key == rule.if_setting:
            relies = rule.if_holds(after[key])
        else:
            relies = rule.probe is not None or not rule.then_holds(after[key])
        if relies:
            found.append(rule)
    return found


def moved_fields(setting: Setting, now: Value, probed: Value) -> list[str]:
    """The fields in which `now` (NewStore's config as just read) is not the `probed` one, as
    far as the read shows: a masked key that cannot be the probed key has moved; one whose
    visible part could be it has not (the re-assert before external ATP goes on is what
    proves it). ["the whole config"] when one side is absent."""
    now_n, probed_n = setting.normalize(now), setting.normalize(probed)
    if now_n is ABSENT or probed_n is ABSENT:
        return [] if now_n is probed_n else ["the whole config"]
    moved = []
    for name in [*probed_n, *(n for n in now_n if n not in probed_n)]:
        held, wanted = now_n.get(name), probed_n.get(name)
        if unreadable(held):
            if isinstance(held, Masked) and not held.could_be(wanted):
                moved.append(name)
        elif held != wanted:
            moved.append(name)
    return moved


def writable(setting: Setting, value: Value) -> bool:
    """Whether `value` can be written back: a delete the API has, or a value whose every
    field was read in clear (a masked key cannot be sent)."""
    if value is ABSENT:
        return setting.deletable
    return not any(unreadable(v) for v in value.values())


@dataclass(frozen=True)
class Compensation:
    """The write that undoes a broken rule at once: `setting` to `value`, and why that value
    (`undo`: back to what this apply's write replaced; otherwise the rule's safe side)."""

    setting: str
    value: Value
    undo: bool


def compensation(
    key: str,
    before: Value,
    state: Mapping[str, Value],
    broken: Sequence[Rule],
    *,
    undo_first: bool = True,
) -> Compensation | None:
    """The single write that makes every rule of `broken` hold again in `state` (the live
    values just re-read, this apply's write included) without breaking another: undoing the
    write of `key` (back to `before`) where that can be written, else the safe side of a
    broken rule's condition (`SAFE_SIDE`); `undo_first=False` tries the safe side first (a
    webhook that failed its probe: the config it replaced is no better known). None when no
    single write can."""
    undo = [Compensation(key, before, True)]
    safe = [
        Compensation(rule.if_setting, SAFE_SIDE[rule.if_setting], False)
        for rule in broken
        if rule.if_setting in SAFE_SIDE and rule.if_setting in state
    ]
    candidates = undo + safe if undo_first else safe + undo
    still_broken = set(violations(state))
    for candidate in candidates:
        if not writable(BY_KEY[candidate.setting], candidate.value):
            continue
        after = {**state, candidate.setting: candidate.value}
        now = set(violations(after))
        if not any(rule in now for rule in broken) and now <= still_broken:
            return candidate
    return None


def blind_compensation(
    key: str, before: Value, state: Mapping[str, Value], rules: Sequence[Rule]
) -> Compensation | None:
    """The single write that makes every rule of `rules` hold whatever the settings that could
    not be re-read hold: undoing the write of `key` (back to `before`), else the safe side of a
    rule's condition, where that value alone keeps every rule (external ATP off keeps rules 1
    and 2 whatever the webhook and the external OMS are). None when no single write can."""
    undo = [Compensation(key, before, True)]
    safe = [
        Compensation(rule.if_setting, SAFE_SIDE[rule.if_setting], False)
        for rule in rules
        if rule.if_setting in SAFE_SIDE and rule.if_setting in state
    ]
    for candidate in undo + safe:
        if not writable(BY_KEY[candidate.setting], candidate.value):
            continue
        if all(_keeps(rule, candidate) for rule in rules):
            return candidate
    return None


def _keeps(rule: Rule, write: Compensation) -> bool:
    """Whether `write` alone makes `rule` hold, whatever the rule's other setting is."""
    if write.setting == rule.if_setting:
        return not rule.if_holds(write.value)
    # A config that exists proves nothing for a rule with a probe: it must also work.
    return (
        write.setting == rule.then_setting and rule.probe is None and rule.then_holds(write.value)
    )


def _flag(value: Value) -> bool | None:
    """The one boolean a flag-like value holds ({"enabled": true}), else None."""
    if value is ABSENT or len(value) != 1:
        return None
    (only,) = value.values()
    return only if isinstance(only, bool) else None


def did(setting: Setting, before: Value, after: Value) -> str:
    """What a change did, in words, without values: "turned external_atp on", "deleted
    availability_webhook", "created …", "changed availability_webhook's api_key and url"."""
    if before is ABSENT and after is ABSENT:
        return f"left {setting.key} absent"
    if after is ABSENT:
        return f"deleted {setting.key}"
    if before is ABSENT:
        return f"created {setting.key}"
    flag = _flag(after)
    if flag is not None and _flag(before) is not flag:
        return f"turned {setting.key} {'on' if flag else 'off'}"
    names = moved_fields(setting, after, before) or sorted(after)
    return f"changed {setting.key}'s {' and '.join(names)}"
