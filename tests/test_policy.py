"""The change policy's decisions (reconciler/policy.py): window edges, windows across
midnight, DST changes, a freeze's last day, overlapping freezes, and what comes next."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.policy import (
    ALWAYS,
    RULE_FREEZE,
    RULE_WINDOW,
    Freeze,
    Policy,
    Window,
    decide,
    decision_dict,
    explain,
)

NY = ZoneInfo("America/New_York")
MON_TO_THU = frozenset({0, 1, 2, 3})
QUIET_HOURS = Window(MON_TO_THU, time(2), time(6))
PEAK = Freeze(date(2026, 11, 20), date(2026, 12, 31), "peak season")
POLICY = Policy("America/New_York", (QUIET_HOURS,), (PEAK,))


def ny(*args: int) -> datetime:
    return datetime(*args, tzinfo=NY)  # type: ignore[misc]


def test_no_policy_always_allows() -> None:
    decision = decide(ALWAYS, datetime(2026, 11, 27, 11, tzinfo=UTC))
    assert decision.allowed
    assert decision.until is None


@pytest.mark.parametrize(
    ("now", "allowed"),
    [
        (ny(2026, 3, 2, 1, 59, 59), False),  # Monday, a second before the window
        (ny(2026, 3, 2, 2, 0), True),  # its first moment
        (ny(2026, 3, 2, 5, 59, 59), True),
        (ny(2026, 3, 2, 6, 0), False),  # `to` is not included
        (ny(2026, 3, 6, 3, 0), False),  # Friday: not one of the days
    ],
)
def test_a_windows_edges(now: datetime, allowed: bool) -> None:
    decision = decide(Policy("America/New_York", (QUIET_HOURS,)), now)

    assert decision.allowed is allowed
    if not allowed:
        assert decision.rule == RULE_WINDOW
        assert "mon,tue,wed,thu 02:00-06:00" in decision.reason


def test_blocked_outside_a_window_names_the_next_start() -> None:
    policy = Policy("America/New_York", (QUIET_HOURS,))

    after_monday = decide(policy, ny(2026, 3, 2, 6, 0))
    friday = decide(policy, ny(2026, 3, 6, 3, 0))

    assert after_monday.next_allowed == ny(2026, 3, 3, 2, 0)  # Tuesday
    assert friday.next_allowed == ny(2026, 3, 9, 2, 0)  # over the weekend to Monday
    inside = decide(policy, ny(2026, 3, 2, 4, 0))
    assert inside.until == ny(2026, 3, 2, 6, 0)


def test_a_window_across_midnight_belongs_to_the_day_it_starts() -> None:
    friday_night = Window(frozenset({4}), time(22), time(3))
    policy = Policy("UTC", (friday_night,))

    def at(*args: int) -> bool:
        return decide(policy, datetime(*args, tzinfo=UTC)).allowed  # type: ignore[misc]

    assert at(2026, 3, 6, 22, 0)  # Friday 22:00
    assert at(2026, 3, 7, 2, 59)  # Saturday small hours: still Friday's window
    assert not at(2026, 3, 7, 3, 0)
    assert not at(2026, 3, 7, 22, 30)  # Saturday night has no window
    assert not at(2026, 3, 6, 2, 0)  # Friday small hours belong to Thursday's (none)
    until = decide(policy, datetime(2026, 3, 6, 23, tzinfo=UTC)).until
    assert until == datetime(2026, 3, 7, 3, tzinfo=UTC)


def test_a_window_to_midnight() -> None:
    evening = Window(frozenset(range(7)), time(20), None)  # to: "24:00"
    policy = Policy("UTC", (evening,))
    assert decide(policy, datetime(2026, 3, 6, 23, 59, tzinfo=UTC)).allowed
    assert not decide(policy, datetime(2026, 3, 7, 0, 0, tzinfo=UTC)).allowed


def test_a_window_keeps_its_local_hours_across_the_spring_dst_change() -> None:
    # 8 March 2026, New York: 02:00 EST jumps to 03:00 EDT. A Sunday 01:00-05:00 window is
    # three hours long that day and still ends at 05:00 local time.
    sunday = Policy("America/New_York", (Window(frozenset({6}), time(1), time(5)),))

    def utc(hour: int, minute: int = 0) -> datetime:
        return datetime(2026, 3, 8, hour, minute, tzinfo=UTC)

    assert not decide(sunday, utc(5, 59)).allowed  # 00:59 EST
    assert decide(sunday, utc(6, 0)).allowed  # 01:00 EST
    assert decide(sunday, utc(8, 59)).allowed  # 04:59 EDT
    assert not decide(sunday, utc(9, 0)).allowed  # 05:00 EDT: the end, one hour earlier in UTC
    # A week before, in winter time, the same window ended at 10:00 UTC.
    assert decide(sunday, datetime(2026, 3, 1, 9, 30, tzinfo=UTC)).allowed


def test_a_window_starting_in_the_skipped_hour_moves_forward_by_the_jump() -> None:
    # 02:30 does not exist on 8 March 2026 in New York. As in iCalendar (RFC 5545), it is read
    # with the offset before the jump: 02:30 EST, which the clocks show as 03:30 EDT.
    policy = Policy("America/New_York", (Window(frozenset({6}), time(2, 30), time(4)),))

    before = decide(policy, datetime(2026, 3, 8, 6, 59, tzinfo=UTC))  # 01:59 EST

    assert not before.allowed
    assert before.next_allowed is not None
    assert before.next_allowed.astimezone(UTC) == datetime(2026, 3, 8, 7, 30, tzinfo=UTC)
    assert before.next_allowed.strftime("%H:%M %Z") == "03:30 EDT"
    assert not decide(policy, datetime(2026, 3, 8, 7, 29, tzinfo=UTC)).allowed
    assert decide(policy, datetime(2026, 3, 8, 7, 30, tzinfo=UTC)).allowed
    assert not decide(policy, datetime(2026, 3, 8, 8, 0, tzinfo=UTC)).allowed  # 04:00 EDT


def test_a_window_across_the_autumn_dst_change_is_an_hour_longer() -> None:
    # 1 November 2026, New York: 02:00 EDT falls back to 01:00 EST.
    sunday = Policy("America/New_York", (Window(frozenset({6}), time(0), time(3)),))
    start = datetime(2026, 11, 1, 4, 0, tzinfo=UTC)  # 00:00 EDT
    end = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)  # 03:00 EST: four real hours later

    inside = decide(sunday, start)

    assert inside.allowed
    assert inside.until is not None and inside.until.astimezone(UTC) == end
    assert decide(sunday, datetime(2026, 11, 1, 7, 59, tzinfo=UTC)).allowed
    assert not decide(sunday, end).allowed


def test_a_freeze_includes_its_last_day_whole_in_its_timezone() -> None:
    freeze_only = Policy("America/New_York", (), (PEAK,))

    last_moment = decide(freeze_only, ny(2026, 12, 31, 23, 59, 59))
    first_free = decide(freeze_only, ny(2027, 1, 1, 0, 0))
    day_before = decide(freeze_only, ny(2026, 11, 19, 23, 59))

    assert not last_moment.allowed
    assert last_moment.rule == RULE_FREEZE
    assert "peak season" in last_moment.reason and "2026-12-31" in last_moment.reason
    assert last_moment.next_allowed == ny(2027, 1, 1, 0, 0)
    assert first_free.allowed
    assert day_before.allowed
    assert day_before.until == ny(2026, 11, 20, 0, 0)
    # 1 January 00:30 in UTC is still 31 December in New York: frozen.
    assert not decide(freeze_only, datetime(2027, 1, 1, 0, 30, tzinfo=UTC)).allowed


def test_a_freeze_wins_over_a_window_and_the_next_time_is_the_first_window_after_it() -> None:
    # Black Friday 2026 (27 November) at 03:00: a Friday and frozen anyway.
    decision = decide(POLICY, ny(2026, 11, 24, 3, 0))  # a Tuesday inside the window

    assert not decision.allowed
    assert decision.rule == RULE_FREEZE
    # The freeze ends as Friday 1 January 2027 starts; the next window is Monday 4 January.
    assert decision.next_allowed == ny(2027, 1, 4, 2, 0)
    assert "next allowed 2027-01-04 02:00 EST (2027-01-04 07:00 UTC)" in explain(decision)


def test_overlapping_and_adjacent_freezes_are_crossed_in_one_answer() -> None:
    freezes = (
        Freeze(date(2026, 11, 20), date(2026, 11, 30), "black friday"),
        Freeze(date(2026, 11, 25), date(2026, 12, 10), "cyber week"),
        Freeze(date(2026, 12, 11), date(2026, 12, 12), "adjacent"),
    )
    decision = decide(Policy("UTC", (), freezes), datetime(2026, 11, 21, tzinfo=UTC))

    assert decision.next_allowed == datetime(2026, 12, 13, tzinfo=UTC)


def test_a_decision_as_json_carries_local_times() -> None:
    doc = decision_dict(decide(POLICY, ny(2026, 11, 27, 11, 0)))

    assert doc == {
        "apply_allowed": False,
        "checked_at": "2026-11-27T11:00:00-05:00",
        "timezone": "America/New_York",
        "rule": "freeze",
        "reason": "change freeze 2026-11-20 to 2026-12-31 (America/New_York): peak season",
        "next_allowed": "2027-01-04T02:00:00-05:00",
        "allowed_until": None,
    }


def test_a_naive_datetime_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        decide(POLICY, datetime(2026, 11, 27, 11))


# -- properties: for any policy and moment, the answers agree with each other ---------------------

_ZONES = ("UTC", "America/New_York", "Europe/Berlin", "Australia/Lord_Howe", "Asia/Kolkata")
_MINUTES = st.integers(0, 24 * 60 - 1).map(lambda m: time(m // 60, m % 60))
_WINDOWS = st.builds(
    Window,
    st.frozensets(st.integers(0, 6), min_size=1),
    _MINUTES,
    st.one_of(st.none(), _MINUTES),
).filter(lambda w: w.start != w.end)
_DAYS = st.dates(date(2026, 1, 1), date(2027, 12, 31))
_FREEZES = st.tuples(_DAYS, st.integers(0, 40)).map(
    lambda t: Freeze(t[0], t[0] + timedelta(days=t[1]), "frozen")
)
_POLICIES = st.builds(
    Policy,
    st.sampled_from(_ZONES),
    st.lists(_WINDOWS, max_size=3).map(tuple),
    st.lists(_FREEZES, max_size=3).map(tuple),
)
_MOMENTS = st.datetimes(
    datetime(2026, 1, 1),
    datetime(2027, 12, 31),
    timezones=st.just(UTC),
)


@settings(max_examples=300, deadline=None)
@given(_POLICIES, _MOMENTS)
def test_the_next_allowed_time_is_allowed_and_nothing_before_it_is(
    policy: Policy, now: datetime
) -> None:
    decision = decide(policy, now)
    if decision.allowed:
        if decision.until is not None:
            assert decision.until > now
            assert not decide(policy, decision.until).allowed
            assert decide(policy, decision.until - timedelta(microseconds=1)).allowed
        return
    assert decision.rule in (RULE_FREEZE, RULE_WINDOW)
    assert decision.next_allowed is not None  # windows recur every week, freezes end
    assert decision.next_allowed > now
    assert decide(policy, decision.next_allowed).allowed
    span = decision.next_allowed - now
    for fraction in (0.25, 0.5, 0.75, 0.999):
        assert not decide(policy, now + span * fraction).allowed
    assert not decide(policy, decision.next_allowed - timedelta(microseconds=1)).allowed
